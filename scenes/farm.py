"""`farm`: a paddock or feedlot seen from a pole or barn camera at an oblique angle.

The camera looks over a farm track at the paddock's near fence, which has a gate; a feed fence
(with a feed alley and a heap of silage beyond it) closes one side, a water trough stands inside.
Cows of several coats and sizes walk, graze and lie in loose groups (`herd`: a shared goal such as
the gate or the feed fence, cohesion, separation), so they bunch and their masks touch and occlude;
workers walk among them. Bales, posts, buckets and a parked trailer are unlabelled distractors.

Everything is placed in the layout's axes: x along the near fence, z away from the camera's
foot (metres); `Layout.to_world` turns them into ground (X, Z). The camera and the layout are drawn
before the scenario is set up, so one seed has the same view, gate, track and zones in every
scenario (a single zone file serves the three scenario clips of a seed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from . import classes as C
from .base import Scene
from .camera import Camera
from .farm_objects import (
    Coat,
    bucket_item,
    cow_parts,
    fence_items,
    gate_item,
    post_item,
    random_coat,
    round_bale_item,
    square_bales_item,
    trailer_item,
    trough_item,
    windrow_item,
)
from .herd import BODY_R, Goal, HalfPlane, Herd, body_circles
from .motion import Seg, Timeline, heading_of, smoothstep
from .objects import person_parts, worker_look
from .render import Item
from .site import Worker
from .textures import farm_ground

COW_H_M = 1.45  # a standing adult's height (size 1), for pixel sizes
GATE_MAX_COUNT = 4  # gate_crowding: an alert when more cows than this stand in the gate area...
GATE_MIN_DURATION_S = 3.0  # ...for this long
# ...counting a cow seen in the area for 1 s while the detector misses it among the bunch (chosen on the farm
# tuning seeds, 30,000,001/07/13/19: the longest run of "more than 4" with the 960 model's tracks, 64/41/13/31 frames,
# became 65/55/13/74 with 1 s, against 45 needed; 0.5 s and 2 s: 62 and 88 on the last)
GATE_HOLD_S = 1.0
DOWN_DWELL_S = 8.0  # cow_down: a cow lying this long in the spot (a demo value; a farm would use an hour or so)
FEED_BIAS = 60.0  # the feed fence and what lies beyond it are drawn before anything in the paddock


@dataclass
class Layout:
    psi: float  # world yaw of the layout's +z axis
    fence_z: float  # the near fence (with the gate)
    gate_x: float
    gate_w: float
    track_z: tuple[float, float]  # the farm track's near and far edges (in front of the fence)
    feed_side: int  # -1: the feed fence closes the paddock's left (smaller x), +1: its right
    feed_x: float
    far_z: float  # the far end of the paddock (cows further away would be too small)
    vis_x: tuple[float, float]  # lateral range seen at the fence
    trough: np.ndarray
    trough_yaw: float
    sick: np.ndarray  # where cow_down's cow lies (kept clear in every scenario)
    sick_yaw: float
    track_dir: int  # the side of the gate with more visible track
    mud_base: float
    mud_spots: list = field(default_factory=list)

    @property
    def ax(self) -> np.ndarray:
        return np.array([np.cos(self.psi), -np.sin(self.psi)])

    @property
    def az(self) -> np.ndarray:
        return np.array([np.sin(self.psi), np.cos(self.psi)])

    @property
    def track_c(self) -> float:
        return (self.track_z[0] + self.track_z[1]) / 2

    def to_world(self, p) -> np.ndarray:
        p = np.asarray(p, np.float64)
        return p[..., :1] * self.ax + p[..., 1:2] * self.az

    def to_layout(self, w) -> np.ndarray:
        w = np.asarray(w, np.float64)
        return np.stack([w @ self.ax, w @ self.az], -1)

    def to_layout_maps(self, gx, gz):
        ax, az = self.ax, self.az
        return gx * ax[0] + gz * ax[1], gx * az[0] + gz * az[1]

    def world_yaw(self, h: float) -> float:
        return float(h) + self.psi

    def inside(self, p, margin: float = 1.0) -> bool:
        x, z = float(p[0]), float(p[1])
        return (z >= self.fence_z + margin and z <= self.far_z - margin
                and (x - self.feed_x) * -self.feed_side >= margin)


@dataclass
class Cow:
    track_id: int
    size: float
    coat: Coat
    phase0: float
    leg_side: int
    grazer: float
    herd_index: int | None = None
    timeline: Timeline | None = None
    lying: bool = False
    pos: np.ndarray | None = None
    heading: float = 0.0
    head_down: float = 0.0


class FarmScene(Scene):
    name = "farm"
    scenarios = ("gate_crowding", "animal_on_track", "cow_down")

    # ---- camera, layout, ground -----------------------------------------------------------------
    def _make_camera(self) -> Camera:
        rng = self.rng
        scale = self.width / 1280.0
        cam = None
        for _ in range(300):
            barn = rng.uniform() < 0.35
            h = rng.uniform(4.5, 6.5) if barn else rng.uniform(6.5, 11.0)
            pitch = rng.uniform(15.0, 26.0) if barn else rng.uniform(18.0, 34.0)
            cam = Camera(self.width, self.height, focal_px=float(rng.uniform(800, 1300)) * scale,
                         position_m=(0.0, float(h), 0.0), pitch_deg=float(pitch), yaw_deg=float(rng.uniform(-10.0, 10.0)))
            v_f = float(rng.uniform(0.6, 0.76))
            fence = cam.ray_to_ground(np.array([self.width / 2, v_f * self.height]))
            bottom = cam.ray_to_ground(np.array([self.width / 2, self.height - 1.0]))
            if not (np.all(np.isfinite(fence)) and np.all(np.isfinite(bottom))):
                continue
            cow_px = cam.px_per_m(tuple(fence)) * COW_H_M / scale
            if 55.0 <= cow_px <= 125.0 and np.hypot(*fence) - np.hypot(*bottom) >= 3.2 and cam.horizon_v() < 0.28 * self.height:
                self._v_fence = v_f
                return cam
        self._v_fence = 0.68
        return cam

    def _make_background(self) -> np.ndarray:
        self.layout = self._make_layout(self.rng)
        return farm_ground(self.rng, self.camera, self.layout)

    def _ground_uv(self, p_layout) -> np.ndarray:
        w = self.layout_to_world3(p_layout)
        return self.camera.project(w)

    def layout_to_world3(self, p) -> np.ndarray:
        w = self.layout.to_world(p)
        return np.stack([w[..., 0], np.zeros(w.shape[:-1]), w[..., 1]], -1)

    def _make_layout(self, rng) -> Layout:
        cam, W, H = self.camera, self.width, self.height
        scale = W / 1280.0
        phi = np.radians(rng.uniform(-12.0, 12.0))
        psi = float(np.radians(cam.yaw_deg) + phi)
        ax = np.array([np.cos(psi), -np.sin(psi)])
        az = np.array([np.sin(psi), np.cos(psi)])
        lay = lambda w: np.array([w @ ax, w @ az])  # noqa: E731
        world = lambda p: p[0] * ax + p[1] * az  # noqa: E731
        vf = self._v_fence * H
        fence_z = float(lay(cam.ray_to_ground(np.array([W / 2, vf])))[1])
        gate_x = float(lay(cam.ray_to_ground(np.array([rng.uniform(0.33, 0.67) * W, vf])))[0])
        gate_w = float(rng.uniform(3.6, 4.4))
        verge, tw = float(rng.uniform(0.8, 1.4)), float(rng.uniform(3.2, 4.4))
        track_z = (fence_z - verge - tw, fence_z - verge)
        vis = [float(lay(cam.ray_to_ground(np.array([u, vf])))[0]) for u in (0.0, W - 1.0)]
        feed_side = -1 if rng.uniform() < 0.5 else 1

        def row(p):
            return float(cam.project(np.array([world(p)[0], 0.0, world(p)[1]]))[1])

        v_s = row((gate_x, fence_z + 10.0))
        u_s = rng.uniform(0.04, 0.2) if feed_side < 0 else rng.uniform(0.8, 0.96)
        feed_x = float(lay(cam.ray_to_ground(np.array([u_s * W, v_s])))[0])
        gap = gate_w / 2 + 5.0
        feed_x = min(feed_x, gate_x - gap) if feed_side < 0 else max(feed_x, gate_x + gap)
        far_z = fence_z + 8.0
        hv = cam.horizon_v()
        for z in np.arange(fence_z + 8.0, fence_z + 45.0, 0.5):
            g = world((gate_x, z))
            if row((gate_x, z)) < hv + 12 * scale or cam.px_per_m((g[0], g[1])) * COW_H_M < 18.0 * scale:
                break
            far_z = float(z)

        def sample(z_lo, z_hi, u_lo, u_hi):
            z = rng.uniform(z_lo, max(z_hi, z_lo + 0.1))
            v = row((gate_x, z))
            xs = [float(lay(cam.ray_to_ground(np.array([u * W, v])))[0]) for u in (u_lo, u_hi)]
            return np.array([rng.uniform(min(xs), max(xs)), z])

        def in_paddock(p, m):
            return p[1] >= fence_z + m and p[1] <= far_z - m and (p[0] - feed_x) * -feed_side >= m

        trough = None
        for _ in range(60):
            p = sample(fence_z + 3.0, min(fence_z + 10.0, far_z - 3), 0.12, 0.88)
            if abs(p[0] - gate_x) >= 6.0 and in_paddock(p, 2.5):
                trough = p
                break
        if trough is None:
            trough = np.array([gate_x + (6.5 if feed_side < 0 else -6.5), fence_z + 4.0])
        trough_yaw = float(rng.choice([0.0, np.pi / 2]) + rng.uniform(-0.2, 0.2))
        sick = None
        for _ in range(80):
            p = sample(fence_z + 7.0, min(fence_z + 15.0, far_z - 4.0), 0.2, 0.8)
            if abs(p[0] - gate_x) >= 6.5 and np.hypot(*(p - trough)) >= 6.0 and in_paddock(p, 4.0):
                sick = p
                break
        if sick is None:
            sick = np.array([gate_x - 7.0 * feed_side, min(fence_z + 10.0, far_z - 4.0)])
        v_t = min(row((gate_x, (track_z[0] + track_z[1]) / 2)), H - 1.0)
        xs_t = [float(lay(cam.ray_to_ground(np.array([u, v_t])))[0]) for u in (0.0, W - 1.0)]
        track_dir = 1 if max(xs_t) - gate_x >= gate_x - min(xs_t) else -1
        feedlot = rng.uniform() < 0.3
        mud_base = float(rng.uniform(0.6, 0.85) if feedlot else rng.uniform(-0.35, 0.0))
        spots = [((gate_x, fence_z + 1.5), 3.0, 0.9), ((gate_x, fence_z - verge * 0.5), 2.0, 0.5), ((trough[0], trough[1]), 2.2, 0.8)]
        return Layout(psi, fence_z, gate_x, gate_w, track_z, feed_side, feed_x, far_z, (min(vis), max(vis)), trough,
                      trough_yaw, sick, float(rng.uniform(-np.pi, np.pi)), track_dir, mud_base, spots)

    # ---- helpers --------------------------------------------------------------------------------
    def _tid(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _row(self, p) -> float:
        return float(self._ground_uv(np.asarray(p, float))[1])

    def _sample(self, rng, z_lo, z_hi, u_lo=0.06, u_hi=0.94, margin=1.2, tries=50) -> np.ndarray:
        """A paddock point between depths z_lo and z_hi, seen between image columns u_lo and u_hi."""
        lay = self.layout
        p = np.array([lay.gate_x, (z_lo + z_hi) / 2])
        for _ in range(tries):
            z = rng.uniform(z_lo, max(z_hi, z_lo + 0.1))
            v = self._row((lay.gate_x, z))
            xs = [float(lay.to_layout(self.camera.ray_to_ground(np.array([u * self.width, v])))[0]) for u in (u_lo, u_hi)]
            p = np.array([rng.uniform(min(xs), max(xs)), z])
            if lay.inside(p, margin) and not self._blocked(p):
                return p
        return p

    def _blocked(self, p, r: float = 0.0) -> bool:
        return any(np.hypot(*(p - q)) < rq + r for q, rq in self._obstacles)

    def _bounds(self, z_min: float | None = None) -> list[HalfPlane]:
        lay, W = self.layout, self.width
        out = [HalfPlane(np.array([0.0, 1.0]), lay.fence_z + 1.1 if z_min is None else z_min),
               HalfPlane(np.array([0.0, -1.0]), -lay.far_z),
               HalfPlane(np.array([-lay.feed_side, 0.0]), 1.0 - lay.feed_side * lay.feed_x)]
        v1, v2 = self._v_fence * self.height, self._row((lay.gate_x, lay.far_z))
        centre = np.array([lay.gate_x, (lay.fence_z + lay.far_z) / 2])
        for u in (0.0, W - 1.0):  # cows may leave the picture by two metres, no more
            a = lay.to_layout(self.camera.ray_to_ground(np.array([u, v1])))
            b = lay.to_layout(self.camera.ray_to_ground(np.array([u, v2])))
            if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
                continue
            n = np.array([-(b - a)[1], (b - a)[0]])
            n /= np.linalg.norm(n) + 1e-12
            if n @ centre < n @ a:
                n = -n
            out.append(HalfPlane(n, float(n @ a) - 2.0))
        return out

    def _new_cow(self, rng, **kw) -> Cow:
        crng = np.random.default_rng(rng.integers(2**63))
        calf = crng.uniform() < 0.12
        size = float(crng.uniform(0.6, 0.72) if calf else crng.uniform(0.86, 1.08))
        return Cow(self._tid(), size, random_coat(crng), float(crng.uniform(0, 2 * np.pi)), int(crng.choice([-1, 1])),
                   float(crng.uniform(0.7, 1.0)), **kw)

    def _place_group(self, rng, centre, n: int, radius: float, taken: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for _ in range(n):
            p = centre
            for _ in range(60):
                p = centre + rng.uniform(-radius, radius, 2)
                if self.layout.inside(p, 1.2) and all(np.hypot(*(p - q)) > 1.9 for q in taken + out) and not self._blocked(p, 1.0):
                    break
            out.append(p)
        return out

    # ---- setup ---------------------------------------------------------------------------------
    def _setup(self, static_hulls):
        rng = self.rng
        self._next_id = 1
        self.cows: list[Cow] = []
        self.workers: list[Worker] = []
        self.herd: Herd | None = None
        self._escapee: Cow | None = None
        self._obstacles: list[tuple[np.ndarray, float]] = []
        self._keep_out: list[tuple[float, float, float, float]] = []
        lay = self.layout
        self._sick_cow: Cow | None = None
        self._obstacles.append((lay.trough.copy(), 1.5))
        drng = np.random.default_rng(rng.integers(2**63))  # distractor places: the same in every scenario
        specs = self._distractor_specs(drng)
        gate_open = {"animal_on_track": True, "gate_crowding": False, "cow_down": False}.get(self.scenario)
        if gate_open is None:
            gate_open = bool(rng.uniform() < 0.3)
        self._add_fixtures(rng, static_hulls, gate_open)
        self._add_distractors(specs, static_hulls)
        if self.scenario is not None:
            self._keep_out.append(self._sick_keep_out())
        if self.scenario == "gate_crowding":
            self._setup_gate_crowding(rng)
        elif self.scenario == "animal_on_track":
            self._setup_animal_on_track(rng)
        elif self.scenario == "cow_down":
            self._setup_cow_down(rng)
        else:
            self._setup_random(rng)

    def _add_fixtures(self, rng, static_hulls, gate_open: bool) -> None:
        lay, painter = self.layout, self.painter
        W = lambda p: lay.to_world(np.asarray(p, float))  # noqa: E731
        frng = np.random.default_rng(rng.integers(2**63))
        wire = frng.uniform() < 0.4
        wood = tuple(int(c) for c in frng.uniform([55, 80, 100], [95, 120, 140]))
        x0, x1 = lay.vis_x[0] - 6.0, lay.vis_x[1] + 6.0
        g0, g1 = lay.gate_x - lay.gate_w / 2, lay.gate_x + lay.gate_w / 2
        self.static_items += fence_items(painter, W((x0, lay.fence_z)), W((x1, lay.fence_z)), kind="wire" if wire else "rail",
                                         spacing=float(frng.uniform(2.5, 3.5)), post_color=wood,
                                         rail_color=(140, 140, 140) if wire else tuple(int(c * 1.25) for c in wood),
                                         gaps=[(g0 - x0, g1 - x0)])
        steel = (175, 175, 170) if frng.uniform() < 0.6 else (40, 120, 200)
        for gx in (g0, g1):  # gate posts
            self.static_items.append(post_item(painter, W((gx, lay.fence_z)), 0.0, False, wood))
        if gate_open:
            hinge, d = (g0, lay.fence_z), lay.to_world(np.array([0.15 * lay.track_dir, 1.0]))
        else:
            hinge, d = (g0, lay.fence_z), lay.to_world(np.array([1.0, 0.0]))
        self.static_items.append(gate_item(painter, W(hinge), d, lay.gate_w - 0.1, steel))
        # feed fence, alley and silage: drawn before anything in the paddock (the camera is on the paddock's side)
        fz1 = lay.far_z + 6.0
        feed_col = (0, 170, 230) if frng.uniform() < 0.5 else (160, 160, 155)
        self.static_items += fence_items(painter, W((lay.feed_x, lay.fence_z)), W((lay.feed_x, fz1)), kind="feed",
                                         spacing=3.0, post_color=feed_col, rail_color=feed_col, depth_bias=FEED_BIAS)
        wx = lay.feed_x + lay.feed_side * 1.0
        silage = tuple(int(c) for c in frng.uniform([25, 85, 95], [60, 130, 140]))
        self.static_items += windrow_item(painter, W((wx, lay.fence_z + 0.5)), W((wx, fz1)), silage, depth_bias=FEED_BIAS + 1.0)
        # far fence, when it is still on the ground in the picture
        zf = lay.far_z + 4.0
        if self._row((lay.gate_x, zf)) > self.camera.horizon_v() + 4:
            span = (lay.far_z - lay.fence_z) * 0.8 + 20.0
            self.static_items += fence_items(painter, W((lay.gate_x - span, zf)), W((lay.gate_x + span, zf)), kind="wire",
                                             spacing=4.0, post_color=wood, rail_color=(120, 120, 120), depth_bias=2.0)
        # water trough
        tcol = [(165, 165, 160), (150, 150, 150), (40, 40, 40), (60, 110, 40)][int(frng.integers(4))]
        item, outline = trough_item(painter, W(lay.trough), lay.world_yaw(lay.trough_yaw), tcol)
        self.static_items.append(item)
        static_hulls.append(painter.ground_shadow(outline))

    def _distractor_specs(self, drng) -> list[tuple]:
        """Places of the unlabelled distractors (bales, posts, buckets, a trailer), each an obstacle cows avoid."""
        lay = self.layout
        specs: list[tuple] = []
        sick_r = 5.0
        for _ in range(int(drng.integers(0, 4))):  # bales in the paddock, away from the gate, trough and sick spot
            p = self._sample(drng, lay.fence_z + 4.0, lay.far_z - 1.0)
            if abs(p[0] - lay.gate_x) < 7 or np.hypot(*(p - lay.sick)) < sick_r + 2 or self._blocked(p, 1.5):
                continue
            kind = "square" if drng.uniform() < 0.3 else "round"
            col = [(80, 170, 200), (30, 30, 30), (60, 110, 50), (225, 225, 225)][int(drng.choice(4, p=[0.5, 0.2, 0.15, 0.15]))]
            specs.append(("bale", p, float(drng.uniform(-np.pi, np.pi)), col, kind, bool(drng.uniform() < 0.5), int(drng.integers(2, 7))))
            self._obstacles.append((p, 1.3))
        for _ in range(int(drng.integers(0, 4))):  # buckets by the trough or on the verge by the gate
            if drng.uniform() < 0.5:
                p = lay.trough + drng.uniform(-2.0, 2.0, 2)
                if np.hypot(*(p - lay.trough)) < 1.5:
                    continue
            else:
                p = np.array([lay.gate_x - lay.track_dir * drng.uniform(3.0, 6.0),
                              lay.fence_z - drng.uniform(0.2, 0.6)])
            col = [(200, 80, 20), (30, 30, 30), (40, 40, 200), (0, 180, 240), (200, 200, 200)][int(drng.integers(5))]
            specs.append(("bucket", p, col))
            if lay.inside(p, 0.0):
                self._obstacles.append((p, 0.35))
        for _ in range(int(drng.integers(0, 3))):  # spare posts along the near fence, or a lone one standing
            lying = drng.uniform() < 0.7
            if lying:
                p = np.array([lay.gate_x - lay.track_dir * drng.uniform(4.0, 12.0), lay.fence_z - drng.uniform(0.3, 0.7)])
                specs.append(("post", p, float(np.pi / 2 + drng.uniform(-0.3, 0.3)), True))  # along the fence
            else:
                p = self._sample(drng, lay.fence_z + 3.0, lay.far_z - 2.0)
                if abs(p[0] - lay.gate_x) < 5 or np.hypot(*(p - lay.sick)) < sick_r + 1:
                    continue
                specs.append(("post", p, 0.0, False))
                self._obstacles.append((p, 0.3))
        if drng.uniform() < 0.5:  # a parked trailer: on the verge away from the gate, or at the paddock's far end
            col = tuple(int(c) for c in drng.uniform([60, 60, 60], [200, 200, 200]))
            if drng.uniform() < 0.5:
                p = np.array([lay.gate_x - lay.track_dir * drng.uniform(9.0, 14.0), lay.track_z[0] - 1.6])
                yaw = np.pi / 2
            else:
                p = self._sample(drng, lay.far_z - 6.0, lay.far_z - 2.0)
                yaw = float(drng.uniform(-np.pi, np.pi))
                if np.hypot(*(p - lay.sick)) < sick_r + 3 or abs(p[0] - lay.gate_x) < 6:
                    return specs
                for s in (-2.0, 0.0, 2.0):
                    self._obstacles.append((p + s * np.array([np.sin(yaw), np.cos(yaw)]), 1.6))
            specs.append(("trailer", p, yaw, col, bool(drng.uniform() < 0.5)))
        return specs

    def _add_distractors(self, specs, static_hulls) -> None:
        lay, painter = self.layout, self.painter
        for s in specs:
            w = lay.to_world(s[1])
            if s[0] == "bale":
                _, _, yaw, col, kind, standing, n = s
                if kind == "round":
                    item, outline = round_bale_item(painter, w, lay.world_yaw(yaw), col, standing)
                else:
                    item, outline = square_bales_item(painter, w, lay.world_yaw(yaw), col, n)
                self.static_items.append(item)
                static_hulls.append(painter.ground_shadow(outline))
            elif s[0] == "bucket":
                self.static_items.append(bucket_item(painter, w, s[2]))
            elif s[0] == "post":
                self.static_items.append(post_item(painter, w, lay.world_yaw(s[2]), s[3]))
            elif s[0] == "trailer":
                item, outline = trailer_item(painter, w, lay.world_yaw(s[2]), s[3], s[4])
                self.static_items.append(item)
                static_hulls.append(painter.ground_shadow(outline))

    # ---- movers ---------------------------------------------------------------------------------
    def _random_goal(self, prng, t0: float, n: int, kinds: tuple[str, ...]) -> Goal:
        lay = self.layout
        kind = str(prng.choice(kinds))
        if kind == "gate":
            return Goal(t0, np.array([lay.gate_x, lay.fence_z + 1.8]), 1.0 + 0.6 * np.sqrt(n), 1.0, face=np.pi, graze=False)
        if kind == "feed":
            z = prng.uniform(lay.fence_z + 3.0, min(lay.far_z - 3.0, lay.fence_z + 20.0))
            return Goal(t0, np.array([lay.feed_x - lay.feed_side * 1.3, z]), 0.55 * n + 0.3, 0.9,
                        line=np.array([0.0, 1.0]), face=lay.feed_side * np.pi / 2, graze=True)
        if kind == "trough":
            return Goal(t0, lay.trough.copy(), 2.4, 0.9, graze=True)
        if kind == "rest":
            return Goal(t0, None, graze=False)
        p = self._sample(prng, lay.fence_z + 3.0, lay.far_z - 1.5)
        return Goal(t0, p, 1.0 + 0.9 * np.sqrt(n), 0.8, graze=True)

    def _random_plan(self, prng, n: int, kinds=("graze", "graze", "gate", "feed", "feed", "trough", "rest"), first=None):
        goals = [first or Goal(0.0, None)]
        nxt = [float(prng.uniform(2.0, 14.0))]

        def plan(t: float) -> Goal:
            while t >= nxt[0]:
                goals.append(self._random_goal(prng, nxt[0], n, kinds))
                nxt[0] += float(prng.uniform(12.0, 35.0))
            return goals[-1]

        return plan

    def _make_herd(self, rng, groups: list[tuple[list[np.ndarray], object]], bounds=None) -> None:
        """Cows at the given places, one plan per group, simulated together."""
        starts, gid, plans, cows = [], [], [], []
        for g, (places, plan) in enumerate(groups):
            for p in places:
                cow = self._new_cow(rng, herd_index=len(starts))
                cows.append(cow)
                starts.append(p)
                gid.append(g)
            plans.append(plan)
        if not starts:
            return
        hrng = np.random.default_rng(rng.integers(2**63))
        obstacles = list(self._obstacles)
        for c in self.cows:  # cows lying still are obstacles
            if c.lying:
                for q in body_circles(c.pos[None], np.array([c.heading]), np.array([c.size]))[0]:
                    obstacles.append((q, BODY_R * c.size + (0.6 if c is self._sick_cow else 0.0)))
        self.herd = Herd(np.array(starts), hrng.uniform(-np.pi, np.pi, len(starts)), np.array(gid),
                         np.array([c.size for c in cows]), hrng.uniform(0.85, 1.25, len(starts)),
                         np.array([c.grazer for c in cows]), hrng, plans, bounds or self._bounds(), obstacles,
                         list(self._keep_out), self._movers)
        self.cows += cows

    def _movers(self, t: float) -> list[tuple[np.ndarray, float]]:
        out = []
        for w in self.workers:
            _, pos, _, _ = w.timeline.at(t)
            out.append((pos, 1.6))
        if self._escapee is not None:
            pos, h, _ = self._scripted_state(self._escapee, t)[:3]
            for q in body_circles(pos[None], np.array([h]), np.array([self._escapee.size]))[0]:
                out.append((q, BODY_R * self._escapee.size + 0.2))
        return out

    def _worker(self, rng, region: str, start: np.ndarray | None = None, still_s: float | None = None) -> Worker:
        wrng = np.random.default_rng(rng.integers(2**63))
        lay = self.layout

        def spot():
            if region == "track":
                v = self._row((lay.gate_x, lay.track_c))
                xs = [float(lay.to_layout(self.camera.ray_to_ground(np.array([u * self.width, min(v, self.height - 1.0)])))[0])
                      for u in (0.05, 0.95)]
                return np.array([wrng.uniform(min(xs), max(xs)), lay.track_c + wrng.uniform(-0.8, 0.8)])
            return self._sample(wrng, lay.fence_z + 2.0, lay.far_z - 1.0)

        start = spot() if start is None else start
        speed = float(wrng.uniform(0.9, 1.4))

        def extend(last: Seg) -> list[Seg]:
            p = last.p1
            if last.pose == "walk":
                return [Seg(last.t1, last.t1 + float(wrng.uniform(0.5, 6.0)), p, p, p, "crouch" if wrng.uniform() < 0.25 else "stand")]
            q = spot()
            for _ in range(20):
                if 2.0 <= np.hypot(*(q - p)) <= 20.0:
                    break
                q = spot()
            dist = float(np.hypot(*(q - p)))
            mid = (p + q) / 2 + wrng.normal(0, 0.1 * dist, 2)
            return [Seg(last.t1, last.t1 + max(dist, 0.1) / speed, p, q, mid, "walk")]

        first = Seg(0.0, float(wrng.uniform(0.0, 4.0)) if still_s is None else still_s, start, start, start, "stand")
        return Worker(self._tid(), float(wrng.uniform(1.6, 1.9)), worker_look(wrng), Timeline([first], extend),
                      float(wrng.uniform(0, 6.28)))

    def _lying_cow(self, rng, p, heading=None, head_down=None) -> Cow:
        cow = self._new_cow(rng, lying=True, pos=np.asarray(p, float),
                            heading=float(rng.uniform(-np.pi, np.pi)) if heading is None else heading)
        cow.head_down = float(rng.choice([0.0, 0.2, 0.6])) if head_down is None else head_down
        return cow

    # ---- random scene and scenarios ------------------------------------------------------------
    def _setup_random(self, rng):
        lay = self.layout
        taken: list[np.ndarray] = []
        for _ in range(int(rng.integers(0, 3))):
            p = self._sample(rng, lay.fence_z + 3.0, lay.far_z - 1.0)
            if abs(p[0] - lay.gate_x) > 4 and all(np.hypot(*(p - q)) > 3.0 for q in taken):
                self.cows.append(self._lying_cow(rng, p))
                taken.append(p)
                self._obstacles.append((p, 1.4))
        groups = []
        for _ in range(int(rng.integers(1, 4))):
            n = int(rng.integers(2, 8))
            prng = np.random.default_rng(rng.integers(2**63))
            centre = self._sample(rng, lay.fence_z + 2.5, lay.far_z - 1.0)
            places = self._place_group(rng, centre, n, 1.2 + 0.9 * np.sqrt(n), taken)
            taken += places
            first = self._random_goal(prng, 0.0, n, ("gate", "feed", "graze", "graze", "trough")) if rng.uniform() < 0.5 else None
            groups.append((places, self._random_plan(prng, n, first=first)))
        for _ in range(int(rng.choice([0, 0, 1, 1, 2]))):
            self.workers.append(self._worker(rng, "track" if rng.uniform() < 0.4 else "paddock"))
        self._make_herd(rng, groups)

    def _setup_gate_crowding(self, rng):
        """The herd grazes, walks to the closed gate at t_call, bunches there, and leaves at t_release."""
        lay = self.layout
        n = int(rng.integers(8, 13))
        z_lo = lay.fence_z + 8.0
        z_hi = max(min(lay.fence_z + 13.0, lay.far_z - 1.0), z_lo + 2.0)
        centre = np.array([lay.gate_x + rng.uniform(-3.0, 3.0), (z_lo + z_hi) / 2])
        places = []
        for _ in range(n):
            p = centre
            for _ in range(80):
                p = np.array([centre[0] + rng.uniform(-6.5, 6.5), rng.uniform(z_lo, z_hi)])
                if lay.inside(p, 1.2) and all(np.hypot(*(p - q)) > 1.9 for q in places) and not self._blocked(p, 1.0):
                    break
            places.append(p)
        self.t_call = float(rng.uniform(1.0, 2.0))
        self.t_release = self.t_call + float(rng.uniform(9.5, 10.5))
        gate = np.array([lay.gate_x, lay.fence_z + 1.7])
        away = self._sample(rng, max(lay.fence_z + 13.0, lay.far_z - 6.0), lay.far_z - 1.0)
        goals = [Goal(0.0, None), Goal(self.t_call, gate, 3.0, 1.3, face=np.pi, graze=False),
                 Goal(self.t_release, away, 4.5, 1.1, graze=True)]

        def plan(t: float) -> Goal:
            return [g for g in goals if g.t0 <= t][-1]

        groups = [(places, plan)]
        if rng.uniform() < 0.6:  # a few others feed or graze far from the gate
            prng = np.random.default_rng(rng.integers(2**63))
            m = int(rng.integers(2, 5))
            c2 = self._sample(rng, lay.fence_z + 12.0, lay.far_z - 1.0)
            if abs(c2[0] - lay.gate_x) > 6:
                groups.append((self._place_group(rng, c2, m, 2.5, places),
                               self._random_plan(prng, m, kinds=("graze", "feed"), first=Goal(0.0, None))))
        self.workers.append(self._worker(rng, "track", start=np.array([lay.gate_x - lay.track_dir * 2.5, lay.track_c]),
                                         still_s=float(rng.uniform(6.0, 12.0))))
        self._make_herd(rng, groups)

    def _setup_animal_on_track(self, rng):
        """One cow leaves through the open gate onto the farm track and walks along it; the others graze."""
        lay = self.layout
        d = lay.track_dir
        start = np.array([lay.gate_x + rng.uniform(-2.5, 2.5), lay.fence_z + rng.uniform(5.0, 6.5)])
        a = np.array([lay.gate_x + 0.3, lay.fence_z + 1.6])
        b = np.array([lay.gate_x, lay.fence_z - 0.9])
        c = np.array([lay.gate_x + d * 4.0, lay.track_c])
        e = np.array([lay.gate_x + d * 15.0, lay.track_c + rng.uniform(-0.4, 0.4)])
        self.t_go = t0 = float(rng.uniform(1.0, 2.5))
        sp = float(rng.uniform(1.05, 1.3))
        segs = [Seg(0.0, t0, start, start, start, "graze", np.pi)]
        for p, q, ctrl in ((start, a, (start + a) / 2), (a, b, (a + b) / 2), (b, c, np.array([lay.gate_x, lay.track_c])),
                           (c, e, (c + e) / 2)):
            length = float(np.hypot(*(q - p))) * 1.1
            segs.append(Seg(segs[-1].t1, segs[-1].t1 + length / sp, p, q, np.asarray(ctrl, float), "walk"))
        segs.append(Seg(segs[-1].t1, 1e6, e, e, e, "graze", d * np.pi / 2))
        self._escapee = self._new_cow(rng, timeline=Timeline(segs))
        self.cows.append(self._escapee)
        n = int(rng.integers(4, 10))
        prng = np.random.default_rng(rng.integers(2**63))
        centre = self._sample(rng, lay.fence_z + 10.0, lay.far_z - 1.0)
        places = self._place_group(rng, centre, n, 1.2 + 0.9 * np.sqrt(n), [start])
        groups = [(places, self._random_plan(prng, n, kinds=("graze", "feed", "trough")))]
        if rng.uniform() < 0.4:
            self.workers.append(self._worker(rng, "paddock"))
        self._make_herd(rng, groups, bounds=self._bounds(z_min=lay.fence_z + 5.5))

    def _setup_cow_down(self, rng):
        """A cow lies still, head down, in the sick spot the whole clip; the others keep away from it."""
        lay = self.layout
        self._sick_cow = self._lying_cow(rng, lay.sick, heading=lay.sick_yaw, head_down=1.0)
        self.cows.append(self._sick_cow)
        taken = [lay.sick]
        groups = []
        for _ in range(int(rng.integers(1, 3))):
            n = int(rng.integers(3, 7))
            prng = np.random.default_rng(rng.integers(2**63))
            centre = self._sample(rng, lay.fence_z + 2.5, lay.far_z - 1.0)
            places = [p for p in self._place_group(rng, centre, n, 1.2 + 0.9 * np.sqrt(n), taken) if not self._in_keep_out(p)]
            taken += places
            groups.append((places, self._random_plan(prng, n, kinds=("graze", "graze", "feed", "trough", "rest"))))
        if rng.uniform() < 0.6:
            self.workers.append(self._worker(rng, "track" if rng.uniform() < 0.5 else "paddock"))
        self._make_herd(rng, groups)

    def _in_keep_out(self, p) -> bool:
        return any(x0 <= p[0] <= x1 and z0 <= p[1] <= z1 for x0, x1, z0, z1 in self._keep_out)

    # ---- zones ---------------------------------------------------------------------------------
    SICK_HALF_X, SICK_NEAR, SICK_FAR = 2.4, 2.0, 2.6

    def _sick_keep_out(self) -> tuple[float, float, float, float]:
        """A box (layout) no other cow's centre enters, so no other cow covers the sick spot's zone in the image:
        nearer cows stand up into the picture over it, so the box reaches further towards the camera."""
        lay = self.layout
        s = lay.sick
        h = self.camera.position[1]
        near = s[1] - self.SICK_NEAR
        reach = near * (1.0 - (h - COW_H_M * 1.1) / h) if h > COW_H_M * 1.1 else 8.0
        return (s[0] - self.SICK_HALF_X - 2.0, s[0] + self.SICK_HALF_X + 2.0, near - min(reach, 8.0) - 1.5, s[1] + self.SICK_FAR + 1.8)

    def _zone(self, corners) -> list[list[float]]:
        """A convex ground polygon (layout) as a normalized image polygon, clipped to the frame."""
        uv = self._ground_uv(np.asarray(corners, float)).astype(np.float32)
        W, H = self.width, self.height
        frame = np.array([[0, 0], [W, 0], [W, H], [0, H]], np.float32)
        _, inter = cv2.intersectConvexConvex(uv, frame)
        pts = inter.reshape(-1, 2) if inter is not None and len(inter) >= 3 else uv
        out = []
        for x, y in pts:
            q = [round(float(np.clip(x / W, 0, 1)), 4), round(float(np.clip(y / H, 0, 1)), 4)]
            if not out or q != out[-1]:
                out.append(q)
        if len(out) > 1 and out[0] == out[-1]:
            out.pop()
        return out

    def zone_polygons(self) -> dict[str, list[list[float]]]:
        """The three scenario zones of this seed's layout (the same in every scenario)."""
        lay = self.layout
        gx, fz = lay.gate_x, lay.fence_z
        gate = [(gx - 4.5, fz + 0.2), (gx + 4.5, fz + 0.2), (gx + 4.5, fz + 6.5), (gx - 4.5, fz + 6.5)]
        # the track: from just in front of the fence to below the picture's bottom edge, as wide as seen
        bottom = [lay.to_layout(self.camera.ray_to_ground(np.array([u, self.height - 1.0]))) for u in (0.0, self.width - 1.0)]
        top = [lay.to_layout(self.camera.ray_to_ground(np.array([u, self._v_fence * self.height]))) for u in (0.0, self.width - 1.0)]
        xs = [p[0] for p in bottom + top]
        z_near = min(p[1] for p in bottom) - 1.0  # the track's near part and the verge below are on it too
        x0, x1 = min(xs) - 2.0, max(xs) + 2.0
        track = [(x0, z_near), (x1, z_near), (x1, fz - 0.3), (x0, fz - 0.3)]
        s = lay.sick
        down = [(s[0] - self.SICK_HALF_X, s[1] - self.SICK_NEAR), (s[0] + self.SICK_HALF_X, s[1] - self.SICK_NEAR),
                (s[0] + self.SICK_HALF_X, s[1] + self.SICK_FAR), (s[0] - self.SICK_HALF_X, s[1] + self.SICK_FAR)]
        return {"gate-area": self._zone(gate), "farm-track": self._zone(track), "down-spot": self._zone(down)}

    ZONE_NAMES = {"gate-area": "Gate area", "farm-track": "Farm track", "down-spot": "Where a cow lies"}
    RULES = {
        "gate_crowding": {"id": "gate-crowding", "type": "occupancy", "zone": "gate-area", "classes": ["cow"],
                          "max_count": GATE_MAX_COUNT, "min_overlap": 0.4, "hold_s": GATE_HOLD_S,
                          "min_duration_s": GATE_MIN_DURATION_S, "clear_after_s": 2.0, "severity": "warning"},
        "animal_on_track": {"id": "cow-on-track", "type": "intrusion", "zone": "farm-track", "classes": ["cow"],
                            "min_overlap": 0.3, "min_duration_s": 0.5, "clear_after_s": 1.5, "severity": "critical"},
        "cow_down": {"id": "cow-down", "type": "dwell", "zone": "down-spot", "classes": ["cow"],
                     "max_duration_s": DOWN_DWELL_S, "min_overlap": 0.5, "clear_after_s": 2.0, "severity": "warning"},
    }

    def zone_file(self, all_scenarios: bool = False) -> dict | None:
        """The scenario's zone and rule; `all_scenarios`: the three zones and rules at once (one file for the
        three scenario clips of a seed, as in configs/zones/farm-demo.yaml)."""
        if self.scenario is None and not all_scenarios:
            return None
        polys = self.zone_polygons()
        names = self.scenarios if all_scenarios else (self.scenario,)
        rules = [dict(self.RULES[s]) for s in names]
        zones = [{"id": r["zone"], "name": self.ZONE_NAMES[r["zone"]], "polygon": polys[r["zone"]]} for r in rules]
        return {"units": "normalized", "zones": zones, "rules": rules}

    # ---- rendering -----------------------------------------------------------------------------
    def _scripted_state(self, cow: Cow, t: float):
        """Position, heading, head-down, gait and gait phase of a cow following a timeline (layout)."""
        seg, pos, vel, _ = cow.timeline.at(t)
        speed = float(np.hypot(*vel))
        segs = cow.timeline.segs
        i = segs.index(seg)
        if seg.pose == "graze":
            prev = segs[i - 1] if i > 0 else None
            h = seg.heading if prev is None else heading_of(prev.p1 - prev.ctrl, seg.heading)
            hd = smoothstep((t - seg.t0) / 1.5) if i > 0 else 1.0
        else:
            h = heading_of(vel, seg.heading)
            hd = 1.0 - smoothstep((t - seg.t0) / 0.7) if i > 0 and segs[i - 1].pose == "graze" else 0.0
        gait = min(speed / (0.85 * cow.size), 1.0)
        walked = sum(float(np.hypot(*(s.p1 - s.p0))) for s in segs[:i] if s.pose == "walk") + (t - seg.t0) * speed
        phase = cow.phase0 + walked / (1.55 * cow.size) * 2 * np.pi
        return pos, h, hd * cow.grazer, gait, phase

    def dynamic(self, t: float):
        items: list[Item] = []
        hulls = []
        painter, cam, lay = self.painter, self.camera, self.layout
        if self.herd is not None:
            P, Hh, HD, D, S = self.herd.at(t)
        for cow in self.cows:
            if cow.herd_index is not None:
                i = cow.herd_index
                pos, h, hd = P[i], float(Hh[i]), float(HD[i])
                gait = float(np.clip(S[i] / (0.85 * cow.size), 0.0, 1.0))
                phase = cow.phase0 + float(D[i]) / (1.55 * cow.size) * 2 * np.pi
            elif cow.timeline is not None:
                pos, h, hd, gait, phase = self._scripted_state(cow, t)
            else:
                pos, h, hd, gait, phase = cow.pos, cow.heading, cow.head_down, 0.0, cow.phase0
            w = lay.to_world(pos)
            px = cam.px_per_m((float(w[0]), float(w[1]))) * COW_H_M * cow.size
            parts, outline = cow_parts(painter, w, lay.world_yaw(h), cow.size, cow.coat, phase=phase, gait=gait,
                                       head_down=hd, lying=cow.lying, leg_side=cow.leg_side, px_tall=px,
                                       tail_sway=float(np.sin(1.3 * t + cow.phase0)) if not cow.lying else 0.0)
            items.append(Item(float(cam.depth(np.array([w[0], 0.0, w[1]]))), parts, C.COW, cow.track_id))
            hulls.append(painter.ground_shadow(outline))
        for wk in self.workers:
            seg, pos, vel, _ = wk.timeline.at(t)
            speed = float(np.hypot(*vel))
            pose = seg.pose if seg.pose in ("stand", "crouch") else "walk"
            side = abs(float(vel[0])) / speed if speed > 1e-6 else 0.0  # layout x is roughly the image's across
            phase = wk.phase0 + (t - seg.t0) * speed / wk.stride_m * 2 * np.pi
            w = lay.to_world(pos)
            parts, outline = person_parts(painter, w, wk.height_m, pose, phase, side, wk.look)
            items.append(Item(float(cam.depth(np.array([w[0], 0.0, w[1]]))), parts, C.WORKER, wk.track_id))
            hulls.append(painter.ground_shadow(outline))
        return items, hulls
