"""Static backgrounds: ground textures in world coordinates, seen through the camera."""

from __future__ import annotations

import cv2
import numpy as np

from .camera import Camera


def ground_coords(cam: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel ground (X, Z) as float32 maps and a bool map of pixels that see the ground."""
    # Rays are smooth in the image, so intersect at quarter resolution and upsample.
    h, w = cam.height, cam.width
    hs, ws = (h + 3) // 4 + 1, (w + 3) // 4 + 1
    ys, xs = np.mgrid[0:hs, 0:ws].astype(np.float64) * 4.0
    xz = cam.ray_to_ground(np.stack([xs, ys], -1))
    valid = np.isfinite(xz[..., 0])
    # Clamp the far field so interpolation near the horizon stays finite.
    far = 2000.0
    x = np.where(valid, np.clip(xz[..., 0], -far, far), 0.0)
    z = np.where(valid, np.clip(xz[..., 1], -far, far), far)
    big = lambda a: cv2.resize(a.astype(np.float32), (ws * 4, hs * 4), interpolation=cv2.INTER_LINEAR)[:h, :w]
    gx, gz = big(x), big(z)
    horizon = cam.horizon_v() + 2.0
    rows = np.arange(h, dtype=np.float32)[:, None]
    return gx, gz, np.broadcast_to(rows > horizon, (h, w))


def noise_grid(rng: np.random.Generator, n: int = 256, octaves: int = 3) -> np.ndarray:
    """Tileable value noise in [-1, 1], float32 (n, n)."""
    out = np.zeros((n, n), np.float32)
    amp, tot = 1.0, 0.0
    for o in range(octaves):
        k = 8 * (2**o)
        g = rng.standard_normal((k, k)).astype(np.float32)
        g = np.tile(g, (3, 3))
        big = cv2.resize(g, (3 * n, 3 * n), interpolation=cv2.INTER_CUBIC)[n : 2 * n, n : 2 * n]
        out += amp * big
        tot += amp
        amp *= 0.5
    out /= tot
    return out / (np.abs(out).max() + 1e-6)


def sample_wrapped(grid: np.ndarray, gx: np.ndarray, gz: np.ndarray, cell_m: float) -> np.ndarray:
    """Look up a tileable grid at ground coordinates; `cell_m` metres per grid cell."""
    return cv2.remap(grid, gx / cell_m, gz / cell_m, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def sky_and_far(rng: np.random.Generator, cam: Camera, kind: str) -> np.ndarray:
    """Frame-sized BGR image for what lies above the ground: sky with a tree line or stands."""
    h, w = cam.height, cam.width
    img = np.empty((h, w, 3), np.uint8)
    top = np.array(rng.uniform([150, 120, 80], [235, 210, 190]))  # BGR sky
    bot = np.array(rng.uniform([190, 180, 160], [245, 240, 235]))
    t = np.linspace(0, 1, h)[:, None]
    img[:] = (top * (1 - t) + bot * t)[:, None, :].astype(np.uint8)
    hv = int(cam.horizon_v())
    if kind in ("site", "farm") and hv > 0:
        # a ragged tree / building line (hedges on a farm) just above the horizon
        xs = np.arange(0, w + 40, 40)
        ys = hv - rng.uniform(5, 40, size=xs.size)
        pts = np.concatenate([np.stack([xs, ys], 1), [[w, hv + 3], [0, hv + 3]]]).astype(np.int32)
        cv2.fillPoly(img, [pts], tuple(int(c) for c in rng.uniform([30, 60, 40], [70, 110, 90])))
    return img


def site_ground(rng: np.random.Generator, cam: Camera) -> np.ndarray:
    """Dirt, gravel patches and tyre tracks on the ground, BGR uint8 frame."""
    gx, gz, ground = ground_coords(cam)
    dirt = np.array([60, 85, 112], np.float32) * rng.uniform(0.75, 1.35) * rng.uniform(0.92, 1.08, 3)
    gravel = np.array([128, 130, 132], np.float32) * rng.uniform(0.8, 1.2) * rng.uniform(0.96, 1.04, 3)
    n_large = sample_wrapped(noise_grid(rng, 128, 2), gx, gz, 1.5)  # ~ 190 m tile
    n_mid = sample_wrapped(noise_grid(rng, 256, 3), gx, gz, 0.12)
    n_fine = sample_wrapped(rng.standard_normal((256, 256)).astype(np.float32), gx, gz, 0.035)
    gravel_w = np.clip((n_large - rng.uniform(-0.2, 0.4)) * 3.0, 0, 1)[..., None]
    base = dirt * (1 - gravel_w) + gravel * gravel_w
    shade = 1.0 + 0.12 * n_mid[..., None] + 0.07 * n_fine[..., None] * (0.5 + gravel_w)
    # tyre tracks: pairs of dark curves drawn on a 0.1 m ground map
    res, x0, z0, size = 0.1, -80.0, 0.0, 1600
    tracks = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(2, 7))):
        p = rng.uniform([x0 + 20, z0 + 10], [x0 + 140, z0 + 150], size=(4, 2))
        s = np.linspace(0, 1, 60)[:, None]
        curve = ((1 - s) ** 3) * p[0] + 3 * s * (1 - s) ** 2 * p[1] + 3 * s**2 * (1 - s) * p[2] + s**3 * p[3]
        d = np.gradient(curve, axis=0)
        nrm = np.stack([-d[:, 1], d[:, 0]], 1) / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-9)
        gauge = rng.uniform(0.9, 1.2)
        for side in (-1, 1):
            c = (curve + side * gauge * nrm - [x0, z0]) / res
            cv2.polylines(tracks, [np.round(c * 16).astype(np.int32)], False, 255, int(rng.integers(4, 7)), cv2.LINE_AA, 4)
    tracks = cv2.GaussianBlur(tracks, (5, 5), 1.5).astype(np.float32) / 255.0
    tr = cv2.remap(tracks, (gx - x0) / res, (gz - z0) / res, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    shade = shade * (1.0 - 0.28 * tr[..., None])
    img = np.clip(base * shade, 0, 255).astype(np.uint8)
    # haze towards the horizon
    dist = np.sqrt(gx**2 + gz**2)[..., None]
    haze = np.clip((dist - 60.0) / 400.0, 0, 0.6)
    img = (img * (1 - haze) + np.array([190, 190, 185], np.float32) * haze).astype(np.uint8)
    sky = sky_and_far(rng, cam, "site")
    return np.where(ground[..., None], img, sky)


# FIFA pitch: 105 x 68 m; world X along the length (centre 0), Z across (near touchline 0)
PITCH_L, PITCH_W = 105.0, 68.0


def pitch_lines_map(res: float) -> tuple[np.ndarray, float, float]:
    """White line mask of a football pitch (float32 0..1), origin (x0, z0) in metres."""
    x0, z0 = -PITCH_L / 2 - 5.0, -5.0
    w, h = int((PITCH_L + 10) / res), int((PITCH_W + 10) / res)
    m = np.zeros((h, w), np.uint8)
    lw = max(1, int(round(0.12 / res)))

    def P(x, z):
        return [int(round((x - x0) / res * 16)), int(round((z - z0) / res * 16))]

    def rect(xa, za, xb, zb):
        pts = np.array([P(xa, za), P(xb, za), P(xb, zb), P(xa, zb)], np.int32)
        cv2.polylines(m, [pts], True, 255, lw, cv2.LINE_AA, 4)

    L2, W = PITCH_L / 2, PITCH_W
    rect(-L2, 0, L2, W)
    cv2.line(m, tuple(P(0, 0)), tuple(P(0, W)), 255, lw, cv2.LINE_AA, 4)
    c = P(0, W / 2)
    cv2.circle(m, tuple(c), int(9.15 / res * 16), 255, lw, cv2.LINE_AA, 4)
    for s in (-1, 1):
        gx = s * L2
        rect(gx, W / 2 - 20.16, gx - s * 16.5, W / 2 + 20.16)  # penalty area
        rect(gx, W / 2 - 9.16, gx - s * 5.5, W / 2 + 9.16)  # goal area
        spot = P(gx - s * 11.0, W / 2)
        cv2.circle(m, tuple(spot), int(0.15 / res * 16), 255, -1, cv2.LINE_AA, 4)
        # penalty arc: the part of the 9.15 m circle outside the area
        ang = np.degrees(np.arccos(5.5 / 9.15))
        start = 180 - ang if s > 0 else -ang
        cv2.ellipse(m, tuple(spot), (int(9.15 / res * 16),) * 2, 0, start, start + 2 * ang, 255, lw, cv2.LINE_AA, 4)
    cv2.circle(m, tuple(c), int(0.15 / res * 16), 255, -1, cv2.LINE_AA, 4)
    return m.astype(np.float32) / 255.0, x0, z0


def pitch_ground(rng: np.random.Generator, cam: Camera) -> np.ndarray:
    gx, gz, ground = ground_coords(cam)
    grass = np.array(rng.uniform([35, 105, 40], [75, 160, 90]), np.float32)
    stripe_w = rng.choice([5.25, 5.5, 6.0])
    stripe = np.where(np.floor(gx / stripe_w) % 2 == 0, 1.0, 1.0 - rng.uniform(0.05, 0.16))
    n_mid = sample_wrapped(noise_grid(rng, 256, 3), gx, gz, 0.25)
    n_fine = sample_wrapped(rng.standard_normal((256, 256)).astype(np.float32), gx, gz, 0.04)
    shade = (stripe * (1.0 + 0.08 * n_mid + 0.05 * n_fine))[..., None]
    img = grass * shade
    res = 0.04
    lines, lx0, lz0 = pitch_lines_map(res)
    lm = cv2.remap(lines, (gx - lx0) / res, (gz - lz0) / res, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    white = np.array(rng.uniform([200, 205, 200], [245, 250, 245]), np.float32)
    img = img * (1 - lm[..., None]) + white * lm[..., None]
    # beyond the far touchline: advertising boards then the stands
    stands_z = PITCH_W + 4.0
    crowd = sample_wrapped(rng.uniform(0, 1, (64, 256)).astype(np.float32), gx * 3, gz * 3, 0.5)
    img = img.clip(0, 255).astype(np.uint8)
    h, w = ground.shape
    stands = np.empty((h, w, 3), np.uint8)
    cols = rng.uniform(30, 200, size=(8, 3))
    idx = (np.abs(sample_wrapped(noise_grid(rng, 64, 1), gx, gz, 0.3)) * 7.99).astype(np.int32)
    stands[:] = (cols[idx] * (0.6 + 0.4 * crowd[..., None])).astype(np.uint8)
    far = (~ground) | (gz > stands_z)
    out = np.where(far[..., None], stands, img)
    # ad boards: a band between the touchline margin and the stands, drawn as a wall
    board_z = PITCH_W + 3.0
    xs = np.linspace(-80, 80, 33)
    for i in range(len(xs) - 1):
        quad = np.array([[xs[i], 0, board_z], [xs[i + 1], 0, board_z], [xs[i + 1], 0.9, board_z], [xs[i], 0.9, board_z]])
        uv = cam.project(quad)
        if (cam.depth(quad) <= 0.5).any():
            continue
        col = tuple(int(c) for c in rng.uniform(20, 240, size=3))
        cv2.fillPoly(out, [np.round(uv * 16).astype(np.int32)], col, cv2.LINE_8, 4)
    return out


def farm_ground(rng: np.random.Generator, cam: Camera, layout) -> np.ndarray:
    """Grass and mud of a paddock or feedlot, a farm track with wheel ruts and a grass strip, a concrete feed
    alley; BGR uint8 frame. `layout` maps ground (X, Z) to its own axes (`to_layout`) and gives the places
    where hooves make mud (gate, trough, feed fence) and the track band."""
    gx, gz, ground = ground_coords(cam)
    lx, lz = layout.to_layout_maps(gx, gz)
    dry = rng.uniform() < 0.3
    grass = np.array([70, 135, 140] if dry else [45, 125, 85], np.float32) * rng.uniform(0.8, 1.15) * rng.uniform(0.9, 1.1, 3)
    mud = np.array([45, 68, 88], np.float32) * rng.uniform(0.7, 1.25) * rng.uniform(0.92, 1.08, 3)
    gravel = np.array([120, 130, 138], np.float32) * rng.uniform(0.75, 1.15) * rng.uniform(0.95, 1.05, 3)
    n_large = sample_wrapped(noise_grid(rng, 128, 2), gx, gz, 0.8)
    n_mid = sample_wrapped(noise_grid(rng, 256, 3), gx, gz, 0.1)
    n_fine = sample_wrapped(rng.standard_normal((256, 256)).astype(np.float32), gx, gz, 0.03)
    # mud: everywhere on a feedlot, else where cattle stand (gate, trough, feed fence) and in patches
    w = np.full(gx.shape, layout.mud_base, np.float32)
    for (mx, mz), sigma, amp in layout.mud_spots:
        w += amp * np.exp(-((lx - mx) ** 2 + (lz - mz) ** 2) / (2 * sigma**2))
    if layout.feed_x is not None:
        inside = (lx - layout.feed_x) * -layout.feed_side
        w += 0.8 * np.exp(-np.clip(inside, 0, None) / 2.5) * (inside > -0.5) * (lz > layout.fence_z)
    w = np.clip(w + 0.45 * n_large - 0.1, 0, 1)[..., None]
    base = grass * (1 - w) + mud * w
    shade = 1.0 + 0.14 * n_mid[..., None] + (0.08 + 0.06 * w) * n_fine[..., None]
    img = base * shade
    # farm track: gravel with two ruts and a grass strip between them
    z0, z1 = layout.track_z
    rel = (lz - z0) / (z1 - z0)
    edge = 0.06 * n_mid
    on = ((rel > 0.0 + edge) & (rel < 1.0 - edge)).astype(np.float32)
    strip = (np.abs(rel - 0.5) < 0.06 + 0.03 * n_mid).astype(np.float32)
    ruts = np.exp(-((np.abs(rel - 0.5) - 0.25) ** 2) / (2 * 0.06**2))
    gravel = gravel * (1 - 0.35 * (n_large[..., None] * 0.5 + 0.5)) + mud * 0.35 * (n_large[..., None] * 0.5 + 0.5)
    track = gravel * (1.0 - 0.25 * ruts[..., None]) * (1.0 + 0.12 * n_fine[..., None])
    track = track * (1 - strip[..., None]) + img * strip[..., None]
    img = img * (1 - on[..., None]) + track * on[..., None]
    # feed alley: concrete beyond the feed fence
    if layout.feed_x is not None:
        out = (layout.feed_x - lx) * -layout.feed_side
        alley = ((out > 0.3) & (out < 4.3) & (lz > layout.fence_z)).astype(np.float32)[..., None]
        conc = np.array([150, 152, 150], np.float32) * rng.uniform(0.8, 1.1) * (1.0 + 0.05 * n_fine[..., None])
        img = img * (1 - alley) + conc * alley
    img = np.clip(img, 0, 255).astype(np.uint8)
    dist = np.sqrt(gx**2 + gz**2)[..., None]
    haze = np.clip((dist - 50.0) / 300.0, 0, 0.6)
    img = (img * (1 - haze) + np.array([195, 195, 188], np.float32) * haze).astype(np.uint8)
    sky = sky_and_far(rng, cam, "farm")
    return np.where(ground[..., None], img, sky)
