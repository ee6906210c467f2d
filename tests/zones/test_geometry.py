import cv2
import numpy as np

from zones.geometry import _gap, boundary_points, mask_gap


def test_pruned_mask_gap_equals_brute_force():
    rng = np.random.default_rng(1)
    cell = np.array([8.0, 6.0])
    checked = 0
    for _ in range(200):
        a = np.zeros((90, 160), np.uint8)
        b = np.zeros((90, 160), np.uint8)
        cv2.fillPoly(a, [rng.integers(0, [160, 90], (6, 2)).astype(np.int32)], 1)
        cv2.fillPoly(b, [rng.integers(0, [160, 90], (5, 2)).astype(np.int32)], 1)
        a, b = a.astype(bool), b.astype(bool) & ~a.astype(bool)
        if not a.any() or not b.any():
            continue
        pa, pb = boundary_points(a) * cell, boundary_points(b) * cell
        if len(pa) * len(pb) <= 4096:
            continue
        checked += 1
        assert mask_gap(pa, pb, cell)[0] == _gap(pa, pb, cell / 2)[0]
    assert checked > 50
