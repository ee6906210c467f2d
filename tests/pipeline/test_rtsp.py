"""Live cameras against a real RTSP server: GStreamer's gst-rtsp-server on loopback.

The server (tests/pipeline/rtsp_server.py) runs under the SYSTEM python3, which has Debian's
python3-gi and gir1.2-gst-rtsp-server-1.0 (scripts/setup.sh installs them). Under CI=true a
missing GStreamer fails these tests; elsewhere they skip with the reason. Every test stops
the servers it started (and checks that they are gone).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
import pytest

from maskwatch.engines import letterbox
from maskwatch.pipeline.factory import build_segmenter
from maskwatch.pipeline.config import load_config
from maskwatch.pipeline.ring import Ring
from maskwatch.pipeline.sources import LiveRunner, SourceOptions, VideoSource
from maskwatch.pipeline.stages import Pipeline
from tests.conftest import write_clip, write_config
from tests.pipeline.conftest import free_port, wait_for

GST_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).with_name("rtsp_server.py")
FPS = 10
# fast failure detection in tests; the reconnect backoff keeps its defaults (1 s doubling to 30 s)
LIVE = {"stall_timeout_s": 3, "read_timeout_s": 2, "open_timeout_s": 3}


@functools.cache
def _gstreamer_missing() -> str | None:
    if not os.access(GST_PYTHON, os.X_OK):
        return f"{GST_PYTHON} not found"
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "print(' '.join(e for e in ('videotestsrc', 'x264enc', 'rtph264pay', 'h264parse', 'qtdemux') "
             "if Gst.ElementFactory.find(e) is None))")
    proc = subprocess.run([GST_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return f"GStreamer RTSP server not usable: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    if proc.stdout.strip():
        return f"GStreamer elements missing: {proc.stdout.strip()}"
    return None


def require_gstreamer() -> None:
    why = _gstreamer_missing()
    if why:
        msg = (f"{why} (scripts/setup.sh installs python3-gi, gir1.2-gst-rtsp-server-1.0, "
               "gstreamer1.0-plugins-good/bad/ugly)")
        pytest.fail(msg)  # scripts/test.sh installs it; a missing service fails, never skips


class RtspServer:
    """One gst-rtsp-server process serving /cam on a loopback port; start, kill and start again."""

    def __init__(self, log_path: Path, port: int | None = None, *args: str) -> None:
        self.port = port or free_port()
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def url(self, userinfo: str = "") -> str:
        return f"rtsp://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/cam"

    def start(self, timeout: float = 20.0) -> "RtspServer":
        with open(self.log_path, "ab") as log:
            # stdin stays open while we live: the server quits when it closes
            self.proc = subprocess.Popen([GST_PYTHON, str(SERVER), "--port", str(self.port), "--fps", str(FPS),
                                          *self.args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("READY"):
            self.kill()
            raise AssertionError(f"RTSP server did not start: {line!r}\n{self.log_path.read_text()[-2000:]}")
        return self

    def kill(self) -> None:
        """SIGKILL: a camera that dies without saying goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.wait_gone()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.wait_gone()

    def wait_gone(self) -> None:
        if self.proc is not None:
            self.proc.wait(10)
            for f in (self.proc.stdin, self.proc.stdout):
                if f is not None:
                    f.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def rtsp(tmp_path):
    """Factory of RTSP servers; every one is stopped at the end, and the test fails if one survives."""
    require_gstreamer()
    made: list[RtspServer] = []

    def make(*args: str, port: int | None = None, start: bool = True) -> RtspServer:
        srv = RtspServer(tmp_path / f"rtsp-{len(made)}.log", port, *args)
        made.append(srv)
        return srv.start() if start else srv

    yield make
    for srv in made:
        srv.stop()
    assert not [s for s in made if s.running], "an RTSP server outlived its test"


