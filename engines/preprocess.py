"""Pre-processing shared by every backend: Ultralytics' letterbox and batch assembly.

The letterbox reproduces ``ultralytics.data.augment.LetterBox`` (``auto=False``, ``center=True``,
``scaleup=True``) exactly: the same scale, the same rounding of the resized size, the same split of
the padding (``round(d - 0.1)`` before, ``round(d + 0.1)`` after), pad value 114 and
``cv2.INTER_LINEAR``. It is channel-agnostic: maskwatch letterboxes RGB frames, Ultralytics BGR ones,
and since every channel gets the same treatment the results agree after its BGR->RGB flip.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How one frame was fitted into the model input.

    ``scale`` is the single resize ratio ``r``; the resized content is ``new_wh`` (each side rounded
    separately, at least 1 px) and sits at ``pad_xy`` = (left, top) in an ``input_wh`` canvas.
    """

    frame_wh: tuple[int, int]
    input_wh: tuple[int, int]
    scale: float
    pad_xy: tuple[int, int]
    new_wh: tuple[int, int]

    @classmethod
    def fit(cls, frame_wh: tuple[int, int], input_hw: tuple[int, int]) -> Letterbox:
        """Letterbox parameters for a frame of ``frame_wh`` into a model input of ``input_hw``."""
        w, h = (int(v) for v in frame_wh)
        ih, iw = (int(v) for v in input_hw)
        if w <= 0 or h <= 0:
            raise ValueError(f"letterbox: frame size must be positive, got {w}x{h} (w x h)")
        if iw <= 0 or ih <= 0:
            raise ValueError(f"letterbox: input size must be positive, got {ih}x{iw} (h x w)")
        r = min(ih / h, iw / w)
        new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
        dw, dh = (iw - new_w) / 2, (ih - new_h) / 2
        return cls((w, h), (iw, ih), r, (round(dw - 0.1), round(dh - 0.1)), (new_w, new_h))

    @property
    def input_hw(self) -> tuple[int, int]:
        return (self.input_wh[1], self.input_wh[0])

    @property
    def frame_hw(self) -> tuple[int, int]:
        return (self.frame_wh[1], self.frame_wh[0])

    @property
    def gain_xy(self) -> tuple[float, float]:
        """Per-axis resize gain (input px per frame px) as Ultralytics' ``scale_boxes`` uses it."""
        return (self.new_wh[0] / self.frame_wh[0], self.new_wh[1] / self.frame_wh[1])

    def to_frame_xyxy(self, xyxy: np.ndarray, clip: bool = True) -> np.ndarray:
        """Boxes (n, 4) in model-input pixels -> float32 frame pixels (clipped to the frame)."""
        gx, gy = self.gain_xy
        px, py = self.pad_xy
        out = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4) - np.array([px, py, px, py], np.float32)
        out /= np.array([gx, gy, gx, gy], np.float32)  # subtract, then divide: Ultralytics' order
        if clip:
            w, h = self.frame_wh
            np.clip(out, 0, np.array([w, h, w, h], np.float32), out=out)
        return out

    def to_input_xyxy(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes (n, 4) in frame pixels -> float32 model-input pixels."""
        out = np.array(xyxy, dtype=np.float32, copy=True).reshape(-1, 4)
        gx, gy = self.gain_xy
        px, py = self.pad_xy
        out[:, [0, 2]] = out[:, [0, 2]] * gx + px
        out[:, [1, 3]] = out[:, [1, 3]] * gy + py
        return out


def letterbox(
    image: np.ndarray, input_hw: tuple[int, int], out: np.ndarray | None = None
) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (H, W[, C]) into ``input_hw`` keeping its aspect ratio, padding with 114.

    ``out`` (input_h, input_w[, C], same dtype) is filled in place when given, so a caller can
    reuse one buffer per camera. Returns the padded image and its ``Letterbox``.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"letterbox: expected an image (H, W) or (H, W, C), got shape {image.shape}")
    h, w = image.shape[:2]
    box = Letterbox.fit((w, h), input_hw)
    ih, iw = box.input_hw
    shape = (ih, iw, *image.shape[2:])
    if out is None:
        out = np.empty(shape, dtype=image.dtype)
    elif out.shape != shape or out.dtype != image.dtype:
        raise ValueError(f"letterbox: out must be {shape} {image.dtype}, got {out.shape} {out.dtype}")
    nw, nh = box.new_wh
    left, top = box.pad_xy
    if (w, h) != (nw, nh):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        if image.ndim == 2 and len(shape) == 3:  # cv2 drops a trailing channel axis of size 1
            image = image[..., None]
    out[:top] = PAD_VALUE
    out[top + nh :] = PAD_VALUE
    out[top : top + nh, :left] = PAD_VALUE
    out[top : top + nh, left + nw :] = PAD_VALUE
    out[top : top + nh, left : left + nw] = image
    return out, box


class InputBatch:
    """A reused float32 (B, 3, H, W) buffer filled from letterboxed RGB uint8 HWC images.

    ``fill(images)`` returns a view of the first ``len(images)`` slots; the buffer only grows when a
    larger batch arrives, so steady-state assembly allocates nothing. Not thread-safe: one per
    inference thread.
    """

    def __init__(self, input_hw: tuple[int, int], capacity: int = 1) -> None:
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self._buf = np.empty((max(1, int(capacity)), 3, *self.input_hw), dtype=np.float32)

    @property
    def capacity(self) -> int:
        return len(self._buf)

    def fill(self, images: list[np.ndarray]) -> np.ndarray:
        n = len(images)
        if n == 0:
            raise ValueError("InputBatch.fill: no images")
        if n > len(self._buf):
            self._buf = np.empty((n, 3, *self.input_hw), dtype=np.float32)
        h, w = self.input_hw
        for i, img in enumerate(images):
            if img.shape != (h, w, 3) or img.dtype != np.uint8:
                raise ValueError(
                    f"model input {i}: expected a letterboxed RGB uint8 image of shape ({h}, {w}, 3), "
                    f"got {img.shape} {img.dtype}"
                )
            # Same float32 arithmetic as Ultralytics (uint8 -> float32, then / 255), so inputs are bit-equal.
            np.divide(img.transpose(2, 0, 1), np.float32(255), out=self._buf[i], dtype=np.float32)
        return self._buf[:n]
