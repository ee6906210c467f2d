"""Pinhole camera over a flat ground plane (world: X right, Y up, Z forward, metres)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Camera:
    """A camera at `position_m`, turned by `yaw_deg` about Y and tilted down by `pitch_deg`."""

    width: int
    height: int
    focal_px: float
    position_m: tuple[float, float, float]
    pitch_deg: float
    yaw_deg: float = 0.0
    _rot: np.ndarray = field(init=False, repr=False)  # rows: right, down, forward
    _pos: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        p, y = np.radians(self.pitch_deg), np.radians(self.yaw_deg)
        fwd = np.array([np.sin(y) * np.cos(p), -np.sin(p), np.cos(y) * np.cos(p)])
        right = np.array([np.cos(y), 0.0, -np.sin(y)])
        down = np.cross(right, fwd)
        self._rot = np.stack([right, down, fwd])
        self._pos = np.asarray(self.position_m, dtype=np.float64)

    @property
    def position(self) -> np.ndarray:
        return self._pos

    def depth(self, pts: np.ndarray) -> np.ndarray:
        """Distance along the optical axis of world points (..., 3)."""
        return (np.asarray(pts, dtype=np.float64) - self._pos) @ self._rot[2]

    def project(self, pts: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> pixel coordinates (..., 2), float."""
        rel = (np.asarray(pts, dtype=np.float64) - self._pos) @ self._rot.T
        z = np.maximum(rel[..., 2:3], 1e-3)
        uv = rel[..., :2] / z * self.focal_px
        uv[..., 0] += self.width / 2.0
        uv[..., 1] += self.height / 2.0
        return uv

    def ray_to_ground(self, uv: np.ndarray) -> np.ndarray:
        """Pixel coordinates (..., 2) -> ground points (..., 2) as (X, Z); NaN above the horizon."""
        uv = np.asarray(uv, dtype=np.float64)
        d = np.stack(
            [
                (uv[..., 0] - self.width / 2.0) / self.focal_px,
                (uv[..., 1] - self.height / 2.0) / self.focal_px,
                np.ones(uv.shape[:-1]),
            ],
            axis=-1,
        ) @ self._rot  # camera -> world direction
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -self._pos[1] / d[..., 1]
        t = np.where(t > 0, t, np.nan)
        x = self._pos[0] + t * d[..., 0]
        z = self._pos[2] + t * d[..., 2]
        return np.stack([x, z], axis=-1)

    def px_per_m(self, ground_xz: tuple[float, float]) -> float:
        """Approximate image scale (pixels per metre) of an upright object standing at a ground point."""
        base = np.array([ground_xz[0], 0.0, ground_xz[1]])
        top = base + np.array([0.0, 1.0, 0.0])
        uv = self.project(np.stack([base, top]))
        return float(np.hypot(*(uv[0] - uv[1])))

    def horizon_v(self) -> float:
        """Image row of the horizon (may be negative: above the frame)."""
        return self.height / 2.0 - self.focal_px * np.tan(np.radians(self.pitch_deg))
