"""Appearance cue for the tracker: the mean colour of each detection's mask.

Two objects that pass each other at the same depth are one mask for a few frames; when they
part, box and mask say little about which is which, and their colours often do (two team kits,
a hi-vis vest beside dark work clothes). The colour is the mean over the mask's pixels at
mask-space resolution, so a far object of a few mask pixels still has one, given in CIE Lab,
where a distance is roughly how different two colours look.
"""

from __future__ import annotations

import numpy as np


def mask_colours(image: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean colour (n, 3) float64, CIE Lab, of each mask's pixels in ``image``.

    ``image`` is RGB uint8 showing the whole frame at any size (the frame, or the model input's
    content without its letterbox padding). Each mask pixel reads the image pixel at its centre:
    a mean over the mask needs no filtering, and reading only the masks' pixels keeps the cost
    to a small part of the tracker's (a resize of the whole image would cost more than the rest).
    The mean is of the sRGB values as stored: averaged in linear light, a small bright part (white
    shorts, a shirt number) outweighs a dark kit, and two teams' colours came out less distinct on
    a held-out clip (the tuning clips could not tell the two apart). An empty mask's colour is NaN.
    """
    n = len(masks)
    if n == 0:
        return np.zeros((0, 3))
    h, w = masks.shape[1:]
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"mask_colours: expected an RGB image (h, w, 3), got shape {image.shape}")
    ih, iw = image.shape[:2]
    det, pix = np.divmod(np.flatnonzero(masks), h * w)  # in order of det (np.nonzero on 3-D is far slower)
    y, x = np.divmod(pix, w)
    # mask pixel (x, y) covers image pixels [x * iw / w, (x + 1) * iw / w): read the one at its centre
    rgb = image[(np.arange(1, 2 * h, 2) * ih // (2 * h))[y], (np.arange(1, 2 * w, 2) * iw // (2 * w))[x]]
    count = np.bincount(det, minlength=n)
    sums = np.zeros((n, 3))
    seen = np.flatnonzero(count)
    if len(seen):
        sums[seen] = np.add.reduceat(rgb, (np.cumsum(count) - count)[seen], axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return srgb_to_lab(sums / count[:, None] / 255.0)  # empty: NaN


# sRGB primaries and D65 white, as OpenCV's RGB2Lab
_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]]) / np.array([0.950456, 1.0, 1.088754])[:, None]
_LAB_OF_F = np.array([[0.0, 500.0, 0.0], [116.0, -500.0, 200.0], [0.0, 0.0, -200.0]])  # f(X, Y, Z) -> L + 16, a, b


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab (n, 3) of sRGB colours (n, 3) in [0, 1], with OpenCV's constants: a few numpy operations
    for a few colours, where an OpenCV call costs more (its float path is slow to start)."""
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ _RGB_TO_XYZ.T
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return f @ _LAB_OF_F - np.array([16.0, 0.0, 0.0])
