"""Closed-form motion: a mover's state is a pure function of time, so any frame of a scene
can be rendered without simulating the frames before it (datasets sample random times)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np


@dataclass
class Seg:
    t0: float
    t1: float
    p0: np.ndarray  # ground (X, Z)
    p1: np.ndarray
    ctrl: np.ndarray  # quadratic Bezier control point (== midpoint for a straight line)
    pose: str  # walk | run | stand | crouch | drive | reverse | stop | tip
    heading: float = 0.0  # yaw (rad) while not moving
    peak: float = 0.0  # height of a lofted ball's arc (m)

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray, float]:
        """Position, velocity (m/s) and progress u in [0, 1]."""
        span = max(self.t1 - self.t0, 1e-9)
        u = float(np.clip((t - self.t0) / span, 0.0, 1.0))
        if self.pose in ("stand", "crouch", "stop", "tip"):
            return self.p0.copy(), np.zeros(2), u
        # smooth start and stop for vehicles; people walk at constant speed
        if self.pose in ("drive", "reverse"):
            s = u * u * (3 - 2 * u)
            ds = 6 * u * (1 - u)
        else:
            s, ds = u, 1.0
        a, b, c = self.p0, self.ctrl, self.p1
        pos = (1 - s) ** 2 * a + 2 * s * (1 - s) * b + s**2 * c
        vel = (2 * (1 - s) * (b - a) + 2 * s * (c - b)) * ds / span
        return pos, vel, u


class Timeline:
    """Consecutive segments; extended on demand from the mover's own generator."""

    def __init__(self, segs: list[Seg], extend=None):
        self.segs = segs
        self._extend = extend
        self._t0s = [s.t0 for s in segs]

    def _ensure(self, t: float) -> None:
        while self.segs[-1].t1 < t and self._extend is not None:
            self.segs.extend(self._extend(self.segs[-1]))
            self._t0s = [s.t0 for s in self.segs]

    def at(self, t: float) -> tuple[Seg, np.ndarray, np.ndarray, float]:
        self._ensure(t)
        i = max(bisect.bisect_right(self._t0s, t) - 1, 0)
        seg = self.segs[i]
        pos, vel, u = seg.at(t)
        return seg, pos, vel, u


def heading_of(vel: np.ndarray, fallback: float) -> float:
    """Yaw (rad) of a ground velocity (X, Z): 0 = +Z, pi/2 = +X."""
    if float(np.hypot(*vel)) < 1e-6:
        return fallback
    return float(np.arctan2(vel[0], vel[1]))


def smoothstep(x: float) -> float:
    x = float(np.clip(x, 0.0, 1.0))
    return x * x * (3 - 2 * x)


def keyframes(frac: float, keys: list[tuple[float, ...]]) -> np.ndarray:
    """Smooth interpolation between keyframes (frac, v1, v2, ...) sorted by frac in [0, 1]."""
    fr = [k[0] for k in keys]
    i = max(bisect.bisect_right(fr, frac) - 1, 0)
    j = min(i + 1, len(keys) - 1)
    a, b = np.array(keys[i][1:]), np.array(keys[j][1:])
    if j == i:
        return a
    w = smoothstep((frac - fr[i]) / max(fr[j] - fr[i], 1e-9))
    return a * (1 - w) + b * w
