"""Constant-velocity Kalman filter over boxes, batched across tracks.

State per track: (cx, cy, w, h, vx, vy, vw, vh) in frame pixels and pixels per second.
Process and measurement noise scale with the box height, as in SORT / ByteTrack, and
with the real time step (stream seconds), so cameras at any frame rate behave alike.

The motion model, the noise and the first covariance never couple one coordinate with
another, so the 8x8 covariance is four independent 2x2 blocks (a coordinate and its
velocity) and stays so. It is stored as those blocks, ``cov`` (n, 3, 4): rows are the
position variance, the position-velocity covariance and the velocity variance of
cx, cy, w, h. Every step is then elementwise: no 8x8 products, no matrix solve.
"""

from __future__ import annotations

import numpy as np

STD_POS = 1.0 / 20  # measurement noise, fraction of height
STD_VEL = 1.0 / 160  # process noise on velocity, fraction of height per (1/15 s)
REF_DT = 1.0 / 15
# noise scales with the box height, but no less than this: a 5 px ball moves (and turns) like a
# much bigger object, and its filter must let it
MIN_SCALE_PX = 16.0
PP, PV, VV = 0, 1, 2  # rows of ``cov``


def initiate(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Measurements (n, 4) cxcywh -> means (n, 8), covariances (n, 3, 4)."""
    n = len(z)
    mean = np.zeros((n, 8))
    mean[:, :4] = z
    h = np.maximum(z[:, 3], MIN_SCALE_PX)[:, None]
    cov = np.zeros((n, 3, 4))
    cov[:, PP] = (2 * STD_POS * h) ** 2
    cov[:, VV] = (10 * STD_VEL / REF_DT * h) ** 2
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Advance every track by ``dt`` seconds."""
    if len(mean) == 0:
        return mean, cov
    h = np.maximum(mean[:, 3], MIN_SCALE_PX)[:, None]
    k = max(dt / REF_DT, 1e-3)
    pp, pv, vv = cov[:, PP], cov[:, PV], cov[:, VV]
    out = np.empty_like(cov)
    out[:, PP] = pp + dt * (2 * pv + dt * vv) + (STD_POS * k * h) ** 2  # F P F^T + Q, per coordinate
    out[:, PV] = pv + dt * vv
    out[:, VV] = vv + (STD_VEL / REF_DT * k * h) ** 2
    mean = mean.copy()
    mean[:, :4] += dt * mean[:, 4:]
    mean[:, 2:4] = np.maximum(mean[:, 2:4], 1.0)
    return mean, out


def update(mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct tracks (n, 8) with measurements (n, 4)."""
    if len(mean) == 0:
        return mean, cov
    h = np.maximum(mean[:, 3], MIN_SCALE_PX)[:, None]
    pp, pv, vv = cov[:, PP], cov[:, PV], cov[:, VV]
    s = pp + (STD_POS * h) ** 2  # H P H^T + R
    kp, kv = pp / s, pv / s  # the gain's position and velocity rows
    innov = z - mean[:, :4]
    mean = np.concatenate([mean[:, :4] + kp * innov, mean[:, 4:] + kv * innov], axis=1)
    out = np.empty_like(cov)
    out[:, PP] = pp - kp * pp  # P - K H P
    out[:, PV] = pv - kp * pv
    out[:, VV] = vv - kv * pv
    return mean, out


def position_spread(cov: np.ndarray) -> np.ndarray:
    """Standard deviation (n,) of the predicted centre: sqrt(var cx + var cy)."""
    return np.sqrt(cov[:, PP, 0] + cov[:, PP, 1])
