"""`pitch`: a football pitch from a broadcast-like camera: players in two kits and a ball."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import classes as C
from .base import Scene
from .camera import Camera
from .motion import Seg, Timeline
from .objects import Look, ball_parts, goal_item, person_parts
from .render import Item, Part
from .textures import PITCH_L, PITCH_W, pitch_ground

KITS = [(30, 30, 200), (200, 60, 20), (240, 240, 240), (20, 20, 20), (0, 200, 250), (30, 140, 30),
        (120, 30, 110), (0, 120, 255), (200, 170, 80), (40, 40, 120)]
SKIN = [(60, 90, 150), (90, 130, 190), (120, 160, 215), (40, 60, 100), (150, 185, 230)]
HAIR = [(20, 20, 25), (30, 50, 80), (60, 110, 160), (15, 15, 15)]


@dataclass
class Player:
    track_id: int
    height_m: float
    look: Look
    timeline: Timeline | None  # free runner
    chase_lag: float | None  # follows the ball with this lag (s)
    offset: np.ndarray  # offset from the ball when chasing
    phase0: float


def _team_look(rng, kit, shorts, socks) -> Look:
    return Look(torso=kit, sleeve=kit, legs=shorts, lower=socks, skin=SKIN[int(rng.integers(len(SKIN)))],
                head_top=HAIR[int(rng.integers(len(HAIR)))], helmet=False, number=tuple(int(255 - c) for c in kit))


class PitchScene(Scene):
    name = "pitch"
    scenarios = ("box_entry",)

    def _make_camera(self) -> Camera:
        rng = self.rng
        scale = self.width / 1280.0
        if self.scenario == "box_entry":
            target = np.array([PITCH_L / 2 - 12.0, PITCH_W / 2 + rng.uniform(-4, 4)])
        else:
            target = np.array([rng.uniform(-PITCH_L / 2 + 8, PITCH_L / 2 - 8), rng.uniform(18, 48)])
        pos = np.array([rng.uniform(-15, 15) + target[0] * 0.3, rng.uniform(9.0, 22.0), -rng.uniform(12.0, 32.0)])
        d = np.hypot(target[0] - pos[0], target[1] - pos[2])
        yaw = np.degrees(np.arctan2(target[0] - pos[0], target[1] - pos[2]))
        pitch = np.degrees(np.arctan2(pos[1], d))
        dist3 = np.hypot(d, pos[1])
        h_px = rng.uniform(45.0, 100.0) * scale
        focal = h_px / 1.8 * dist3
        return Camera(self.width, self.height, float(focal), tuple(pos), float(pitch), float(yaw))

    def _make_background(self) -> np.ndarray:
        return pitch_ground(self.rng, self.camera)

    def _on_pitch_spot(self, rng) -> np.ndarray:
        for _ in range(100):
            p = self.sample_image_ground(rng, u_rng=(-0.05, 1.05), v_rng=(0.0, 1.02), min_v_below_horizon=10.0)
            if np.all(np.isfinite(p)) and -PITCH_L / 2 - 1 <= p[0] <= PITCH_L / 2 + 1 and 0.5 <= p[1] <= PITCH_W - 0.5:
                return p
        return np.array([0.0, PITCH_W / 2])

    def _setup(self, static_hulls):
        rng = self.rng
        self._next_id = 1
        k = rng.permutation(len(KITS))
        self.kits = [KITS[int(k[0])], KITS[int(k[1])]]
        shorts = [KITS[int(k[2])], KITS[int(k[3])]]
        gk = KITS[int(k[4])]
        self.players: list[Player] = []
        for x in (-PITCH_L / 2, PITCH_L / 2):
            self.static_items.append(goal_item(self.painter, x, PITCH_W / 2, -np.sign(x)))
        self.ball_tl = self._ball_timeline(np.random.default_rng(rng.integers(2**63)))
        if self.scenario == "box_entry":
            self._setup_box_entry(rng, shorts, gk)
            return
        n = int(rng.integers(4, 23))
        n_chase = int(min(n, rng.integers(1, 6)))
        for i in range(n):
            team = int(rng.integers(2))
            prng = np.random.default_rng(rng.integers(2**63))
            look = _team_look(prng, self.kits[team], shorts[team], self.kits[team])
            if i == n - 1 and rng.uniform() < 0.3:
                look = _team_look(prng, gk, gk, gk)
            chase = i < n_chase
            self.players.append(
                Player(
                    track_id=self._tid(),
                    height_m=float(prng.uniform(1.68, 1.95)),
                    look=look,
                    timeline=None if chase else self._runner_timeline(prng),
                    chase_lag=float(prng.uniform(0.3, 2.5)) if chase else None,
                    offset=prng.normal(0, 2.5 if i else 0.4, 2),
                    phase0=float(prng.uniform(0, 6.28)),
                )
            )
        self.ball_id = self._tid()  # track ids are unique within a clip, whatever the class (gt.json version 2)

    def _tid(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _runner_timeline(self, prng, start=None) -> Timeline:
        start = self._on_pitch_spot(prng) if start is None else start

        def extend(last: Seg) -> list[Seg]:
            p = last.p1
            if last.pose in ("run", "walk") and prng.uniform() < 0.4:
                return [Seg(last.t1, last.t1 + float(prng.uniform(0.5, 3.0)), p, p, p, "stand")]
            for _ in range(30):
                q = self._on_pitch_spot(prng)
                dist = float(np.hypot(*(q - p)))
                if 3.0 <= dist <= 30.0:
                    break
            speed = float(prng.choice([1.5, 3.0, 4.5, 6.5]))
            mid = (p + q) / 2 + prng.normal(0, 0.1 * dist, 2)
            return [Seg(last.t1, last.t1 + dist / speed, p, q, mid, "run" if speed > 2 else "walk")]

        return Timeline([Seg(0.0, float(prng.uniform(0, 2)), start, start, start, "stand")], extend)

    def _ball_timeline(self, brng) -> Timeline:
        start = self._on_pitch_spot(brng)

        def extend(last: Seg) -> list[Seg]:
            p = last.p1
            for _ in range(30):
                q = self._on_pitch_spot(brng)
                dist = float(np.hypot(*(q - p)))
                if 4.0 <= dist <= 28.0:
                    break
            if brng.uniform() < 0.5:  # dribble
                speed, peak = float(brng.uniform(2.5, 6.0)), 0.0
                q = p + (q - p) * min(1.0, 10.0 / dist)
                dist = float(np.hypot(*(q - p)))
            else:  # pass, sometimes lofted
                speed = float(brng.uniform(9.0, 16.0))
                peak = float(brng.uniform(1.0, 6.0)) if brng.uniform() < 0.35 else 0.0
            seg = Seg(last.t1, last.t1 + max(dist, 0.5) / speed, p, q, (p + q) / 2, "roll", peak=peak)
            return [seg, Seg(seg.t1, seg.t1 + float(brng.uniform(0.2, 1.5)), q, q, q, "stand")]

        return Timeline([Seg(0.0, float(brng.uniform(0, 1)), start, start, start, "stand")], extend)

    def ball_at(self, t: float) -> np.ndarray:
        seg, pos, _, u = self.ball_tl.at(t)
        h = 4.0 * seg.peak * u * (1 - u) if seg.pose == "roll" else 0.0
        return np.array([pos[0], 0.11 + h, pos[1]])

    def _player_state(self, p: Player, t: float):
        if p.timeline is not None:
            seg, pos, vel, _ = p.timeline.at(t)
            return pos, vel, seg.pose, seg.t0
        # chaser: a smoothed, delayed copy of the ball's ground track plus a slowly turning offset
        def where(tt):
            acc = np.zeros(2)
            for k in range(8):
                b = self.ball_at(max(tt - p.chase_lag - 0.25 * k, 0.0))
                acc += b[[0, 2]]
            ang = 0.15 * tt + p.phase0
            rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
            return acc / 8 + rot @ p.offset

        pos = where(t)
        vel = (pos - where(t - 0.1)) / 0.1
        speed = float(np.hypot(*vel))
        pose = "run" if speed > 2.2 else ("walk" if speed > 0.3 else "stand")
        return pos, vel, pose, 0.0

    def _setup_box_entry(self, rng, shorts, gk):
        """Attackers run into the penalty area one after another, then some leave."""
        self.box_x0 = PITCH_L / 2 - 16.5
        self.box_z = (PITCH_W / 2 - 20.16, PITCH_W / 2 + 20.16)
        n_in = int(rng.integers(4, 7))
        t_start = 1.0
        for i in range(n_in):
            prng = np.random.default_rng(rng.integers(2**63))
            team = i % 2
            look = _team_look(prng, self.kits[team], shorts[team], self.kits[team])
            z = float(prng.uniform(self.box_z[0] + 6, self.box_z[1] - 6))
            a = np.array([self.box_x0 - float(prng.uniform(6, 14)), z])
            b = np.array([self.box_x0 + float(prng.uniform(3, 10)), z + float(prng.uniform(-4, 4))])
            t_go = t_start + 1.2 * i + float(prng.uniform(0, 0.5))
            speed = float(prng.uniform(3.5, 6.0))
            t_arr = t_go + float(np.hypot(*(b - a))) / speed
            segs = [Seg(0.0, t_go, a, a, a, "stand"), Seg(t_go, t_arr, a, b, (a + b) / 2, "run"),
                    Seg(t_arr, t_arr + 4.0 + 0.5 * i, b, b, b, "stand")]
            t_out = segs[-1].t1
            c = np.array([self.box_x0 - 8.0, b[1]])
            segs += [Seg(t_out, t_out + float(np.hypot(*(c - b))) / speed, b, c, (b + c) / 2, "run"),
                     Seg(t_out + float(np.hypot(*(c - b))) / speed, 1e6, c, c, c, "stand")]
            self.players.append(Player(self._tid(), float(prng.uniform(1.7, 1.92)), look, Timeline(segs), None, np.zeros(2),
                                       float(prng.uniform(0, 6.28))))
        prng = np.random.default_rng(rng.integers(2**63))
        keeper = np.array([PITCH_L / 2 - 1.5, PITCH_W / 2])
        self.players.append(Player(self._tid(), 1.9, _team_look(prng, gk, gk, gk), Timeline([Seg(0.0, 1e6, keeper, keeper, keeper, "stand")]),
                                   None, np.zeros(2), 0.0))

    def _box_polygon(self) -> list[list[float]]:
        x0, x1 = self.box_x0, PITCH_L / 2
        z0, z1 = self.box_z
        pts = np.array([[x0, 0, z0], [x1, 0, z0], [x1, 0, z1], [x0, 0, z1]])
        uv = self.camera.project(pts)
        # clip the quadrilateral to the frame (normalized) with a simple polygon clip
        import cv2

        poly = uv.astype(np.float32)
        frame = np.array([[0, 0], [self.width, 0], [self.width, self.height], [0, self.height]], np.float32)
        area, inter = cv2.intersectConvexConvex(poly, frame)
        inter = inter.reshape(-1, 2) if inter is not None else poly
        return [[round(float(x) / self.width, 4), round(float(y) / self.height, 4)] for x, y in inter]

    def zone_file(self) -> dict | None:
        if self.scenario != "box_entry":
            return None
        return {
            "units": "normalized",
            "zones": [{"id": "penalty-box", "name": "Penalty area", "polygon": self._box_polygon()}],
            "rules": [
                {"id": "player-in-box", "type": "intrusion", "zone": "penalty-box", "classes": ["player"],
                 "min_overlap": 0.5, "min_duration_s": 0.3, "clear_after_s": 1.0, "severity": "info"},
            ],
        }

    def dynamic(self, t: float):
        items: list[Item] = []
        hulls = []
        painter, cam = self.painter, self.camera
        cam_right = np.array([np.cos(np.radians(cam.yaw_deg)), -np.sin(np.radians(cam.yaw_deg))])
        for p in self.players:
            pos, vel, pose, t0 = self._player_state(p, t)
            speed = float(np.hypot(*vel))
            side = abs(float(np.dot(vel, cam_right))) / speed if speed > 1e-6 else 0.0
            phase = p.phase0 + t * speed / 1.8 * 2 * np.pi
            parts, outline = person_parts(painter, pos, p.height_m, pose, phase, side, p.look)
            items.append(Item(float(cam.depth(np.array([pos[0], 0, pos[1]]))), parts, C.PLAYER, p.track_id))
            hulls.append(painter.ground_shadow(outline))
        if self.scenario != "box_entry":
            b = self.ball_at(t)
            items.append(Item(float(cam.depth(np.array([b[0], 0, b[2]]))) - 0.05, ball_parts(painter, b), C.BALL, self.ball_id))
            ang = np.linspace(0, 2 * np.pi, 10, endpoint=False)
            ring = np.stack([b[0] + 0.11 * np.cos(ang), b[1] + 0.11 * np.sin(ang), b[2] + 0 * ang], 1)
            hulls.append(painter.ground_shadow(ring))
        return items, hulls


__all__ = ["PitchScene", "Part"]
