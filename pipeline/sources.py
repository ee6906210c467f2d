"""Video sources: decode with PyAV, stamp times, letterbox for the engine.

Files decode losslessly in the calling thread, stamped with the stream's own clock.
Live sources (rtsp://, http://, ... URLs) are kept connected by a ``LiveRunner``:

- each connection is read by its own thread (``camera:<id>/reader``) that opens the URL with
  TCP (or UDP), socket / open / read timeouts and low-latency options, decodes, and hands
  frames on;
- the runner is a wall-clock watchdog: a connection that yields no frame for
  ``stall_timeout_s`` is given up even while PyAV is blocked inside a read (the blocked reader
  is abandoned, its frames are discarded, and it closes its own container once PyAV's read
  timeout lets it go), then the camera reconnects;
- reconnects back off exponentially (``reconnect_min_s`` doubling to ``reconnect_max_s``); a
  connection that stayed healthy for ``reconnect_reset_s`` starts the sequence again;
- live frames are stamped from the wall clock (a monotonic one), so ``pts_s`` keeps increasing
  across reconnects although the camera's own timestamps start again;
- online / offline changes go to a status callback.

Credentials in URLs never reach a log line or an error message (``redact_text``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import av
import numpy as np

from maskwatch.engines import letterbox

from .config import is_url
from .redact import redact_url
from .types import Frame

log = logging.getLogger(__name__)

POLL_S = 0.1  # the watchdog and the backoff sleep re-check the stop condition this often
MAX_ABANDONED = 3  # stalled readers still blocked in PyAV, per camera, before new connections wait for one to end
CORRUPT_LOG_EVERY_S = 10.0

_USERINFO_ANYWHERE = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@:\s'\"]+)(:[^/@\s'\"]*)?@")


def redact_text(text: str) -> str:
    """Every ``scheme://user:pass@`` inside ``text`` -> ``scheme://user:***@`` (FFmpeg errors quote the URL)."""
    return _USERINFO_ANYWHERE.sub(lambda m: f"{m.group(1)}{m.group(2)}{':***' if m.group(3) else ''}@", text)


def is_live(source: str) -> bool:
    """URLs other than file: are live cameras: retried forever, drop-oldest rings, wall-clock stamps."""
    return is_url(source) and not source.startswith("file:")


class SourceError(RuntimeError):
    pass


@dataclass(frozen=True)
class SourceOptions:
    """How a camera is opened and kept connected (the camera's config fields of the same names)."""

    rtsp_transport: str = "tcp"  # tcp | udp
    decoder: str = "cpu"  # cpu | cuda (hardware decode through PyAV's hwaccel, software fallback)
    open_timeout_s: float = 10.0  # connect + stream probe
    read_timeout_s: float = 5.0  # one socket read / one packet
    stall_timeout_s: float = 10.0  # watchdog: reconnect when no frame arrived for this long
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    reconnect_reset_s: float = 60.0  # a connection healthy this long resets the backoff

    @classmethod
    def from_config(cls, cam) -> "SourceOptions":
        """From a ``CameraConfig`` (any object with these attributes)."""
        return cls(**{k: getattr(cam, k) for k in cls.__dataclass_fields__ if hasattr(cam, k)})


class Backoff:
    """Capped exponential reconnect delays: min, 2 min, 4 min, ... max; reset after a healthy connection."""

    def __init__(self, min_s: float, max_s: float, reset_after_s: float) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"backoff: need 0 < min_s <= max_s, got {min_s}, {max_s}")
        self.min_s, self.max_s, self.reset_after_s = min_s, max_s, reset_after_s
        self._next = min_s

    def next_delay(self, healthy_s: float = 0.0) -> float:
        """Delay before the next attempt; ``healthy_s``: how long the connection that just ended delivered frames."""
        if healthy_s >= self.reset_after_s:
            self._next = self.min_s
        delay = self._next
        self._next = min(self.max_s, self._next * 2)
        return delay


# -- hardware decode -------------------------------------------------------------------------
_hw_probe: dict[str, str | None] = {}  # device type -> None when usable, else why not
_hw_lock = threading.Lock()


