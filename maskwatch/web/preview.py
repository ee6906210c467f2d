"""Live views: the latest analysed frame of a camera, drawn and JPEG-encoded only while someone watches.

A view is drawn on the frame's model-input content (the letterboxed input without its padding: 640x360 for a
720p camera with a 640-wide model), which is already in memory, so a view costs one drawing and one JPEG
encode at that size. A drawn frame is cached until the camera has a newer one, so several viewers of a camera
share the work. Nothing here runs on a stage's thread, and nothing a stage does waits for it.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from maskwatch.pipeline.draw import annotate

from .backend import Backend


class Previews:
    def __init__(self, backend: Backend, jpeg_quality: int = 80) -> None:
        self.backend = backend
        self.jpeg_quality = jpeg_quality
        self._cache: dict[tuple[str, bool], tuple[int, bytes]] = {}  # (camera, raw) -> (id of the frame, jpeg)
        self._lock = threading.Lock()
        self.rendered = 0  # frames drawn and encoded (not counting cache hits)

    def jpeg(self, cid: str, raw: bool = False) -> tuple[int, bytes] | None:
        """(a token of the frame, JPEG bytes) of the camera's latest frame; None before the first."""
        latest = self.backend.latest(cid)
        if latest is None:
            return None
        frame = latest[0]
        token = id(frame)
        key = (cid, raw)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] == token:
            return cached
        image = self.draw(latest, raw)
        ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:  # pragma: no cover - OpenCV cannot fail on a uint8 image
            return None
        out = (token, buf.tobytes())
        with self._lock:
            self._cache[key] = out
            self.rendered += 1
        return out

    def draw(self, latest: tuple, raw: bool) -> np.ndarray:
        frame, dets, active, zone_file = latest
        image = np.ascontiguousarray(frame.content)
        if raw:
            return image
        polys = {}
        if zone_file is not None:
            polys = {z.id: np.array(zone_file.polygon_px(z.id, frame.frame_wh)) for z in zone_file.zones}
        if dets is None:
            from maskwatch.engines.results import Detections

            dets = Detections.empty()
        return annotate(image, dets, self.backend.names, polys, set(active), frame_wh=frame.frame_wh)
