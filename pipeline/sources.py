"""Video sources: decode with PyAV, stamp times, letterbox for the engine.

Files decode losslessly; URLs (rtsp://, http://) open with low-latency options.
Reconnection and watchdogs for live cameras come with the live-camera work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import av
import numpy as np

from engines import letterbox

from .config import is_url
from .redact import redact_url
from .types import Frame

log = logging.getLogger(__name__)

RTSP_OPTIONS = {"rtsp_transport": "tcp", "timeout": "10000000", "fflags": "nobuffer+genpts+discardcorrupt"}


class SourceError(RuntimeError):
    pass


class VideoSource:
    """Iterates ``Frame``s of one camera. Not thread-safe: one thread owns it."""

    def __init__(self, camera_id: str, source: str, input_hw: tuple[int, int], max_fps: float | None = None,
                 keep_image: bool = True) -> None:
        self.camera_id = camera_id
        self.source = source
        self.input_hw = input_hw
        self.max_fps = max_fps
        self.keep_image = keep_image
        self.live = is_url(source) and not source.startswith("file:")
        self.total_frames: int | None = None
        self.fps: float | None = None
        self._container = None

    def open(self) -> None:
        options = dict(RTSP_OPTIONS) if self.source.startswith("rtsp") else {}
        try:
            self._container = av.open(self.source, options=options, timeout=(10.0, 10.0))
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open {redact_url(self.source)}: {exc}") from None
        if not self._container.streams.video:
            self.close()
            raise SourceError(f"{redact_url(self.source)} has no video stream")
        stream = self._container.streams.video[0]
        if not self.live:
            stream.thread_type = "AUTO"
        self.total_frames = stream.frames or None
        self.fps = float(stream.average_rate) if stream.average_rate else None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def frames(self, stop=None) -> Iterator[Frame]:
        """Decoded frames until the stream ends (or ``stop`` is set). Corrupt packets are skipped."""
        if self._container is None:
            self.open()
        stream = self._container.streams.video[0]
        period = 1.0 / self.max_fps if self.max_fps else 0.0
        next_pts = None
        index = -1
        fps = self.fps or 25.0
        for packet in self._container.demux(stream):
            if stop is not None and stop.is_set():
                return
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError as exc:
                log.warning("camera %s: skipped a corrupt packet (%s)", self.camera_id, exc)
                continue
            for vf in decoded:
                index += 1
                pts_s = float(vf.time) if vf.time is not None else index / fps
                if period:
                    if next_pts is not None and pts_s + 1e-6 < next_pts:
                        continue
                    # the next kept frame is one period later; re-anchor after gaps or pts jumps
                    next_pts = pts_s + period if next_pts is None or abs(pts_s - next_pts) > period else next_pts + period
                wall_s = time.time()
                image = vf.to_ndarray(format="rgb24")
                padded, box = letterbox(image, self.input_hw)
                yield Frame(self.camera_id, index, pts_s, wall_s, image if self.keep_image else None,
                            np.ascontiguousarray(padded), box)
