import cv2
import numpy as np

from maskwatch.zones.geometry import _gap, boundary_points, mask_gap


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


def test_convex_gap_bound_is_a_lower_bound_and_exact_across_an_edge():
    from shapely.geometry import Polygon

    from maskwatch.zones.geometry import convex_gap_bound

    rng = np.random.default_rng(2)
    quads = []
    for _ in range(400):
        c = rng.uniform(-10, 10, 2)
        pts = c + rng.uniform(0.5, 4.0, 2) * np.stack([np.cos(t := np.sort(rng.uniform(0, 2 * np.pi, 4))), np.sin(t)], 1)
        quads.append(pts)
    a, b = np.array(quads[:200]), np.array(quads[200:])
    bound = convex_gap_bound(a, b)
    exact = np.array([Polygon(p).distance(Polygon(q)) for p, q in zip(a, b)])
    assert np.all(bound <= exact + 1e-9)
    assert np.any(bound > 0) and np.any(exact == 0)
    # two rectangles side by side: an edge separates them, the bound is the distance
    r1 = np.array([[0, 0], [2, 0], [2, 1], [0, 1]], float)
    assert convex_gap_bound(r1[None], (r1 + [5, 0.5])[None])[0] == np.float64(3.0)


def test_metre_proximity_pruning_keeps_every_result():
    """The ground-quad pruning of proximity pairs changes no distance and no decision."""
    from maskwatch.zones.engine import ZoneEngine, _Frame
    from maskwatch.zones.schema import parse_zone_file

    zf = parse_zone_file({"units": "normalized", "zones": [{"id": "z", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
                          "calibration": {"image": [[0.1, 0.5], [0.9, 0.5], [0.95, 0.95], [0.05, 0.95]],
                                          "ground": [[0, 40], [30, 40], [30, 0], [0, 0]]},
                          "rules": [{"id": "p", "type": "proximity", "classes": ["a"], "near": ["b"],
                                     "max_distance": 3.0, "units": "m"}]})
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(30):
        eng = ZoneEngine(zf, "c", (320, 180), (80, 45))
        n = 10
        masks = np.zeros((n, 45, 80), bool)
        boxes = []
        for k in range(n):
            x, y = rng.integers(0, 72), rng.integers(24, 40)
            w, h = rng.integers(2, 8), rng.integers(2, 5)
            masks[k, y : y + h, x : x + w] = True
            boxes.append([x * 4, y * 4, (x + w) * 4, (y + h) * 4])
        names = ["a" if k < 4 else "b" for k in range(n)]
        f = _Frame(eng, np.arange(1, n + 1), names, np.full(n, 0.9), np.array(boxes, float), masks, None)
        pruned = eng._proximity(eng.rules[0], f)
        eng._ground_sign = np.nan  # no box counts as on the ground: nothing pruned
        full = eng._proximity(eng.rules[0], f)
        assert [(c.key, c.value) for c in pruned] == [(c.key, c.value) for c in full]
        hits += len(full)
    assert hits > 0
