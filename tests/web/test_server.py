"""The console's server with a real pipeline on generated clips: live views, metrics, health, zone edits."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from maskwatch.scenes.clip import write_clip as write_scene_clip
from tests.conftest import FailingSegmenter, write_clip, write_config

from tests.web.conftest import DEMO_MODEL, serve_pipeline, wait_for


def _metrics(served) -> dict[tuple, float]:
    text = served.get("/metrics").text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _mjpeg_parts(url: str, n: int, timeout: float = 60) -> list[bytes]:
    """The first ``n`` JPEG parts of an MJPEG stream, read by their Content-Length."""
    parts: list[bytes] = []
    buf = b""
    with httpx.stream("GET", url, timeout=timeout) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("multipart/x-mixed-replace; boundary=frame")
        for chunk in r.iter_bytes():
            buf += chunk
            while True:
                m = re.search(rb"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: (\d+)\r\n\r\n", buf)
                if not m or len(buf) < m.end() + int(m.group(1)):
                    break
                size = int(m.group(1))
                parts.append(buf[m.end():m.end() + size])
                buf = buf[m.end() + size:]
            if len(parts) >= n:
                return parts[:n]
    return parts


def test_live_views_metrics_and_summary(tmp_path, model_path, model_names):
    clip = write_clip(tmp_path / "clip.mp4", frames=150, fps=15)
    cfg = write_config(tmp_path, model_path, clip, model_names)
    with serve_pipeline(cfg) as s:
        cams = s.get("/api/cameras").json()
        assert cams["mode"] == "run" and [c["id"] for c in cams["cameras"]] == ["cam1"]
        assert set(cams["classes"]) == set(model_names)
        parts = _mjpeg_parts(s.base + "/api/cameras/cam1/stream.mjpg", 3)
        assert len(parts) == 3
        for part in parts:
            img = cv2.imdecode(np.frombuffer(part, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None and img.shape[2] == 3 and img.shape[1] > 100
        one = s.get("/api/cameras/cam1/frame.jpg")
        raw = s.get("/api/cameras/cam1/frame.jpg?raw=1")
        assert one.status_code == raw.status_code == 200 and one.headers["content-type"] == "image/jpeg"
        assert cv2.imdecode(np.frombuffer(raw.content, np.uint8), cv2.IMREAD_COLOR) is not None
        assert s.get("/api/cameras/nope/frame.jpg").status_code == 404
        s.pipe.wait()  # the file ends; the console is still up
        summary = s.pipe.summary()["cameras"]["cam1"]
        m = _metrics(s)
        cam = (("camera", "cam1"),)
        for stage, key in (("decode", "decoded"), ("inference", "inferred"), ("analytics", "analysed")):
            assert m[("maskwatch_frames_total", tuple(sorted({"camera": "cam1", "stage": stage}.items())))] \
                == summary[key] == 150
        alerts = sum(v for (name, labels), v in m.items() if name == "maskwatch_alerts_total")
        assert alerts == summary["alerts"] > 0
        assert m[("maskwatch_frame_to_alert_seconds_count", cam)] == 150
        assert m[("maskwatch_stage_seconds_count", tuple(sorted({"camera": "cam1", "stage": "analytics"}.items())))] \
            == 150
        assert m[("maskwatch_outbox_pending", (("sink", "jsonl"),))] == 0
        assert ("maskwatch_build_info", (("python", m and next(
            dict(k)["python"] for n, k in m if n == "maskwatch_build_info")), ("version", "0.1.0"))) in m
        # the JSON twins of the same figures
        health = s.get("/api/health").json()
        assert health["ok"] is True
        frames = next(f for f in health["metrics"] if f["name"] == "maskwatch_frames")
        assert {(x["labels"]["stage"], x["value"]) for x in frames["samples"]} == \
            {("decode", 150), ("inference", 150), ("analytics", 150)}
        recent = s.get("/api/alerts?limit=5").json()["alerts"]
        assert 0 < len(recent) <= 5 and recent[0]["wall_time"] >= recent[-1]["wall_time"]
        assert all(a["camera"] == "cam1" for a in recent)


def test_healthz_turns_503_when_a_stage_fails(tmp_path, model_path, model_names):
    clip = write_clip(tmp_path / "clip.mp4", frames=200, fps=15)
    cfg = write_config(tmp_path, model_path, clip, model_names)
    with serve_pipeline(cfg, wrap=FailingSegmenter, start=False) as s:
        ok = s.get("/healthz")
        assert ok.status_code == 200 and ok.text.strip() == "ok"
        s.pipe.start()
        wait_for(lambda: s.pipe.failure is not None, 60, what="the stage failure")
        bad = s.get("/healthz")
        assert bad.status_code == 503
        assert bad.text.strip() == "camera cam1, stage inference: RuntimeError: engine exploded"
        assert s.get("/api/health").json()["ok"] is False
        s.pipe.wait()


# -- zone edits reach the running analytics ------------------------------------------------------------------
def _cut(src: Path, dst: Path, t0: float, t1: float) -> Path:
    """Frames of ``src`` from t0 to t1 seconds as a new H.264 clip."""
    with av.open(str(src)) as cin, av.open(str(dst), "w") as cout:
        sin = cin.streams.video[0]
        out = cout.add_stream("libx264", rate=15)
        out.width, out.height, out.pix_fmt = sin.width, sin.height, "yuv420p"
        out.options = {"preset": "ultrafast", "crf": "18"}
        n = 0
        for frame in cin.decode(sin):
            if t0 <= frame.time < t1:
                vf = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                vf.pts = n
                n += 1
                for p in out.encode(vf):
                    cout.mux(p)
        for p in out.encode():
            cout.mux(p)
    return dst


@pytest.fixture(scope="module")
def arm_in_area(tmp_path_factory) -> Path:
    """A 3 s clip in which the excavator's arm stays inside the worker area (excavator_swing, seed 7: the
    scripted intrusion lasts 7.1-12.0 s), played in a loop by the tests, and the clip's zone file."""
    d = tmp_path_factory.mktemp("arm")
    write_scene_clip("site", 7, 11.0, d / "full", scenario="excavator_swing", size=(640, 360))
    _cut(d / "full" / "video.mp4", d / "arm.mp4", 8.0, 11.0)
    shutil.copy(d / "full" / "zones.yaml", d / "zones.yaml")
    return d