def hwaccel_unavailable(device_type: str = "cuda") -> str | None:
    """None when PyAV can create a ``device_type`` decoder device here, else the reason (probed once)."""
    with _hw_lock:
        if device_type not in _hw_probe:
            try:
                from av.codec.hwaccel import HWAccel, hwdevices_available

                if device_type not in hwdevices_available():
                    raise RuntimeError(f"this PyAV/FFmpeg build has no {device_type} support")
                HWAccel(device_type=device_type).create(av.Codec("h264", "r"))
                _hw_probe[device_type] = None
            except Exception as exc:  # noqa: BLE001 - any failure means: decode in software
                _hw_probe[device_type] = f"{type(exc).__name__}: {exc}"
        return _hw_probe[device_type]


class VideoSource:
    """Frames of one camera. A file is read by one thread; a live camera by ``LiveRunner``."""

    def __init__(self, camera_id: str, source: str, input_hw: tuple[int, int], max_fps: float | None = None,
                 keep_image: bool = True, options: SourceOptions | None = None, loop: bool = False) -> None:
        self.camera_id = camera_id
        self.source = source
        self.input_hw = input_hw
        self.max_fps = max_fps
        self.keep_image = keep_image
        self.options = options or SourceOptions()
        self.live = is_live(source)
        # a file played again and again, its stream time running on (demos; the console stays up)
        self.loop = loop and not self.live
        self.loops = 0  # times the file started again
        self._pts_offset = 0.0
        # called with the seconds each kept frame took to demux, decode, convert and letterbox
        self.on_decode_s: Callable[[float], None] | None = None
        self.total_frames: int | None = None
        self.fps: float | None = None
        self.hwaccel: bool = False  # hardware decode in use (after the first open)
        self.corrupt_packets = 0
        self._container = None
        self._hw_fallback_logged = False
        self._stamp_lock = threading.Lock()
        self._index = -1  # frame index, continuous across reconnects
        self._clock0 = time.monotonic()  # live pts origin
        self._last_pts = float("-inf")
        self._next_keep: float | None = None  # max_fps: stream time of the next frame to keep
        self._corrupt_logged_at = float("-inf")
        self._corrupt_since_log = 0

    @property
    def display(self) -> str:
        return redact_url(self.source)

    # -- opening --------------------------------------------------------------------------
    def _av_options(self) -> dict[str, str]:
        o = self.options
        if not self.live:
            return {}
        io_us = str(int(o.read_timeout_s * 1_000_000))
        common = {"fflags": "+genpts+discardcorrupt", "analyzeduration": "1000000", "probesize": "1000000"}
        if self.source.startswith(("rtsp://", "rtsps://")):
            # `timeout`: socket I/O timeout in microseconds (FFmpeg >= 5); max_delay: reorder buffer (UDP)
            return {**common, "rtsp_transport": o.rtsp_transport, "timeout": io_us, "max_delay": "500000"}
        return {**common, "rw_timeout": io_us}

    def _hw(self):
        if self.options.decoder != "cuda":
            return None
        why = hwaccel_unavailable("cuda")
        if why is not None:
            self._log_hw_fallback(why)
            return None
        from av.codec.hwaccel import HWAccel

        return HWAccel(device_type="cuda")

    def _log_hw_fallback(self, why: str) -> None:
        self.options = replace(self.options, decoder="cpu")  # one log line, not one per reconnect
        if not self._hw_fallback_logged:
            self._hw_fallback_logged = True
            log.warning("camera %s: CUDA decode unavailable (%s); decoding in software", self.camera_id,
                        redact_text(why))

    def open_container(self):
        """Open one connection / the file; raises SourceError with the URL redacted."""
        kwargs: dict = {"options": self._av_options()}
        if self.live:
            kwargs["timeout"] = (self.options.open_timeout_s, self.options.read_timeout_s)
        hw = self._hw()
        try:
            try:
                container = av.open(self.source, hwaccel=hw, **kwargs)
                self.hwaccel = hw is not None
            except (av.error.FFmpegError, OSError) as exc:
                if hw is None:
                    raise
                container = av.open(self.source, **kwargs)  # opens in software: the GPU was the problem
                self._log_hw_fallback(f"{type(exc).__name__}: {exc}")
                self.hwaccel = False
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open {self.display}: {redact_text(str(exc))}") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.display} has no video stream")
        stream = container.streams.video[0]
        if not self.live:
            stream.thread_type = "AUTO"  # frame threads add a frame of delay each: files only
        self.total_frames = stream.frames or None
        self.fps = float(stream.average_rate) if stream.average_rate else self.fps
        return container

    def open(self) -> None:
        self._container = self.open_container()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    # -- decoding -------------------------------------------------------------------------
    def frames(self, stop=None) -> Iterator[Frame]:
        """Decoded frames until the stream ends (or ``stop`` is set). Corrupt packets are skipped."""
        cancelled = stop.is_set if stop is not None else (lambda: False)
        while True:
            if self._container is None:
                self.open()
            n = self._index
            yield from self.decode(self._container, cancelled)
            if not self.loop or cancelled() or self._index == n:  # a file with no frame would loop forever
                return
            self.close()  # play it again, one frame period after the last frame
            self._pts_offset = self._last_pts + 1.0 / (self.fps or 25.0)
            self._next_keep = None
            self.loops += 1

    def decode(self, container, cancelled: Callable[[], bool]) -> Iterator[Frame]:
        """Frames of one open container; ends when it ends or ``cancelled()``. Demux errors propagate."""
        stream = container.streams.video[0]
        fps = self.fps or 25.0
        t0 = time.perf_counter()
        for packet in container.demux(stream):
            if cancelled():
                return
            try:
                decoded = packet.decode()
            except av.error.ExitError:
                raise
            except av.error.FFmpegError as exc:  # a corrupt packet: the decoder recovers at the next keyframe
                self._note_corrupt(exc)
                continue
            for vf in decoded:
                with self._stamp_lock:  # an abandoned reader may wake up: it must not stamp
                    if cancelled():
                        return
                    stamped = self._stamp(vf, fps)
                if stamped is None:
                    continue
                index, pts_s, wall_s = stamped
                image = vf.to_ndarray(format="rgb24")
                padded, box = letterbox(image, self.input_hw)
                frame = Frame(self.camera_id, index, pts_s, wall_s, image if self.keep_image else None,
                              np.ascontiguousarray(padded), box)
                if self.on_decode_s is not None:
                    self.on_decode_s(time.perf_counter() - t0)
                yield frame
                t0 = time.perf_counter()

    def _stamp(self, vf, fps: float) -> tuple[int, float, float] | None:
        """(index, pts_s, wall_s) of a decoded frame, or None when max_fps skips it."""
        self._index += 1
        wall_s = time.time()
        if self.live:  # the camera's clock restarts on reconnect: stamp from our (monotonic) clock
            pts_s = max(time.monotonic() - self._clock0, self._last_pts + 1e-6)
        else:
            pts_s = self._pts_offset + (float(vf.time) if vf.time is not None else self._index / fps)
        if self.max_fps:
            period = 1.0 / self.max_fps
            nxt = self._next_keep
            if nxt is not None and pts_s + 1e-6 < nxt:
                return None
            # the next kept frame is one period later; re-anchor after gaps or pts jumps
            self._next_keep = pts_s + period if nxt is None or abs(pts_s - nxt) > period else nxt + period
        self._last_pts = pts_s
        return self._index, pts_s, wall_s

    def _note_corrupt(self, exc: BaseException) -> None:
        self.corrupt_packets += 1
        self._corrupt_since_log += 1
        now = time.monotonic()
        if now - self._corrupt_logged_at >= CORRUPT_LOG_EVERY_S:
            log.warning("camera %s: skipped %d corrupt packet(s) (%s)", self.camera_id, self._corrupt_since_log,
                        redact_text(str(exc)))
            self._corrupt_logged_at = now
            self._corrupt_since_log = 0


