"""The baselines of `maskwatch eval tracking`: roboflow `trackers` on maskwatch's detections.

Every baseline runs on the same per-frame detections as maskwatch's tracker (boxes and
confidences; the masks ride along to be scored) in two variants:

- ``<name>-defaults``: the tracker's published defaults;
- ``<name>-matched``: its confidence thresholds matched to this detector (``conf``, the
  deployment's model.conf: a new track and the first association pass from there).

The trackers:

- ``bytetrack``: ``ByteTrackTracker`` (BYTE: a second pass with the low-confidence detections).
- ``ocsort``: ``OCSORTTracker`` (observation-centric SORT: re-update from the last observation,
  direction consistency; high-confidence detections only).
- ``mcbyte``: ``McByteTracker`` with its mask-conditioned association. McByte's own masks come from
  SAM (a mask from each new track's box) propagated frame to frame by Cutie: two more networks,
  their weights and a GPU. Here the detector's masks stand in for both: each track's mask for
  frame t is the mask of the detection it took at frame t-1 (its last one while lost), at frame
  resolution, handed to McByte through its own ``MaskManager`` (which still decides when a track
  gets a mask: after 3 frames, not while it is occluded from below). Cutie moves a mask to where the
  object is now; the stand-in moves it by the track's last step (the displacement of its last two
  detections' boxes per frame, times the frames since its last one). McByte's camera-motion
  compensation reads the decoded frames. So this is McByte's association with the masks maskwatch
  sees, carried one frame on: the nearest peer to maskwatch's idea that runs on a CPU.
"""

from __future__ import annotations

import numpy as np

BASELINES = ("bytetrack", "ocsort", "mcbyte")
VARIANTS = ("defaults", "matched")
MCBYTE_MIN_CONF = 0.1  # McByte drops detections at or below this, and its first-pass threshold must be above it


def baseline_names(baselines) -> list[str]:
    """The tracker names the results carry for a list of baselines, e.g. ``bytetrack-defaults``."""
    return [f"{b}-{v}" for b in baselines for v in VARIANTS]


def parse_baselines(text: str) -> tuple[str, ...]:
    """``bytetrack,ocsort,mcbyte`` (any of them, in any order; ``none`` for none) -> a tuple; ValueError naming the option."""
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if items == ["none"]:
        return ()
    unknown = [t for t in items if t not in BASELINES]
    if unknown or not items:
        raise ValueError(f"--baselines {text!r}: expected a comma-separated list of {', '.join(BASELINES)} (or none)")
    return tuple(dict.fromkeys(items))


def _to_sv(dets):
    import supervision as sv

    return sv.Detections(xyxy=dets.xyxy.astype(np.float32), confidence=dets.confidence.astype(np.float32),
                         class_id=dets.class_id.astype(int), data={"idx": np.arange(len(dets))})


def _from_sv(dets, out):
    """Our detections that a roboflow tracker returned with a track id (>= 0), ``tracker_id`` set."""
    if len(out) == 0 or out.tracker_id is None:
        res = dets[np.zeros(0, np.int64)]
        res.tracker_id = np.zeros(0, np.int64)
        return res
    keep = np.asarray(out.tracker_id) >= 0
    if "idx" in out.data:
        idx = np.asarray(out.data["idx"])[keep].astype(np.int64)
    else:  # data not carried: find each output box among the inputs
        d = np.abs(out.xyxy[keep][:, None, :] - dets.xyxy[None, :, :]).sum(axis=2)
        idx = d.argmin(axis=1).astype(np.int64)
    res = dets[idx]
    res.tracker_id = np.asarray(out.tracker_id)[keep].astype(np.int64)
    return res


class RoboflowTracker:
    """A roboflow ``trackers`` tracker behind maskwatch's ``update(dets, pts_s, image)``.

    ``uses_frame``: hand it the RGB frame (McByte: camera motion and masks); the others never see it.
    Frames are counted at the clip's fixed rate (no timestamps), as the trackers' benchmarks run.
    """

    def __init__(self, tracker, uses_frame: bool = False):
        self.t = tracker
        self.uses_frame = uses_frame

    def update(self, dets, pts_s: float, image=None):
        out = self.t.update(_to_sv(dets), frame=image) if self.uses_frame else self.t.update(_to_sv(dets))
        return _from_sv(dets, out)


