"""Geometry in mask space and on the ground: rasters, homography, mask distances, line sides."""

from __future__ import annotations

import numpy as np
import shapely


def rasterize(polygon_px: list[tuple[float, float]], frame_wh: tuple[int, int], mask_wh: tuple[int, int]) -> np.ndarray:
    """Boolean raster (mask_h, mask_w) of a frame-pixel polygon on a grid covering the frame.

    A cell is inside when its centre (in frame pixels) is inside or on the polygon. Done
    once per camera, so exactness beats speed here.
    """
    sx, sy = frame_wh[0] / mask_wh[0], frame_wh[1] / mask_wh[1]
    xs = (np.arange(mask_wh[0]) + 0.5) * sx
    ys = (np.arange(mask_wh[1]) + 0.5) * sy
    poly = shapely.Polygon(polygon_px)
    shapely.prepare(poly)
    gx, gy = np.meshgrid(xs, ys)
    return shapely.intersects_xy(poly, gx.ravel(), gy.ravel()).reshape(mask_wh[1], mask_wh[0])


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares homography (DLT with normalisation) mapping src (k, 2) to dst (k, 2), k >= 4.

    Raises ValueError when the points are degenerate (three or more collinear among four,
    repeated points, or a rank-deficient system).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)

    def normalise(p):
        c = p.mean(axis=0)
        d = np.sqrt(((p - c) ** 2).sum(axis=1)).mean()
        if d < 1e-12:
            raise ValueError("points coincide")
        s = np.sqrt(2) / d
        t = np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1]])
        return (np.c_[p, np.ones(len(p))] @ t.T)[:, :2], t

    for name, pts in (("image", src), ("ground", dst)):
        if shapely.MultiPoint(pts).convex_hull.area < 1e-9 * max(1.0, np.ptp(pts) ** 2):
            raise ValueError(f"{name} points are collinear")
    ps, ts = normalise(src)
    pd, td = normalise(dst)
    rows = []
    for (x, y), (u, v) in zip(ps, pd):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    a = np.array(rows)
    _, s, vt = np.linalg.svd(a)
    if s[-2] < 1e-9 * s[0]:
        raise ValueError("points do not determine a homography (degenerate configuration)")
    h = vt[-1].reshape(3, 3)
    h = np.linalg.inv(td) @ h @ ts
    if abs(h[2, 2]) < 1e-12:
        raise ValueError("degenerate homography")
    h = h / h[2, 2]
    if np.linalg.cond(h) > 1e12:
        raise ValueError("homography is singular")
    return h


def project(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a homography to points (k, 2)."""
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    w = p[:, 2:3]
    w = np.where(np.abs(w) < 1e-12, 1e-12, w)
    return p[:, :2] / w


def boundary_points(mask: np.ndarray, max_points: int = 4096) -> np.ndarray:
    """Mask-space (x, y) centres of the mask's boundary cells, subsampled to at most max_points."""
    m = mask
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    ys, xs = np.nonzero(m & ~inner)
    if len(xs) > max_points:
        step = int(np.ceil(len(xs) / max_points))
        xs, ys = xs[::step], ys[::step]
    return np.stack([xs + 0.5, ys + 0.5], axis=1).astype(np.float64)


def _gap(a: np.ndarray, b: np.ndarray, half: np.ndarray) -> tuple[float, int, int]:
    delta = b[None, :, :] - a[:, None, :]
    gap = np.maximum(np.abs(delta) - 2 * half, 0.0)
    d2 = (gap**2).sum(axis=2)
    i, j = np.unravel_index(int(np.argmin(d2)), d2.shape)
    return float(np.sqrt(d2[i, j])), int(i), int(j)


def _near_box(p: np.ndarray, q: np.ndarray, half: np.ndarray, bound: float) -> np.ndarray:
    """Points of p whose gap to q's bounding box is at most bound (a lower bound of their gap to q)."""
    lo, hi = q.min(axis=0), q.max(axis=0)
    d = np.maximum(np.maximum(lo - p, p - hi) - 2 * half, 0.0)
    return p[(d**2).sum(axis=1) <= bound**2 + 1e-9]


def mask_gap(a: np.ndarray, b: np.ndarray, cell: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Smallest gap between two masks given their boundary cell centres (k, 2), (l, 2) in pixels.

    Cells are rectangles of size ``cell`` (w, h): touching cells have gap 0. Returns the gap
    and the two nearest points on the cells' edges (for projecting onto the ground). Large
    sets are pruned exactly: a coarse gap on every n-th point bounds the true gap, and only
    points within that bound of the other mask's box can be the nearest pair.
    """
    half = np.asarray(cell, np.float64) / 2
    if len(a) * len(b) > 4096:
        bound, _, _ = _gap(a[:: max(1, len(a) // 32)], b[:: max(1, len(b) // 32)], half)
        a, b = _near_box(a, b, half, bound), _near_box(b, a, half, bound)
    d, i, j = _gap(a, b, half)
    step = np.clip(b[j] - a[i], -half, half)
    return d, a[i] + step, b[j] - step


def ground_quads(h: np.ndarray, xyxy: np.ndarray, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 4) xyxy in frame pixels -> their corners on the ground (n, 4, 2), and whether
    each box lies wholly on the ground side of the horizon (``sign``: the sign of the homography's
    w for visible ground points). A homography maps such a box to a convex quad that holds the
    ground image of every point in the box."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    pts = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1)  # (n, 4, 2)
    p = np.concatenate([pts, np.ones((*pts.shape[:2], 1))], axis=2) @ h.T
    w = p[..., 2] * sign
    ok = np.all(w > 1e-9, axis=1)
    return p[..., :2] / np.where(ok[:, None, None], p[..., 2:3], 1.0), ok


def convex_gap_bound(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A lower bound of the distance between convex polygons a[k] and b[k] ((m, v, 2) each, vertices
    in order): the largest gap between their projections on any edge normal (separating axes).
    0 when they overlap; equal to the distance when an edge separates them."""
    edges = np.concatenate([np.roll(a, -1, axis=1) - a, np.roll(b, -1, axis=1) - b], axis=1)  # (m, 2v, 2)
    normals = np.stack([-edges[..., 1], edges[..., 0]], axis=-1)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    pa = np.einsum("mvd,mnd->mnv", a, normals)  # (m, 2v, v)
    pb = np.einsum("mvd,mnd->mnv", b, normals)
    gap = np.maximum(pb.min(-1) - pa.max(-1), pa.min(-1) - pb.max(-1))
    return np.maximum(gap.max(axis=1), 0.0)


def segments_intersect(p1, p2, q1, q2) -> bool:
    """Whether segment p1-p2 meets segment q1-q2 (touching counts)."""
    def orient(a, b, c):
        v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return 0 if abs(v) < 1e-12 else (1 if v > 0 else -1)

    def on(a, b, c):
        return min(a[0], b[0]) - 1e-12 <= c[0] <= max(a[0], b[0]) + 1e-12 and \
            min(a[1], b[1]) - 1e-12 <= c[1] <= max(a[1], b[1]) + 1e-12

    o1, o2, o3, o4 = orient(p1, p2, q1), orient(p1, p2, q2), orient(q1, q2, p1), orient(q1, q2, p2)
    if o1 != o2 and o3 != o4:
        return True
    return (o1 == 0 and on(p1, p2, q1)) or (o2 == 0 and on(p1, p2, q2)) or \
        (o3 == 0 and on(q1, q2, p1)) or (o4 == 0 and on(q1, q2, p2))
