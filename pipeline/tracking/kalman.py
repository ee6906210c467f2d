"""Constant-velocity Kalman filter over boxes, batched across tracks.

State per track: (cx, cy, w, h, vx, vy, vw, vh) in frame pixels and pixels per second.
Process and measurement noise scale with the box height, as in SORT / ByteTrack, and
with the real time step (stream seconds), so cameras at any frame rate behave alike.
"""

from __future__ import annotations

import numpy as np

STD_POS = 1.0 / 20  # measurement noise, fraction of height
STD_VEL = 1.0 / 160  # process noise on velocity, fraction of height per (1/15 s)
REF_DT = 1.0 / 15
# noise scales with the box height, but no less than this: a 5 px ball moves (and turns) like a
# much bigger object, and its filter must let it
MIN_SCALE_PX = 16.0


def initiate(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Measurements (n, 4) cxcywh -> means (n, 8), covariances (n, 8, 8)."""
    n = len(z)
    mean = np.zeros((n, 8))
    mean[:, :4] = z
    h = np.maximum(z[:, 3], MIN_SCALE_PX)
    std = np.stack([2 * STD_POS * h, 2 * STD_POS * h, 2 * STD_POS * h, 2 * STD_POS * h,
                    10 * STD_VEL * h / REF_DT, 10 * STD_VEL * h / REF_DT,
                    10 * STD_VEL * h / REF_DT, 10 * STD_VEL * h / REF_DT], axis=1)
    cov = np.zeros((n, 8, 8))
    idx = np.arange(8)
    cov[:, idx, idx] = std**2
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Advance every track by ``dt`` seconds."""
    if len(mean) == 0:
        return mean, cov
    f = np.eye(8)
    f[:4, 4:] = np.eye(4) * dt
    h = np.maximum(mean[:, 3], MIN_SCALE_PX)
    k = max(dt / REF_DT, 1e-3)
    std = np.stack([STD_POS * h * k, STD_POS * h * k, STD_POS * h * k, STD_POS * h * k,
                    STD_VEL * h / REF_DT * k, STD_VEL * h / REF_DT * k,
                    STD_VEL * h / REF_DT * k, STD_VEL * h / REF_DT * k], axis=1)
    q = np.zeros_like(cov)
    idx = np.arange(8)
    q[:, idx, idx] = std**2
    mean = mean @ f.T
    cov = f @ cov @ f.T + q
    mean[:, 2:4] = np.maximum(mean[:, 2:4], 1.0)
    return mean, cov


def update(mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct tracks (n, 8) with measurements (n, 4)."""
    if len(mean) == 0:
        return mean, cov
    h = np.maximum(mean[:, 3], MIN_SCALE_PX)
    r = np.zeros((len(mean), 4, 4))
    idx = np.arange(4)
    r[:, idx, idx] = (STD_POS * h)[:, None] ** 2
    s = cov[:, :4, :4] + r  # H P H^T + R, H = [I 0]
    pht = cov[:, :, :4]  # P H^T
    gain = np.linalg.solve(s, pht.transpose(0, 2, 1)).transpose(0, 2, 1)  # (n, 8, 4)
    innov = z - mean[:, :4]
    mean = mean + np.einsum("nij,nj->ni", gain, innov)
    cov = cov - gain @ cov[:, :4, :]
    return mean, cov