class SilentServer:
    """Accepts TCP connections and never sends a byte (a hung camera)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[float] = []
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(time.monotonic())
            self.conns.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


class RecordingRing(Ring):
    """A real frame ring that also records what the source put into it."""

    def __init__(self, ring: Ring) -> None:
        super().__init__(ring.slots, ring.policy, ring.name)
        self.seen: list[tuple[float, int, float, str]] = []  # (monotonic, index, pts_s, hash of the model input)

    def put(self, item, timeout=None):
        self.seen.append((time.monotonic(), item.index, item.pts_s, hashlib.sha1(item.input.tobytes()).hexdigest()))
        return super().put(item, timeout)


def _pipeline(tmp_path, model_path, model_names, cameras: list[dict], **pipeline_cfg) -> Pipeline:
    cfg = load_config(write_config(tmp_path, model_path, "unused", model_names, cameras=cameras,
                                   extra={"pipeline": pipeline_cfg} if pipeline_cfg else None))
    pipe = Pipeline(cfg, build_segmenter(cfg.model, None, cfg.tracker))
    for c in pipe.cameras:
        c.frames = RecordingRing(c.frames)
    return pipe


@contextmanager
def running(pipe: Pipeline):
    events: list[tuple[float, str, bool]] = []
    pipe.on_camera_status.append(lambda cam, online: events.append((time.monotonic(), cam, online)))
    pipe.start()
    try:
        yield events
    finally:
        pipe.request_stop()
        t0 = time.monotonic()
        pipe.wait()
        assert time.monotonic() - t0 < 6, "the run did not stop within the shutdown bound"
    assert pipe.failure is None, pipe.failure
    assert not [t for t in pipe.threads if t.is_alive()]


def _cam(pipe: Pipeline, cid: str):
    return next(c for c in pipe.cameras if c.id == cid)


def _assert_flowing(pipe: Pipeline, cid: str, frames: int, within_s: float) -> None:
    c = _cam(pipe, cid)
    n0 = c.stats.inferred
    wait_for(lambda: c.stats.inferred >= n0 + frames, within_s, what=f"{frames} more frames of camera {cid}")


def _monotonic_stamps(ring: RecordingRing) -> None:
    idx = [s[1] for s in ring.seen]
    pts = [s[2] for s in ring.seen]
    assert all(b > a for a, b in zip(idx, idx[1:])), "frame index went backwards"
    assert all(b > a for a, b in zip(pts, pts[1:])), "pts_s went backwards"


# -- the cases of issue 8 ---------------------------------------------------------------------
def test_server_restart_reconnects_and_other_camera_never_stops(tmp_path, rtsp, model_path, model_names):
    a = rtsp("--pattern", "ball")
    b = rtsp("--pattern", "smpte")
    pipe = _pipeline(tmp_path, model_path, model_names, [
        {"id": "a", "source": a.url(), "zones": "zones.yaml", **LIVE},
        {"id": "b", "source": b.url(), "zones": "zones.yaml", **LIVE}])
    with running(pipe) as events:
        wait_for(lambda: pipe.camera_status["a"] and pipe.camera_status["b"], 20, what="both cameras online")
        _assert_flowing(pipe, "a", 5, 10)
        a.kill()
        t_kill = time.monotonic()
        progress = []  # camera b during the outage
        while time.monotonic() - t_kill < 5:
            progress.append((time.monotonic(), _cam(pipe, "b").stats.inferred))
            time.sleep(0.1)
        assert pipe.camera_status["a"] is False, "camera a should be reported offline while its server is down"
        a.start()
        t_back = time.monotonic()
        wait_for(lambda: pipe.camera_status["a"], 10, what="camera a online again")
        back_online = next(t for t, cam, on in events if cam == "a" and on and t > t_back)
        _assert_flowing(pipe, "a", 10, 5)
        _assert_flowing(pipe, "b", 10, 5)
        t_stop = time.monotonic()
    print(f"camera a online {back_online - t_back:.2f} s after its server came back")
    assert back_online - t_back < 5, f"reconnected {back_online - t_back:.1f} s after the server came back"
    # b never stopped: it made progress in every 1.5 s window of the outage
    for t0, n0 in progress:
        later = [n for t, n in progress if t0 + 1.5 <= t]
        if later:
            assert later[0] > n0, f"camera b stalled during camera a's outage: {progress}"
    assert [(cam, on) for _, cam, on in events if cam == "a"][:3] == [("a", True), ("a", False), ("a", True)]
    assert [(cam, on) for t, cam, on in events if cam == "b" and t < t_stop] == [("b", True)]
    # wall-clock stamps: pts_s and the index keep increasing over the reconnect (the server's clock restarted)
    ring_a = _cam(pipe, "a").frames
    _monotonic_stamps(ring_a)
    gap = max(b[2] - a_[2] for a_, b in zip(ring_a.seen, ring_a.seen[1:]))
    assert gap >= 5, "pts_s should show the outage as a gap in wall-clock time"
    s = pipe.summary()["cameras"]["a"]
    assert s["connects"] == 2 and s["online"] is False  # offline after the stop


def test_silent_server_trips_the_watchdog_and_sigterm_still_stops(tmp_path, model_path, model_names, clip):
    """A server that accepts and never answers: PyAV would block for open_timeout_s (30 s here);
    the watchdog gives up after stall_timeout_s and reconnects, again and again."""
    silent = SilentServer()
    try:
        url = f"rtsp://admin:s3cret@127.0.0.1:{silent.port}/cam"
        cfg = write_config(tmp_path, model_path, clip, model_names, cameras=[
            {"id": "hung", "source": url, "stall_timeout_s": 1.5, "open_timeout_s": 30, "read_timeout_s": 30,
             "reconnect_min_s": 0.5, "reconnect_max_s": 1},
            {"id": "file", "source": str(clip), "zones": "zones.yaml"}])
        summary = tmp_path / "summary.json"
        proc = subprocess.Popen([sys.executable, "-m", "maskwatch", "run", str(cfg), "--summary", str(summary)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: len(silent.accepted) >= 3 or proc.poll() is not None, 40,
                     what="three connection attempts on the silent server")
            assert proc.poll() is None, proc.communicate()[1]
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=5)
            took = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        silent.close()
    assert proc.returncode == 0, err
    assert took < 5
    assert len(silent.accepted) >= 3
    gaps = [b - a for a, b in zip(silent.accepted, silent.accepted[1:])]
    assert max(gaps[:2]) < 5, f"reconnects should follow the 1.5 s watchdog, not the 30 s timeout: {gaps}"
    assert err.count("watchdog: no frame for 1.5 s") >= 2, err
    assert "s3cret" not in err and "admin:***@" in err
    text = summary.read_text()
    assert "s3cret" not in text
    s = json.loads(text)["cameras"]
    assert s["hung"]["online"] is False and s["hung"]["stalls"] >= 2 and s["hung"]["connects"] == 0
    assert s["hung"]["source"] == f"rtsp://admin:***@127.0.0.1:{silent.port}/cam"
    assert s["file"]["analysed"] == 30  # the other camera ran to its end meanwhile


def corrupt_with_noise(src: Path, dst: Path, amount: int = 500) -> tuple[int, int]:
    """Remux ``src`` through FFmpeg's ``noise`` bitstream filter; returns (packets changed, packets)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        s = inp.streams.video[0]
        o = out.add_stream_from_template(s)
        bsf = av.bitstream.BitStreamFilterContext(f"noise=amount={amount}", s)
        for p in inp.demux(s):
            if p.dts is None:
                continue
            for q in bsf.filter(p):
                q.stream = o
                out.mux(q)
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        pairs = [(bytes(x), bytes(y)) for x, y in zip(a.demux(video=0), b.demux(video=0)) if x.size]
    return sum(x != y for x, y in pairs), len(pairs)


