"""MaskTracker: multi-object tracking by mask, per camera.

Association (per frame, stream time ``t``):
  0. duplicates go: a detection whose mask overlaps a more confident detection's mask by
     ``duplicate_iou`` or more, of any class, is the same object seen twice (box NMS keeps
     such pairs when their boxes differ, and runs per class); so is one whose mask lies
     ``duplicate_cover`` inside a more confident one of the same class (a part of it);
  1. every track's box is advanced by a constant-velocity Kalman filter to ``t``, and its
     last mask is shifted by the same displacement (in mask space);
  2. similarity = ``mask_weight`` x mask IoU + (1 - ``mask_weight``) x box IoU, minus
     ``class_penalty`` when the detection's class differs from the track's voted class, minus
     ``foot_weight`` x how far (in track heights, at most one) the detection's bottom edge lies below
     the predicted box's: cameras look down on a ground plane, so of two objects passing each other
     the one in front stands lower in the image, and a detection of both, or of the front one alone,
     reaches down to its feet (the one behind is hidden from below, never extended); minus, when
     the frame is given, up to ``colour_weight`` as the detection's mean mask colour differs from
     the track's (CIE Lab distance from ``COLOUR_SAME`` to ``COLOUR_SAME + COLOUR_RAMP``: two kits,
     a hi-vis vest beside dark clothes; lighting and noise stay below it). The colour is read from
     the frame only where it can decide (a detection two tracks could take, or one of two that a
     track could take, within ``colour_weight``), and a track's own colour follows its detections
     in every ``COLOUR_EVERY``-th frame, so the cue costs little;
  3. first pass: high-confidence detections against all tracks (Hungarian assignment);
     second pass (ByteTrack's idea): low-confidence detections against the confirmed tracks
     left over, so objects survive partial occlusion; third pass: confident detections left
     over against confirmed tracks left over by centre distance (same class, similar size),
     for objects that accelerate out of their predicted box;
  4. unmatched high-confidence detections start tentative tracks, confirmed after
     ``min_hits`` matches; tentative tracks that miss a frame are dropped; confirmed
     tracks that miss are kept ``max_lost_s`` stream seconds, then removed; a confirmed
     track is reported once one of its detections reached ``report_conf`` (BYTE's 0.6 to
     start a track): a detector's steady low-confidence mistake, a traffic cone seen as a
     worker at 0.5 for seconds, is followed but never reported;
  5. a track confirmed near where a lost track of the same class was expected takes over
     that track's ID (an object coming out from behind another, or back into the frame,
     is first seen too small or too far off to match); with ``sole_inherit``, so does the
     only track of its class confirmed this frame from a lost track that was the only one of
     that class, however far (a kicked ball leaves its prediction by many times its size);
  6. a first-pass detection that another confirmed track, left without a detection, would
     have taken almost as well (similarity within ``ambiguity_margin``) is two objects seen
     as one while they pass: it is not reported that frame, so the merged mask is never reported
     under either object's ID, and it corrects the track of the one in front, the one of the two
     whose predicted feet are nearest its bottom edge (by more than ``FRONT_SLACK`` of the track's
     height), while the other coasts; a merged box would carry the track behind off with the
     front one. Only a rival seen within ``HOLD_S`` counts, so a hold is brief (zone rules ride
     over it with clear_after_s). A held detection does not update its track's colour.

Boxes are compared clipped to the frame (objects at the border are seen clipped) and as if
at least ``min_box_px`` big, so a few-pixel ball's jitter does not break its box IoU; the
search radius of passes 3 and 5 grows with the filter's position uncertainty.

State is a struct of arrays holding only live tracks: nothing grows with stream length.
IDs start at 1, are unique per tracker, and are never reused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from maskwatch.engines.results import Detections

from . import kalman
from .appearance import mask_colours


HOLD_S = 0.4  # step 6 holds a detection back only against a rival seen within this long (stream seconds)
FRONT_SLACK = 0.05  # step 6: a held detection moves to the rival whose feet are nearer by this many track heights
COLOUR_SAME = 10.0  # Lab distance within which two mean colours count as the same (light, noise, a few pixels)
COLOUR_RAMP = 20.0  # ... and over which the colour term then grows to colour_weight
COLOUR_RATE = 0.5  # a track's colour moves this fraction towards a (not held) detection's ...
COLOUR_EVERY = 4  # ... in every 4th frame: a kit's colour changes slowly, and one read for all tracks costs less


@dataclass(frozen=True)
class TrackerParams:
    high_conf: float = 0.35  # first-pass detections; the model's conf
    low_conf: float = 0.1  # second-pass detections (between low and high)
    new_track_conf: float = 0.4  # least confidence to start a track
    min_hits: int = 2  # matches before a track is reported
    max_lost_s: float = 4.0  # keep a lost track this long (stream seconds; 4 chosen on the tuning clips, issue 26)
    min_similarity: float = 0.2  # least similarity to match in the first pass
    min_similarity_low: float = 0.35  # ... and in the second pass
    mask_weight: float = 0.3  # far objects are a few mask pixels and bunched players' masks overlap (tuning clips)
    class_penalty: float = 0.3
    recover_dist: float = 1.5  # third pass: a detection within this many track sizes of the prediction
    min_box_px: float = 16.0  # boxes are compared as if at least this big (frame pixels)
    move_frac: float = 0.15  # a move larger than this fraction of the box height resets the stationary clock
    duplicate_iou: float = 0.5  # drop a detection whose mask overlaps a more confident one's this much (0: off)
    duplicate_cover: float = 0.8  # ... or lies this much inside a more confident one of its class (0: off)
    foot_weight: float = 0.5  # similarity lost per track height that a detection reaches below the predicted box
    ambiguity_margin: float = 0.3  # hold back a detection another unmatched track is this close to claiming (0: off)
    report_conf: float = 0.0  # a track is reported once one of its detections reached this (config: up to 0.6)
    sole_inherit: bool = True  # the only new track of a class takes over a lost track that was the only one of it
    colour_weight: float = 0.2  # similarity lost by a detection whose mean colour is far from the track's (0: off)


def _xyxy_to_cxcywh(b: np.ndarray) -> np.ndarray:
    return np.concatenate([(b[:, :2] + b[:, 2:4]) / 2, b[:, 2:4] - b[:, :2]], axis=1)


def _cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = b[:, 2:4] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def _clip_to_frame(b: np.ndarray, w: float, h: float) -> np.ndarray:
    """Boxes (n, 4) xyxy clipped to a w x h frame."""
    return np.minimum(np.maximum(b, 0.0), np.array([w, h, w, h], np.float64))


def _at_least(b: np.ndarray, size: float) -> np.ndarray:
    """Boxes (n, 4) xyxy grown about their centres to at least ``size`` wide and high."""
    c = (b[:, :2] + b[:, 2:]) / 2
    half = np.maximum(b[:, 2:] - b[:, :2], size) / 2
    return np.concatenate([c - half, c + half], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes (n, 4) x (m, 4)."""
    x0, y0, x1, y1 = _box_meets(a, b)
    inter = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0) * np.maximum(a[:, 3] - a[:, 1], 0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boolean masks (n, h, w) x (m, h, w), one matrix product."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def mask_areas(masks: np.ndarray) -> np.ndarray:
    """Pixel counts (n,) of boolean masks; a count per mask is several times faster than one along axes."""
    return np.fromiter((np.count_nonzero(m) for m in masks), np.int64, len(masks))


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight boxes (n, 4) x0, y0, x1, y1 (exclusive) of boolean masks in mask space; empty masks get 0-size boxes."""
    n = len(masks)
    if n == 0:
        return np.zeros((0, 4), np.int64)
    h, w = masks.shape[1:]
    flat = masks.reshape(n, -1)
    has = flat.any(axis=1)
    # argmax over bools stops at the first True: the first set pixel's row, then the same on the
    # rows upside down (a copy of whole rows, cheap); reductions along an axis cost several times more
    y0 = flat.argmax(axis=1) // w
    y1 = h - masks[:, ::-1].reshape(n, -1).argmax(axis=1) // w
    cols = masks.any(axis=1)
    x0 = cols.argmax(axis=1)
    x1 = w - cols[:, ::-1].argmax(axis=1)
    return np.where(has[:, None], np.stack([x0, y0, x1, y1], axis=1), 0)


def _box_meets(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pairwise intersections (n, m) of boxes a (n, 4) and b (m, 4): x0, y0, x1, y1 (empty: x1 <= x0 or y1 <= y0)."""
    return (np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1]),
            np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3]))


