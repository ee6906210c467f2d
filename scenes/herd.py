"""Loose groups of cows: simple flocking (a shared goal, cohesion, separation, obstacles, fences).

Unlike the closed-form movers of `motion`, a herd is simulated, at a fixed step from t = 0 with its
own generator, and extended on demand; the states are kept, so a frame at any time is the same
whichever frames were asked before (datasets sample random times). Positions are in the farm's
layout axes (x along the near fence, z away from it), metres; a heading of 0 faces +z, pi/2 faces +x.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Goal:
    """Where a group heads from `t0` on. `point` None: graze where they are. `line`: a unit direction
    along which the cows' places spread (a feed fence) instead of a disc; `face`: the heading to turn to
    once there; `graze`: heads go down once there."""

    t0: float
    point: np.ndarray | None
    spread: float = 3.0
    speed: float = 1.0
    line: np.ndarray | None = None
    face: float | None = None
    graze: bool = True


@dataclass
class HalfPlane:
    """Keeps cow centres where n . p >= c."""

    n: np.ndarray
    c: float


BODY_R = 0.42  # radius of each of a cow's two separation circles (front and rear), at size 1
BODY_OFF = 0.55  # their distance from the cow's centre along its heading


def body_circles(p: np.ndarray, h: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Front and rear circle centres (n, 2, 2) of cows at p (n, 2) with headings h and sizes."""
    d = np.stack([np.sin(h), np.cos(h)], -1) * (BODY_OFF * size)[:, None]
    return np.stack([p + d, p - d], 1)


_OUT = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])  # out of a box by its x0, x1, z0, z1 side


