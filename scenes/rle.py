"""COCO run-length encoding of ROI masks without building full-frame arrays."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def rle_counts(mask: np.ndarray, roi_xy: tuple[int, int], height: int, width: int) -> list[int]:
    """Uncompressed COCO counts (column-major, starting with a run of zeros) of a
    frame-sized mask that is zero outside `mask` placed at `roi_xy`."""
    x0, y0 = roi_xy
    mh, mw = mask.shape
    slab = np.zeros((mw, height), dtype=np.uint8)  # the ROI's columns, each a full frame column
    slab[:, y0 : y0 + mh] = mask.T
    flat = slab.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)
    counts[0] += x0 * height
    tail = (width - x0 - mw) * height
    if len(counts) % 2 == 1:  # ends with a run of zeros
        counts[-1] += tail
    elif tail:
        counts.append(tail)
    return [int(c) for c in counts]


def encode(mask: np.ndarray, roi_xy: tuple[int, int], height: int, width: int) -> dict:
    """Compressed COCO RLE {"size": [h, w], "counts": str} (pycocotools' string format)."""
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": rle_counts(mask, roi_xy, height, width)}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def decode(rle: dict) -> np.ndarray:
    """COCO RLE (compressed or not) -> bool (h, w)."""
    r = dict(rle)
    if isinstance(r["counts"], str):
        r["counts"] = r["counts"].encode("ascii")
    elif isinstance(r["counts"], list):
        r = mask_utils.frPyObjects(r, *r["size"])
    return mask_utils.decode(r).astype(bool)
