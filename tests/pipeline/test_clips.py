"""Event clips (``alerts.clips``): a real H.264 MP4 per alert, from ``pre_s`` before its start to ``post_s`` after
its end, through every stage with the real ONNX test model.

The scripted clips are grey frames, on which the test model detects nothing at conf 0.35 (its best score there is
0.03), with a checkerboard patch in the frames ``[on, off)``, which it detects at once (scores near 1): an object
that arrives and leaves at known frames. An occupancy rule on a whole-frame zone makes one alert of it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from maskwatch.cli import main
from maskwatch.pipeline.clips import ClipWriter, clip_name
from maskwatch.pipeline.config import load_config
from maskwatch.pipeline.factory import build_segmenter
from maskwatch.pipeline.stages import Pipeline
from tests.conftest import write_config
from tests.web.conftest import serve_pipeline

FPS = 15
FRAME = 1.0 / FPS


def scripted_clip(path: Path, on: int, off: int, total: int, size: tuple[int, int] = (640, 360)) -> Path:
    """Grey H.264 frames at ``FPS`` with a 160x160 checkerboard patch in frames ``[on, off)``."""
    w, h = size
    yy, xx = np.mgrid[0:160, 0:160]
    patch = (((xx // 32 + yy // 32) % 2) * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast"}
        for i in range(total):
            img = np.full((h, w, 3), 114, np.uint8)
            if on <= i < off:
                img[100:260, 240:400] = patch
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _zones(names: list[str], clear_after: tuple[float, ...] = (0.3,)) -> dict:
    """One whole-frame zone; one occupancy rule (any object in it) per ``clear_after`` value: ``busy``, ``busy2``."""
    return {
        "units": "normalized",
        "zones": [{"id": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
        "rules": [{"id": "busy" + (str(k + 1) if k else ""), "type": "occupancy", "zone": "all", "classes": names,
                   "max_count": 0, "min_overlap": 0.01, "clear_after_s": c, "update_interval_s": 0}
                  for k, c in enumerate(clear_after)],
    }


def _config(tmp_path: Path, model_path: Path, names: list[str], source: Path, clips: dict,
            clear_after: tuple[float, ...] = (0.3,)) -> Path:
    return write_config(tmp_path, model_path, source, names, conf=0.35, zones=_zones(names, clear_after),
                        extra={"alerts": {"jsonl": "var/alerts.jsonl", "outbox": "var/outbox.sqlite",
                                          "clips": clips}})


def _events(tmp_path: Path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "var/alerts.jsonl").read_text().splitlines()]


def _decode(path: Path) -> tuple[list[float], dict, list[np.ndarray], str, str]:
    """(frame times, metadata, RGB frames, codec, pixel format) of an MP4, through PyAV."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        codec, pix_fmt = v.codec_context.name, v.codec_context.pix_fmt
        frames = list(c.decode(video=0))
        return ([f.time for f in frames], dict(c.metadata), [f.to_ndarray(format="rgb24") for f in frames],
                codec, pix_fmt)


def _run(cfg_path: Path, writer_cls=None) -> Pipeline:
    cfg = load_config(cfg_path)
    pipe = Pipeline(cfg, build_segmenter(cfg.model, cfg_path, cfg.tracker))
    if writer_cls is not None:
        pipe.clips = writer_cls(cfg.alerts.clips, pipe.names)
    pipe.start()
    pipe.wait()
    assert pipe.failure is None
    return pipe


def _check_span(path: Path, start: dict, end: dict, pre_s: float, post_s: float) -> list[float]:
    """The clip of ``start``/``end``: H.264 yuv420p that PyAV decodes, its frames every 1/FPS from ``pre_s`` before
    the alert's start to ``post_s`` after its end (within one frame). Returns its frame times."""
    times, meta, _, codec, pix_fmt = _decode(path)
    assert (codec, pix_fmt) == ("h264", "yuv420p")
    expected = (end["pts_s"] + post_s - (start["started_pts_s"] - pre_s)) * FPS + 1  # pre + alert + post
    assert abs(len(times) - expected) <= 1, (len(times), expected)
    assert times[0] == 0 and np.allclose(np.diff(times), FRAME, atol=0.002)  # the source's pace
    info = json.loads(meta["comment"])
    assert meta["title"] == info["alert_id"] == start["id"]
    first = info["first_pts_s"]  # the stream time of the clip's first frame
    assert info["alert_start_pts_s"] == pytest.approx(start["started_pts_s"], abs=1e-5)
    assert abs(first - (start["started_pts_s"] - pre_s)) <= FRAME + 1e-6, (first, start["started_pts_s"])
    assert abs(first + times[-1] - (end["pts_s"] + post_s)) <= FRAME + 1e-6
    return times