def test_corrupted_stream_keeps_flowing(tmp_path, rtsp, model_path, model_names):
    clean = write_clip(tmp_path / "clean.mp4", frames=20 * FPS, fps=FPS, size=(320, 240), seed=3, gop=FPS)
    changed, packets = corrupt_with_noise(clean, tmp_path / "corrupt.mp4")
    assert packets == 20 * FPS and changed > packets // 2, f"noise changed {changed} of {packets} packets"
    srv = rtsp("--file", str(tmp_path / "corrupt.mp4"))
    pipe = _pipeline(tmp_path, model_path, model_names, [{"id": "c", "source": srv.url(), "zones": "zones.yaml", **LIVE}])
    input_hw = pipe.segmenter.input_hw
    with running(pipe):
        wait_for(lambda: pipe.camera_status["c"], 20, what="camera online")
        t0 = time.monotonic()
        _assert_flowing(pipe, "c", 4 * FPS, 15)
        took = time.monotonic() - t0
    assert took < 8, f"40 frames of a 10 fps stream took {took:.1f} s"
    s = pipe.summary()["cameras"]["c"]
    assert s["connects"] == 1 and s["stalls"] == 0, s  # no reconnects: corrupt data is not a dead camera
    # the corruption reached the decoder: frames that decode differently from the clean clip
    with av.open(str(clean)) as c:
        reference = {hashlib.sha1(np.ascontiguousarray(letterbox(f.to_ndarray(format="rgb24"), input_hw)[0]).tobytes())
                     .hexdigest() for f in c.decode(video=0)}
    seen = [h for *_, h in _cam(pipe, "c").frames.seen]
    damaged = sum(h not in reference for h in seen)
    print(f"corrupted stream: {len(seen)} frames, {damaged} differ from the clean clip")
    assert damaged >= len(seen) // 4, f"{damaged} of {len(seen)} frames differ from the clean clip"


