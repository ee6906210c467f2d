"""A simple mask tracker: greedy matching on mask IoU in mask space.

Real and bounded, but basic; the mask-based tracker issue replaces it (motion
prediction, two-pass association, Hungarian assignment, lifecycle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .types import Detections


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boolean masks a (n, h, w) and b (m, h, w) -> (n, m)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


@dataclass
class _Track:
    id: int
    class_id: int
    mask: np.ndarray
    last_seen_s: float


class SimpleTracker:
    """Per camera. IDs start at 1, are never reused, and the counter is per instance."""

    def __init__(self, min_iou: float = 0.2, max_lost_s: float = 1.0) -> None:
        self.min_iou = min_iou
        self.max_lost_s = max_lost_s
        self._tracks: list[_Track] = []
        self._next_id = 1

    def update(self, dets: Detections, pts_s: float) -> Detections:
        """Returns ``dets`` with ``tracker_id`` set (every detection gets an id)."""
        if dets.masks is None:
            raise ValueError("SimpleTracker needs masks")
        ids = np.zeros(len(dets), dtype=np.int64)
        tracks = [t for t in self._tracks if t.mask.shape == dets.masks.shape[1:]]
        iou = mask_iou(dets.masks, np.stack([t.mask for t in tracks]) if tracks else np.zeros((0, *dets.masks.shape[1:]), bool))
        if iou.size:
            same_class = dets.class_id[:, None] == np.array([t.class_id for t in tracks])[None, :]
            iou = np.where(same_class, iou, 0.0)
        matched_dets: set[int] = set()
        matched_tracks: set[int] = set()
        if iou.size:
            for flat in np.argsort(-iou, axis=None):
                d, t = divmod(int(flat), iou.shape[1])
                if iou[d, t] < self.min_iou:
                    break
                if d in matched_dets or t in matched_tracks:
                    continue
                matched_dets.add(d)
                matched_tracks.add(t)
                tr = tracks[t]
                tr.mask, tr.last_seen_s = dets.masks[d], pts_s
                ids[d] = tr.id
        for d in range(len(dets)):
            if d not in matched_dets:
                tr = _Track(self._next_id, int(dets.class_id[d]), dets.masks[d], pts_s)
                self._next_id += 1
                tracks.append(tr)
                ids[d] = tr.id
        # bounded state: drop tracks lost for longer than max_lost_s (stream time)
        self._tracks = [t for t in tracks if pts_s - t.last_seen_s <= self.max_lost_s]
        dets.tracker_id = ids
        return dets

    def __len__(self) -> int:
        return len(self._tracks)