def test_clip_spans_pre_roll_alert_and_post_roll(tmp_path, model_path, model_names):
    """The issue's test: a scripted object (frames 30-59 of 105) makes an alert whose clip holds pre + alert + post
    frames at the source's 15 fps, decodes, starts pre_s before the alert, and shows masks and the zone. A second
    rule on the same zone (a longer clear_after_s) overlaps it: each alert gets its own clip."""
    source = scripted_clip(tmp_path / "scripted.mp4", on=30, off=60, total=105)
    pre_s, post_s = 1.5, 1.0
    cfg = _config(tmp_path, model_path, model_names, source,
                  {"dir": "var/clips", "pre_s": pre_s, "post_s": post_s, "ring_slots": 1024},
                  clear_after=(0.3, 1.2))
    proc = subprocess.run([sys.executable, "-m", "maskwatch", "run", str(cfg), "--summary", str(tmp_path / "s.json")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["cameras"]["cam1"]["analysed"] == 105
    clips = summary["clips"]
    assert (clips["written"], clips["dropped"], clips["deleted"], clips["failed"]) == (2, 0, 0, 0)
    events = _events(tmp_path)
    assert sorted((e["rule"], e["type"]) for e in events) == [("busy", "end"), ("busy", "start"),
                                                              ("busy2", "end"), ("busy2", "start")]
    folder = tmp_path / "var/clips/cam1"
    spans = {}
    for rule in ("busy", "busy2"):
        start, end = (next(e for e in events if e["rule"] == rule and e["type"] == t) for t in ("start", "end"))
        assert 30 <= start["frame_index"] <= 33 and 60 <= end["frame_index"] < 105 - post_s * FPS  # as scripted
        assert "clip" not in start["extra"]  # the path is named once the alert has ended
        path = Path(end["extra"]["clip"])
        assert path == folder / clip_name(start["id"]) and path.is_file()
        spans[rule] = _check_span(path, start, end, pre_s, post_s)
    assert len(spans["busy2"]) - len(spans["busy"]) == pytest.approx(0.9 * FPS, abs=2)  # its later end
    assert clips["frames"] == len(spans["busy"]) + len(spans["busy2"])
    assert sorted(p.name for p in folder.iterdir()) == sorted(clip_name(i) for i in {e["id"] for e in events})

    # drawn: the pre-roll shows the grey frame and the idle zone's yellow outline; once the alert is active the
    # zone is outlined and filled red
    busy = next(e for e in events if e["rule"] == "busy" and e["type"] == "end")
    times, _, frames, _, _ = _decode(Path(busy["extra"]["clip"]))
    assert frames[0].shape == (180, 320, 3)  # the model input's content: 640x360 into a 320x320 input
    idle, alert = frames[2].astype(int), frames[int(pre_s * FPS) + 3].astype(int)
    assert abs(idle[60:120, 100:220].mean() - 114) < 4  # nothing drawn inside
    assert idle[1, 100:220, 0].mean() > 180 and idle[1, 100:220, 2].mean() < 90  # yellow edge (255, 220, 0)
    assert alert[1, 100:220, 0].mean() > 180 and alert[1, 100:220, 1].mean() < 90  # red edge (255, 40, 40)
    assert alert[150:170, 40:80, 0].mean() > idle[150:170, 40:80, 0].mean() + 30  # red fill, away from the object


def test_alert_open_at_end_of_stream_gets_its_clip_before_the_run_returns(tmp_path, model_path, model_names):
    """The object stays to the last frame: the alert ends with the stream, and its clip (closed with what exists:
    no post-roll) is in place when ``wait()`` returns."""
    source = scripted_clip(tmp_path / "scripted.mp4", on=30, off=60, total=60)
    cfg = _config(tmp_path, model_path, model_names, source, {"dir": "clips", "pre_s": 1.0, "post_s": 5.0,
                                                               "ring_slots": 1024})
    pipe = _run(cfg)
    start, end = _events(tmp_path)
    assert (start["type"], end["type"]) == ("start", "end") and end["frame_index"] == 59
    path = Path(end["extra"]["clip"])
    assert path.parent == tmp_path / "clips/cam1" and path.is_file()  # dir resolved against the config's folder
    times = _check_span(path, start, end, 1.0, 0.0)
    assert len(times) == pytest.approx((59 - start["frame_index"]) + FPS + 1, abs=1)
    assert pipe.summary()["clips"]["written"] == 1
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_long_alert_s_clip_stops_at_max_s(tmp_path, model_path, model_names):
    """An alert longer than ``max_s``: its clip holds ``max_s`` from its first frame (pre-roll included), and the
    end event still names it."""
    source = scripted_clip(tmp_path / "scripted.mp4", on=20, off=55, total=75)
    cfg = _config(tmp_path, model_path, model_names, source, {"dir": "clips", "pre_s": 0.5, "post_s": 1.0,
                                                               "max_s": 1.0, "ring_slots": 1024})
    pipe = _run(cfg)
    start, end = _events(tmp_path)
    assert end["frame_index"] - start["frame_index"] > 2 * FPS  # the alert lasts longer than the clip
    times, meta, *_ = _decode(Path(end["extra"]["clip"]))
    assert len(times) == FPS + 1 and times[-1] == pytest.approx(1.0, abs=0.002)
    assert json.loads(meta["comment"])["first_pts_s"] == pytest.approx(start["started_pts_s"] - 0.5, abs=FRAME)
    assert pipe.summary()["clips"]["written"] == 1


def test_max_gb_deletes_the_oldest_clips(tmp_path, model_path, model_names, caplog):
    """Over ``max_gb`` after a clip is written: the oldest clips go (counted, logged) until the rest fit; the new
    clip and files that are not clips stay."""
    folder = tmp_path / "clips/cam1"
    folder.mkdir(parents=True)
    old = []
    for k in range(3):  # 3 x 400 kB clips of earlier runs, oldest first
        p = folder / f"cam1_old_{k}.mp4"
        p.write_bytes(os.urandom(400_000))
        os.utime(p, (time.time() - 3600 + k, time.time() - 3600 + k))
        old.append(p)
    notes = folder / "notes.txt"
    notes.write_bytes(os.urandom(400_000))
    source = scripted_clip(tmp_path / "scripted.mp4", on=20, off=40, total=60)
    cfg = _config(tmp_path, model_path, model_names, source, {"dir": "clips", "pre_s": 1.0, "post_s": 1.0,
                                                               "max_gb": 0.001, "ring_slots": 1024})  # 1 MB
    with caplog.at_level(logging.INFO, logger="maskwatch.pipeline.clips"):
        pipe = _run(cfg)
    new = Path(_events(tmp_path)[-1]["extra"]["clip"])
    assert new.is_file() and new.stat().st_size < 200_000  # 800 kB + it fits in 1 MB: one old clip must go
    assert [p.exists() for p in old] == [False, True, True] and notes.exists()
    assert pipe.summary()["clips"]["deleted"] == 1
    assert "deleted the 1 oldest clip(s)" in caplog.text


class SlowClipWriter(ClipWriter):
    """The real writer, each frame's encoding 0.25 s slower: an encoder far behind the analytics."""

    DELAY_S = 0.25

    def _write(self, clip, cf, rgb) -> None:
        time.sleep(self.DELAY_S)
        super()._write(clip, cf, rgb)


def test_a_slow_encoder_drops_frames_and_never_slows_analytics(tmp_path, model_path, model_names, caplog):
    """Analytics hands frames to a ``drop_oldest`` ring and goes on: with an encoder at 4 frames/s, analytics
    still finishes its 90 frames long before the encoder could (if the ring blocked, analytics would be at most
    ``ring_slots`` frames ahead of it); the dropped frames are counted and logged, and the clip is still written."""
    source = scripted_clip(tmp_path / "scripted.mp4", on=5, off=90, total=90)
    slots = 4
    cfg_path = _config(tmp_path, model_path, model_names, source, {"dir": "clips", "pre_s": 0.2, "post_s": 0.0,
                                                                    "ring_slots": slots})
    cfg = load_config(cfg_path)
    pipe = Pipeline(cfg, build_segmenter(cfg.model, cfg_path, cfg.tracker))
    writer = pipe.clips = SlowClipWriter(cfg.alerts.clips, pipe.names)
    at_end: list[tuple[int, int]] = []

    def watch() -> None:  # what the encoder had done when analytics finished
        while any(t.is_alive() for t in pipe._analytics_threads) and pipe.failure is None:
            time.sleep(0.01)
        at_end.append((pipe.cameras[0].stats.analysed, writer.frames))

    with caplog.at_level(logging.WARNING, logger="maskwatch.pipeline.clips"):
        pipe.start()
        w = threading.Thread(target=watch, daemon=True)
        w.start()
        pipe.wait()
        w.join(5)
    assert pipe.failure is None and at_end
    analysed, encoded = at_end[0]
    assert analysed == 90  # files stay lossless: every frame analysed
    assert encoded < analysed - slots - 20, at_end  # analytics ran far ahead of the encoder
    stats = pipe.summary()["clips"]
    assert stats["dropped"] > 0 and stats["written"] == 1 and stats["failed"] == 0
    assert "clips: ring full" in caplog.text
    end = _events(tmp_path)[-1]
    times, *_ = _decode(Path(end["extra"]["clip"]))
    assert len(times) == stats["frames"] < 85  # what was encoded, not every frame of the alert


def test_console_links_and_serves_clips_by_name(tmp_path, model_path, model_names):
    """``/api/alerts`` gives the end event a ``clip_url`` (no server path), which serves the MP4; a name that no
    recent alert gave is 404, never a path joined from the request."""
    source = scripted_clip(tmp_path / "scripted.mp4", on=20, off=40, total=60)
    cfg = _config(tmp_path, model_path, model_names, source, {"dir": "var/clips", "pre_s": 1.0, "post_s": 1.0,
                                                               "ring_slots": 1024})
    (tmp_path / "var").mkdir(exist_ok=True)
    (tmp_path / "var/secret.mp4").write_text("do not serve")
    with serve_pipeline(cfg) as s:
        s.pipe.wait()
        alerts = s.get("/api/alerts").json()["alerts"]
        assert [a["type"] for a in alerts] == ["end", "start"]
        end, start = alerts
        assert "clip_url" not in start and all("clip" not in (a.get("extra") or {}) for a in alerts)
        assert end["clip_url"] == f"/api/clips/{clip_name(end['id'])}"
        r = s.get(end["clip_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        assert r.content == (tmp_path / "var/clips/cam1" / clip_name(end["id"])).read_bytes()
        part = s.get(end["clip_url"], headers={"Range": "bytes=0-99"})  # a browser's video element seeks
        assert part.status_code == 206 and part.content == r.content[:100]
        for trick in ["../secret.mp4", "..%2Fsecret.mp4", "..%2F..%2Fsecret.mp4", "secret.mp4", "%2Fetc%2Fpasswd",
                      clip_name(end["id"]) + "%00"]:
            r = httpx.get(s.base + "/api/clips/" + trick, timeout=10)
            assert r.status_code == 404, (trick, r.status_code)
            assert "do not serve" not in r.text


@pytest.mark.parametrize("clips, field, words", [
    ({"dir": "c", "pre_s": -1}, "alerts.clips.pre_s", "greater than or equal to 0"),
    ({"dir": "c", "post_s": -0.5}, "alerts.clips.post_s", "greater than or equal to 0"),
    ({"dir": "c", "max_gb": 0}, "alerts.clips.max_gb", "greater than 0"),
    ({"dir": "c", "scale": 2}, "alerts.clips.scale", "less than or equal to 1"),
    ({"dir": "c", "ring_slots": 0}, "alerts.clips.ring_slots", "greater than or equal to 1"),
    ({"pre_s": 5}, "alerts.clips.dir", "missing"),
    ({"dir": "c", "pre_roll_s": 5}, "alerts.clips.pre_roll_s", "unknown field"),
], ids=["pre-negative", "post-negative", "max-gb-zero", "scale-above-1", "ring-zero", "no-dir", "typo"])
def test_clips_config_errors_exit_2_naming_the_field(tmp_path, model_path, model_names, capsys, clips, field, words):
    source = scripted_clip(tmp_path / "scripted.mp4", on=0, off=0, total=2)
    cfg = _config(tmp_path, model_path, model_names, source, clips)
    assert main(["check", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "config.yaml" in err and f"{field}:" in err and words in err, err


def test_clips_config_defaults_and_paths(tmp_path, model_path, model_names):
    cfg = load_config(_config(tmp_path, model_path, model_names, tmp_path / "x.mp4", {"dir": "clips"}))
    c = cfg.alerts.clips
    assert (c.dir, c.pre_s, c.post_s, c.max_gb) == (tmp_path / "clips", 5.0, 10.0, 20.0)
