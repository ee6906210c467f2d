"""Detections: the one type of parallel arrays that flows between stages.

Every per-object field has leading dimension ``n``; optional fields are ``None``.
Masks stay in *mask space* (the model's prototype resolution with the letterbox
padding cropped away); ``MaskSpace`` maps them to frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class MaskSpace:
    """Maps a mask-space raster of ``mask_wh`` onto a frame of ``frame_wh``.

    The raster covers the whole frame (padding already cropped), so the map is a
    pure per-axis scale: ``frame_x = (mask_x + 0.5) * sx - 0.5``.
    """

    mask_wh: tuple[int, int]
    frame_wh: tuple[int, int]

    @property
    def scale_xy(self) -> tuple[float, float]:
        return (self.frame_wh[0] / self.mask_wh[0], self.frame_wh[1] / self.mask_wh[1])

    @classmethod
    def identity(cls, frame_wh: tuple[int, int]) -> MaskSpace:
        return cls(tuple(frame_wh), tuple(frame_wh))  # type: ignore[arg-type]

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """Mask-space pixel coordinates (..., 2) -> frame pixel coordinates."""
        sx, sy = self.scale_xy
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([(xy[..., 0] + 0.5) * sx - 0.5, (xy[..., 1] + 0.5) * sy - 0.5], axis=-1)

    def from_frame(self, xy: np.ndarray) -> np.ndarray:
        """Frame pixel coordinates (..., 2) -> mask-space pixel coordinates."""
        sx, sy = self.scale_xy
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([(xy[..., 0] + 0.5) / sx - 0.5, (xy[..., 1] + 0.5) / sy - 0.5], axis=-1)

    def upsample(self, masks: np.ndarray) -> np.ndarray:
        """Boolean masks (n, h, w) in mask space -> (n, H, W) at frame resolution.

        For drawing only; exact (retina) masks come from the logits in engines.postprocess.
        """
        fw, fh = self.frame_wh
        out = np.zeros((len(masks), fh, fw), dtype=bool)
        for i, m in enumerate(masks):
            out[i] = cv2.resize(m.astype(np.uint8), (fw, fh), interpolation=cv2.INTER_LINEAR) > 0
        return out


def _check(name: str, arr: np.ndarray | None, n: int, tail: tuple | None = None) -> None:
    if arr is None:
        return
    if arr.ndim == 0 or arr.shape[0] != n:
        raise ValueError(f"Detections.{name}: leading dimension must be {n}, got shape {arr.shape}")
    if tail is not None and arr.shape[1:] != tail:
        raise ValueError(f"Detections.{name}: expected shape (n, {', '.join(map(str, tail))}), got {arr.shape}")


@dataclass
class Detections:
    """Parallel arrays for n objects in one frame (after NMS, optionally tracked)."""

    xyxy: np.ndarray  # float32 (n, 4), frame pixels
    confidence: np.ndarray  # float32 (n,)
    class_id: np.ndarray  # int32 (n,)
    masks: np.ndarray | None = None  # bool (n, h, w), mask space
    mask_space: MaskSpace | None = None
    tracker_id: np.ndarray | None = None  # int64 (n,)
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int32).reshape(-1)
        _check("confidence", self.confidence, n)
        _check("class_id", self.class_id, n)
        if self.masks is not None:
            self.masks = np.asarray(self.masks, dtype=bool)
            if self.masks.ndim != 3:
                raise ValueError(f"Detections.masks: expected (n, h, w), got shape {self.masks.shape}")
            _check("masks", self.masks, n)
            if self.mask_space is None:
                raise ValueError("Detections.masks given without mask_space")
            if self.masks.shape[1:] != (self.mask_space.mask_wh[1], self.mask_space.mask_wh[0]):
                raise ValueError(
                    f"Detections.masks: shape {self.masks.shape[1:]} does not match mask space "
                    f"{self.mask_space.mask_wh[::-1]}"
                )
        if self.tracker_id is not None:
            self.tracker_id = np.asarray(self.tracker_id, dtype=np.int64).reshape(-1)
            _check("tracker_id", self.tracker_id, n)
        for key, value in self.data.items():
            value = np.asarray(value)
            _check(f"data[{key!r}]", value, n)
            self.data[key] = value

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1 if index != -1 else None)
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            masks=None if self.masks is None else self.masks[index],
            mask_space=self.mask_space,
            tracker_id=None if self.tracker_id is None else self.tracker_id[index],
            data={k: v[index] for k, v in self.data.items()},
        )

    @classmethod
    def empty(cls, mask_space: MaskSpace | None = None) -> Detections:
        masks = None
        if mask_space is not None:
            masks = np.zeros((0, mask_space.mask_wh[1], mask_space.mask_wh[0]), dtype=bool)
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), masks, mask_space)

    @property
    def area(self) -> np.ndarray:
        """Mask area in mask-space pixels (box area in frame pixels when there are no masks)."""
        if self.masks is not None:
            return self.masks.reshape(len(self), -1).sum(axis=1)
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return wh[:, 0] * wh[:, 1]
