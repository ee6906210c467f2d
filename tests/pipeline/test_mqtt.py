"""Alert delivery over MQTT against a real mosquitto (started by the fixtures on a free
loopback port): outbox + publisher + MQTT sink, then the whole `maskwatch run` CLI through
broker outages, SIGKILL, wrong credentials and TLS mismatches."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import cv2
import pytest

from maskwatch.pipeline.config import MqttConfig
from maskwatch.pipeline.mqtt import MqttSink
from maskwatch.pipeline.outbox import Outbox
from maskwatch.pipeline.sinks import JsonlSink, Publisher
from tests.conftest import ROOT, write_clip, write_config
from tests.pipeline.conftest import wait_for
from maskwatch.zones import AlertEvent, AlertObject

PASSWORD_ENV = "MASKWATCH_TEST_MQTT_PASSWORD"


def _event(camera: str, n: int, typ: str = "start", seq: int = 0) -> AlertEvent:
    return AlertEvent(id=f"{camera}:r:{n}", type=typ, camera=camera, rule="r", rule_type="intrusion", zone="z",
                      severity="warning", objects=[AlertObject(1, "worker", 0.9, [0, 0, 10, 10], 0.5)],
                      frame_index=n, pts_s=n / 15, wall_time=time.time(), started_at=time.time(),
                      started_pts_s=n / 15, seq=seq)


class _Runner:
    """Runs a Publisher in a thread until ``finish()`` (then it drains) or ``abort``."""

    def __init__(self, pub: Publisher, drain_s: float = 10.0) -> None:
        self.done = threading.Event()
        self.abort = threading.Event()
        self.thread = threading.Thread(target=pub.run, args=(self.done.is_set, self.abort, drain_s), daemon=True)
        self.thread.start()

    def finish(self, timeout: float = 30.0) -> None:
        self.done.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "publisher did not end"


def _key(a: dict) -> tuple[str, int]:
    return a["id"], a["seq"]


def wait_delivered(sub, expected: list[dict], timeout: float, context: str = "") -> None:
    """Wait until every expected alert arrived at ``sub``, then check order and duplicates."""
    want = {_key(a) for a in expected}
    deadline = time.monotonic() + timeout
    while not want <= {_key(a) for a in sub.alerts()} and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert_delivered(expected, sub.alerts())
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{context[-3000:]}") from None


def assert_delivered(expected: list[dict], received: list[dict]) -> None:
    """Every expected alert arrived; per camera in the expected order (first arrivals);
    duplicates only as exact copies (same id + seq, same payload)."""
    first: dict[tuple, dict] = {}
    for a in received:
        k = _key(a)
        if k in first:
            assert a == first[k], f"duplicate {k} differs"
        else:
            first[k] = a
    missing = [_key(a) for a in expected if _key(a) not in first]
    assert not missing, f"{len(missing)} of {len(expected)} alerts never arrived, e.g. {missing[:3]}"
    order = [_key(a) for a in received]
    seen: set = set()
    firsts = [k for k in order if not (k in seen or seen.add(k))]
    by_cam_expected: dict[str, list] = defaultdict(list)
    by_cam_got: dict[str, list] = defaultdict(list)
    wanted = {_key(a) for a in expected}
    for a in expected:
        by_cam_expected[a["camera"]].append(_key(a))
    for k in firsts:
        if k in wanted:
            by_cam_got[first[k]["camera"]].append(k)
    for cam, keys in by_cam_expected.items():
        assert by_cam_got[cam] == keys, f"camera {cam}: alerts arrived out of order"


# -- sink + publisher against the broker ------------------------------------------------------
def test_each_row_published_once_while_connected_and_deleted_on_puback(tmp_path, broker, subscriber_factory):
    sub = subscriber_factory(broker)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    sink = MqttSink(MqttConfig(**broker.mqtt_config(max_inflight=16)))
    jsonl = JsonlSink(tmp_path / "alerts.jsonl")
    pub = Publisher(outbox, [jsonl, sink])
    sink.start(outbox.notify)
    assert sink.wait_connected(10)
    run = _Runner(pub)
    events = [_event(cam, i) for i in range(150) for cam in ("north", "south")]
    for ev in events:
        outbox.add(ev)
    run.finish()
    wait_for(lambda: len(sub.alerts()) >= len(events), 10, what="all alerts at the subscriber")
    time.sleep(0.3)  # anything extra would arrive now
    got = sub.alerts()
    assert len(got) == len(events)  # no row published twice while connected
    assert_delivered([e.to_dict() for e in events], got)
    assert {m.topic for m in sub.on("/alerts")} == {"maskwatch/north/alerts", "maskwatch/south/alerts"}
    assert outbox.count() == 0 and outbox.delivered == len(events) and sink.published == len(events)
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == len(events)
    sink.close()
    jsonl.close()


def test_broker_restart_mid_stream_keeps_order_and_loses_nothing(tmp_path, broker, subscriber_factory):
    """Alerts keep coming (two cameras) while the broker goes away for 2 s: rows in flight at the
    disconnect are re-sent after the reconnect, ahead of newer rows."""
    sub = subscriber_factory(broker)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    sink = MqttSink(MqttConfig(**broker.mqtt_config(max_inflight=32)))
    pub = Publisher(outbox, [sink])
    sink.start(outbox.notify)
    assert sink.wait_connected(10)
    run = _Runner(pub)
    events = []
    t0 = time.monotonic()
    stopped = restarted = False
    i = 0
    while time.monotonic() - t0 < 5:
        for cam in ("north", "south"):
            events.append(ev := _event(cam, i))
            outbox.add(ev)
        i += 1
        if not stopped and time.monotonic() - t0 > 1.5:
            broker.stop()
            stopped, t_stop = True, time.monotonic()
        if stopped and not restarted and time.monotonic() - t_stop > 2:
            broker.start()
            restarted = True
        time.sleep(0.005)
    run.finish()
    assert outbox.count() == 0
    wait_delivered(sub, [e.to_dict() for e in events], 20, broker.log_text())
    assert sink.connects == 2
    sink.close()


def test_rows_wait_for_the_broker_and_jsonl_is_not_rewritten(tmp_path, broker_factory, subscriber_factory):
    """Broker down: JSONL acknowledges, rows stay for MQTT (its bit unset); after a restart of the
    process with the broker up, MQTT gets them and JSONL does not get them again."""
    b = broker_factory()  # not started yet
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path)
    sink = MqttSink(MqttConfig(**b.mqtt_config()))
    jsonl = JsonlSink(tmp_path / "alerts.jsonl")
    pub = Publisher(outbox, [jsonl, sink])
    sink.start(outbox.notify)
    run = _Runner(pub, drain_s=0.5)
    events = [_event("cam1", i) for i in range(40)]
    for ev in events:
        outbox.add(ev)
    run.finish()
    assert not sink.connected
    assert outbox.count() == 40 and outbox.pending_count("jsonl") == 0 and outbox.pending_count("mqtt") == 40
    sink.close()
    jsonl.close()
    outbox.close()

    b.start()
    sub = subscriber_factory(b)
    outbox = Outbox(path)
    sink = MqttSink(MqttConfig(**b.mqtt_config()))
    jsonl = JsonlSink(tmp_path / "alerts.jsonl")
    pub = Publisher(outbox, [jsonl, sink])
    sink.start(outbox.notify)
    run = _Runner(pub)
    outbox.add(_event("cam1", 40))
    run.finish()
    events.append(_event("cam1", 40))
    wait_for(lambda: len(sub.alerts()) >= 41, 10, what="41 alerts")
    assert_delivered([e.to_dict() for e in events], sub.alerts())
    lines = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [_key(a) for a in lines] == [_key(e.to_dict()) for e in events]  # each written once
    assert outbox.count() == 0
    sink.close()
    jsonl.close()


def test_presence_occupancy_and_camera_status_are_retained(tmp_path, broker, subscriber_factory):
    sink = MqttSink(MqttConfig(**broker.mqtt_config(topic_prefix="site/a")))
    sink.start()
    assert sink.wait_connected(10)
    sink.publish_camera_status("north", True)
    sink.publish_occupancy("north", "pit", {"worker": 2, "excavator": 1})
    sink.publish_occupancy("north", "pit", {"worker": 2, "excavator": 1})  # unchanged: not sent again
    sink.publish_occupancy("north", "pit", {"worker": 3})
    time.sleep(0.3)
    late = subscriber_factory(broker, topic="site/#")  # subscribes afterwards: sees the retained values
    retained = ("site/a/north/zones/pit/occupancy", "site/a/status", "site/a/north/status")  # one burst, any order
    wait_for(lambda: all(late.last(t) is not None for t in retained), 5, what="retained occupancy and status")
    assert late.last("site/a/status").payload == b"online" and late.last("site/a/status").retain
    assert late.last("site/a/north/status").payload == b"online"
    occ = [m for m in late.snapshot() if m.topic == "site/a/north/zones/pit/occupancy"]
    assert len(occ) == 1 and occ[0].retain and occ[0].json() == {"worker": 3}
    sink.close()  # graceful: offline, retained
    wait_for(lambda: late.last("site/a/status").payload == b"offline", 5, what="status offline")
    # the cameras went offline first (one connection, in order), so theirs is already here
    assert late.last("site/a/north/status").payload == b"offline"
    fresh = subscriber_factory(broker, topic="site/a/status")
    wait_for(lambda: fresh.last("site/a/status") is not None, 5, what="retained status")
    assert fresh.last("site/a/status").payload == b"offline"


def test_only_the_network_thread_writes_to_the_socket(broker, subscriber_factory):
    """A publish from another thread while paho has no network thread (the sink's reconnect kick restarts it)
    only queues: paho would otherwise write from the caller, concurrently with the new thread, and the broker
    resets the connection on the interleaved packets (a clean-clone CI run failed so, right after a connect).
    The message goes out once the network thread runs again, on the same connection."""
    sink = MqttSink(MqttConfig(**broker.mqtt_config(topic_prefix="gate")))
    sub = subscriber_factory(broker, topic="gate/#")
    sink.start()
    try:
        assert sink.wait_connected(10)
        wait_for(lambda: sub.last("gate/status") is not None, 5, what="online")
        sink.client.loop_stop()  # as _kick does; the connection stays open
        sink.publish_camera_status("cam9", True)
        time.sleep(0.5)
        assert sub.last("gate/cam9/status") is None, "written from the caller's thread"
        sink.client.loop_start()
        wait_for(lambda: sub.last("gate/cam9/status") is not None, 5, what="the queued publish")
        assert sub.last("gate/cam9/status").payload == b"online" and sink.connects == 1
    finally:
        sink.close()


def test_occupancy_set_while_disconnected_is_published_on_connect(tmp_path, broker_factory, subscriber_factory):
    b = broker_factory()
    sink = MqttSink(MqttConfig(**b.mqtt_config()))
    sink.start()
    sink.publish_occupancy("cam1", "all", {"worker": 4})  # not connected: remembered
    b.start()
    assert sink.wait_connected(10)
    sub = subscriber_factory(b)
    wait_for(lambda: sub.last("maskwatch/cam1/zones/all/occupancy") is not None, 5, what="occupancy")
    assert sub.last("maskwatch/cam1/zones/all/occupancy").json() == {"worker": 4}
    sink.close()


def test_missing_password_variable_is_a_config_error():
    from maskwatch.zones import ConfigError

    cfg = MqttConfig(host="127.0.0.1", username="u", password_env="MASKWATCH_SURELY_UNSET_VAR")
    with pytest.raises(ConfigError, match="environment variable MASKWATCH_SURELY_UNSET_VAR is not set"):
        MqttSink(cfg, env={})


# -- the whole CLI ----------------------------------------------------------------------------------
BUSY = {"conf": 0.01}  # the random test model then alerts on nearly every frame
TRACKER = {"min_hits": 1, "low_conf": 0.005, "report_conf": 0.0}  # a random test model: low confidences


def _config(tmp_path: Path, model_path, model_names, clip: Path, mqtt: dict | None, *, cameras=None,
            shutdown_s: float = 60, alerts: dict | None = None) -> Path:
    alerts_cfg = {"jsonl": "var/alerts.jsonl", "outbox": "var/outbox.sqlite"}
    if mqtt is not None:
        alerts_cfg["mqtt"] = mqtt
    alerts_cfg.update(alerts or {})
    return write_config(tmp_path, model_path, clip, model_names, conf=BUSY["conf"], cameras=cameras,
                        extra={"tracker": TRACKER, "alerts": alerts_cfg,
                               "pipeline": {"shutdown_timeout_s": shutdown_s}})


def _start(cfg: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    full_env = dict(os.environ, **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "maskwatch", "run", str(cfg), "--no-progress", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=full_env)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return "".join(_STDERR.pop(proc.pid, [])) + (err or "")


def _jsonl(tmp_path: Path) -> list[dict]:
    p = tmp_path / "var/alerts.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def _outbox_rows(tmp_path: Path) -> list[tuple[str, int, int]]:
    db = sqlite3.connect(tmp_path / "var/outbox.sqlite")
    try:
        return [(a, s, b) for a, s, b in db.execute("SELECT alert_id, seq, acked_by FROM outbox ORDER BY row")]
    finally:
        db.close()


def test_broker_down_10s_mid_run_loses_nothing(tmp_path, model_path, model_names, broker, subscriber_factory):
    sub = subscriber_factory(broker)
    a = write_clip(tmp_path / "a.mp4", frames=240, seed=1)
    b = write_clip(tmp_path / "b.mp4", frames=240, seed=2)
    cfg = _config(tmp_path, model_path, model_names, a, broker.mqtt_config(),
                  cameras=[{"id": "north", "source": str(a), "zones": "zones.yaml"},
                           {"id": "south", "source": str(b), "zones": "zones.yaml"}])
    proc = _start(cfg, "--summary", str(tmp_path / "s.json"))
    try:
        wait_for(lambda: len(sub.alerts()) >= 20 or proc.poll() is not None, 120, what="first alerts over MQTT")
        assert proc.poll() is None, "the run ended before the broker could be stopped"
        broker.stop()
        at_stop = len(_jsonl(tmp_path))
        time.sleep(10)
        during = len(_jsonl(tmp_path)) - at_stop
        broker.start()
        err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    produced = _jsonl(tmp_path)
    assert during > 0, "no alerts were produced while the broker was down"
    wait_delivered(sub, produced, 30, err + broker.log_text())
    assert {x["camera"] for x in produced} == {"north", "south"}
    assert _outbox_rows(tmp_path) == []
    assert "lost the connection" in err and "connected to mqtt://127.0.0.1" in err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["outbox"]["added"] == summary["outbox"]["delivered"] == len(produced)
    assert summary["mqtt"]["connects"] >= 2


def _sigkill_when(proc, ready, timeout_s: float, what: str) -> None:
    """Wait until ``ready()`` while the process runs, then kill it with SIGKILL (never left running)."""
    try:
        wait_for(lambda: ready() or proc.poll() is not None, timeout_s, what=what)
        assert proc.poll() is None, "maskwatch ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigkill_then_restart_delivers_the_outbox(tmp_path, model_path, model_names, broker_factory,
                                                   subscriber_factory):
    b = broker_factory()  # down during the first run: alerts pile up in the outbox
    clip = write_clip(tmp_path / "long.mp4", frames=600)
    cfg = _config(tmp_path, model_path, model_names, clip, b.mqtt_config())
    _sigkill_when(_start(cfg), lambda: len(_jsonl(tmp_path)) >= 50, 120, "50 alerts in the JSONL")
    left = _outbox_rows(tmp_path)
    assert len(left) >= 50, "the killed run should leave its undelivered alerts in the outbox"
    written_before = {_key(x) for x in _jsonl(tmp_path)}
    db = sqlite3.connect(tmp_path / "var/outbox.sqlite")
    left_payloads = db.execute("SELECT payload, acked_by FROM outbox ORDER BY row").fetchall()
    jsonl_bit = 1 << db.execute("SELECT bit FROM sinks WHERE name = 'jsonl'").fetchone()[0]
    db.close()

    b.start()
    sub = subscriber_factory(b)
    proc = _start(cfg, "--max-frames", "1")
    err = _finish(proc, 120)
    assert proc.returncode == 0, err
    wanted = [{"id": a, "seq": s} for a, s, _ in left]
    wait_for(lambda: {_key(x) for x in sub.alerts()} >= {_key(x) for x in wanted}, 30, what="the outbox over MQTT")
    got_first = []
    seen: set = set()
    for x in sub.alerts():
        if _key(x) not in seen:
            seen.add(_key(x))
            got_first.append(_key(x))
    assert got_first[:len(wanted)] == [_key(x) for x in wanted], "the old outbox goes first, in order"
    # JSONL: rows it had acknowledged before the kill were not written again (the second run makes alerts
    # of its own, with the same ids on the same clip but other wall times: compare whole lines)
    lines = (tmp_path / "var/alerts.jsonl").read_text().splitlines()
    assert written_before <= {_key(json.loads(x)) for x in lines}
    acked_by_jsonl = [p for p, acked in left_payloads if acked & jsonl_bit]
    assert acked_by_jsonl, "JSONL had acknowledged some rows before the kill"
    for payload in acked_by_jsonl:
        assert lines.count(payload) == 1, "a row JSONL had acknowledged was written again"
    # (a row JSONL had written but not yet acknowledged when killed may be written twice: at least once)
    assert _outbox_rows(tmp_path) == []


def test_last_will_reads_offline_after_sigkill(tmp_path, model_path, model_names, broker, subscriber_factory):
    sub = subscriber_factory(broker, topic="maskwatch/status")
    clip = write_clip(tmp_path / "long.mp4", frames=600)
    _sigkill_when(_start(_config(tmp_path, model_path, model_names, clip, broker.mqtt_config())),
                  lambda: (m := sub.last("maskwatch/status")) is not None and m.payload == b"online", 60,
                  "status online")
    wait_for(lambda: sub.last("maskwatch/status").payload == b"offline", 10, what="the last will")
    late = subscriber_factory(broker, topic="maskwatch/status")
    wait_for(lambda: late.last("maskwatch/status") is not None, 5, what="retained status")
    assert late.last("maskwatch/status").payload == b"offline" and late.last("maskwatch/status").retain


def test_wrong_password_is_a_clear_error_and_alerts_stay(tmp_path, model_path, model_names, broker_factory,
                                                          subscriber_factory):
    password = "s3cret-Pa55"
    b = broker_factory(users={"maskwatch": password}).start()
    clip = write_clip(tmp_path / "clip.mp4", frames=40)
    cfg = _config(tmp_path, model_path, model_names, clip,
                  b.mqtt_config(username="maskwatch", password_env=PASSWORD_ENV), shutdown_s=2,
                  alerts={"drain_timeout_s": 2})
    proc = _start(cfg, env={PASSWORD_ENV: "wrong-guess-123"})
    err = _finish(proc, 120)
    assert proc.returncode == 0, err
    assert "refused the connection: Not authorized (wrong user name or password?)" in err \
        or "refused the connection: Bad user name or password" in err, err  # mosquitto 2.0 says the first
    assert "check alerts.mqtt.username and the password (user 'maskwatch', password from $" + PASSWORD_ENV in err
    assert "wrong-guess-123" not in err
    left = _outbox_rows(tmp_path)
    produced = _jsonl(tmp_path)
    assert left and len(left) == len(produced), "every alert stays in the outbox for MQTT"

    sub = subscriber_factory(b, username="maskwatch", password=password)
    proc = _start(cfg, "--max-frames", "1", env={PASSWORD_ENV: password})
    err = _finish(proc, 120)
    assert proc.returncode == 0, err
    assert password not in err
    wait_for(lambda: {_key(x) for x in sub.alerts()} >= {_key(x) for x in produced}, 30, what="kept alerts")
    assert _outbox_rows(tmp_path) == []


def test_tls_mismatch_is_a_clear_error_and_alerts_stay(tmp_path, model_path, model_names, broker_factory,
                                                       subscriber_factory, tls_files):
    b = broker_factory(tls=tls_files, require_certificate=True).start()
    clip = write_clip(tmp_path / "clip.mp4", frames=40)
    client_cert = {"cert_file": str(tls_files.client_cert), "key_file": str(tls_files.client_key)}
    bad = _config(tmp_path, model_path, model_names, clip,
                  b.mqtt_config(tls={"ca_file": str(tls_files.other_ca), **client_cert}), shutdown_s=2,
                  alerts={"drain_timeout_s": 2})
    proc = _start(bad)
    err = _finish(proc, 120)
    assert proc.returncode == 0, err
    assert "TLS: the broker's certificate was not accepted" in err and "alerts.mqtt.tls.ca_file" in err, err
    produced = _jsonl(tmp_path)
    assert produced and len(_outbox_rows(tmp_path)) == len(produced)

    sub = subscriber_factory(b, tls=tls_files)
    good = _config(tmp_path, model_path, model_names, clip,
                   b.mqtt_config(tls={"ca_file": str(tls_files.ca), **client_cert}), shutdown_s=10)
    proc = _start(good, "--max-frames", "1")
    err = _finish(proc, 120)
    assert proc.returncode == 0, err
    assert "connected to mqtts://localhost" in err
    wait_for(lambda: {_key(x) for x in sub.alerts()} >= {_key(x) for x in produced}, 30, what="kept alerts over TLS")
    assert _outbox_rows(tmp_path) == []


def test_snapshots_on_start_saved_and_published(tmp_path, model_path, model_names, broker, subscriber_factory):
    sub = subscriber_factory(broker)
    clip = write_clip(tmp_path / "clip.mp4", frames=30)
    cfg = _config(tmp_path, model_path, model_names, clip, broker.mqtt_config(), shutdown_s=10,
                  alerts={"snapshots": {"dir": "snaps", "publish": True, "ring_slots": 256}})
    proc = _start(cfg, "--summary", str(tmp_path / "s.json"))
    err = _finish(proc, 120)
    assert proc.returncode == 0, err
    starts = [x for x in _jsonl(tmp_path) if x["type"] == "start"]
    assert starts
    for x in starts:
        path = Path(x["extra"]["snapshot"])
        assert path.parent == tmp_path / "snaps" / "cam1"
        img = cv2.imread(str(path))
        assert img is not None and img.shape == (360, 640, 3), path
    assert all("snapshot" not in x["extra"] for x in _jsonl(tmp_path) if x["type"] != "start")
    summary = json.loads((tmp_path / "s.json").read_text())["snapshots"]
    assert summary["written"] == len(starts) and summary["dropped"] == 0 and summary["failed"] == 0
    wait_for(lambda: len(sub.on("/snapshot")) >= summary["published"] >= 1, 10, what="published snapshots")
    by_topic = {m.topic: m.payload for m in sub.on("/snapshot")}
    for x in starts:
        topic = f"maskwatch/cam1/alerts/{x['id']}/snapshot"
        if topic in by_topic:
            assert by_topic[topic] == Path(x["extra"]["snapshot"]).read_bytes()
            assert by_topic[topic][:2] == b"\xff\xd8"  # JPEG
    # camera status: online while frames flowed, offline at the end of the file (retained)
    assert [m.payload for m in sub.on("maskwatch/cam1/status")] == [b"online", b"offline"]
    assert sub.last("maskwatch/status").payload == b"offline"  # clean stop
    # per-zone occupancy: retained counts, published when they change
    occ = [json.loads(m.payload) for m in sub.on("maskwatch/cam1/zones/all/occupancy")]
    assert occ and all(isinstance(o, dict) and all(v >= 1 for v in o.values()) for o in occ)
    assert all(a != b for a, b in zip(occ, occ[1:]))
    # the active zone (the whole frame) is drawn in red along the frame's edge
    edge = cv2.imread(starts[0]["extra"]["snapshot"])[20:-20, 0].astype(float).mean(axis=0)  # B, G, R
    assert edge[2] > edge[1] + 60 and edge[2] > edge[0] + 60, edge


def test_alerts_config_resolves_paths_and_defaults(tmp_path):
    from maskwatch.pipeline.config import parse_config

    cfg = parse_config({
        "model": {"path": "m.onnx"}, "cameras": [{"id": "c", "source": "v.mp4"}],
        "alerts": {"mqtt": {"host": "broker.local", "username": "u", "password_env": "PW",
                            "tls": {"ca_file": "certs/ca.pem", "cert_file": "/abs/client.pem"}},
                   "snapshots": {"dir": "snaps", "publish": True}},
    }, base=tmp_path)
    m = cfg.alerts.mqtt
    assert m.tls.ca_file == tmp_path / "certs/ca.pem" and m.tls.cert_file == Path("/abs/client.pem")
    assert m.effective_port == 8883 and m.qos == 1 and m.topic_prefix == "maskwatch" and not m.tls.insecure
    assert cfg.alerts.snapshots.dir == tmp_path / "snaps"
    assert cfg.alerts.outbox_max_rows == 100_000 and cfg.alerts.outbox_max_age_s is None
    plain = parse_config({"model": {"path": "m.onnx"}, "cameras": [{"id": "c", "source": "v.mp4"}],
                          "alerts": {"mqtt": {"host": "10.0.0.5"}}}, base=tmp_path)
    assert plain.alerts.mqtt.effective_port == 1883


def test_a_publish_as_the_connection_drops_is_acked_by_its_puback():
    """paho keeps a QoS 1 message published in the moment the connection dropped and sends it after the
    reconnect, but its MQTTMessageInfo keeps rc NO_CONN, and is_published() raises on it: the sink must wait for
    that message's PUBACK instead (this race once failed the publisher stage)."""
    from paho.mqtt.client import MQTTMessageInfo
    from paho.mqtt.enums import MQTTErrorCode
    from paho.mqtt.reasoncodes import ReasonCode
    from paho.mqtt.packettypes import PacketTypes

    sink = MqttSink(MqttConfig(host="127.0.0.1", port=1))  # never started: only its bookkeeping is used
    info = MQTTMessageInfo(41)
    info.rc = MQTTErrorCode.MQTT_ERR_NO_CONN
    ok = MQTTMessageInfo(42)
    ok.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
    sink._inflight[7] = info
    sink._inflight[8] = ok
    with pytest.raises(RuntimeError):
        info.is_published()  # what the sink must not call
    assert sink.acked() == [] and set(sink._inflight) == {7, 8}
    success = ReasonCode(PacketTypes.PUBACK, identifier=0)
    sink._on_publish(None, None, 41, success, None)  # the PUBACK after the reconnect
    assert sink.acked() == [7] and set(sink._inflight) == {8}
    ok._set_as_published()
    sink._on_publish(None, None, 42, success, None)
    assert sink.acked() == [8] and not sink._inflight and not sink._acked_mids


def test_alerts_waiting_at_the_end_of_a_run_are_delivered_before_it_exits(tmp_path, model_path, model_names,
                                                                          broker_factory, subscriber_factory):
    """The broker is down while a file run makes its alerts and comes back only after the last frame: the run
    reconnects at once (not after its grown backoff) and delivers every alert before it exits."""
    b = broker_factory()
    clip = write_clip(tmp_path / "clip.mp4", frames=60)
    cfg = _config(tmp_path, model_path, model_names, clip, b.mqtt_config(reconnect_max_s=60),
                  alerts={"drain_timeout_s": 60})
    proc = _start(cfg, "--summary", str(tmp_path / "s.json"))
    try:
        wait_for(lambda: proc.poll() is not None or "delivering for up to 60 s" in _stderr_so_far(proc), 120, 0.2,
                 "the end of the frames")
        time.sleep(8)  # the backoff grows past the pending cap meanwhile (1, 2, 2, ... s)
        assert proc.poll() is None, "the run ended without delivering"
        sub = subscriber_factory(b.start())
        t0 = time.monotonic()
        err = _finish(proc, 120)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    produced = _jsonl(tmp_path)
    assert produced and {_key(x) for x in sub.alerts()} >= {_key(x) for x in produced}
    assert _outbox_rows(tmp_path) == []
    assert took < 10, f"delivered {took:.1f} s after the broker came back"
    print(f"every alert delivered and the run ended {took:.1f} s after the broker came back")
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["outbox"]["pending"] == 0 and summary["outbox"]["delivered"] == len(produced)
    assert f"{len(produced)} delivered, 0 remain" in err, err[-2000:]


def test_broker_down_at_the_end_exits_after_the_drain_timeout_and_keeps_the_alerts(
        tmp_path, model_path, model_names, broker_factory, subscriber_factory):
    b = broker_factory()
    clip = write_clip(tmp_path / "clip.mp4", frames=40)
    cfg = _config(tmp_path, model_path, model_names, clip, b.mqtt_config(), alerts={"drain_timeout_s": 3})
    t0 = time.monotonic()
    proc = _start(cfg, "--summary", str(tmp_path / "s.json"))
    err = _finish(proc, 120)
    assert proc.returncode == 0, err
    produced = _jsonl(tmp_path)
    left = _outbox_rows(tmp_path)
    assert produced and len(left) == len(produced)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["outbox"]["pending"] == len(produced)
    assert f"{len(produced)} remain in the outbox" in err and "sent at the next start" in err, err[-2000:]
    assert time.monotonic() - t0 < 60
    sub = subscriber_factory(b.start())  # the next run delivers them
    proc = _start(cfg, "--max-frames", "1")
    assert proc.wait(120) == 0
    wait_for(lambda: {_key(x) for x in sub.alerts()} >= {_key(x) for x in produced}, 30, what="kept alerts")


def test_sigint_during_the_final_drain_stops_at_once(tmp_path, model_path, model_names, broker_factory):
    b = broker_factory()
    clip = write_clip(tmp_path / "clip.mp4", frames=40)
    cfg = _config(tmp_path, model_path, model_names, clip, b.mqtt_config(), alerts={"drain_timeout_s": 120})
    proc = _start(cfg)
    try:
        wait_for(lambda: proc.poll() is not None or "delivering for up to 120 s" in _stderr_so_far(proc), 120, 0.2,
                 "the final drain")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        err = _finish(proc, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and time.monotonic() - t0 < 10, err[-2000:]
    assert _outbox_rows(tmp_path), "the waiting alerts stay in the outbox"


_STDERR: dict[int, list[str]] = {}


def _stderr_so_far(proc: subprocess.Popen) -> str:
    """What the process wrote to stderr so far (read without blocking; kept for ``_finish``)."""
    import fcntl

    buf = _STDERR.setdefault(proc.pid, [])
    fd = proc.stderr.fileno()
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        buf.append(chunk.decode(errors="replace"))
    return "".join(buf)