def test_unreachable_at_start_reports_offline_then_connects(tmp_path, rtsp, model_path, model_names):
    b = rtsp("--pattern", "smpte")
    a = rtsp("--pattern", "ball", start=False)  # nothing listens on a's port yet
    pipe = _pipeline(tmp_path, model_path, model_names, [
        {"id": "a", "source": a.url(), "zones": "zones.yaml", **LIVE, "reconnect_max_s": 2},
        {"id": "b", "source": b.url(), "zones": "zones.yaml", **LIVE}])
    with running(pipe) as events:
        wait_for(lambda: ("a", False) in [(cam, on) for _, cam, on in events], 10, what="camera a reported offline")
        wait_for(lambda: pipe.camera_status["b"], 20, what="camera b online")
        _assert_flowing(pipe, "b", 10, 10)
        assert pipe.camera_status["a"] is False and _cam(pipe, "a").stats.decoded == 0
        a.start()
        t_back = time.monotonic()
        wait_for(lambda: pipe.camera_status["a"], 10, what="camera a online once its server is up")
        online_after = time.monotonic() - t_back
        _assert_flowing(pipe, "a", 5, 5)
    assert online_after < 5
    assert [(cam, on) for _, cam, on in events if cam == "a"][:2] == [("a", False), ("a", True)]
    assert pipe.summary()["cameras"]["a"]["last_error"].startswith("cannot open")


def test_credentials_never_printed(tmp_path, rtsp, caplog):
    srv = rtsp("--user", "admin", "--password", "s3cret")
    statuses: list[bool] = []

    def run(userinfo: str, until) -> LiveRunner:
        src = VideoSource("auth", srv.url(userinfo), (320, 320), options=SourceOptions(**LIVE))
        frames: list = []
        runner = LiveRunner(src, frames.append, statuses.append, should_stop=lambda: until(runner, frames))
        t = threading.Thread(target=runner.run)
        t.start()
        t.join(20)
        assert not t.is_alive()
        return runner

    with caplog.at_level(logging.INFO, logger="maskwatch.pipeline"):
        bad = run("admin:wr0ng", lambda r, f: r.stats.attempts >= 2 or r.stats.connects > 0)
        good = run("admin:s3cret", lambda r, f: len(f) >= 3)
    assert bad.stats.connects == 0 and "401" in (bad.stats.last_error or ""), bad.stats
    assert good.stats.connects == 1
    text = caplog.text + repr(bad.stats) + repr(good.stats)
    assert "wr0ng" not in text and "s3cret" not in text
    assert "admin:***@" in text
    assert statuses == [False, True, False]  # bad: offline; good: online, then offline when it stopped