def _box_gaps(p: np.ndarray, box, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances (n, 4) of points inside a box grown by `margin` to its x0, x1, z0, z1 sides, and which are inside."""
    x0, x1, z0, z1 = box
    d = np.stack([p[:, 0] - (x0 - margin), (x1 + margin) - p[:, 0], p[:, 1] - (z0 - margin), (z1 + margin) - p[:, 1]], 1)
    return d, (d > 0).all(axis=1)


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


class Herd:
    DT = 0.1

    def __init__(self, start: np.ndarray, heading: np.ndarray, group: np.ndarray, size: np.ndarray, speed: np.ndarray,
                 grazer: np.ndarray, rng: np.random.Generator, plans: list[Callable[[float], Goal]],
                 bounds: list[HalfPlane], obstacles: list[tuple[np.ndarray, float]] | None = None,
                 keep_out: list[tuple[float, float, float, float]] | None = None,
                 movers: Callable[[float], list[tuple[np.ndarray, float]]] | None = None):
        self.n = len(start)
        self.group = np.asarray(group, int)
        self.size = np.asarray(size, float)
        self.speed = np.asarray(speed, float)
        self.grazer = np.asarray(grazer, float)
        self.rng = rng
        self.plans = plans
        self.bounds = bounds
        self.obstacles = obstacles or []
        self.keep_out = keep_out or []
        self.movers = movers
        self.offset = rng.uniform(-1, 1, (self.n, 2))
        self.offset /= np.maximum(np.linalg.norm(self.offset, axis=1, keepdims=True), 1.0)
        self.line_off = rng.uniform(-1, 1, self.n)
        self.drift = rng.uniform(0.04, 0.14, self.n)
        p = np.asarray(start, float).copy()
        for _ in range(3):
            p = self._constrain(p)
        self._v = np.zeros((self.n, 2))
        self.P = [p]
        self.H = [np.asarray(heading, float).copy()]
        self.HD = [self.grazer * 0.8]
        self.D = [np.zeros(self.n)]
        self.S = [np.zeros(self.n)]

    # --- constraints -----------------------------------------------------------------------
    def _constrain(self, p: np.ndarray) -> np.ndarray:
        for hp in self.bounds:
            s = p @ hp.n - hp.c
            p = p + np.minimum(s, 0.0)[:, None] * -hp.n[None, :]
        for box in self.keep_out:  # out of a keep-out box by its nearest side
            d, inside = _box_gaps(p, box, 0.0)
            if inside.any():
                k = np.argmin(d, axis=1)
                x0, x1, z0, z1 = box
                p = p.copy()
                p[:, 0] = np.where(inside & (k == 0), x0, np.where(inside & (k == 1), x1, p[:, 0]))
                p[:, 1] = np.where(inside & (k == 2), z0, np.where(inside & (k == 3), z1, p[:, 1]))
        return p

    # --- simulation ------------------------------------------------------------------------
    def _step(self) -> None:
        dt = self.DT
        t = (len(self.P) - 1) * dt
        p, h, hd, dist = self.P[-1], self.H[-1], self.HD[-1], self.D[-1]
        v = self._v
        n = self.n
        rng = self.rng
        noise = rng.standard_normal(n)
        resample = rng.uniform(size=n) < 0.004
        new_off = rng.uniform(-1, 1, (n, 2))
        if resample.any():
            self.offset[resample] = new_off[resample] / np.maximum(np.linalg.norm(new_off[resample], axis=1, keepdims=True), 1.0)
        desired = np.zeros((n, 2))
        arrived = np.zeros(n, bool)
        graze = np.zeros(n, bool)
        face = np.full(n, np.nan)
        for g in np.unique(self.group):
            idx = np.flatnonzero(self.group == g)
            goal = self.plans[g](t)
            cen = p[idx].mean(0)
            if goal.point is None:
                arrived[idx] = True
                graze[idx] = goal.graze
            else:
                if goal.line is not None:
                    inward = np.array([-goal.line[1], goal.line[0]])
                    tgt = goal.point + goal.line * (self.line_off[idx] * goal.spread)[:, None] + inward * 0.2 * self.offset[idx, :1]
                else:
                    tgt = goal.point + self.offset[idx] * goal.spread
                for _ in range(2):
                    tgt = self._constrain(tgt)
                to = tgt - p[idx]
                d = np.linalg.norm(to, axis=1)
                walk = d > 0.7
                sp = self.speed[idx] * goal.speed * np.clip(d / 2.0, 0.25, 1.0)
                desired[idx] = np.where(walk[:, None], to / np.maximum(d, 1e-6)[:, None] * sp[:, None], 0.0)
                arrived[idx] = ~walk
                graze[idx] = goal.graze
                if goal.face is not None:
                    face[idx] = goal.face
            # cohesion: stragglers close up
            if len(idx) > 1:
                r_coh = 2.0 + 1.1 * np.sqrt(len(idx))
                to_c = cen - p[idx]
                dc = np.linalg.norm(to_c, axis=1)
                pull = np.clip((dc - r_coh) / 3.0, 0.0, 1.0) * 0.5
                desired[idx] += to_c / np.maximum(dc, 1e-6)[:, None] * pull[:, None]
        # arrived and grazing: a slow drift along the heading
        fwd = np.stack([np.sin(h), np.cos(h)], -1)
        desired += np.where(arrived[:, None], fwd * self.drift[:, None], 0.0)
        # separation between bodies (two circles each), and from obstacles and other movers
        circ = body_circles(p, h, self.size)
        rad = BODY_R * self.size
        push = np.zeros((n, 2))
        diff = circ[:, None, :, None, :] - circ[None, :, None, :, :]  # (n, n, 2, 2, 2)
        dd = np.linalg.norm(diff, axis=-1)
        reach = (rad[:, None] + rad[None, :] + 0.08)[:, :, None, None]
        pen = np.clip(reach - dd, 0.0, None)
        pen[np.arange(n), np.arange(n)] = 0.0
        push += (diff / np.maximum(dd, 1e-6)[..., None] * pen[..., None]).sum(axis=(1, 2, 3))
        others = list(self.obstacles) + (self.movers(t) if self.movers is not None else [])
        for q, r in others:
            d2 = circ - np.asarray(q, float)[None, None, :]
            dn = np.linalg.norm(d2, axis=-1)
            pen2 = np.clip(r + rad[:, None] - dn, 0.0, None)
            push += (d2 / np.maximum(dn, 1e-6)[..., None] * pen2[..., None]).sum(1)
        for box in self.keep_out:  # keep-out boxes push out within a metre
            d, inside = _box_gaps(p, box, 1.0)
            push += np.where(inside[:, None], _OUT[np.argmin(d, axis=1)] * 0.8, 0.0)
        for hp in self.bounds:  # fences push back within a metre
            s = p @ hp.n - hp.c
            push += np.clip(1.0 - s, 0.0, 1.0)[:, None] * hp.n[None, :] * 0.6
        want = desired + 1.8 * push
        v = v + (want - v) * min(1.0, dt / 0.6)
        sp = np.linalg.norm(v, axis=1)
        cap = 1.7 * self.size
        v = v * np.minimum(1.0, cap / np.maximum(sp, 1e-9))[:, None]
        p_new = self._constrain(p + v * dt)
        v = (p_new - p) / dt
        sp = np.linalg.norm(v, axis=1)
        # heading follows the motion (cows turn, they do not slide sideways); once there, face the goal's way
        along = np.arctan2(v[:, 0], v[:, 1])
        moving = sp > 0.22
        turn = np.where(moving, _wrap(along - h), 0.0)
        turn = np.where(~moving & np.isfinite(face), _wrap(np.nan_to_num(face) - h), turn)
        rate = np.where(moving, 1.4, 0.7) * dt
        h_new = h + np.clip(turn, -rate, rate) + np.where(moving, 0.0, 0.04 * noise * dt * 5)
        tgt_hd = np.where(arrived & graze & (sp < 0.35), self.grazer, 0.0)
        hd_new = hd + (tgt_hd - hd) * min(1.0, dt / 1.2)
        self._v = v
        self.P.append(p_new)
        self.H.append(_wrap(h_new))
        self.HD.append(hd_new)
        self.D.append(dist + sp * dt)
        self.S.append(sp)

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Positions, headings, head-down amounts, distances walked and speeds at time t."""
        t = max(float(t), 0.0)
        while (len(self.P) - 1) * self.DT < t + self.DT:
            self._step()
        x = t / self.DT
        k = int(np.floor(x))
        w = x - k
        lerp = lambda a: a[k] * (1 - w) + a[k + 1] * w  # noqa: E731
        h = _wrap(self.H[k] + _wrap(self.H[k + 1] - self.H[k]) * w)
        return lerp(self.P), h, lerp(self.HD), lerp(self.D), lerp(self.S)