class _DetectorMasks:
    """McByte's mask generator and propagator in one, from the detector's masks (``data["rles"]``).

    ``seen(res)`` is told every frame's output (our detections with their track ids); a track's mask is
    the full-resolution mask of its latest detection, moved on by its last step (``_shift``). ``generate`` (SAM's place) gives a new track that
    mask; ``propagate`` (Cutie's) gives every track it holds its latest mask for the next frame.
    Masks are certain (average probability 1.0): they are the detector's own.
    """

    def __init__(self):
        self.latest: dict[int, dict] = {}  # track id -> RLE of its latest detection
        self.steps: dict[int, tuple] = {}  # track id -> (frame, box) of its last two detections
        self.held: list[int] = []  # track ids with a mask, in mask order
        self.frame = -1  # frames seen
        self._decoded: dict[int, tuple[int, np.ndarray]] = {}  # track id -> (id(rle), mask)

    def seen(self, res) -> None:
        self.frame += 1
        for tid, rle, box in zip(res.tracker_id, res.data["rles"], res.xyxy):
            tid = int(tid)
            self.latest[tid] = rle
            last = self.steps.get(tid, (None, None))[1]
            self.steps[tid] = (last, (self.frame, np.asarray(box, float)))

    def _shift(self, tid: int) -> tuple[int, int]:
        """Where the track's mask has gone since its last detection: its last step per frame, times frames since."""
        prev, last = self.steps.get(tid, (None, None))
        if prev is None or last is None or last[0] <= prev[0]:
            return 0, 0
        per_frame = ((last[1][0] + last[1][2]) - (prev[1][0] + prev[1][2]),
                     (last[1][1] + last[1][3]) - (prev[1][1] + prev[1][3]))
        k = (self.frame + 1 - last[0]) / (2.0 * (last[0] - prev[0]))  # box sums are twice the centre
        return int(round(per_frame[0] * k)), int(round(per_frame[1] * k))

    def _mask(self, tid: int, hw: tuple[int, int], box=None) -> np.ndarray:
        m = self._last_mask(tid, hw, box)
        dx, dy = self._shift(tid)
        if dx == 0 and dy == 0:
            return m
        h, w = hw
        out = np.zeros_like(m)
        if abs(dx) < w and abs(dy) < h:
            out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = m[max(-dy, 0):h - max(dy, 0),
                                                                          max(-dx, 0):w - max(dx, 0)]
        return out

    def _last_mask(self, tid: int, hw: tuple[int, int], box=None) -> np.ndarray:
        from pycocotools import mask as mask_utils

        rle = self.latest.get(tid)
        if rle is None:  # never seen with a mask (cannot happen with our outputs): its box, as McByte's dummy does
            m = np.zeros(hw, bool)
            if box is not None:
                x0, y0, x1, y1 = (int(round(float(v))) for v in box)
                m[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
            return m
        cached = self._decoded.get(tid)
        if cached is not None and cached[0] == id(rle):
            return cached[1]
        m = mask_utils.decode(rle).astype(bool)
        if m.shape != hw:  # masks at another size than the frame (should not happen): nearest resize
            import cv2

            m = cv2.resize(m.astype(np.uint8), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
        self._decoded[tid] = (id(rle), m)
        return m

    def _output(self, ids: list[int], hw: tuple[int, int], boxes=None):
        from trackers.core.mcbyte.masks.base import MaskOutput

        masks = np.zeros((len(ids), *hw), bool)
        for k, tid in enumerate(ids):
            masks[k] = self._mask(tid, hw, None if boxes is None else boxes[k])
        return MaskOutput(masks=masks, tracklet_mask_dict={t: k for k, t in enumerate(ids)},
                          mask_avg_prob_dict={t: 1.0 for t in ids})

    # MaskGenerator
    def generate(self, frame, tracklets):
        return self._output([int(t.tracker_id) for t in tracklets], frame.shape[:2], [t.xyxy for t in tracklets])

    # MaskPropagator
    def reset(self) -> None:
        self.held = []
        self._decoded = {}

    def initialize(self, frame, mask_output) -> None:
        self.held = list(mask_output.tracklet_mask_dict)

    def add_masks(self, frame, mask_output) -> None:
        self.held += [t for t in mask_output.tracklet_mask_dict if t not in self.held]

    def remove_masks(self, tracklet_ids) -> None:
        gone = set(int(t) for t in tracklet_ids)
        self.held = [t for t in self.held if t not in gone]
        for t in gone:
            self._decoded.pop(t, None)
            self.latest.pop(t, None)
            self.steps.pop(t, None)

    def propagate(self, frame):
        return self._output(self.held, frame.shape[:2])


class McByteWithDetectorMasks(RoboflowTracker):
    """McByte whose masks are the detector's (see the module's docstring)."""

    def __init__(self, **kw):
        from trackers import McByteTracker
        from trackers.core.mcbyte.mask_manager import MaskManager
        from trackers.core.mcbyte.masks.base import MaskGenerator, MaskPropagator

        class _Masks(_DetectorMasks, MaskGenerator, MaskPropagator):
            pass

        self.masks = _Masks()
        super().__init__(McByteTracker(mask_manager=MaskManager(self.masks, self.masks), **kw), uses_frame=True)

    def update(self, dets, pts_s: float, image=None):
        res = super().update(dets, pts_s, image)
        self.masks.seen(res)
        return res


def make_baselines(baselines, fps: float, conf: float) -> dict:
    """name -> tracker for each baseline and variant; ``conf`` is the deployment's model.conf."""
    from trackers import ByteTrackTracker, OCSORTTracker

    out = {}
    for b in baselines:
        if b == "bytetrack":
            out["bytetrack-defaults"] = RoboflowTracker(ByteTrackTracker(frame_rate=fps))
            out["bytetrack-matched"] = RoboflowTracker(ByteTrackTracker(
                frame_rate=fps, track_activation_threshold=conf, high_conf_det_threshold=conf, lost_track_buffer=30))
        elif b == "ocsort":
            out["ocsort-defaults"] = RoboflowTracker(OCSORTTracker(frame_rate=fps))
            out["ocsort-matched"] = RoboflowTracker(OCSORTTracker(frame_rate=fps, high_conf_det_threshold=conf))
        elif b == "mcbyte":
            high = max(conf, MCBYTE_MIN_CONF + 1e-3)
            out["mcbyte-defaults"] = McByteWithDetectorMasks(frame_rate=fps)
            out["mcbyte-matched"] = McByteWithDetectorMasks(frame_rate=fps, track_activation_threshold=high,
                                                            high_conf_det_threshold=high)
        else:
            raise ValueError(f"unknown baseline {b!r}: expected one of {', '.join(BASELINES)}")
    return out