RULE = "machine-in-worker-area"


def _starts(pipe, rule: str) -> list[dict]:
    return [e for e in list(pipe.recent_alerts) if e["rule"] == rule and e["type"] == "start"]


def test_a_zone_edit_stops_and_restarts_the_intrusion(arm_in_area, tmp_path):
    zones = tmp_path / "zones.yaml"
    zones.write_text("# site zones, edited in the console\n" + (arm_in_area / "zones.yaml").read_text())
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"path": str(DEMO_MODEL), "conf": 0.35, "iou": 0.6},
        "cameras": [{"id": "site", "source": str(arm_in_area / "arm.mp4"), "zones": "zones.yaml"}],
        "alerts": {"outbox": "outbox.sqlite"},
    }))
    with serve_pipeline(cfg, loop=True) as s:
        pipe = s.pipe
        wait_for(lambda: any(e["rule"] == RULE for e in pipe.active_alerts["site"].values()), 90,
                 what="the intrusion alert")
        (alert_id,) = [i for i, e in pipe.active_alerts["site"].items() if e["rule"] == RULE]
        original = s.get("/api/cameras/site/zones").json()
        moved = json.loads(json.dumps(original))
        moved["zones"][0]["polygon"] = [[0.01, 0.01], [0.08, 0.01], [0.08, 0.08], [0.01, 0.08]]  # far from the arm
        r = s.put("/api/cameras/site/zones", json=moved)
        assert r.status_code == 200, r.text
        assert r.json()["zones"]["zones"][0]["polygon"] == moved["zones"][0]["polygon"]
        assert zones.read_text().startswith("# site zones, edited in the console\n")  # the user's comment stays
        assert (tmp_path / "zones.yaml.prev").read_text() == "# site zones, edited in the console\n" + \
            (arm_in_area / "zones.yaml").read_text()
        wait_for(lambda: any(e["id"] == alert_id and e["type"] == "end" for e in list(pipe.recent_alerts)), 30,
                 what="the end of the intrusion after the zone moved")
        starts = len(_starts(pipe, RULE))
        analysed = pipe.cameras[0].stats.analysed
        wait_for(lambda: pipe.cameras[0].stats.analysed >= analysed + 60, 60, what="60 more frames")
        assert len(_starts(pipe, RULE)) == starts, "the moved zone must not start the intrusion again"
        assert not any(e["rule"] == RULE for e in pipe.active_alerts["site"].values())

        r = s.put("/api/cameras/site/zones", json=original)
        assert r.status_code == 200, r.text
        wait_for(lambda: len(_starts(pipe, RULE)) > starts, 60, what="the intrusion after the zone moved back")


