"""Calibration frames for INT8 quantization, from the user's own footage: a video file, a folder of images, or a
live camera sampled for a while. Frames come letterboxed to the model's input, as inference sees them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from maskwatch.engines import letterbox
from maskwatch.engines.quantize import CalibrationError

from .config import is_url
from .redact import redact_url
from .sources import SourceOptions, VideoSource

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def calibration_frames(source: str | Path, input_hw: tuple[int, int], n: int) -> Iterator[np.ndarray]:
    """Up to ``n`` letterboxed RGB frames from ``source``, spread evenly over a file or folder (a live URL: its
    next ``n`` frames)."""
    if n < 1:
        raise CalibrationError(f"frames must be >= 1, got {n}")
    src = str(source)
    path = Path(src)
    if not is_url(src) and path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CalibrationError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        for f in files[:: max(1, len(files) // n)][:n]:
            bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if bgr is None:
                log.warning("calibration: skipped unreadable image %s", f)
                continue
            yield letterbox(np.ascontiguousarray(bgr[..., ::-1]), input_hw)[0]
        return
    if not is_url(src) and not path.is_file():
        raise CalibrationError(f"{src}: not a video file, an image folder or a camera URL")
    video = VideoSource("calibration", src, input_hw, keep_image=False,
                        options=SourceOptions(open_timeout_s=10.0, read_timeout_s=5.0))
    video.open()
    total = video.total_frames
    step = max(1, total // n) if total else 1
    given = 0
    try:
        for frame in video.frames():
            if frame.index % step == 0:
                yield frame.input
                given += 1
                if given >= n:
                    break
    finally:
        video.close()
    log.info("calibration: %d frames from %s", given, redact_url(src))
