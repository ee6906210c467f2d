"""The central types that flow between stages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskwatch.engines import Letterbox
from maskwatch.engines.results import Detections, MaskSpace
from maskwatch.zones.events import AlertEvent, AlertObject

__all__ = ["AlertEvent", "AlertObject", "Detections", "Frame", "Letterbox", "MaskSpace"]


@dataclass
class Frame:
    """One decoded frame of one camera, with its model input."""

    camera_id: str
    index: int  # decoded-frame index in the stream (frames skipped by max_fps keep their numbers)
    pts_s: float  # stream clock, seconds
    wall_s: float  # epoch seconds at arrival
    image: np.ndarray | None  # full frame, RGB uint8 (h, w, 3); None when nothing needs it
    input: np.ndarray  # letterboxed model input, RGB uint8 (H, W, 3)
    letterbox: Letterbox

    @property
    def frame_wh(self) -> tuple[int, int]:
        return self.letterbox.frame_wh

    @property
    def content(self) -> np.ndarray:
        """The model input without its letterbox padding: the whole frame, scaled (a view, no copy)."""
        (x, y), (w, h) = self.letterbox.pad_xy, self.letterbox.new_wh
        return self.input[y:y + h, x:x + w]