def shifted_mask_iou(a: np.ndarray, a_box: np.ndarray, a_area: np.ndarray,
                     b: np.ndarray, b_box: np.ndarray, b_area: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """IoU (n, m) of masks ``a`` with masks ``b`` translated by integer ``shift`` (m, 2).

    Only pairs whose tight boxes meet are counted, each on the boxes' intersection, so
    the cost follows the objects' size and overlaps, not the mask-space size.
    """
    out = np.zeros((len(a), len(b)))
    if len(a) == 0 or len(b) == 0:
        return out
    x0, y0, x1, y1 = _box_meets(a_box, b_box + np.concatenate([shift, shift], axis=1))
    ii, jj = np.nonzero((x1 > x0) & (y1 > y0))
    if len(ii) == 0:
        return out
    # plain ints from here: numpy scalars make each slice several times slower
    rows = zip(ii.tolist(), jj.tolist(), y0[ii, jj].tolist(), y1[ii, jj].tolist(), x0[ii, jj].tolist(),
               x1[ii, jj].tolist(), shift[jj, 0].tolist(), shift[jj, 1].tolist())
    a_area, b_area = a_area.tolist(), b_area.tolist()
    for i, j, ys, ye, xs, xe, dx, dy in rows:
        inter = int(np.count_nonzero(a[i, ys:ye, xs:xe] & b[j, ys - dy:ye - dy, xs - dx:xe - dx]))
        union = a_area[i] + b_area[j] - inter
        out[i, j] = inter / union if union > 0 else 0.0
    return out


class _FrameColours:
    """One frame's detection colours, each read from the frame when first asked for."""

    def __init__(self, image: np.ndarray, masks: np.ndarray) -> None:
        self.image, self.masks = image, masks
        self.values = np.full((len(masks), 3), np.nan)
        self.done = np.zeros(len(masks), bool)

    def get(self, idx: np.ndarray) -> np.ndarray:
        todo = np.unique(idx[~self.done[idx]])  # sorted: all of them is then the mask stack itself, no copy
        if len(todo):
            self.values[todo] = mask_colours(self.image, self.masks if len(todo) == len(self.masks) else self.masks[todo])
            self.done[todo] = True
        return self.values[idx]


class MaskTracker:
    def __init__(self, params: TrackerParams | None = None, **overrides) -> None:
        p = params or TrackerParams()
        if overrides:
            p = TrackerParams(**{**p.__dict__, **overrides})
        self.p = p
        self._next_id = 1
        self._last_t: float | None = None
        self._frames = 0
        self._reset_arrays()

    def _reset_arrays(self, mask_hw: tuple[int, int] = (0, 0)) -> None:
        self.ids = np.zeros(0, np.int64)
        self.mean = np.zeros((0, 8))
        self.cov = np.zeros((0, 3, 4))  # Kalman covariance blocks (see kalman)
        self.last_box = np.zeros((0, 4))  # cxcywh at the last match
        self.masks = np.zeros((0, *mask_hw), bool)
        self.mask_box = np.zeros((0, 4), np.int64)
        self.mask_area = np.zeros(0, np.int64)
        self.hits = np.zeros(0, np.int64)
        self.confirmed = np.zeros(0, bool)
        self.first_seen = np.zeros(0)
        self.last_seen = np.zeros(0)
        self.votes = np.zeros((0, 1), np.float32)  # confidence-weighted class votes
        self.peak = np.zeros(0)  # highest confidence of a matched detection
        self.anchor = np.zeros((0, 2))
        self.anchor_t = np.zeros(0)
        self.colour = np.zeros((0, 3))  # mean mask colour (CIE Lab), NaN until the track was seen with a frame

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def track_class(self) -> np.ndarray:
        return self.votes.argmax(axis=1) if len(self.ids) else np.zeros(0, np.int64)

    def _keep(self, keep: np.ndarray) -> None:
        for name in ("ids", "mean", "cov", "last_box", "masks", "mask_box", "mask_area", "hits", "confirmed", "first_seen", "last_seen",
                     "votes", "peak", "anchor", "anchor_t", "colour"):
            setattr(self, name, getattr(self, name)[keep])

    def _similarity(self, dets: Detections, idx: np.ndarray, tracks: np.ndarray, scale: tuple[float, float],
                    det_box: np.ndarray | None, det_area: np.ndarray | None, colour: _FrameColours | None):
        if len(idx) == 0 or len(tracks) == 0:
            return np.zeros((len(idx), len(tracks)))
        pred_xyxy = _cxcywh_to_xyxy(self.mean[tracks, :4])
        if dets.mask_space is not None:
            # an object leaving or entering the frame is seen clipped at the border; so is its detection
            w, h = dets.mask_space.frame_wh
            pred_xyxy = _clip_to_frame(pred_xyxy, w, h)
        # tiny objects (a ball, a far worker): a pixel of jitter must not drop their box IoU to nothing
        sim = box_iou(_at_least(dets.xyxy[idx].astype(np.float64), self.p.min_box_px), _at_least(pred_xyxy, self.p.min_box_px))
        if det_box is not None and self.masks.shape[1:] == dets.masks.shape[1:]:
            shift = np.rint((self.mean[tracks, :2] - self.last_box[tracks, :2]) / np.array(scale)).astype(np.int64)
            miou = shifted_mask_iou(dets.masks[idx], det_box[idx], det_area[idx], self.masks[tracks],
                                    self.mask_box[tracks], self.mask_area[tracks], shift)
            sim = self.p.mask_weight * miou + (1 - self.p.mask_weight) * sim
        if self.p.foot_weight > 0:  # reaching below a track's feet: an object in front of it (step 2 above)
            below = dets.xyxy[idx, 3].astype(np.float64)[:, None] - pred_xyxy[None, :, 3]
            height = np.maximum(pred_xyxy[:, 3] - pred_xyxy[:, 1], self.p.min_box_px)
            sim = sim - self.p.foot_weight * np.minimum(np.maximum(below / height, 0.0), 1.0)
        if colour is not None:
            sim = self._colour_term(sim, idx, tracks, colour)
        cls = self.track_class[tracks]
        sim = sim - self.p.class_penalty * (dets.class_id[idx][:, None] != cls[None, :])
        return sim

    def _colour_term(self, sim: np.ndarray, idx: np.ndarray, tracks: np.ndarray, colour: _FrameColours) -> np.ndarray:
        """Unlike colours are another object: similarity lost, up to colour_weight. Read only for the
        detections that it can decide: one two tracks could take, or one of two a track could take,
        within colour_weight of each other (tracks never seen with a frame have no colour: no term)."""
        w = self.p.colour_weight
        cand = np.where(np.isnan(self.colour[tracks, 0])[None, :], 0.0, sim)  # tracks with a colour only
        rows = np.zeros(len(idx), bool)
        if len(tracks) > 1:  # a detection whose second-best track is within w of its best
            top = np.partition(cand, len(tracks) - 2, axis=1)[:, -2:]
            rows = (top[:, 0] > 0) & (top[:, 0] >= top[:, 1] - w)
        if len(idx) > 1:  # ... and the detections a track's second-best is within w of its best
            top = np.partition(cand, len(idx) - 2, axis=0)[-2:]
            cols = np.flatnonzero((top[0] > 0) & (top[0] >= top[1] - w))
            if len(cols):
                rows |= ((cand[:, cols] > 0) & (cand[:, cols] >= top[1, cols] - w)).any(axis=1)
        r = np.flatnonzero(rows)
        if len(r) == 0:
            return sim
        dist = np.linalg.norm(colour.get(idx[r])[:, None, :] - self.colour[tracks][None, :, :], axis=2)
        sim = sim.copy()
        ramp = np.minimum((dist - COLOUR_SAME) / COLOUR_RAMP, 1.0)
        sim[r] -= w * np.where(ramp > 0, ramp, 0.0)  # NaN (no colour): 0
        return sim

    def _nearness(self, dets: Detections, idx: np.ndarray, tracks: np.ndarray) -> np.ndarray:
        """1 - centre distance / (recover_dist x track size), 0 beyond it, for the same class and a similar size."""
        if len(idx) == 0 or len(tracks) == 0:
            return np.zeros((len(idx), len(tracks)))
        det_xyxy = dets.xyxy[idx].astype(np.float64)
        trk_xyxy = _cxcywh_to_xyxy(self.mean[tracks, :4])
        edge = np.zeros(len(idx), bool)
        if dets.mask_space is not None:  # compare what is visible: clip predictions to the frame
            w, h = dets.mask_space.frame_wh
            trk_xyxy = _clip_to_frame(trk_xyxy, w, h)
            edge = (det_xyxy[:, 0] <= 1) | (det_xyxy[:, 1] <= 1) | (det_xyxy[:, 2] >= w - 1) | (det_xyxy[:, 3] >= h - 1)
        m = self.p.min_box_px  # tiny objects: sizes no smaller than this, as in the box IoU
        det, trk = _xyxy_to_cxcywh(_at_least(det_xyxy, m)), _xyxy_to_cxcywh(_at_least(trk_xyxy, m))
        size = np.sqrt(trk[:, 2] * trk[:, 3])
        # the search radius grows with the filter's position uncertainty (long gaps, fast objects)
        spread = kalman.position_spread(self.cov[tracks])
        radius = self.p.recover_dist * size + 2.0 * spread
        dist = np.hypot(det[:, None, 0] - trk[None, :, 0], det[:, None, 1] - trk[None, :, 1])
        near = np.clip(1.0 - dist / radius[None, :], 0.0, None)
        ratio = (det[:, None, 2] * det[:, None, 3]) / np.maximum(trk[None, :, 2] * trk[None, :, 3], 1.0)
        lo, hi = np.where(edge, 0.2, 0.5)[:, None], np.where(edge, 5.0, 2.0)[:, None]  # partly out of frame
        ok = (ratio > lo) & (ratio < hi) & (dets.class_id[idx][:, None] == self.track_class[tracks][None, :])
        return np.where(ok, near, 0.0)

    @staticmethod
    def _assign(sim: np.ndarray, min_sim: float) -> list[tuple[int, int]]:
        if sim.size == 0:
            return []
        rows, cols = linear_sum_assignment(-sim)
        return [(r, c) for r, c in zip(rows, cols) if sim[r, c] >= min_sim]

    def update(self, dets: Detections, pts_s: float, image: np.ndarray | None = None) -> Detections:
        """Associate one frame's detections; returns those on reported tracks, with ``tracker_id``.

        ``image``, RGB uint8 showing the whole frame at any size (the model input's content is
        enough), gives the colour term; without it, association uses geometry alone.

        ``class_id`` becomes the track's voted class; ``data`` gains ``det_class_id``,
        ``stationary_s`` (time since the track last moved) and ``track_xyxy`` (filtered box).
        """
        p = self.p
        dt = 0.0 if self._last_t is None else max(0.0, pts_s - self._last_t)  # pts may jump back after a reconnect
        self._last_t = pts_s
        if dets.masks is not None and self.masks.shape[1:] != dets.masks.shape[1:]:
            self._reset_arrays(dets.masks.shape[1:])  # new mask space (frame size changed): start over
        self.mean, self.cov = kalman.predict(self.mean, self.cov, dt)
        scale = dets.mask_space.scale_xy if dets.mask_space is not None else (1.0, 1.0)

        conf = dets.confidence
        det_box = det_area = None
        if dets.masks is not None:
            det_box = mask_boxes(dets.masks)
            det_area = mask_areas(dets.masks)
        valid = conf >= p.low_conf
        if det_box is not None and (p.duplicate_iou > 0 or p.duplicate_cover > 0):
            valid &= ~self._duplicates(dets.masks, det_box, det_area, conf, dets.class_id, valid)
        colour = None
        if image is not None and det_area is not None and p.colour_weight > 0:
            colour = _FrameColours(image, dets.masks)
            if self._frames % COLOUR_EVERY == 0:  # tracks learn their colours this frame: one read for all
                colour.get(np.flatnonzero(valid))
        high = np.flatnonzero(valid & (conf >= p.high_conf))
        low = np.flatnonzero(valid & (conf < p.high_conf))
        all_tracks = np.arange(len(self.ids))
        det_to_track: dict[int, int] = {}
        sim1 = self._similarity(dets, high, all_tracks, scale, det_box, det_area, colour)
        pairs1 = self._assign(sim1, p.min_similarity)
        for r, c in pairs1:
            det_to_track[int(high[r])] = int(all_tracks[c])
        taken = np.zeros(len(self.ids), bool)
        taken[list(det_to_track.values())] = True
        left = np.flatnonzero(self.confirmed & ~taken)
        if len(low) and len(left):
            for r, c in self._assign(self._similarity(dets, low, left, scale, det_box, det_area, colour), p.min_similarity_low):
                det_to_track[int(low[r])] = int(left[c])
                taken[left[c]] = True
        # third pass: an object that sped up (from standing still, say) has left its predicted box, so
        # neither box nor mask overlaps; take the nearest confident detection of the same class and size
        left = np.flatnonzero(self.confirmed & ~taken)
        free = np.array([d for d in high if int(d) not in det_to_track], np.int64)
        for r, c in self._assign(self._nearness(dets, free, left), 1e-9):
            det_to_track[int(free[r])] = int(left[c])

        # a first-pass detection that a confirmed track left without one could claim almost as well: two
        # objects seen as one while they pass (step 6); it still corrects its track but is not reported
        hold: set[int] = set()
        if p.ambiguity_margin > 0 and pairs1 and len(self.ids) > 1:
            # rivals were seen moments ago (a merge, not a stale lost track): a hold lasts at most HOLD_S
            rival = self.confirmed & (pts_s - self.last_seen <= HOLD_S)
            rival[list(det_to_track.values())] = False
            if rival.any():
                alt = sim1[:, rival].max(axis=1)
                hold = {int(high[r]) for r, c in pairs1
                        if alt[r] >= p.min_similarity and sim1[r, c] - alt[r] < p.ambiguity_margin}
                if hold:
                    self._to_front(dets, hold, pairs1, high, sim1, rival, det_to_track)
        # matched tracks: correct the filter, take the new mask, vote the class
        if det_to_track:
            d_idx = np.fromiter(det_to_track.keys(), np.int64)
            t_idx = np.fromiter(det_to_track.values(), np.int64)
            z = _xyxy_to_cxcywh(dets.xyxy[d_idx].astype(np.float64))
            self.mean[t_idx], self.cov[t_idx] = kalman.update(self.mean[t_idx], self.cov[t_idx], z)
            self.last_box[t_idx] = self.mean[t_idx, :4]
            if dets.masks is not None:
                self.masks[t_idx] = dets.masks[d_idx]
                self.mask_box[t_idx] = det_box[d_idx]
                self.mask_area[t_idx] = det_area[d_idx]
            self.hits[t_idx] += 1
            self.last_seen[t_idx] = pts_s
            self._vote(t_idx, dets.class_id[d_idx], conf[d_idx])
            self.peak[t_idx] = np.maximum(self.peak[t_idx], conf[d_idx])
            if colour is not None:  # a held detection is two objects' colours: it teaches nothing
                old = self.colour[t_idx]
                due = np.isnan(old[:, 0]) | (self._frames % COLOUR_EVERY == 0)
                if hold:
                    due &= np.array([d not in hold for d in d_idx.tolist()], bool)
                if due.any():
                    old, seen = old[due], colour.get(d_idx[due])
                    self.colour[t_idx[due]] = np.where(np.isnan(seen), old,
                                                       np.where(np.isnan(old), seen, old + COLOUR_RATE * (seen - old)))
            was_confirmed = self.confirmed.copy()
            self.confirmed[t_idx] |= self.hits[t_idx] >= p.min_hits
            newly = self.confirmed & ~was_confirmed
            moved = np.hypot(*(z[:, :2] - self.anchor[t_idx]).T) > p.move_frac * np.maximum(z[:, 3], 1.0)
            self.anchor[t_idx[moved]] = z[moved, :2]
            self.anchor_t[t_idx[moved]] = pts_s

        # unmatched: tentative tracks go, confirmed ones wait up to max_lost_s
        matched = np.zeros(len(self.ids), bool)
        matched[list(det_to_track.values())] = True
        keep = matched | (self.confirmed & (pts_s - self.last_seen <= p.max_lost_s))
        if det_to_track and newly.any():
            keep &= ~self._inherit(np.flatnonzero(newly), np.flatnonzero(keep & ~matched), dets.mask_space)
        if not keep.all():
            old_to_new = (np.cumsum(keep) - 1).tolist()
            self._keep(keep)
            det_to_track = {d: old_to_new[t] for d, t in det_to_track.items()}

        # new tracks from confident unmatched detections
        new = [int(d) for d in high if int(d) not in det_to_track and conf[d] >= p.new_track_conf]
        if new:
            self._add(dets, np.array(new, np.int64), pts_s, confirmed=self._frames == 0 or p.min_hits <= 1)
            base = len(self.ids) - len(new)
            det_to_track.update({d: base + k for k, d in enumerate(new)})
        self._frames += 1

        reported = self.confirmed & (self.peak >= p.report_conf)
        out_d = np.array([d for d, t in sorted(det_to_track.items()) if reported[t] and d not in hold], np.int64)
        out_t = np.array([det_to_track[d] for d in out_d], np.int64)
        res = dets[out_d] if len(out_d) else dets[np.zeros(0, np.int64)]
        res.tracker_id = self.ids[out_t]
        res.data["det_class_id"] = res.class_id.copy()
        res.class_id = self.track_class[out_t].astype(np.int32)
        res.data["stationary_s"] = pts_s - self.anchor_t[out_t]
        res.data["track_xyxy"] = _cxcywh_to_xyxy(self.mean[out_t, :4]).astype(np.float32).reshape(-1, 4)
        return res

    def _to_front(self, dets: Detections, hold: set[int], pairs1: list[tuple[int, int]], high: np.ndarray,
                  sim1: np.ndarray, rival: np.ndarray, det_to_track: dict[int, int]) -> None:
        """Step 6: a held detection (two objects seen as one) goes to the one in front, the one of its
        track and the rival of the same class it was held against whose predicted feet are nearest its
        bottom edge: the one behind is hidden from below, so the merged mask reaches down to the front
        one's feet."""
        bottom = _cxcywh_to_xyxy(self.mean[:, :4])[:, 3]
        claimed = set(det_to_track.values())
        for r, c in pairs1:
            d = int(high[r])
            if d not in hold:
                continue
            # of its class: a worker's box must not take over a machine's track (nor vote its class)
            same = rival & (sim1[r] >= self.p.min_similarity) & (self.track_class == self.track_class[c])
            rivals = [k for k in np.flatnonzero(same).tolist() if k not in claimed]
            if not rivals:
                continue
            k = max(rivals, key=lambda k: sim1[r, k])
            y = float(dets.xyxy[d, 3])
            if abs(y - bottom[k]) + FRONT_SLACK * max(self.mean[c, 3], self.p.min_box_px) < abs(y - bottom[c]):
                claimed.discard(c)
                claimed.add(k)
                det_to_track[d] = k

    def _duplicates(self, masks: np.ndarray, box: np.ndarray, area: np.ndarray, conf: np.ndarray,
                    class_id: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Detections seen twice, greedily from the most confident (mask NMS): a detection goes when its mask
        overlaps a kept one's by ``duplicate_iou`` (any class) or lies ``duplicate_cover`` inside a kept one
        of the same class (a part of that object: a truck's cab beside the whole truck)."""
        dup = np.zeros(len(conf), bool)
        idx = np.flatnonzero(valid)
        if len(idx) < 2:
            return dup
        idx = idx[np.argsort(-conf[idx], kind="stable")]
        # pairs (more confident i, less confident j) whose tight mask boxes meet; the masks' overlap is at
        # most the boxes' intersection, so keep the pairs where that could reach either bound
        x0, y0, x1, y1 = _box_meets(box[idx], box[idx])
        iou_min, cover = self.p.duplicate_iou, self.p.duplicate_cover
        box_inter = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
        av = area[idx]
        cv = class_id[idx]
        could = (iou_min > 0) & (box_inter >= iou_min * np.maximum(av[:, None], av[None, :]))
        if cover > 0:
            could |= (cv[:, None] == cv[None, :]) & (box_inter >= cover * np.maximum(av[None, :], 1))
        ii, jj = np.nonzero(could & (box_inter > 0))
        upper = ii < jj
        ii, jj = ii[upper], jj[upper]
        if len(ii) == 0:
            return dup
        gone = np.zeros(len(idx), bool)
        a = av.tolist()
        cls = cv.tolist()
        rows = zip(ii.tolist(), jj.tolist(), y0[ii, jj].tolist(), y1[ii, jj].tolist(), x0[ii, jj].tolist(),
                   x1[ii, jj].tolist())
        for i, j, ys, ye, xs, xe in rows:  # i < j: i is the more confident; pairs come in order of i
            if gone[i] or gone[j]:
                continue
            mi, mj = masks[idx[i]], masks[idx[j]]
            inter = int(np.count_nonzero(mi[ys:ye, xs:xe] & mj[ys:ye, xs:xe]))
            union = a[i] + a[j] - inter
            if (iou_min > 0 and union > 0 and inter >= iou_min * union) or (
                    cover > 0 and cls[i] == cls[j] and inter >= cover * max(a[j], 1)):
                gone[j] = True
        dup[idx[gone]] = True
        return dup

    def _inherit(self, new: np.ndarray, lost: np.ndarray, space) -> np.ndarray:
        """Tracks confirmed this frame near where a lost track of the same class was expected take
        over that track's ID: the object came back (from behind an occluder, into the frame) and was
        picked up as new before the lost track matched it; with ``sole_inherit``, also the only new
        track of a class from a lost track that was the only one of that class, wherever it is.
        Returns the lost tracks taken over."""
        gone = np.zeros(len(self.ids), bool)
        if len(new) == 0 or len(lost) == 0:
            return gone
        box = _cxcywh_to_xyxy(self.mean[lost, :4])
        if space is not None:  # an object that left the frame is looked for where it left
            w, h = space.frame_wh
            box = _clip_to_frame(box, w, h)
        pred = _xyxy_to_cxcywh(_at_least(box, self.p.min_box_px))
        size = np.sqrt(pred[:, 2] * pred[:, 3])
        spread = kalman.position_spread(self.cov[lost])
        radius = self.p.recover_dist * size + 2.0 * spread
        dist = np.hypot(self.mean[new, None, 0] - pred[None, :, 0], self.mean[new, None, 1] - pred[None, :, 1])
        same = self.track_class[new][:, None] == self.track_class[lost][None, :]
        near = np.where(same, np.clip(1.0 - dist / radius[None, :], 0.0, None), 0.0)
        pairs = [(int(new[r]), int(lost[c])) for r, c in self._assign(near, 1e-9)]
        if self.p.sole_inherit:
            # the only track of its class confirmed this frame and a lost track that was the only one of that
            # class are one object, however far apart: one ball on a pitch, kicked out of its prediction and
            # found again (never among many players: one entering the view while another is hidden)
            paired = {t for pair in pairs for t in pair}
            lost_set = set(lost.tolist())
            cls = self.track_class
            older = self.confirmed.copy()  # confirmed before this frame, matched or lost
            older[new] = False
            for c in np.unique(cls[new]):
                nn, ll = new[cls[new] == c].tolist(), np.flatnonzero(older & (cls == c)).tolist()
                if len(nn) == 1 and len(ll) == 1 and ll[0] in lost_set and not paired & {nn[0], ll[0]}:
                    pairs.append((nn[0], ll[0]))
        for n, old in pairs:
            self.ids[n] = self.ids[old]
            self.first_seen[n] = self.first_seen[old]
            self.votes[n] += self.votes[old]
            self.peak[n] = max(self.peak[n], self.peak[old])
            gone[old] = True
        return gone

    def _vote(self, t_idx: np.ndarray, cls: np.ndarray, conf: np.ndarray) -> None:
        need = int(cls.max()) + 1 if len(cls) else 0
        if need > self.votes.shape[1]:
            self.votes = np.pad(self.votes, ((0, 0), (0, need - self.votes.shape[1])))
        np.add.at(self.votes, (t_idx, cls), conf)

    def _add(self, dets: Detections, d_idx: np.ndarray, pts_s: float, confirmed: bool) -> None:
        n = len(d_idx)
        z = _xyxy_to_cxcywh(dets.xyxy[d_idx].astype(np.float64))
        mean, cov = kalman.initiate(z)
        self.ids = np.concatenate([self.ids, np.arange(self._next_id, self._next_id + n)])
        self._next_id += n
        self.mean = np.concatenate([self.mean, mean])
        self.cov = np.concatenate([self.cov, cov])
        self.last_box = np.concatenate([self.last_box, z])
        masks = dets.masks[d_idx] if dets.masks is not None else np.zeros((n, *self.masks.shape[1:]), bool)
        self.masks = np.concatenate([self.masks, masks])
        self.mask_box = np.concatenate([self.mask_box, mask_boxes(masks)])
        self.mask_area = np.concatenate([self.mask_area, mask_areas(masks)])
        self.hits = np.concatenate([self.hits, np.ones(n, np.int64)])
        self.confirmed = np.concatenate([self.confirmed, np.full(n, confirmed)])
        self.first_seen = np.concatenate([self.first_seen, np.full(n, pts_s)])
        self.last_seen = np.concatenate([self.last_seen, np.full(n, pts_s)])
        self.votes = np.concatenate([self.votes, np.zeros((n, self.votes.shape[1]), np.float32)])
        self._vote(np.arange(len(self.ids) - n, len(self.ids)), dets.class_id[d_idx], dets.confidence[d_idx])
        self.peak = np.concatenate([self.peak, dets.confidence[d_idx].astype(np.float64)])
        self.anchor = np.concatenate([self.anchor, z[:, :2]])
        self.anchor_t = np.concatenate([self.anchor_t, np.full(n, pts_s)])
        self.colour = np.concatenate([self.colour, np.full((n, 3), np.nan)])  # read at its first match
