"""Sources without a server: backoff, redaction, corrupt files, hardware-decode fallback, batching."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time

import pytest

from maskwatch.pipeline.factory import build_segmenter
from maskwatch.pipeline.config import CameraConfig, load_config
from maskwatch.pipeline.sources import Backoff, SourceOptions, VideoSource, hwaccel_unavailable, is_live, redact_text
from maskwatch.pipeline.stages import Pipeline
from tests.conftest import write_clip, write_config
from tests.pipeline.test_rtsp import corrupt_with_noise


@pytest.mark.parametrize("healthy,expected", [
    ([0] * 8, [1, 2, 4, 8, 16, 30, 30, 30]),  # 1 s doubling, capped at 30 s
    ([0, 0, 0, 59.9, 0], [1, 2, 4, 8, 16]),  # a connection shorter than a minute does not reset
    ([0, 0, 0, 60, 0, 0], [1, 2, 4, 1, 2, 4]),  # a healthy minute starts again at 1 s
])
def test_backoff(healthy, expected):
    b = Backoff(1, 30, 60)
    assert [b.next_delay(h) for h in healthy] == expected


def test_backoff_rejects_bad_bounds():
    with pytest.raises(ValueError, match="min_s <= max_s"):
        Backoff(5, 1, 60)


@pytest.mark.parametrize("text,expected", [
    ("rtsp://admin:pw@10.0.0.5:554/s1", "rtsp://admin:***@10.0.0.5:554/s1"),
    ("cannot open rtsp://u:p@h/x: [Errno 111] Connection refused: 'rtsp://u:p@h/x'",
     "cannot open rtsp://u:***@h/x: [Errno 111] Connection refused: 'rtsp://u:***@h/x'"),
    ("http://user@cam/mjpg", "http://user@cam/mjpg"),  # a user name alone is not a secret
    ("rtsp://a:b@h/x and https://c:d@k/y", "rtsp://a:***@h/x and https://c:***@k/y"),
    ("/videos/a@b.mp4", "/videos/a@b.mp4"),
])
def test_redact_text(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize("source,live", [
    ("rtsp://h/x", True), ("http://h/x.mjpg", True), ("rtsps://h/x", True),
    ("/data/clip.mp4", False), ("file:/data/clip.mp4", False), ("clip.mp4", False),
])
def test_which_sources_are_live(source, live):
    assert is_live(source) is live


def test_options_from_camera_config():
    cam = CameraConfig(id="c", source="rtsp://h/x", rtsp_transport="udp", stall_timeout_s=4, reconnect_max_s=8,
                       decoder="cuda")
    o = SourceOptions.from_config(cam)
    assert (o.rtsp_transport, o.stall_timeout_s, o.reconnect_min_s, o.reconnect_max_s, o.decoder) == \
        ("udp", 4, 1.0, 8, "cuda")
    src = VideoSource("c", cam.source, (320, 320), options=o)
    opts = src._av_options()
    assert opts["rtsp_transport"] == "udp" and opts["timeout"] == "5000000"  # socket timeout in microseconds
    assert VideoSource("f", "/x.mp4", (320, 320), options=o)._av_options() == {}


def test_corrupt_file_keeps_decoding(tmp_path, caplog):
    clean = write_clip(tmp_path / "clean.mp4", frames=60, size=(320, 240))
    changed, packets = corrupt_with_noise(clean, tmp_path / "bad.mp4", amount=200)
    assert changed > packets // 2
    src = VideoSource("c", str(tmp_path / "bad.mp4"), (320, 320))
    with caplog.at_level(logging.WARNING, logger="maskwatch.pipeline"):
        frames = list(src.frames())
    # packets the decoder rejects are skipped and counted; the rest decode (damaged or not)
    assert src.corrupt_packets >= 1 and len(frames) + src.corrupt_packets == 60, (len(frames), src.corrupt_packets)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert len([r for r in caplog.records if "corrupt packet" in r.message]) == 1  # logged at most every 10 s


def test_cuda_decoder_falls_back_to_software_with_one_log_line(tmp_path, clip, caplog):
    src = VideoSource("c", str(clip), (320, 320), options=SourceOptions(decoder="cuda"))
    with caplog.at_level(logging.WARNING, logger="maskwatch.pipeline"):
        first = list(src.frames())
        src.close()
        again = list(src.frames())  # opened again (as a reconnect does): no second log line
    assert len(first) == len(again) == 30
    lines = [r.message for r in caplog.records if "CUDA" in r.message]
    if hwaccel_unavailable("cuda") is None:  # a machine with a usable NVIDIA decoder
        assert src.hwaccel and not lines
    else:
        assert not src.hwaccel
        assert len(lines) == 1 and "decoding in software" in lines[0], lines


def test_run_with_cuda_decoder_option_completes(tmp_path, clip, model_path, model_names):
    cfg = write_config(tmp_path, model_path, clip, model_names,
                       cameras=[{"id": "cam1", "source": str(clip), "zones": "zones.yaml", "decoder": "cuda"}])
    proc = subprocess.run([sys.executable, "-m", "maskwatch", "run", str(cfg), "--summary", str(tmp_path / "s.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    cam = json.loads((tmp_path / "s.json").read_text())["cameras"]["cam1"]
    assert cam["analysed"] == 30
    assert cam["hw_decode"] is (hwaccel_unavailable("cuda") is None)


# -- batching across cameras ------------------------------------------------------------------------
def _pipe(tmp_path, model_path, model_names, lengths: list[int], **pipeline_cfg) -> Pipeline:
    cams = []
    for i, n in enumerate(lengths):
        clip = write_clip(tmp_path / f"c{i}.mp4", frames=n, size=(320, 240), seed=i)
        cams.append({"id": f"c{i}", "source": str(clip), "zones": "zones.yaml"})
    cfg = load_config(write_config(tmp_path, model_path, "unused", model_names, cameras=cams,
                                   extra={"pipeline": pipeline_cfg}))
    return Pipeline(cfg, build_segmenter(cfg.model, None, cfg.tracker))


def test_batches_are_fair_across_cameras_and_run_as_one_engine_call(tmp_path, model_path, model_names):
    pipe = _pipe(tmp_path, model_path, model_names, [12, 24, 36], batch=2)
    assert pipe.segmenter.meta.dynamic_batch, "the test model has a dynamic batch axis"
    batches: list[list[str]] = []
    engine_batches: list[int] = []
    gather, infer = pipe._gather, pipe.segmenter.engine.infer

    def spy_gather(*a):
        batch = gather(*a)
        if batch:
            batches.append([c.id for c, _ in batch])
        return batch

    def spy_infer(x):
        engine_batches.append(len(x))
        return infer(x)

    pipe._gather, pipe.segmenter.engine.infer = spy_gather, spy_infer
    pipe.start()
    pipe.wait()
    assert pipe.failure is None
    assert [c.stats.analysed for c in pipe.cameras] == [12, 24, 36]  # files stay lossless
    assert all(len(b) <= 2 for b in batches)
    # one engine run per batch: a true batch (inference workers may finish in either order)
    assert sorted(engine_batches) == sorted(len(b) for b in batches)
    assert sum(len(b) == 2 for b in batches) >= len(batches) // 2
    assert {"c0", "c1", "c2"} <= set(sum(batches[:6], [])), f"a camera waited while others ran: {batches[:6]}"


def _frames(path, n):
    return list(VideoSource("x", str(path), (320, 320)).frames())[:n]


@pytest.mark.parametrize("timeout_ms,late_included", [(0, False), (400, True)])
def test_batch_timeout_waits_for_more_frames(tmp_path, model_path, model_names, timeout_ms, late_included):
    pipe = _pipe(tmp_path, model_path, model_names, [5, 5], batch=4, batch_timeout_ms=timeout_ms)
    a, b = pipe.cameras
    frames = _frames(tmp_path / "c0.mp4", 3)
    a.frames.put(frames[0])

    def late():
        time.sleep(0.1)
        b.frames.put(frames[1])
        pipe._wake.set()

    t = threading.Thread(target=late)
    t.start()
    t0 = time.monotonic()
    batch = pipe._gather([a, b], 0, [])
    took = time.monotonic() - t0
    t.join()
    assert [c.id for c, _ in batch] == (["c0", "c1"] if late_included else ["c0"])
    assert took < (0.6 if late_included else 0.05)


def test_round_robin_start_gives_every_camera_a_turn(tmp_path, model_path, model_names):
    pipe = _pipe(tmp_path, model_path, model_names, [5, 5, 5], batch=1)
    frames = _frames(tmp_path / "c0.mp4", 3)
    for c in pipe.cameras:
        for f in frames:
            c.frames.put(f)
    order = [pipe._gather(list(pipe.cameras), start, [])[0][0].id for start in range(6)]
    assert order == ["c0", "c1", "c2", "c0", "c1", "c2"]


def test_a_full_camera_does_not_crowd_out_another(tmp_path, model_path, model_names):
    pipe = _pipe(tmp_path, model_path, model_names, [5, 5], batch=2)
    a, b = pipe.cameras
    frames = _frames(tmp_path / "c0.mp4", 4)
    for f in frames:
        a.frames.put(f)
    b.frames.put(frames[0])
    first = [c.id for c, _ in pipe._gather([a, b], 0, [])]
    second = [c.id for c, _ in pipe._gather([a, b], 1, [])]
    assert first == ["c0", "c1"]  # one per camera per pass: b's only frame goes in the first batch
    assert second == ["c0", "c0"]  # then a alone may fill a batch


def test_live_example_config_is_valid(monkeypatch):
    from tests.conftest import ROOT

    monkeypatch.setenv("SITE_CAM_PASSWORD", "pw")
    cfg = load_config(ROOT / "configs" / "live-example.yaml")
    assert [c.id for c in cfg.cameras] == ["north-gate", "pit"]
    assert all(is_live(c.source) and ":pw@" in c.source for c in cfg.cameras)
    assert cfg.pipeline.batch == 2