BAD_PUTS = [
    # (name, change to the zone file, field the error names)
    ("self-crossing polygon", lambda z: z["zones"][0].update(polygon=[[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]),
     "zones[0].polygon"),
    ("unknown class", lambda z: z["rules"][0].update(classes=["unicorn"]), "rules[0].classes"),
    ("missing field", lambda z: z["rules"][0].pop("classes"), "rules[0].classes"),
    ("polygon outside the frame", lambda z: z["zones"][0].update(polygon=[[0.1, 0.1], [1.5, 0.1], [0.5, 0.6]]),
     "zones[0].polygon"),
    ("out of range", lambda z: z["rules"][0].update(min_overlap=5), "rules[0].min_overlap"),
    ("unknown zone", lambda z: z["rules"][0].update(zone="nowhere"), "rules[0].zone"),
]


@pytest.fixture
def idle(tmp_path, model_path, model_names):
    """A console over a pipeline that is not started: the zone file is all that matters."""
    clip = write_clip(tmp_path / "clip.mp4", frames=10)
    cfg = write_config(tmp_path, model_path, clip, model_names)
    zones = tmp_path / "zones.yaml"
    zones.write_text("# my zones\n" + zones.read_text())
    with serve_pipeline(cfg, start=False) as s:
        yield s, zones


@pytest.mark.parametrize("name, change, field", BAD_PUTS, ids=[b[0] for b in BAD_PUTS])
def test_a_bad_edit_is_refused_and_changes_nothing(idle, name, change, field):
    s, zones = idle
    before = zones.read_bytes()
    data = s.get("/api/cameras/cam1/zones").json()
    change(data)
    r = s.put("/api/cameras/cam1/zones", json=data)
    assert r.status_code == 422, r.text
    assert r.json()["error"].startswith(f"{field}: "), r.json()
    assert zones.read_bytes() == before
    assert not zones.with_name("zones.yaml.prev").exists()
    assert not [p for p in zones.parent.iterdir() if p.name.startswith(".zones.yaml.")]  # no temp file left


@pytest.mark.parametrize("body, status", [
    (b"{not json", 422),
    (b"[1, 2, 3]", 422),
    (b'{"units": "normalized", "zones": [], "rules": [], "x": NaN}', 422),
    (b"x" * (10 << 20), 413),
], ids=["not-json", "not-a-mapping", "nan", "10MB"])
def test_a_bad_body_is_refused_and_changes_nothing(idle, body, status):
    s, zones = idle
    before = zones.read_bytes()
    r = s.put("/api/cameras/cam1/zones", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["error"]
    assert zones.read_bytes() == before


def test_a_good_edit_keeps_the_comments(idle):
    s, zones = idle
    data = s.get("/api/cameras/cam1/zones").json()
    data["zones"][0]["polygon"] = [[0.2, 0.2], [0.6, 0.2], [0.6, 0.7], [0.2, 0.7]]
    r = s.put("/api/cameras/cam1/zones", json=data)
    assert r.status_code == 200, r.text
    text = zones.read_text()
    assert text.startswith("# my zones\n")
    assert yaml.safe_load(text)["zones"][0]["polygon"] == data["zones"][0]["polygon"]
    assert s.get("/api/cameras/cam1/zones").json() == r.json()["zones"]


def test_a_camera_without_zones(tmp_path, model_path, model_names):
    clip = write_clip(tmp_path / "clip.mp4", frames=10)
    cfg = write_config(tmp_path, model_path, clip, model_names,
                       cameras=[{"id": "bare", "source": str(clip)}])
    with serve_pipeline(cfg, start=False) as s:
        assert s.get("/api/cameras/bare/zones").status_code == 404
        r = s.put("/api/cameras/bare/zones", json={"units": "normalized"})
        assert r.status_code == 409 and "no zone file" in r.json()["error"]
        assert s.get("/api/cameras").json()["cameras"][0]["has_zones"] is False


def test_frame_before_the_first_frame(idle):
    s, _ = idle
    assert s.get("/api/cameras/cam1/frame.jpg").status_code == 503
    t0 = time.monotonic()
    assert s.get("/api/cameras").json()["cameras"][0]["frame_wh"] is None
    assert time.monotonic() - t0 < 10