@dataclass
class LiveStats:
    connects: int = 0  # connections that delivered at least one frame
    attempts: int = 0
    stalls: int = 0  # watchdog firings
    abandoned_readers: int = 0  # readers still blocked in PyAV right now
    last_error: str | None = None


class _Reader(threading.Thread):
    """One connection: open, decode, emit. Never raises; sets ``error`` and ``done`` when it ends."""

    def __init__(self, source: VideoSource, emit: Callable[[Frame], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.source = source
        self.emit = emit
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.started_at = time.monotonic()
        self.first_frame_at: float | None = None
        self.last_frame_at: float | None = None
        self.error: str | None = None

    def run(self) -> None:
        container = None
        try:
            container = self.source.open_container()
            if self.cancel.is_set():
                return
            for frame in self.source.decode(container, self.cancel.is_set):
                now = time.monotonic()
                if self.first_frame_at is None:
                    self.first_frame_at = now
                self.last_frame_at = now
                self.emit(frame)
            self.error = "the stream ended"
        except SourceError as exc:
            self.error = str(exc)
        except av.error.ExitError:
            self.error = f"no data for {self.source.options.read_timeout_s:g} s (read timeout)"
        except (av.error.FFmpegError, OSError, EOFError) as exc:
            self.error = f"read failed: {redact_text(f'{type(exc).__name__}: {exc}')}"
        except Exception as exc:  # noqa: BLE001 - a live camera never ends the run; the runner logs it
            self.error = f"reader failed: {redact_text(f'{type(exc).__name__}: {exc}')}"
        finally:
            if container is not None:
                try:
                    container.close()
                except Exception:  # noqa: BLE001 - closing a broken connection may fail; it is gone anyway
                    pass
            self.done.set()


class LiveRunner:
    """Keeps one live camera connected until ``should_stop()``: reader thread + watchdog + backoff."""

    def __init__(self, source: VideoSource, emit: Callable[[Frame], None], on_status: Callable[[bool], None],
                 should_stop: Callable[[], bool]) -> None:
        self.source = source
        self.emit = emit
        self.on_status = on_status
        self.should_stop = should_stop
        o = source.options
        self.backoff = Backoff(o.reconnect_min_s, o.reconnect_max_s, o.reconnect_reset_s)
        self.stats = LiveStats()
        self._abandoned: list[_Reader] = []
        self._online: bool | None = None

    def _status(self, online: bool) -> None:
        if self._online != online:
            self._online = online
            try:
                self.on_status(online)
            except Exception as exc:  # noqa: BLE001 - a status hook must not stop the camera
                log.warning("camera %s: status callback failed: %s", self.source.camera_id, exc)

    def _sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False when asked to stop meanwhile."""
        end = time.monotonic() + seconds
        while not self.should_stop():
            left = end - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(POLL_S, left))
        return False

    def _prune(self) -> None:
        self._abandoned = [r for r in self._abandoned if not r.done.is_set()]
        self.stats.abandoned_readers = len(self._abandoned)

    def run(self) -> None:
        cam = self.source.camera_id
        stall_s = self.source.options.stall_timeout_s
        reader: _Reader | None = None
        try:
            while not self.should_stop():
                self._prune()
                if len(self._abandoned) >= MAX_ABANDONED:  # bounded: wait for PyAV to let one go
                    log.warning("camera %s: %d stalled connections still blocked; waiting before reconnecting",
                                cam, len(self._abandoned))
                    while len(self._abandoned) >= MAX_ABANDONED and self._sleep(0.5):
                        self._prune()
                    continue
                self.stats.attempts += 1
                reader = _Reader(self.source, self.emit, f"camera:{cam}/reader")
                reader.start()
                reason = None
                while not self.should_stop():
                    reader.done.wait(POLL_S)
                    if reader.first_frame_at is not None and self._online is not True:
                        self.stats.connects += 1
                        log.info("camera %s: connected to %s", cam, self.source.display)
                        self._status(True)
                    if reader.done.is_set():
                        reason = reader.error or "the stream ended"
                        break
                    since = reader.last_frame_at or reader.started_at
                    if time.monotonic() - since > stall_s:
                        self.stats.stalls += 1
                        reason = f"watchdog: no frame for {stall_s:g} s"
                        break
                healthy_s = 0.0 if reader.first_frame_at is None else (
                    (reader.last_frame_at or reader.first_frame_at) - reader.first_frame_at)
                reader.cancel.set()
                if not reader.done.is_set():
                    self._abandoned.append(reader)
                reader = None
                if reason is None:  # asked to stop
                    break
                self.stats.last_error = reason
                self._status(False)
                delay = self.backoff.next_delay(healthy_s)
                log.warning("camera %s (%s): %s; reconnecting in %.0f s", cam, self.source.display,
                            redact_text(reason), delay)
                if not self._sleep(delay):
                    break
        finally:
            if reader is not None:
                reader.cancel.set()
                self._abandoned.append(reader)
            deadline = time.monotonic() + 1.0  # give a reader between packets a moment to close its container
            for r in self._abandoned:
                r.join(timeout=max(0.0, deadline - time.monotonic()))
            self._prune()
            if self._online:
                self._status(False)
