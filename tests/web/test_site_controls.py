"""Site controls end to end, against a real mosquitto and the console's real server: MQTT switches turn a rule
off and on mid-run (and stay after a restart), alerts are marked over the API and over MQTT, and the marked
false positives export as an Ultralytics YOLO-seg dataset."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from maskwatch.feedback import load_kept
from tests.conftest import ROOT, write_clip, write_config
from tests.pipeline.conftest import Subscriber, broker, broker_factory  # noqa: F401 - fixtures
from tests.web.conftest import serve_pipeline, wait_for


def _publish(broker, topic: str, payload: str) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{time.monotonic_ns()}")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    c.publish(topic, payload, qos=1).wait_for_publish(10)
    c.loop_stop()
    c.disconnect()


def _config(tmp_path, model_path, model_names, broker, frames=60):
    clip = write_clip(tmp_path / "clip.mp4", frames=frames, seed=10)
    return write_config(tmp_path, model_path, clip, model_names, extra={
        "alerts": {"jsonl": "var/alerts.jsonl", "outbox": "var/outbox.sqlite", "mqtt": broker.mqtt_config()},
        "tracker": {"report_conf": 0.0}, "feedback": {"keep_frames": True, "dir": "var/feedback"}})


def _events(tmp_path) -> list[dict]:
    p = tmp_path / "var/alerts.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def test_a_switch_turns_a_rule_off_and_on_and_survives_a_restart(tmp_path, model_path, model_names, broker):
    sub = Subscriber(broker, topic="maskwatch/cam1/#").start()
    cfg = _config(tmp_path, model_path, model_names, broker)
    with serve_pipeline(cfg, loop=True) as s:
        wait_for(lambda: any(e["type"] == "start" for e in _events(tmp_path)), 60, what="a first alert")
        wait_for(lambda: (m := sub.last("maskwatch/cam1/rules/anything")) is not None and m.payload == b"ON", 10,
                 what="the rule's armed state")
        assert sub.last("maskwatch/cam1/enabled").payload == b"ON"
        late = Subscriber(broker, topic="maskwatch/cam1/enabled").start()  # retained: a late subscriber gets it
        wait_for(lambda: late.last("maskwatch/cam1/enabled") is not None, 10, what="the retained state")
        assert late.last("maskwatch/cam1/enabled").retain
        late.stop()
        wait_for(lambda: s.pipe.active_alerts["cam1"], 30, what="an active alert")
        _publish(broker, "maskwatch/cam1/rules/anything/set", "OFF")
        wait_for(lambda: sub.last("maskwatch/cam1/rules/anything").payload == b"OFF", 10, what="the OFF echo")
        wait_for(lambda: not s.pipe.active_alerts["cam1"], 10, what="the active alerts to end")
        off_at = len(_events(tmp_path))
        analysed = s.pipe.cameras[0].stats.analysed
        wait_for(lambda: s.pipe.cameras[0].stats.analysed > analysed + 30, 60, what="30 more frames")
        time.sleep(0.5)  # delivered to the JSONL
        after = _events(tmp_path)[off_at:]
        assert not [e for e in after if e["type"] == "start"], "a disarmed rule started an alert"
        disarmed = [e for e in _events(tmp_path) if e.get("extra", {}).get("reason") == "disarmed"]
        assert disarmed and all(e["type"] == "end" for e in disarmed)
        _publish(broker, "maskwatch/cam1/rules/anything/set", "ON")
        wait_for(lambda: any(e["type"] == "start" for e in _events(tmp_path)[off_at:]), 60, what="alerts to resume")
        _publish(broker, "maskwatch/cam1/enabled/set", "OFF")  # the whole camera, kept for the next run
        wait_for(lambda: sub.last("maskwatch/cam1/enabled").payload == b"OFF", 10, what="the camera's OFF echo")
        wait_for(lambda: not s.pipe.active_alerts["cam1"], 10, what="the active alerts to end")
    before = len(_events(tmp_path))
    with serve_pipeline(cfg, loop=True) as s:  # a restart: the switch is read back from the outbox's database
        wait_for(lambda: s.pipe.cameras[0].stats.analysed > 40, 60, what="40 frames")
        assert not [e for e in _events(tmp_path)[before:] if e["type"] == "start"]
        wait_for(lambda: sub.last("maskwatch/cam1/rules/anything").payload == b"OFF", 10, what="OFF after the restart")


def test_feedback_over_the_api_and_mqtt_exports_a_dataset(tmp_path, model_path, model_names, broker):
    cfg = _config(tmp_path, model_path, model_names, broker, frames=45)
    with serve_pipeline(cfg, loop=True) as s:  # marks arrive while it runs (MQTT's subscription lives with it)
        wait_for(lambda: sum(e["type"] == "start" for e in s.pipe.recent_alerts) >= 3, 60, what="three alerts")
        starts = [e for e in s.pipe.recent_alerts if e["type"] == "start"]
        api_fp, api_ack, mqtt_fp = starts[0], starts[1], starts[2]
        r = httpx_post(s.base + f"/api/alerts/{api_fp['id']}/false_positive")
        assert r.status_code == 200 and r.json() == {"id": api_fp["id"], "feedback": "false_positive"}
        assert httpx_post(s.base + f"/api/alerts/{api_ack['id']}/ack").status_code == 200
        assert httpx_post(s.base + "/api/alerts/nope/ack").status_code == 404
        assert httpx_post(s.base + f"/api/alerts/{api_ack['id']}/maybe").status_code == 404
        _publish(broker, f"maskwatch/cam1/alerts/{mqtt_fp['id']}/ack", "false_positive")
        wait_for(lambda: s.pipe.controls.verdicts.get(mqtt_fp["id"]) == "false_positive", 10, what="the MQTT mark")
        shown = {a["id"]: a.get("feedback") for a in s.get("/api/alerts?limit=1000").json()["alerts"]}
        assert shown[api_fp["id"]] == "false_positive" and shown[api_ack["id"]] == "ack"
        metrics = s.get("/metrics").text
        assert 'maskwatch_alert_feedback_total{camera="cam1",verdict="false_positive"} 2.0' in metrics
    out = tmp_path / "dataset"
    run = subprocess.run([sys.executable, "-m", "maskwatch", "feedback", "export", str(cfg), "--out", str(out)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(model_names)) and data["train"] == "images/train"
    manifest = {r["alert_id"]: r for r in json.loads((out / "manifest.json").read_text())["records"]}
    assert set(manifest) == {api_fp["id"], mqtt_fp["id"]}  # the acknowledged one needs --confirmed
    for alert in (api_fp, mqtt_fp):
        rec = manifest[alert["id"]]
        assert rec["removed_tracks"] == sorted(o["track_id"] for o in alert["objects"])
        kept = load_kept(tmp_path / "var/feedback/cam1" / rec["file"].split("_", 1)[1].replace(".jpg", ".npz"))
        assert rec["labels"] == sum(1 for t, m in zip(kept["track_ids"], kept["masks"])
                                    if t not in rec["removed_tracks"] and m.any())
        label = (out / "labels/train" / rec["file"].replace(".jpg", ".txt")).read_text().splitlines()
        assert len(label) == rec["labels"]
        for line in label:
            vals = line.split()
            xy = np.array(vals[1:], float)
            assert int(vals[0]) in range(len(model_names)) and len(xy) >= 6 and 0 <= xy.min() <= xy.max() <= 1
        assert (out / "images/train" / rec["file"]).stat().st_size > 1000
    run = subprocess.run([sys.executable, "-m", "maskwatch", "feedback", "export", str(cfg), "--out",
                          str(tmp_path / "all"), "--confirmed"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0 and "3 images" in run.stdout, run.stdout + run.stderr


def httpx_post(url: str):
    import httpx

    return httpx.post(url, timeout=30)
