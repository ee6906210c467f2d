"""`site`: a construction site seen by a pole camera at an oblique angle."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import classes as C
from .base import Scene
from .camera import Camera
from .motion import Seg, Timeline, heading_of, keyframes, smoothstep
from .objects import (
    ExcavatorPose,
    Look,
    cone_item,
    container_item,
    excavator_parts,
    fence_item,
    person_parts,
    pile_item,
    truck_parts,
    worker_look,
)
from .render import Item, order_parts
from .textures import site_ground

WORKER_H_PX = (20.0, 80.0)  # issue 4: workers are 20-80 px tall at 1280x720
MACHINE_COLORS = [(0, 190, 245), (0, 175, 230), (10, 130, 240), (30, 200, 230), (200, 200, 200), (40, 60, 200)]
BED_COLORS = [(110, 110, 115), (0, 180, 240), (60, 80, 150), (150, 150, 150)]

# excavator dig cycle keyframes: (fraction, swing 0 = dig / 1 = dump, boom, arm, bucket)
DIG_CYCLE = [
    (0.00, 0.0, 12.0, -55.0, -30.0),
    (0.20, 0.0, 4.0, -112.0, -105.0),
    (0.35, 0.0, 38.0, -95.0, -115.0),
    (0.55, 1.0, 45.0, -75.0, -110.0),
    (0.66, 1.0, 45.0, -62.0, 5.0),
    (0.85, 0.0, 28.0, -48.0, -20.0),
    (1.00, 0.0, 12.0, -55.0, -30.0),
]


@dataclass
class Worker:
    track_id: int
    height_m: float
    look: Look
    timeline: Timeline
    phase0: float
    stride_m: float = 1.45


@dataclass
class Excavator:
    track_id: int
    pos: np.ndarray
    yaw: float
    color: tuple
    period_s: float
    t_offset: float
    swing_dig: float
    swing_dump: float
    scripted: list[tuple[float, float, float, float, float]] | None = None  # (t, swing, boom, arm, bucket)

    def pose(self, t: float) -> ExcavatorPose:
        if self.scripted is not None:
            times = [k[0] for k in self.scripted]
            t_end = times[-1]
            frac = min(max(t, 0.0), t_end) / t_end
            keys = [(k[0] / t_end, *k[1:]) for k in self.scripted]
            sw, boom, arm, bucket = keyframes(frac, keys)
            return ExcavatorPose(float(sw), float(boom), float(arm), float(bucket))
        frac = ((t + self.t_offset) % self.period_s) / self.period_s
        s, boom, arm, bucket = keyframes(frac, DIG_CYCLE)
        swing = self.swing_dig + (self.swing_dump - self.swing_dig) * s
        return ExcavatorPose(float(swing), float(boom), float(arm), float(bucket))


@dataclass
class Truck:
    track_id: int
    color: tuple
    bed_color: tuple
    timeline: Timeline
    tip_max_deg: float = 50.0
    extra: dict = field(default_factory=dict)


TRUCK_SLOW_KMH, TRUCK_FAST_KMH, TRUCK_SPEED_LIMIT_KMH = 9.0, 25.0, 15.0  # scenario truck_speed


class SiteScene(Scene):
    name = "site"
    scenarios = ("excavator_swing", "truck_reverse", "truck_speed")

    def _make_camera(self) -> Camera:
        rng = self.rng
        scale = self.width / 1280.0
        for _ in range(200):
            cam = Camera(
                self.width,
                self.height,
                focal_px=float(rng.uniform(850, 1350)) * scale,
                position_m=(0.0, float(rng.uniform(7.0, 16.0)), 0.0),
                pitch_deg=float(rng.uniform(16.0, 30.0)),
                yaw_deg=float(rng.uniform(-8.0, 8.0)),
            )
            bottom = cam.ray_to_ground(np.array([self.width / 2, self.height - 1.0]))
            h_bottom = cam.px_per_m(tuple(bottom)) * 1.75
            if 55.0 * scale <= h_bottom <= 88.0 * scale and cam.horizon_v() < 0.3 * self.height:
                return cam
        return cam

    def _make_background(self) -> np.ndarray:
        return site_ground(self.rng, self.camera)

    def _ok_worker_spot(self, xz) -> bool:
        if not np.all(np.isfinite(xz)):
            return False
        h = self.camera.px_per_m((float(xz[0]), float(xz[1]))) * 1.75 * 1280.0 / self.width
        return WORKER_H_PX[0] <= h <= WORKER_H_PX[1]

    def _spot(self, rng, avoid_machines: float = 0.0, **kw) -> np.ndarray:
        for _ in range(100):
            p = self.sample_image_ground(rng, **kw)
            if self._ok_worker_spot(p) and all(np.hypot(*(p - e.pos)) > avoid_machines for e in self.excavators):
                return p
        return p

    # ------------------------------------------------------------------------------------
    def _setup(self, static_hulls):
        rng = self.rng
        self.workers: list[Worker] = []
        self.excavators: list[Excavator] = []
        self.trucks: list[Truck] = []
        self._next_id = 1
        if self.scenario == "excavator_swing":
            self._setup_excavator_swing(rng)
        elif self.scenario == "truck_reverse":
            self._setup_truck_reverse(rng)
        elif self.scenario == "truck_speed":
            self._setup_truck_speed(rng)
        else:
            self._setup_random(rng)
        self._add_distractors(rng, static_hulls)

    def _tid(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _setup_random(self, rng):
        n_exc = int(rng.choice([0, 1, 1, 1, 2, 2]))
        n_trk = int(rng.choice([0, 1, 1, 2, 2, 3]))
        n_wrk = int(rng.integers(2, 13))
        for _ in range(n_exc):
            self.excavators.append(self._random_excavator(rng, self._spot(rng, v_rng=(0.2, 0.9))))
        for i in range(n_trk):
            self.trucks.append(self._random_truck(rng, lane=(i, n_trk)))
        for _ in range(n_wrk):
            self.workers.append(self._random_worker(rng))

    def _random_excavator(self, rng, pos) -> Excavator:
        dig = float(rng.uniform(-np.pi, np.pi))
        return Excavator(
            track_id=self._tid(),
            pos=np.asarray(pos, float),
            yaw=float(rng.uniform(-np.pi, np.pi)),
            color=MACHINE_COLORS[int(rng.integers(len(MACHINE_COLORS)))],
            period_s=float(rng.uniform(9.0, 18.0)),
            t_offset=float(rng.uniform(0, 20.0)),
            swing_dig=dig,
            swing_dump=dig + float(rng.choice([-1, 1]) * rng.uniform(0.8, 2.6)),
        )

    def _random_worker(self, rng, home: np.ndarray | None = None, radius: float = 25.0) -> Worker:
        wrng = np.random.default_rng(rng.integers(2**63))
        start = self._spot(wrng) if home is None else home + wrng.uniform(-radius, radius, 2) * 0.3
        speed = float(wrng.uniform(0.8, 1.6))

        def extend(last: Seg) -> list[Seg]:
            p = last.p1
            if last.pose in ("walk",):
                dur = float(wrng.uniform(0.5, 8.0))
                pose = "crouch" if wrng.uniform() < 0.3 else "stand"
                return [Seg(last.t1, last.t1 + dur, p, p, p, pose)]
            for _ in range(30):
                q = self._spot(wrng) if home is None else home + wrng.uniform(-radius, radius, 2)
                dist = float(np.hypot(*(q - p)))
                if 2.0 <= dist <= 25.0 and (home is not None or self._ok_worker_spot(q)):
                    break
            mid = (p + q) / 2 + wrng.normal(0, 0.15 * dist, 2)
            return [Seg(last.t1, last.t1 + dist / speed, p, q, mid, "walk")]

        first = Seg(0.0, float(wrng.uniform(0.0, 4.0)), start, start, start, "stand" if wrng.uniform() < 0.7 else "crouch")
        return Worker(self._tid(), float(wrng.uniform(1.6, 1.9)), worker_look(wrng), Timeline([first], extend), float(wrng.uniform(0, 6.28)))

    def _random_truck(self, rng, lane: tuple[int, int] = (0, 1)) -> Truck:
        # Each truck drives in its own band of image columns (a wedge of ground seen from the
        # camera), with a gap between bands: trucks pass in front of and behind each other but
        # never drive through each other, which would make their visible masks trade places.
        trng = np.random.default_rng(rng.integers(2**63))
        i, n = lane
        width = 0.94 / n
        gap = 0.2 * width if n > 1 else 0.0
        u_rng = (0.03 + i * width + gap, 0.03 + (i + 1) * width - gap)
        start = self._spot(trng, avoid_machines=12.0, u_rng=u_rng, v_rng=(0.15, 0.95))
        speed = float(trng.uniform(2.5, 6.0))
        tip_max = float(trng.uniform(40, 58))

        def extend(last: Seg) -> list[Seg]:
            p = last.p1
            if last.pose in ("drive", "reverse"):
                tangent = last.p1 - last.ctrl
                hd = heading_of(tangent if last.pose == "drive" else -tangent, last.heading)
                r = trng.uniform()
                if r < 0.35:
                    return [Seg(last.t1, last.t1 + float(trng.uniform(8, 13)), p, p, p, "tip", hd)]
                return [Seg(last.t1, last.t1 + float(trng.uniform(1.0, 5.0)), p, p, p, "stop", hd)]
            hd = last.heading
            fwd = np.array([np.sin(hd), np.cos(hd)])
            if trng.uniform() < 0.25:
                dist = float(trng.uniform(5, 15))
                side = np.array([fwd[1], -fwd[0]]) * trng.uniform(-0.4, 0.4) * dist
                q = p - fwd * dist + side
                ctrl = p - fwd * dist * 0.5
                return [Seg(last.t1, last.t1 + dist / (speed * 0.5) * 1.5, p, q, ctrl, "reverse", hd)]
            for _ in range(30):
                q = self._spot(trng, avoid_machines=12.0, u_rng=u_rng, v_rng=(0.1, 1.0))
                dist = float(np.hypot(*(q - p)))
                if 8.0 <= dist <= 60.0:
                    break
            ctrl = p + fwd * dist * float(trng.uniform(0.2, 0.5))
            return [Seg(last.t1, last.t1 + dist / speed * 1.5, p, q, ctrl, "drive", hd)]

        hd0 = float(trng.uniform(-np.pi, np.pi))
        first = Seg(0.0, float(trng.uniform(0.0, 3.0)), start, start, start, "stop", hd0)
        return Truck(
            self._tid(),
            MACHINE_COLORS[int(trng.integers(len(MACHINE_COLORS)))],
            BED_COLORS[int(trng.integers(len(BED_COLORS)))],
            Timeline([first], extend),
            tip_max,
        )

    def _add_distractors(self, rng, static_hulls):
        drng = np.random.default_rng(rng.integers(2**63))
        painter = self.painter
        avoid = [e.pos for e in self.excavators]

        def free(p, r):
            return all(np.hypot(*(p - a)) > r for a in avoid)

        for _ in range(int(drng.integers(0, 5))):
            p = self.sample_image_ground(drng, v_rng=(0.0, 0.9))
            if not free(p, 9.0):
                continue
            col = tuple(int(c) for c in drng.uniform([20, 20, 40], [160, 140, 200]))
            item, outline = container_item(painter, p, float(drng.uniform(-np.pi, np.pi)), col)
            self.static_items.append(item)
            static_hulls.append(painter.ground_shadow(outline))
            avoid.append(p)
        for _ in range(int(drng.integers(0, 5))):
            p = self.sample_image_ground(drng, v_rng=(0.0, 0.9))
            if not free(p, 7.0):
                continue
            g = float(drng.uniform(0.5, 1.3))
            col = tuple(int(min(255, c * g)) for c in ([70, 95, 120] if drng.uniform() < 0.6 else [125, 128, 130]))
            rad = float(drng.uniform(1.5, 5.0))
            item, _ = pile_item(painter, p, rad, rad * float(drng.uniform(0.3, 0.6)), col)
            self.static_items.append(item)
            avoid.append(p)
        n_cones = int(drng.integers(0, 12))
        if n_cones:
            p = self.sample_image_ground(drng)
            d = drng.normal(0, 1, 2)
            d /= np.linalg.norm(d)
            for i in range(n_cones):
                self.static_items.append(cone_item(painter, p + d * i * float(drng.uniform(1.5, 3.0))))
        for _ in range(int(drng.integers(0, 3))):
            a = self.sample_image_ground(drng, v_rng=(0.0, 0.6))
            d = drng.normal(0, 1, 2)
            d /= np.linalg.norm(d)
            self.static_items.append(fence_item(painter, a, a + d * float(drng.uniform(8, 30))))

    # ------------------------------------------------------------------------------------
    def dynamic(self, t: float):
        items: list[Item] = []
        hulls = []
        painter = self.painter
        cam = self.camera
        cam_right = np.array([np.cos(np.radians(cam.yaw_deg)), -np.sin(np.radians(cam.yaw_deg))])
        for w in self.workers:
            seg, pos, vel, _ = w.timeline.at(t)
            speed = float(np.hypot(*vel))
            pose = seg.pose if seg.pose in ("stand", "crouch") else "walk"
            side = abs(float(np.dot(vel, cam_right))) / speed if speed > 1e-6 else 0.0
            phase = w.phase0 + (t - seg.t0) * speed / w.stride_m * 2 * np.pi
            parts, outline = person_parts(painter, pos, w.height_m, pose, phase, side, w.look)
            items.append(Item(float(cam.depth(np.array([pos[0], 0, pos[1]]))), parts, C.WORKER, w.track_id))
            hulls.append(painter.ground_shadow(outline))
        for e in self.excavators:
            parts, outline, _ = excavator_parts(painter, e.pos, e.yaw, e.pose(t), e.color)
            items.append(Item(float(cam.depth(np.array([e.pos[0], 0, e.pos[1]]))), parts, C.EXCAVATOR, e.track_id))
            hulls.append(painter.ground_shadow(outline))
        for tr in self.trucks:
            pos, yaw, tip = self.truck_state(tr, t)
            parts, outline = truck_parts(painter, pos, yaw, tip, tr.color, tr.bed_color)
            items.append(Item(float(cam.depth(np.array([pos[0], 0, pos[1]]))), parts, C.DUMP_TRUCK, tr.track_id))
            hulls.append(painter.ground_shadow(outline))
        return items, hulls

    @staticmethod
    def truck_state(tr: Truck, t: float) -> tuple[np.ndarray, float, float]:
        seg, pos, vel, u = tr.timeline.at(t)
        if seg.pose in ("drive", "cruise"):
            yaw = heading_of(vel, seg.heading)
        elif seg.pose == "reverse":
            yaw = heading_of(-vel, seg.heading)
        else:
            yaw = seg.heading
        tip = 0.0
        if seg.pose == "tip":
            span = seg.t1 - seg.t0
            x = (t - seg.t0) / span
            tip = tr.tip_max_deg * (smoothstep(x / 0.4) if x < 0.4 else (1.0 if x < 0.6 else 1.0 - smoothstep((x - 0.6) / 0.4)))
        return pos, yaw, tip

    # ---- scripted scenarios ----------------------------------------------------------------
    def _ground_rect_zone(self, centre, half_lat, half_depth) -> list[list[float]]:
        """A ground rectangle (aligned with the camera's right/forward) as a normalized image polygon."""
        cam = self.camera
        yaw = np.radians(cam.yaw_deg)
        right = np.array([np.cos(yaw), -np.sin(yaw)])
        fwd = np.array([np.sin(yaw), np.cos(yaw)])
        corners = [centre - right * half_lat - fwd * half_depth, centre + right * half_lat - fwd * half_depth,
                   centre + right * half_lat + fwd * half_depth, centre - right * half_lat + fwd * half_depth]
        uv = cam.project(np.array([[c[0], 0.0, c[1]] for c in corners]))
        uv[:, 0] = np.clip(uv[:, 0] / self.width, 0.0, 1.0)
        uv[:, 1] = np.clip(uv[:, 1] / self.height, 0.0, 1.0)
        return [[round(float(a), 4), round(float(b), 4)] for a, b in uv]

    def _setup_excavator_swing(self, rng):
        cam = self.camera
        yaw = np.radians(cam.yaw_deg)
        right = np.array([np.cos(yaw), -np.sin(yaw)])
        fwd = np.array([np.sin(yaw), np.cos(yaw)])
        exc_pos = cam.ray_to_ground(np.array([0.66 * self.width, 0.5 * self.height]))
        area_c = exc_pos - right * 8.0 + fwd * 1.0
        self._zone_poly = self._ground_rect_zone(area_c, 4.5, 5.0)
        # swing angle that points the house at the worker area (relative to the tracks)
        track_yaw = float(np.arctan2(fwd[0], fwd[1]) + np.pi / 2)  # tracks across the view
        to_area = area_c - exc_pos
        sw_area = float(np.arctan2(to_area[0], to_area[1]) - track_yaw)
        sw_away = sw_area + np.pi * 0.9
        t_in = float(rng.uniform(3.0, 5.0))
        script = [
            (0.0, sw_away, 12.0, -55.0, -30.0),
            (t_in - 1.0, sw_away, 4.0, -110.0, -100.0),
            (t_in, sw_away, 35.0, -95.0, -110.0),
            (t_in + 3.0, sw_area, 30.0, -60.0, -60.0),  # swings over, arm reaching out
            (t_in + 4.0, sw_area, 8.0, -40.0, -30.0),  # lowers into the worker area
            (t_in + 7.0, sw_area, 10.0, -42.0, -30.0),
            (t_in + 8.5, sw_area, 40.0, -95.0, -100.0),
            (t_in + 11.5, sw_away, 38.0, -80.0, -90.0),
            (t_in + 13.0, sw_away, 10.0, -55.0, -30.0),
            (t_in + 60.0, sw_away, 12.0, -55.0, -30.0),
        ]
        exc = self._random_excavator(rng, exc_pos)
        exc.yaw = track_yaw
        exc.scripted = script
        self.excavators.append(exc)
        for _ in range(int(rng.integers(2, 4))):
            self.workers.append(self._random_worker(rng, home=area_c, radius=3.0))
        for _ in range(int(rng.integers(1, 4))):
            w = self._random_worker(rng)
            self.workers.append(w)

    def _setup_truck_reverse(self, rng):
        cam = self.camera
        yaw = np.radians(cam.yaw_deg)
        right = np.array([np.cos(yaw), -np.sin(yaw)])
        fwd = np.array([np.sin(yaw), np.cos(yaw)])
        worker_pos = cam.ray_to_ground(np.array([0.3 * self.width, 0.62 * self.height]))
        self._zone_poly = self._ground_rect_zone(worker_pos, 3.5, 3.0)
        stop_far = worker_pos + right * 22.0
        stop_near = worker_pos + right * 5.5  # truck centre; its rear reaches into the zone
        hd = float(np.arctan2(right[0], right[1]))  # facing camera-right, so it reverses to the left
        t_rev = float(rng.uniform(2.0, 4.0))
        dur_rev = 6.0
        segs = [
            Seg(0.0, t_rev, stop_far, stop_far, stop_far, "stop", hd),
            Seg(t_rev, t_rev + dur_rev, stop_far, stop_near, (stop_far + stop_near) / 2, "reverse", hd),
            Seg(t_rev + dur_rev, t_rev + dur_rev + 3.0, stop_near, stop_near, stop_near, "stop", hd),
            Seg(t_rev + dur_rev + 3.0, t_rev + dur_rev + 9.0, stop_near, stop_far + fwd * 2.0, (stop_near + stop_far) / 2, "drive", hd),
            Seg(t_rev + dur_rev + 9.0, 1e6, stop_far + fwd * 2.0, stop_far + fwd * 2.0, stop_far + fwd * 2.0, "stop", hd),
        ]
        trng = np.random.default_rng(rng.integers(2**63))
        self.trucks.append(Truck(self._tid(), MACHINE_COLORS[int(trng.integers(len(MACHINE_COLORS)))],
                                 BED_COLORS[int(trng.integers(len(BED_COLORS)))], Timeline(segs), 50.0))
        w = self._random_worker(rng, home=worker_pos - right * 1.0, radius=1.2)
        self.workers.append(w)
        for _ in range(int(rng.integers(1, 4))):
            self.workers.append(self._random_worker(rng))

    def _setup_truck_speed(self, rng):
        """Two trucks cross the view at known, constant ground speeds (``truck_speeds_kmh``: one under the
        speed limit of the scenario's rule, one over it), in a near and a far lane."""
        cam = self.camera
        yaw = np.radians(cam.yaw_deg)
        right = np.array([np.cos(yaw), -np.sin(yaw)])
        hd = float(np.arctan2(right[0], right[1]))  # facing camera-right
        self.truck_speeds_kmh = {}
        for v_img, kmh, t0 in ((0.78, TRUCK_SLOW_KMH, 0.5), (0.5, TRUCK_FAST_KMH, float(rng.uniform(1.5, 3.0)))):
            a = cam.ray_to_ground(np.array([0.14 * self.width, v_img * self.height]))
            b = cam.ray_to_ground(np.array([0.86 * self.width, v_img * self.height]))
            dist = float(np.hypot(*(b - a)))
            t1 = t0 + dist / (kmh / 3.6)
            segs = [Seg(0.0, t0, a, a, a, "stop", hd), Seg(t0, t1, a, b, (a + b) / 2, "cruise", hd),
                    Seg(t1, 1e6, b, b, b, "stop", hd)]
            trng = np.random.default_rng(rng.integers(2**63))
            truck = Truck(self._tid(), MACHINE_COLORS[int(trng.integers(len(MACHINE_COLORS)))],
                          BED_COLORS[int(trng.integers(len(BED_COLORS)))], Timeline(segs), 50.0)
            self.trucks.append(truck)
            self.truck_speeds_kmh[truck.track_id] = kmh
        # ground marks for the calibration: the corners of a band of the lower image, where the trucks drive
        marks = [(0.15, 0.45), (0.85, 0.45), (0.85, 0.9), (0.15, 0.9)]
        ground = [cam.ray_to_ground(np.array([u * self.width, v * self.height])) for u, v in marks]
        self._calibration = {"image": [[u, v] for u, v in marks],
                             "ground": [[round(float(g[0]), 3), round(float(g[1]), 3)] for g in ground]}
        for _ in range(int(rng.integers(1, 3))):
            self.workers.append(self._random_worker(rng))

    def zone_file(self) -> dict | None:
        if self.scenario == "excavator_swing":
            return {
                "units": "normalized",
                "zones": [{"id": "worker-area", "name": "Worker area", "polygon": self._zone_poly}],
                "rules": [
                    {"id": "machine-in-worker-area", "type": "intrusion", "zone": "worker-area",
                     "classes": ["excavator", "dump_truck"], "min_overlap": 0.05, "min_duration_s": 0.3,
                     "clear_after_s": 1.0, "severity": "critical"},
                ],
            }
        if self.scenario == "truck_speed":
            return {
                "units": "normalized",
                "calibration": self._calibration,
                "zones": [],
                "rules": [
                    {"id": "truck-speeding", "type": "speed", "classes": ["dump_truck"],
                     "max_kmh": TRUCK_SPEED_LIMIT_KMH, "window_s": 1.0, "min_duration_s": 0.5,
                     "clear_after_s": 1.0, "severity": "warning"},
                ],
            }
        if self.scenario == "truck_reverse":
            return {
                "units": "normalized",
                "zones": [{"id": "walkway", "name": "Walkway behind the truck", "polygon": self._zone_poly}],
                "rules": [
                    {"id": "truck-in-walkway", "type": "intrusion", "zone": "walkway", "classes": ["dump_truck"],
                     "min_overlap": 0.05, "min_duration_s": 0.3, "clear_after_s": 1.0, "severity": "critical"},
                ],
            }
        return None
