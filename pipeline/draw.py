"""Annotated frames and video: masks, track ids, zones (lit while a rule is active).

A side path: it reads copies and never feeds back into analytics.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import cv2
import numpy as np

from .types import Detections

log = logging.getLogger(__name__)


def _colour(track_id: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(track_id * 7919 + 17)
    return tuple(int(c) for c in rng.integers(60, 255, 3))


def annotate(image: np.ndarray, dets: Detections, names: dict[int, str], zones: dict[str, np.ndarray],
             active_zones: set[str]) -> np.ndarray:
    """Draw on a copy of an RGB frame. ``zones`` maps zone id -> polygon in frame pixels (k, 2)."""
    out = image.copy()
    if len(dets) and dets.masks is not None and dets.mask_space is not None:
        full = dets.mask_space.upsample(dets.masks)
        overlay = out.copy()
        for i in range(len(dets)):
            tid = int(dets.tracker_id[i]) if dets.tracker_id is not None else i
            overlay[full[i]] = _colour(tid)
        out = cv2.addWeighted(overlay, 0.45, out, 0.55, 0)
    for zid, poly in zones.items():
        active = zid in active_zones
        colour = (255, 40, 40) if active else (255, 220, 0)
        pts = np.round(poly).astype(np.int32)
        if active:
            layer = out.copy()
            cv2.fillPoly(layer, [pts], colour)
            out = cv2.addWeighted(layer, 0.3, out, 0.7, 0)
        cv2.polylines(out, [pts], True, colour, 2, cv2.LINE_AA)
        cv2.putText(out, zid, tuple(int(v) for v in pts[0]), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2, cv2.LINE_AA)
    for i in range(len(dets)):
        x1, y1, x2, y2 = (int(round(v)) for v in dets.xyxy[i])
        tid = int(dets.tracker_id[i]) if dets.tracker_id is not None else -1
        colour = _colour(tid if tid >= 0 else i)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 1)
        label = f"#{tid} {names.get(int(dets.class_id[i]), dets.class_id[i])} {dets.confidence[i]:.2f}"
        cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return out


class VideoWriter:
    """H.264 (yuv420p) writer through PyAV; frames are stamped by their index."""

    def __init__(self, path: str | Path, fps: float, frame_wh: tuple[int, int]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w")
        rate = max(1, int(round(fps)))
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = (frame_wh[0] // 2) * 2, (frame_wh[1] // 2) * 2
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"preset": "veryfast", "crf": "23"}
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        h, w = self._stream.height, self._stream.width
        if rgb.shape[0] != h or rgb.shape[1] != w:
            rgb = np.ascontiguousarray(rgb[:h, :w])
        vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        vf.pts = self.frames
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
