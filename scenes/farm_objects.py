"""Farm object models: cows (coat patterns, walking, grazing, lying) and the unlabelled farm fixtures
(post-and-rail or wire fences, a tube gate, a feed fence, a water trough, bales, buckets, posts, a
trailer), each turned into flat polygons as in `objects`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .objects import _axes, _frame
from .render import Item, Line, Painter, Part, order_parts, to_fixed

UP = np.array([0.0, 1.0, 0.0])

COAT_KINDS = ("black", "brown", "patched", "light")
BROWNS = [(30, 55, 110), (35, 70, 140), (45, 85, 150), (25, 45, 90), (55, 95, 160), (20, 35, 70)]
LIGHTS = [(175, 205, 225), (212, 218, 222), (175, 180, 185), (140, 180, 210), (195, 215, 228)]
HOOF = (35, 38, 42)


@dataclass
class Coat:
    """Colours of a cow. `grid`: smooth random values over the body (along x around); a patch where
    a value is above `thresh` (patched coats only)."""

    kind: str
    base: tuple
    patch: tuple | None = None
    grid: np.ndarray | None = None
    thresh: float = 0.0
    head: tuple | None = None  # None: the body pattern continues on the head
    belly: tuple | None = None  # underside colour (Hereford-like white)
    lower_leg: tuple = (0, 0, 0)
    muzzle: tuple = (60, 60, 70)
    udder: bool = False

    def at(self, u: float, theta: float) -> tuple:
        """Colour at `u` in [0, 1] along the body (rump to chest) and angle `theta` round it (pi/2: back)."""
        if self.belly is not None and np.sin(theta) < -0.55:
            return self.belly
        if self.grid is None:
            return self.base
        nu, nt = self.grid.shape
        x = float(np.clip(u, 0.0, 1.0)) * (nu - 1)
        y = (theta % (2 * np.pi)) / (2 * np.pi) * nt
        i0, j0 = int(min(x, nu - 2)), int(y) % nt
        fx, fy = x - i0, y - int(y)
        g = self.grid
        v = (g[i0, j0] * (1 - fx) * (1 - fy) + g[i0 + 1, j0] * fx * (1 - fy)
             + g[i0, (j0 + 1) % nt] * (1 - fx) * fy + g[i0 + 1, (j0 + 1) % nt] * fx * fy)
        return self.patch if v > self.thresh else self.base


def random_coat(rng: np.random.Generator, kind: str | None = None) -> Coat:
    kind = kind or str(rng.choice(COAT_KINDS, p=[0.25, 0.25, 0.35, 0.15]))
    jit = lambda c, a=0.12: tuple(int(np.clip(v * rng.uniform(1 - a, 1 + a), 0, 255)) for v in c)  # noqa: E731
    if kind == "black":
        base = jit((28, 27, 31), 0.3)
        return Coat(kind, base, lower_leg=base, muzzle=(45, 45, 52), udder=rng.uniform() < 0.3)
    if kind == "brown":
        base = jit(BROWNS[int(rng.integers(len(BROWNS)))])
        white = jit((222, 226, 228), 0.05)
        hereford = rng.uniform() < 0.35
        return Coat(kind, base, head=white if hereford else None, belly=white if hereford else None,
                    lower_leg=white if hereford else base, muzzle=(120, 130, 175) if hereford else (50, 55, 70),
                    udder=rng.uniform() < 0.3)
    if kind == "patched":
        white = jit((224, 227, 230), 0.05)
        patch = jit((26, 26, 30), 0.2) if rng.uniform() < 0.75 else jit(BROWNS[int(rng.integers(3))])
        g = rng.standard_normal((7, 10))
        g = (g + np.roll(g, 1, 1) + np.roll(g, -1, 1) + 0.6 * np.roll(g, 1, 0)) / 3.6  # blobs, not speckle
        thresh = float(np.quantile(g, rng.uniform(0.3, 0.65)))
        return Coat(kind, white, patch, g, thresh, lower_leg=white, muzzle=(140, 145, 185), udder=rng.uniform() < 0.7)
    base = jit(LIGHTS[int(rng.integers(len(LIGHTS)))], 0.06)
    return Coat("light", base, lower_leg=base, muzzle=(150, 160, 200), udder=rng.uniform() < 0.3)


# ---- meshes ---------------------------------------------------------------------------------

def tube(painter: Painter, centers: np.ndarray, side: np.ndarray, hw, hh, m: int, color,
         caps: tuple[bool, bool] = (True, True)) -> list[tuple[float, Part]]:
    """A tube of elliptic cross-sections (half width `hw` along `side`, half height `hh` across) through
    `centers` ((k, 3), world), as shaded quads facing the camera: (depth, part) pairs.

    `color`: one colour, one per segment (k - 1), or an array (k - 1, m, 3) per quad (coat patterns)."""
    return tubes(painter, [(centers, side, hw, hh, m, color, caps)])


def tubes(painter: Painter, specs: list[tuple]) -> list[tuple[float, Part]]:
    """Several tubes (`tube`'s arguments each); those with as many stations and sides are done at once."""
    groups: dict[tuple[int, int], list[tuple]] = {}
    for sp in specs:
        groups.setdefault((len(sp[0]), int(sp[4])), []).append(sp)
    out: list[tuple[float, Part]] = []
    for (k, m), grp in groups.items():
        out += _tube_batch(painter, k, m, grp)
    return out


def _tube_batch(painter: Painter, k: int, m: int, grp: list[tuple]) -> list[tuple[float, Part]]:
    cam = painter.cam
    B = len(grp)
    c = np.stack([np.asarray(sp[0], np.float64) for sp in grp])  # (B, k, 3)
    side = np.stack([np.asarray(sp[1], np.float64) for sp in grp])  # (B, 3)
    hw = np.stack([np.broadcast_to(np.asarray(sp[2], np.float64), (k,)) for sp in grp])
    hh = np.stack([np.broadcast_to(np.asarray(sp[3], np.float64), (k,)) for sp in grp])
    cols = []
    for sp in grp:
        col = np.asarray(sp[5], np.float64)
        if col.ndim == 1:
            col = np.broadcast_to(col, (k - 1, m, 3))
        elif col.ndim == 2:
            col = np.broadcast_to(col[:, None, :], (k - 1, m, 3))
        cols.append(col)
    col = np.stack(cols)  # (B, k-1, m, 3)
    t = np.gradient(c, axis=1)
    t /= np.linalg.norm(t, axis=-1, keepdims=True) + 1e-12
    s = side[:, None, :] - (t * side[:, None, :]).sum(-1, keepdims=True) * t
    s /= np.linalg.norm(s, axis=-1, keepdims=True) + 1e-12
    up = np.cross(t, s)
    th = 2 * np.pi * np.arange(m) / m
    ring = (c[:, :, None, :] + (hh[:, :, None] * np.sin(th))[..., None] * up[:, :, None, :]
            + (hw[:, :, None] * np.cos(th))[..., None] * s[:, :, None, :])  # (B, k, m, 3)
    uv = to_fixed(cam.project(ring.reshape(-1, 3))).reshape(B, k, m, 2)
    j1 = (np.arange(m) + 1) % m
    thm = th + np.pi / m
    hwm, hhm = (hw[:, :-1] + hw[:, 1:]) / 2, (hh[:, :-1] + hh[:, 1:]) / 2
    upm, sm = (up[:, :-1] + up[:, 1:]) / 2, (s[:, :-1] + s[:, 1:]) / 2
    n = ((np.sin(thm) / np.maximum(hhm, 1e-6)[..., None])[..., None] * upm[:, :, None, :]
         + (np.cos(thm) / np.maximum(hwm, 1e-6)[..., None])[..., None] * sm[:, :, None, :])  # (B, k-1, m, 3)
    n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-12
    mid = (ring[:, :-1] + ring[:, :-1][:, :, j1] + ring[:, 1:] + ring[:, 1:][:, :, j1]) / 4
    campos = cam.position
    facing = ((campos - mid) * n).sum(-1) > 0
    out: list[tuple[float, Part]] = []
    if facing.any():
        light = painter.ambient + (1.0 - painter.ambient) * np.clip(n @ painter.light, 0.0, None)
        lit = np.clip(col * (light * 1.15)[..., None], 0, 255).astype(np.int32).tolist()
        depth = cam.depth(mid).tolist()
        quads = np.stack([uv[:, :-1], uv[:, :-1][:, :, j1], uv[:, 1:][:, :, j1], uv[:, 1:]], axis=3)
        for b, a, j in zip(*np.nonzero(facing)):
            out.append((depth[b][a][j], Part(quads[b, a, j], tuple(lit[b][a][j]))))
    for b, sp in enumerate(grp):
        caps = sp[6]
        for end, normal in ((0, -t[b, 0]), (k - 1, t[b, -1])):
            if not caps[0 if end == 0 else 1]:
                continue
            cen = c[b, end]
            if np.dot(normal, campos - cen) <= 0:
                continue
            out.append((float(cam.depth(cen)), Part(uv[b, end].copy(), painter.lit(col[b, min(end, k - 2), m // 4], normal))))
    return out


# trunk stations, standing: (x along the body, centre height, half width, half height), metres at size 1
TRUNK = np.array([
    (-0.90, 1.03, 0.12, 0.15),
    (-0.82, 1.01, 0.24, 0.30),
    (-0.55, 0.99, 0.31, 0.36),
    (-0.18, 0.97, 0.34, 0.40),
    (0.20, 0.98, 0.33, 0.39),
    (0.50, 1.01, 0.28, 0.35),
    (0.70, 1.01, 0.19, 0.27),
    (0.78, 1.03, 0.10, 0.15),
])
LEGS = ((0.52, -1, 0.25), (0.52, 1, 0.75), (-0.62, -1, 0.0), (-0.62, 1, 0.5))  # (x, side, gait phase offset)
DETAIL = {2: (TRUNK, 10, 8, 6), 1: (TRUNK[[0, 1, 3, 5, 7]], 6, 5, 4), 0: (TRUNK[[0, 2, 4, 7]], 5, 4, 3)}


def _spec(centers, side, hw, hh, m, color, caps=(True, True)) -> tuple:
    return (centers, side, hw, hh, m, color, caps)


def _lerp(a, b, w):
    return a + (b - a) * w


def _coat_table(coat: Coat, level: int) -> np.ndarray:
    """Colours of the trunk's quads (segments x angles) for a detail level, kept on the coat."""
    cache = coat.__dict__.setdefault("_tables", {})
    if level not in cache:
        st, m = DETAIL[level][0], DETAIL[level][1]
        xs = st[:, 0]
        x0, x1 = float(TRUNK[0, 0]), float(TRUNK[-1, 0])
        thm = 2 * np.pi * np.arange(m) / m + np.pi / m
        cache[level] = np.array([[coat.at((((xs[a] + xs[a + 1]) / 2) - x0) / (x1 - x0), th) for th in thm]
                                 for a in range(len(xs) - 1)], np.float64)
    return cache[level]


def cow_parts(painter: Painter, pos_xz, yaw: float, size: float, coat: Coat, *, phase: float = 0.0, gait: float = 0.0,
              head_down: float = 0.0, lying: bool = False, leg_side: int = 1, px_tall: float = 100.0,
              tail_sway: float = 0.0) -> tuple[list[Part], np.ndarray]:
    """A cow standing at `pos_xz` facing `yaw`: trunk, neck, head, ears, legs, tail (and udder), drawn as
    shaded quads with its coat. `gait` (0..1) swings the legs at gait phase `phase`; `head_down` (0..1)
    lowers the head (grazing); `lying` folds the legs and lowers a wider body onto the ground.
    `px_tall` (its image height) sets the mesh detail. Returns parts (far to near) and the 3D outline
    points of its shadow."""
    P = np.array([pos_xz[0], 0.0, pos_xz[1]])
    f, r = _frame(yaw)
    M = np.stack([f, UP, r]) * size  # local (along, up, right) -> world

    def L(*pts):
        a = np.asarray(pts, np.float64).reshape(-1, np.shape(pts)[-1])
        if a.shape[1] == 2:
            a = np.concatenate([a, np.zeros((len(a), 1))], 1)
        return P + a @ M

    level = 2 if px_tall >= 40 else (1 if px_tall >= 16 else 0)
    st, m_body, m_small, m_leg = DETAIL[level]
    xs, ys, hws, hhs = st.T.copy()
    if lying:
        ys = ys - 0.57
        hws = hws * 1.14
        hhs = hhs * 0.92
    x0, x1 = float(TRUNK[0, 0]), float(TRUNK[-1, 0])
    centers = L(*np.stack([xs, ys], 1))
    k = size
    specs = [(centers, r, hws * k, hhs * k, m_body, _coat_table(coat, level), (True, True))]
    pairs: list = []
    outline = [centers[[0, -1]], centers + r * (hws * k)[:, None], centers - r * (hws * k)[:, None],
               centers + UP * (hhs * k)[:, None]]

    # neck and head
    hd = float(np.clip(head_down, 0.0, 1.0))
    if lying:
        sh = np.array([0.55, 0.52])
        a_n = np.radians(_lerp(28.0, -32.0, hd))
        a_h = np.radians(_lerp(-55.0, -8.0, hd))
        n_len = 0.5
    else:
        sh = np.array([0.55, 1.12])
        a_n = np.radians(_lerp(18.0, -58.0, hd))
        a_h = np.radians(_lerp(-62.0, -86.0, hd))
        n_len = 0.55
    poll = sh + n_len * np.array([np.cos(a_n), np.sin(a_n)])
    d2 = np.array([np.cos(a_h), np.sin(a_h)])
    neck = L(sh, (sh + poll) / 2, poll)
    head_col = coat.head if coat.head is not None else coat.at(0.98, np.pi / 2)
    neck_col = coat.at(1.0, np.pi / 2)
    specs.append(_spec(neck, r, np.array([0.2, 0.15, 0.11]) * k, np.array([0.28, 0.2, 0.14]) * k, m_small, neck_col,
                       caps=(False, False)))
    head = L(*[poll + d2 * v for v in (0.0, 0.22, 0.42, 0.5)])
    specs.append(_spec(head, r, np.array([0.11, 0.1, 0.085, 0.075]) * k, np.array([0.13, 0.11, 0.09, 0.075]) * k,
                       m_small, [head_col, head_col, coat.muzzle]))
    outline += [head[[-1]], head[[0]] + UP * 0.15 * k]
    if level > 0:  # ears: flat quads sticking out sideways from the poll
        dir3 = head[1] - head[0]
        dir3 = dir3 / (np.linalg.norm(dir3) + 1e-12)
        for side in (-1, 1):
            base = head[0] + r * side * 0.08 * k
            ear = np.stack([base - dir3 * 0.05 * k, base + dir3 * 0.05 * k,
                            base + (r * side * 0.2 + dir3 * 0.03 - UP * 0.03) * k, base + (r * side * 0.2 - dir3 * 0.04) * k])
            pairs.append((float(painter.cam.depth(ear.mean(0))), painter.polygon(ear, painter.lit(head_col, UP * 0.6 + r * side * 0.4))))

    # legs
    leg_pts = []
    if not lying:
        g = float(np.clip(gait, 0.0, 1.0))
        for lx, side, off in LEGS:
            ang = phase + 2 * np.pi * off
            hip = np.array([lx, 0.82])
            foot = np.array([lx + 0.26 * np.sin(ang) * g, max(0.0, np.cos(ang)) * 0.1 * g])
            bend = 0.05 if lx > 0 else -0.07  # knees forward, hocks back
            knee = _lerp(hip, foot, 0.55) + np.array([bend * (1 + g * max(0.0, np.cos(ang))), 0.0])
            fet = _lerp(knee, foot, 0.78)
            z = side * 0.17
            pts = L(*[(q[0], q[1], z) for q in (hip, knee, fet, foot)])
            upper = coat.at((lx - x0) / (x1 - x0), -np.pi / 2) if coat.belly is None else coat.base
            specs.append(_spec(pts, f, np.array([0.085, 0.055, 0.045, 0.05]) * k, np.array([0.11, 0.06, 0.05, 0.055]) * k,
                               m_leg, [upper, coat.lower_leg, HOOF], caps=(False, True)))
            leg_pts.append(pts[-1:])
    else:
        for side in (-1, 1):  # front legs folded under the chest, forearms showing
            z = side * 0.2
            pts = L((0.42, 0.22, z), (0.72, 0.08, z * 0.9), (0.86, 0.06, z * 0.8))
            specs.append(_spec(pts, UP, 0.07 * k, 0.06 * k, m_leg, [coat.lower_leg, HOOF]))
        s_ = leg_side  # one hind leg stretched out to the side
        pts = L((-0.5, 0.28, s_ * 0.34), (-0.18, 0.1, s_ * 0.52), (0.12, 0.06, s_ * 0.48), (0.2, 0.06, s_ * 0.46))
        specs.append(_spec(pts, UP, np.array([0.12, 0.07, 0.055, 0.055]) * k, np.array([0.1, 0.06, 0.05, 0.05]) * k,
                           m_leg, [coat.base, coat.lower_leg, HOOF]))
        leg_pts.append(pts[-1:])

    # tail, udder
    tail_col = coat.at(0.0, np.pi / 2)
    if lying:
        tail = L((-0.88, 0.6, 0.0), (-1.05, 0.2, 0.1 * leg_side), (-1.1, 0.05, 0.35 * leg_side))
    else:
        sw = 0.08 * tail_sway
        tail = L((-0.9, 1.17, 0.0), (-0.96, 0.82, sw), (-0.95, 0.5, sw * 1.6), (-0.94, 0.4, sw * 1.7))
    if level > 0:
        tail_cols = [tail_col] * (len(tail) - 2) + [(30, 30, 34)]
        specs.append(_spec(tail, r if not lying else UP, 0.028 * k, 0.03 * k, 4, tail_cols, caps=(False, False)))
    if coat.udder and not lying and level > 0:
        ud = L((-0.6, 0.66), (-0.45, 0.57), (-0.28, 0.63))
        specs.append(_spec(ud, r, np.array([0.1, 0.15, 0.11]) * k, np.array([0.08, 0.11, 0.08]) * k, m_small,
                           (175, 165, 232)))
    outline += leg_pts + [tail[-1:]]
    pairs += tubes(painter, specs)
    return order_parts(pairs), np.concatenate(outline, 0)


# ---- fixtures (unlabelled) -----------------------------------------------------------------

def _span_item(painter: Painter, pairs, lines, mid, depth_bias: float = 0.0) -> Item:
    return Item(float(painter.cam.depth(mid)) + depth_bias, order_parts(pairs), lines=lines)


def fence_items(painter: Painter, a_xz, b_xz, *, kind: str = "rail", spacing: float = 3.0, height: float = 1.3,
                post_color=(70, 95, 120), rail_color=(95, 125, 150), depth_bias: float = 0.0,
                gaps: list[tuple[float, float]] | None = None) -> list[Item]:
    """A post-and-rail (`rail`), wire (`wire`) or feed-barrier (`feed`) fence from a to b, one item per span
    (so painter's order stays right along a long fence). `gaps`: (from, to) distances along it left open."""
    a = np.array([a_xz[0], 0.0, a_xz[1]], np.float64)
    b = np.array([b_xz[0], 0.0, b_xz[1]], np.float64)
    length = float(np.linalg.norm(b - a))
    d = (b - a) / max(length, 1e-6)
    n = np.cross(UP, d)
    ax = _axes(d, UP, n)
    cam = painter.cam
    gaps = gaps or []
    cuts = sorted({0.0, length, *[g for gp in gaps for g in gp]})
    items = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        if any(g0 - 1e-6 <= lo and hi <= g1 + 1e-6 for g0, g1 in gaps):
            continue
        k = max(int(np.ceil((hi - lo) / spacing)), 1)
        for i in range(k):
            s0, s1 = lo + (hi - lo) * i / k, lo + (hi - lo) * (i + 1) / k
            p0, p1 = a + d * s0, a + d * s1
            pairs = []
            lines = []
            ends = [p0] + ([p1] if i == k - 1 else [])
            for p in ends:
                pw = 0.07 if kind != "wire" else 0.05
                pairs += painter.box(p + UP * height / 2, ax, (pw, height / 2, pw), post_color)
            mid = (p0 + p1) / 2
            half = float(np.linalg.norm(p1 - p0)) / 2
            if kind == "rail":
                for y in (0.45, 0.85, 1.22)[: 3 if height > 1.0 else 2]:
                    pairs += painter.box(mid + UP * y * height / 1.3, ax, (half, 0.06, 0.025), rail_color)
            elif kind == "feed":
                for y in (0.5, 1.25):
                    pairs += painter.box(mid + UP * y, ax, (half, 0.035, 0.035), rail_color)
                for x in np.arange(0.25, 2 * half, 0.3):
                    q = p0 + d * x
                    lines.append(Line(to_fixed(cam.project(np.stack([q + UP * 0.5, q + UP * 1.25]))), rail_color, 1))
            else:
                for y in (0.35, 0.65, 0.95, 1.2):
                    lines.append(Line(to_fixed(cam.project(np.stack([p0 + UP * y, p1 + UP * y]))), rail_color, 1))
            items.append(_span_item(painter, pairs, lines, mid, depth_bias))
    return items


def gate_item(painter: Painter, hinge_xz, dir_xz, width: float, color=(175, 175, 170), depth_bias: float = 0.0) -> Item:
    """A tube field gate hung at `hinge_xz`, its free end towards unit `dir_xz`."""
    h = np.array([hinge_xz[0], 0.0, hinge_xz[1]], np.float64)
    d = np.array([dir_xz[0], 0.0, dir_xz[1]], np.float64)
    d /= np.linalg.norm(d)
    n = np.cross(UP, d)
    ax = _axes(d, UP, n)
    pairs = []
    t = 0.03
    for x in (0.05, width - 0.05):
        pairs += painter.box(h + d * x + UP * 0.62, ax, (t, 0.6, t), color)
    for y in (0.12, 0.4, 0.68, 0.95, 1.2):
        pairs += painter.box(h + d * width / 2 + UP * y, ax, (width / 2, t * 0.8, t * 0.8), color)
    brace = [h + d * 0.1 + UP * 0.15, h + d * width * 0.5 + UP * 1.18]
    lines = [Line(to_fixed(painter.cam.project(np.stack(brace))), color, 2)]
    return Item(float(painter.cam.depth(h + d * width / 2)) + depth_bias, order_parts(pairs), lines=lines)


def trough_item(painter: Painter, pos_xz, yaw: float, color, water=(70, 60, 45), length: float = 2.4) -> tuple[Item, np.ndarray]:
    P = np.array([pos_xz[0], 0.0, pos_xz[1]])
    f, r = _frame(yaw)
    half = (length / 2, 0.33, 0.36)
    pairs = painter.box(P + UP * half[1], _axes(f, UP, r), half, color)
    top = painter.cam.depth(P + UP * 0.66)
    inset = np.stack([P + UP * 0.661 + f * s1 * (half[0] - 0.06) + r * s2 * (half[2] - 0.06)
                      for s1, s2 in ((1, 1), (-1, 1), (-1, -1), (1, -1))])
    if painter.cam.position[1] > 0.7:
        pairs.append((float(top) - 1e-3, painter.polygon(inset, water)))
    outline = np.stack([P + UP * 0.66 + f * s1 * half[0] + r * s2 * half[2] for s1, s2 in ((1, 1), (-1, 1), (-1, -1), (1, -1))])
    return Item(float(painter.cam.depth(P)), order_parts(pairs)), outline


def round_bale_item(painter: Painter, pos_xz, yaw: float, color, standing: bool, radius: float = 0.75,
                    length: float = 1.2) -> tuple[Item, np.ndarray]:
    P = np.array([pos_xz[0], 0.0, pos_xz[1]])
    f, r = _frame(yaw)
    if standing:
        ang = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        base = np.stack([P + radius * (np.cos(a) * f + np.sin(a) * r) for a in ang])
        pairs = painter.prism(base, length, color)
        outline = base + UP * length
    else:
        cen = np.stack([P + UP * radius - r * length / 2, P + UP * radius + r * length / 2])
        pairs = tube(painter, cen, f, radius, radius, 14, color)
        outline = np.concatenate([cen + UP * radius, cen + f * radius, cen - f * radius])
    return Item(float(painter.cam.depth(P)), order_parts(pairs)), outline


def square_bales_item(painter: Painter, pos_xz, yaw: float, color, n: int) -> tuple[Item, np.ndarray]:
    P = np.array([pos_xz[0], 0.0, pos_xz[1]])
    f, r = _frame(yaw)
    ax = _axes(f, UP, r)
    pairs = []
    for i in range(n):
        lvl, col = divmod(i, 3)
        c = P + r * (col - 1) * 0.48 + UP * (0.18 + lvl * 0.36)
        pairs += painter.box(c, ax, (0.5, 0.18, 0.23), color)
    outline = np.stack([P + UP * 0.36 * (1 + (n - 1) // 3) + f * s1 * 0.5 + r * s2 * 0.7 for s1 in (-1, 1) for s2 in (-1, 1)])
    return Item(float(painter.cam.depth(P)), order_parts(pairs)), outline


def bucket_item(painter: Painter, pos_xz, color) -> Item:
    P = np.array([pos_xz[0], 0.0, pos_xz[1]])
    ang = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    base = np.stack([P + 0.15 * np.array([np.cos(a), 0, np.sin(a)]) for a in ang])
    return Item(float(painter.cam.depth(P)), order_parts(painter.prism(base, 0.3, color)))


def post_item(painter: Painter, pos_xz, yaw: float, lying: bool, color=(70, 95, 120)) -> Item:
    P = np.array([pos_xz[0], 0.0, pos_xz[1]])
    f, r = _frame(yaw)
    if lying:
        pairs = painter.box(P + UP * 0.07, _axes(f, UP, r), (1.1, 0.07, 0.07), color)
    else:
        pairs = painter.box(P + UP * 0.65, _axes(f, UP, r), (0.07, 0.65, 0.07), color)
    return Item(float(painter.cam.depth(P)), order_parts(pairs))


def trailer_item(painter: Painter, pos_xz, yaw: float, color, livestock: bool) -> tuple[Item, np.ndarray]:
    """A parked two-axle trailer: flat bed or a livestock box with slatted sides, wheels, a drawbar."""
    P = np.array([pos_xz[0], 0.0, pos_xz[1]])
    f, r = _frame(yaw)
    ax = _axes(f, UP, r)
    pairs = painter.box(P + UP * 0.7, ax, (2.0, 0.08, 0.95), (50, 50, 55))
    for a in (-0.45, 0.45):
        for s in (-1, 1):
            c = P + f * a + r * s * 0.98 + UP * 0.36
            pairs += tube(painter, np.stack([c - r * 0.12, c + r * 0.12]), f, 0.36, 0.36, 10, (25, 25, 28))
    pairs += painter.box(P + f * 2.6 + UP * 0.55, ax, (0.7, 0.05, 0.05), (50, 50, 55))
    lines = []
    top = 0.78
    if livestock:
        pairs += painter.box(P + UP * 1.55, ax, (2.0, 0.78, 0.95), color)
        top = 2.33
        for side in (-1, 1):
            for y in (1.55, 1.85, 2.1):
                seg = np.stack([P + r * side * 0.96 + UP * y - f * 1.9, P + r * side * 0.96 + UP * y + f * 1.9])
                lines.append(Line(to_fixed(painter.cam.project(seg)), tuple(int(c * 0.55) for c in color), 2))
    else:
        for side in (-1, 1):
            pairs += painter.box(P + r * side * 0.93 + UP * 0.95, ax, (2.0, 0.17, 0.03), color)
    outline = np.stack([P + f * s1 * 2.0 + r * s2 * 0.95 + UP * top for s1 in (-1, 1) for s2 in (-1, 1)])
    return Item(float(painter.cam.depth(P)), order_parts(pairs), lines=lines), outline


def windrow_item(painter: Painter, a_xz, b_xz, color, depth_bias: float = 0.0) -> list[Item]:
    """A low heap of feed along a feed fence (silage), one item per 4 m."""
    a = np.array([a_xz[0], 0.0, a_xz[1]], np.float64)
    b = np.array([b_xz[0], 0.0, b_xz[1]], np.float64)
    length = float(np.linalg.norm(b - a))
    d = (b - a) / max(length, 1e-6)
    n = np.cross(UP, d)
    items = []
    k = max(int(np.ceil(length / 4.0)), 1)
    for i in range(k):
        p0, p1 = a + d * length * i / k, a + d * length * (i + 1) / k
        pairs = tube(painter, np.stack([p0, p1]), n, 0.55, 0.3, 8, color, caps=(i == 0, i == k - 1))
        items.append(_span_item(painter, pairs, [], (p0 + p1) / 2, depth_bias))
    return items