def test_slow_inference_drops_oldest_and_latency_stays_bounded(tmp_path, rtsp, model_path, model_names):
    srv = rtsp("--pattern", "ball")
    pipe = _pipeline(tmp_path, model_path, model_names, [{"id": "a", "source": srv.url(), "zones": "zones.yaml",
                                                          **LIVE}], frame_ring_slots=2)
    inner = pipe.segmenter
    lag: list[float] = []

    class Slow:  # the real segmenter at ~3 frames/s: slower than the 10 fps camera
        meta, input_hw = inner.meta, inner.input_hw

        def __call__(self, inputs, boxes, **kw):
            time.sleep(0.3)
            return inner(inputs, boxes, **kw)

    pipe.segmenter = Slow()
    real_put = pipe._put

    def put(ring, item):
        if ring.name.endswith("/detections"):
            lag.append(time.time() - item[0].wall_s)
        return real_put(ring, item)

    pipe._put = put
    with running(pipe):
        wait_for(lambda: len(lag) >= 15, 30, what="15 analysed frames")
    dropped = pipe.summary()["cameras"]["a"]["frames_dropped"]
    print(f"slow inference: {dropped} frames dropped, frame age after inference p50 {np.median(lag):.2f} s, "
          f"max {max(lag):.2f} s")
    assert dropped > 10, "a live camera faster than inference should drop frames"
    # frame age at the end of inference stays near ring slots x inference time, not growing
    assert max(lag[5:]) < 1.5, lag
    assert np.mean(lag[-5:]) < np.mean(lag[5:10]) + 0.5, lag


def _reader_threads(camera: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"camera:{camera}/reader"]


def test_frozen_server_trips_the_watchdog_during_a_blocked_read(rtsp):
    """The server stops sending mid-stream (SIGSTOP): the read blocks (read timeout 10 s), the 2 s
    watchdog reconnects anyway; once the server runs again frames flow and no reader is left behind."""
    srv = rtsp("--pattern", "ball")
    src = VideoSource("frozen", srv.url(), (320, 320),
                      options=SourceOptions(stall_timeout_s=2, read_timeout_s=10, open_timeout_s=10))
    frames: list[float] = []
    statuses: list[tuple[float, bool]] = []
    stop = threading.Event()
    runner = LiveRunner(src, lambda f: frames.append(time.monotonic()),
                        lambda on: statuses.append((time.monotonic(), on)), stop.is_set)
    thread = threading.Thread(target=runner.run)
    thread.start()
    assert srv.proc is not None
    try:
        wait_for(lambda: len(frames) >= 5, 15, what="first frames")
        os.kill(srv.proc.pid, signal.SIGSTOP)
        t_freeze = time.monotonic()
        wait_for(lambda: runner.stats.stalls >= 1, 6, what="the watchdog")
        t_fired = time.monotonic()
        assert statuses[-1][1] is False
        time.sleep(max(0.0, 5 - (time.monotonic() - t_freeze)))
        os.kill(srv.proc.pid, signal.SIGCONT)
        t_thaw = time.monotonic()
        n = len(frames)
        wait_for(lambda: len(frames) >= n + 10, 20, what="frames after the server resumed")
    finally:
        os.kill(srv.proc.pid, signal.SIGCONT)
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert t_fired - t_freeze < 3.5, "the watchdog (2 s) should act long before the 10 s read timeout"
    assert [on for _, on in statuses] == [True, False, True, False]
    back = next(t for t, on in statuses if on and t > t_thaw)
    print(f"frozen server: watchdog after {t_fired - t_freeze:.1f} s, online {back - t_thaw:.1f} s after SIGCONT")
    # every reader, including the ones abandoned while blocked, has ended
    wait_for(lambda: not _reader_threads("frozen"), 12, what="abandoned readers to end")


def test_abandoned_readers_end_when_pyav_times_out():
    """Readers the watchdog gave up on (blocked opening a silent server) end by PyAV's open timeout:
    nothing piles up."""
    silent = SilentServer()
    stop = threading.Event()
    try:
        src = VideoSource("mute", f"rtsp://127.0.0.1:{silent.port}/cam", (320, 320),
                          options=SourceOptions(stall_timeout_s=0.5, open_timeout_s=2, read_timeout_s=2,
                                                reconnect_min_s=0.1, reconnect_max_s=0.2))
        runner = LiveRunner(src, lambda f: None, lambda on: None, stop.is_set)
        thread = threading.Thread(target=runner.run)
        thread.start()
        wait_for(lambda: runner.stats.stalls >= 5, 15, what="five watchdog firings")
        assert runner.stats.abandoned_readers <= 3  # bounded while PyAV still blocks
        assert len(_reader_threads("mute")) <= 4
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
        wait_for(lambda: not _reader_threads("mute"), 5, what="blocked readers to time out")
    finally:
        stop.set()
        silent.close()
    assert runner.stats.connects == 0 and len(silent.accepted) >= 5
