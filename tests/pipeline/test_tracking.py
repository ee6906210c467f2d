"""MaskTracker behaviour on hand-made masks (mask space 80x80 over a 320x320 frame)."""

import numpy as np
import pytest

from maskwatch.engines.results import Detections, MaskSpace
from maskwatch.pipeline.tracking import MaskTracker, TrackerParams, mask_iou

MS = MaskSpace((80, 80), (320, 320))


def blob(cx, cy, r=6, shape="disc"):
    yy, xx = np.mgrid[:80, :80]
    if shape == "disc":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    # a thin diagonal bar: its box is large but its mask small
    return (np.abs((xx - cx) - (yy - cy)) <= 1) & (np.abs(xx - cx) <= r)


def dets_of(masks, conf=0.9, cls=0):
    masks = np.array(masks, bool).reshape(-1, 80, 80)
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min() * 4, ys.min() * 4, (xs.max() + 1) * 4, (ys.max() + 1) * 4])
    n = len(masks)
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.full(n, conf), np.full(n, cls), masks, MS)


def run(tracker, frames, dt=1 / 15):
    out = []
    for i, masks in enumerate(frames):
        d = dets_of(masks) if len(masks) else Detections.empty(MS)
        out.append(tracker.update(d, i * dt))
    return out


def test_crossing_diagonal_bars_keep_ids():
    # two thin bars cross the same region: boxes overlap a lot at the crossing, masks barely
    frames = []
    for i in range(30):
        a = blob(10 + 2 * i, 40, r=12, shape="bar")
        b = np.fliplr(blob(10 + 2 * i, 40, r=12, shape="bar"))
        frames.append([a, b])
    out = run(MaskTracker(min_hits=1), frames)
    first = {int(t): i for i, t in enumerate(out[0].tracker_id)}
    assert len(first) == 2
    for res in out:
        assert len(res) == 2
        # identity follows the mask: the bar going down-right keeps its id
        order = [int(t) for t in res.tracker_id]
        assert order == list(out[0].tracker_id)


def test_two_discs_pass_each_other_with_overlapping_boxes():
    frames = [[blob(20 + 2 * i, 38), blob(60 - 2 * i, 44)] for i in range(21)]
    out = run(MaskTracker(min_hits=1), frames)
    ids0 = list(out[0].tracker_id)
    for res in out:
        assert list(res.tracker_id) == ids0  # detections stay in input order: a left-mover, a right-mover


def rect(x0, y0, w, h):
    m = np.zeros((80, 80), bool)
    m[y0:y0 + h, x0:x0 + w] = True
    return m


def _passing_people(**params):
    """A narrow person in front (feet at y 60) and a wider one behind (feet at y 52) walk past each
    other; at frame 7 the detector sees one mask: the front person and the head of the one behind."""
    tracker = MaskTracker(min_hits=1, **params)
    out = []
    for i in range(14):
        front, behind = rect(16 + 2 * i, 30, 8, 30), rect(44 - 2 * i, 24, 12, 28)
        masks = [front | (behind & (np.arange(80)[:, None] < 30))] if i == 7 else [front, behind]
        out.append([int(t) for t in tracker.update(dets_of(masks), i / 15).tracker_id])
    return out


def test_detection_of_passing_objects_goes_to_the_one_in_front():
    out = _passing_people(ambiguity_margin=0.0)  # report the merged detection (see the next test)
    front, behind = out[0]
    assert out[7] == [front]  # its box reaches the front one's feet (the behind one's box is more alike)
    assert all(ids == [front, behind] for ids in out[8:])
    # without the ground-contact term the wider box of the one behind takes it: the term decides
    assert _passing_people(foot_weight=0.0, ambiguity_margin=0.0)[7] == [behind]


def test_two_objects_seen_as_one_are_not_reported_under_either_id():
    held = _passing_people(ambiguity_margin=1.0)  # the one behind could claim the merged detection too
    front, behind = held[0]
    assert held[7] == []
    assert all(ids == [front, behind] for ids in held[8:])  # it still corrected the front one's track
    assert _passing_people(ambiguity_margin=0.0)[7] == [front]


def test_a_merged_detection_corrects_the_track_of_the_one_in_front(monkeypatch):
    # one person stands, another (feet 3 mask px lower: in front) walks left past them; for four frames the
    # detector sees one mask of both, a box more like the one behind's. It is held back and corrects the
    # track of the one whose feet it shows; the one behind coasts where it stands
    from maskwatch.pipeline.tracking import tracker as tracker_module

    def behind_box_when_they_part():
        tracker = MaskTracker(min_hits=1)
        for i in range(13):
            behind, front = rect(40, 24, 10, 28), rect(50 - i, 27, 9, 28)
            masks = [front | behind] if 8 <= i < 12 else [front, behind]
            res = tracker.update(dets_of(masks), i / 15)
        assert res.tracker_id.tolist() == [1, 2]  # front, behind: both kept their IDs
        return res.data["track_xyxy"][1]

    assert behind_box_when_they_part()[3] == pytest.approx(52 * 4, abs=1)  # its feet stayed at y 52
    monkeypatch.setattr(tracker_module, "FRONT_SLACK", np.inf)  # off: the merged box goes to the one behind
    assert behind_box_when_they_part()[3] > 52 * 4 + 3  # and drags its feet down to the front one's


RED, BLUE, GRASS = (200, 40, 40), (40, 60, 200), (40, 120, 40)


def picture(masks, colours):
    """An RGB frame (320x320, 4x the mask space) of coloured objects on grass."""
    img = np.empty((80, 80, 3), np.uint8)
    img[:] = GRASS
    for m, c in zip(masks, colours):
        img[m] = c
    return img.repeat(4, axis=0).repeat(4, axis=1)


def _between_two(colour, with_frame=True, **params):
    """A red and a blue object stand side by side; then the detector sees one object, halfway between
    them, of ``colour``: which track takes it?"""
    tracker = MaskTracker(min_hits=1, ambiguity_margin=0.0, **params)  # report it (no hold)
    a, b = blob(34, 40, r=6), blob(46, 40, r=6)
    for i in range(6):
        ids = tracker.update(dets_of([a, b]), i / 15, picture([a, b], [RED, BLUE]) if with_frame else None).tracker_id
    mid = blob(40, 40, r=6)
    out = tracker.update(dets_of([mid]), 6 / 15, picture([mid], [colour]) if with_frame else None)
    return ids.tolist(), out.tracker_id.tolist()


def test_a_detection_between_two_tracks_goes_to_the_one_of_its_colour():
    (red, blue), taken = _between_two(BLUE)
    assert taken == [blue]
    assert _between_two(RED)[1] == [red]
    # geometry alone cannot tell: without the frame, or with the term off, the tie goes to the first track
    assert _between_two(BLUE, with_frame=False)[1] == [red]
    assert _between_two(BLUE, colour_weight=0.0)[1] == [red]


def test_a_merged_detection_is_held_back_only_briefly():
    # two people stand side by side; from frame 3 on the detector sees them as one, for 2 s
    tracker = MaskTracker(min_hits=1, ambiguity_margin=1.0)
    reported = []
    for i in range(30):
        masks = [rect(30, 30, 8, 30), rect(36, 30, 8, 30)] if i < 3 else [rect(30, 30, 14, 30)]
        reported.append(len(tracker.update(dets_of(masks), i / 15)))
    assert reported[:3] == [2, 2, 2]
    held = [i for i, n in enumerate(reported) if n == 0]
    assert held and held[0] == 3
    # a rival unseen for longer than HOLD_S is a lost track, not half of a merge: the detection is reported again
    assert max(held) < 3 + 0.5 * 15  # within half a second, well inside max_lost_s (4 s)
    assert all(n == 1 for n in reported[max(held) + 1:])


def test_short_occlusion_keeps_id_long_gets_new():
    t = MaskTracker(max_lost_s=1.0, min_hits=1)
    frames = [[blob(20 + i, 40)] for i in range(5)] + [[]] * 10 + [[blob(35, 40)]]  # 0.67 s hidden
    out = run(t, frames)
    assert out[-1].tracker_id.tolist() == out[0].tracker_id.tolist()
    t2 = MaskTracker(max_lost_s=1.0, min_hits=1)
    frames = [[blob(20 + i, 40)] for i in range(5)] + [[]] * 20 + [[blob(45, 40)]]  # 1.33 s hidden
    out = run(t2, frames)
    assert out[-1].tracker_id.tolist() != out[0].tracker_id.tolist()
    assert out[-1].tracker_id[0] > out[0].tracker_id[0]  # never reused


def test_object_coming_out_from_behind_an_occluder_keeps_id():
    # a disc walks behind something for 8 frames and comes out as a sliver that grows: the sliver is
    # too small and too far from the prediction to match at once, so it starts a tentative track,
    # which takes over the lost track's ID when it is confirmed
    frames = [[blob(20 + i, 40, r=8)] for i in range(10)] + [[]] * 8
    frames += [[blob(34, 40, r=2)], [blob(35, 40, r=4)], [blob(36, 40, r=6)], [blob(37, 40, r=8)]]
    out = run(MaskTracker(max_lost_s=1.0), frames)
    first = int(out[0].tracker_id[0])
    assert [int(o.tracker_id[0]) for o in out[-3:]] == [first] * 3
    # far from where it was expected, it is another object (unless it is the only one: next test)
    frames = [[blob(20 + i, 40, r=8)] for i in range(10)] + [[]] * 8 + [[blob(70, 10, r=4)]] * 3
    out = run(MaskTracker(max_lost_s=1.0, sole_inherit=False), frames)
    assert int(out[-1].tracker_id[0]) != int(out[0].tracker_id[0])


def test_the_only_object_of_its_class_found_far_away_keeps_id():
    # a ball (class 4) beside a player (class 3) is kicked: it vanishes and is found again far from its
    # prediction, the only new ball while the old one is the only lost ball: the same ball
    def frames(balls_after):
        fs = [[(blob(20 + i, 40, r=8), 3), (blob(26 + i, 50, r=2), 4)] for i in range(6)]
        fs += [[(blob(26 + i, 40, r=8), 3)] for i in range(6)]
        fs += [[(blob(32 + i, 40, r=8), 3)] + [(b, 4) for b in balls_after] for i in range(3)]
        return fs

    def run_cls(t, fs):
        out = []
        for i, f in enumerate(fs):
            d = _concat(*[dets_of([m], cls=c) for m, c in f])
            out.append(t.update(d, i / 15))
        return out

    def ball_ids(res):
        return res.tracker_id[res.class_id == 4].tolist()

    out = run_cls(MaskTracker(max_lost_s=2.0), frames([blob(70, 10, r=2)]))
    assert ball_ids(out[-1]) == ball_ids(out[0]) == [2]
    assert out[-1].tracker_id[out[-1].class_id == 3].tolist() == [1]
    # two new balls: no guess, both are new
    out = run_cls(MaskTracker(max_lost_s=2.0), frames([blob(70, 10, r=2), blob(10, 70, r=2)]))
    assert 2 not in ball_ids(out[-1]) and len(ball_ids(out[-1])) == 2
    # off: a new ID
    out = run_cls(MaskTracker(max_lost_s=2.0, sole_inherit=False), frames([blob(70, 10, r=2)]))
    assert ball_ids(out[-1]) != [2]
    # among several objects of a class (players: one hidden while another enters the view) it is no guess
    fs = [[(blob(20, 40, r=6), 3), (blob(40, 20, r=6), 3)]] * 4 + [[(blob(20, 40, r=6), 3)]] * 4
    fs += [[(blob(20, 40, r=6), 3), (blob(72, 72, r=6), 3)]] * 3
    out = run_cls(MaskTracker(max_lost_s=2.0), fs)
    assert sorted(out[0].tracker_id.tolist()) == [1, 2] and sorted(out[-1].tracker_id.tolist()) == [1, 3]


def test_tiny_object_with_pixel_jitter_keeps_id():
    # a ball of one mask pixel (4 frame px) that jitters by a pixel: its boxes hardly overlap
    rng = np.random.default_rng(0)
    frames = []
    for i in range(40):
        m = np.zeros((80, 80), bool)
        m[40 + rng.integers(-1, 2), 20 + i // 2 + rng.integers(-1, 2)] = True
        frames.append([m])
    out = run(MaskTracker(min_hits=1), frames)
    assert all(len(o) == 1 for o in out)
    assert len({int(o.tracker_id[0]) for o in out}) == 1


def test_object_leaving_the_frame_and_coming_back_keeps_id():
    # out through the right edge (seen clipped), 5 frames away, back in where it left
    xs = list(range(64, 84, 2))  # centre beyond 80 = partly, then wholly, outside the mask space
    frames = []
    for x in xs:
        m = blob(x, 40, r=8)
        frames.append([m] if m.any() else [])
    frames += [[]] * 5 + [[blob(x, 40, r=8)] for x in (79, 77, 75, 73, 71)]
    out = run(MaskTracker(max_lost_s=1.0), frames)
    seen = [int(o.tracker_id[0]) for o in out if len(o)]
    assert len(set(seen)) == 1, seen


def test_lost_time_is_stream_time_not_frames():
    # the same 10 missing frames: 0.33 s at 30 fps keeps the track, 2 s at 5 fps does not
    for dt, same in [(1 / 30, True), (1 / 5, False)]:
        t = MaskTracker(max_lost_s=1.0, min_hits=1)
        out = run(t, [[blob(30, 40)]] * 3 + [[]] * 10 + [[blob(30, 40)]], dt=dt)
        assert bool(out[-1].tracker_id[0] == out[0].tracker_id[0]) is same


def test_tentative_until_min_hits():
    t = MaskTracker(min_hits=3)
    run(t, [[blob(30, 30)]])  # first frame of the stream: confirmed at once (as ByteTrack)
    out = run(t, [[blob(30, 30), blob(60, 60)]] * 3)
    assert [len(o) for o in out] == [1, 1, 2]


def test_low_confidence_second_pass_keeps_track_through_partial_occlusion():
    t = MaskTracker(TrackerParams(high_conf=0.5, low_conf=0.1, min_hits=1))
    out = [t.update(dets_of([blob(30 + i, 40)], conf=0.9 if i < 3 or i > 6 else 0.2), i / 15) for i in range(10)]
    assert all(len(o) == 1 for o in out)
    assert len({int(o.tracker_id[0]) for o in out}) == 1
    # a low-confidence detection never starts a track
    t2 = MaskTracker(TrackerParams(high_conf=0.5, low_conf=0.1, min_hits=1))
    assert len(t2.update(dets_of([blob(30, 40)], conf=0.2), 0.0)) == 0


def test_class_majority_vote():
    t = MaskTracker(min_hits=1)
    classes = [1, 1, 1, 2, 1, 1]
    for i, c in enumerate(classes):
        out = t.update(dets_of([blob(30, 40)], cls=c), i / 15)
    assert out.class_id.tolist() == [1] and out.data["det_class_id"].tolist() == [1]


def _concat(*ds):
    return Detections(np.concatenate([d.xyxy for d in ds]), np.concatenate([d.confidence for d in ds]),
                      np.concatenate([d.class_id for d in ds]), np.concatenate([d.masks for d in ds]), MS)


def test_same_object_detected_twice_is_one_track():
    # the model sees an excavator and, weakly, a dump truck with almost the same mask: one object
    t = MaskTracker(min_hits=1)
    for i in range(8):
        m = blob(30 + i, 40, r=10)
        shifted = np.roll(m, 1, axis=1)
        out = t.update(_concat(dets_of([m], conf=0.9, cls=1), dets_of([shifted], conf=0.45, cls=2)), i / 15)
        assert len(out) == 1 and out.class_id.tolist() == [1] and out.confidence.tolist() == pytest.approx([0.9])
    assert len(t) == 1
    # with the suppression off, the weak duplicate becomes a second track
    t0 = MaskTracker(min_hits=1, duplicate_iou=0, duplicate_cover=0, report_conf=0)
    out = t0.update(_concat(dets_of([blob(30, 40, r=10)], cls=1), dets_of([blob(31, 40, r=10)], conf=0.45, cls=2)), 0.0)
    assert len(out) == 2


def test_part_of_an_object_is_not_a_second_object():
    # a truck's cab found beside the whole truck (same class, mask inside the truck's): dropped
    truck = np.zeros((80, 80), bool)
    truck[30:50, 10:60] = True
    cab = np.zeros((80, 80), bool)
    cab[32:48, 44:58] = True
    t = MaskTracker(min_hits=1)
    out = t.update(_concat(dets_of([truck], conf=0.8, cls=2), dets_of([cab], conf=0.6, cls=2)), 0.0)
    assert len(out) == 1 and out.confidence.tolist() == pytest.approx([0.8])
    only_cover = MaskTracker(min_hits=1, duplicate_iou=0)  # each rule works on its own
    assert len(only_cover.update(_concat(dets_of([truck], conf=0.8, cls=2), dets_of([cab], conf=0.6, cls=2)), 0.0)) == 1
    # a worker in front of the truck whose mask lies inside the truck's is another object: kept
    worker = np.zeros((80, 80), bool)
    worker[34:46, 30:34] = True
    t2 = MaskTracker(min_hits=1)
    out = t2.update(_concat(dets_of([truck], conf=0.8, cls=2), dets_of([worker], conf=0.6, cls=0)), 0.0)
    assert sorted(out.class_id.tolist()) == [0, 2]
    # two workers side by side whose masks touch are two workers
    a, b = blob(30, 40, r=6), blob(39, 40, r=6)
    t3 = MaskTracker(min_hits=1, report_conf=0)
    assert len(t3.update(_concat(dets_of([a], conf=0.9), dets_of([b], conf=0.5)), 0.0)) == 2


def test_a_track_is_reported_once_a_detection_of_it_was_confident():
    # a traffic cone that the model calls a worker at conf 0.5, frame after frame: followed, never reported
    t = MaskTracker(min_hits=2, report_conf=0.6)
    outs = [t.update(dets_of([blob(30, 40)], conf=0.5), i / 15) for i in range(10)]
    assert all(len(o) == 0 for o in outs) and len(t) == 1
    # one confident detection and it is reported, under the ID it was followed with, also when weak again
    assert t.update(dets_of([blob(30, 40)], conf=0.8), 10 / 15).tracker_id.tolist() == [1]
    assert t.update(dets_of([blob(30, 40)], conf=0.5), 11 / 15).tracker_id.tolist() == [1]
    # off: every confirmed track is reported
    t0 = MaskTracker(min_hits=2, report_conf=0)
    assert [len(t0.update(dets_of([blob(30, 40)], conf=0.5), i / 15)) for i in range(3)] == [1, 1, 1]


def test_stationary_clock():
    t = MaskTracker(min_hits=1)
    out = run(t, [[blob(30, 40)]] * 31)
    assert out[-1].data["stationary_s"][0] == pytest.approx(2.0)
    out = run(t, [[blob(30 + 3 * i, 40)] for i in range(5)])
    assert out[-1].data["stationary_s"][0] < 0.2


def test_ids_per_tracker_instance():
    a, b = MaskTracker(min_hits=1), MaskTracker(min_hits=1)
    assert run(a, [[blob(30, 30)]])[0].tracker_id.tolist() == [1]
    assert run(b, [[blob(30, 30)]])[0].tracker_id.tolist() == [1]


def test_state_stays_bounded_under_churn():
    rng = np.random.default_rng(0)
    t = MaskTracker(max_lost_s=0.5, min_hits=1)
    small = MaskSpace((16, 16), (64, 64))
    max_tracks = 0
    for i in range(20000):
        n = int(rng.integers(0, 4))
        masks = np.zeros((n, 16, 16), bool)
        boxes = np.zeros((n, 4), np.float32)
        for k in range(n):
            x, y = rng.integers(0, 12, 2)
            masks[k, y:y + 4, x:x + 4] = True
            boxes[k] = [x * 4, y * 4, x * 4 + 16, y * 4 + 16]
        t.update(Detections(boxes, np.full(n, 0.9), np.zeros(n), masks, small), i / 15)
        max_tracks = max(max_tracks, len(t))
    assert max_tracks < 40  # lost tracks leave after 0.5 s: about 3 new per frame x 8 frames at most
    assert t.votes.shape[1] == 1 and t._next_id > 1000  # ids keep counting, arrays do not grow


def test_mask_iou_matrix():
    a = np.zeros((2, 4, 4), bool)
    a[0, :2, :2] = True
    a[1, :, :] = True
    assert np.allclose(mask_iou(a, a), [[1, 0.25], [0.25, 1]])


def test_mask_boxes_and_areas_match_a_plain_scan():
    from maskwatch.pipeline.tracking.tracker import mask_areas, mask_boxes

    rng = np.random.default_rng(3)
    masks = rng.random((40, 24, 40)) < rng.random((40, 1, 1)) * 0.05  # sparse, some empty
    masks[0] = False
    masks[1, 0, 0] = masks[1, 23, 39] = True  # opposite corners
    masks[2] = True
    want = []
    for m in masks:
        ys, xs = np.nonzero(m)
        want.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0])
    assert mask_boxes(masks).tolist() == want
    assert mask_areas(masks).tolist() == [int(m.sum()) for m in masks]
    assert mask_boxes(masks[:0]).shape == (0, 4) and mask_areas(masks[:0]).shape == (0,)


def test_kalman_blocks_equal_the_full_8x8_filter():
    """The filter keeps four 2x2 covariance blocks; the textbook 8x8 filter with the same noise gives the same."""
    from maskwatch.pipeline.tracking import kalman

    def full(cov):  # blocks (n, 3, 4) -> (n, 8, 8)
        out = np.zeros((len(cov), 8, 8))
        for i in range(4):
            out[:, i, i], out[:, i, i + 4] = cov[:, 0, i], cov[:, 1, i]
            out[:, i + 4, i], out[:, i + 4, i + 4] = cov[:, 1, i], cov[:, 2, i]
        return out

    rng = np.random.default_rng(0)
    z = np.column_stack([rng.uniform(0, 500, (5, 2)), rng.uniform(4, 80, (5, 2))])
    mean, cov = kalman.initiate(z)
    m8, p8 = mean.copy(), full(cov)
    for step in range(30):
        dt = float(rng.choice([1 / 30, 1 / 15, 0.5]))
        mean, cov = kalman.predict(mean, cov, dt)
        f = np.eye(8)
        f[:4, 4:] = np.eye(4) * dt
        h = np.maximum(m8[:, 3], kalman.MIN_SCALE_PX)
        k = dt / kalman.REF_DT
        q = np.zeros_like(p8)
        q[:, range(4), range(4)] = ((kalman.STD_POS * h * k) ** 2)[:, None]
        q[:, range(4, 8), range(4, 8)] = ((kalman.STD_VEL / kalman.REF_DT * h * k) ** 2)[:, None]
        m8 = m8 @ f.T
        m8[:, 2:4] = np.maximum(m8[:, 2:4], 1.0)
        p8 = f @ p8 @ f.T + q
        if step % 3 != 2:  # some steps without a measurement
            meas = m8[:, :4] + rng.normal(0, 3, (5, 4))
            mean, cov = kalman.update(mean, cov, meas)
            hh = np.maximum(m8[:, 3], kalman.MIN_SCALE_PX)
            r = np.zeros((5, 4, 4))
            r[:, range(4), range(4)] = ((kalman.STD_POS * hh) ** 2)[:, None]
            gain = np.linalg.solve(p8[:, :4, :4] + r, p8[:, :4, :]).transpose(0, 2, 1)
            m8 = m8 + np.einsum("nij,nj->ni", gain, meas - m8[:, :4])
            p8 = p8 - gain @ p8[:, :4, :]
        assert np.allclose(mean, m8) and np.allclose(full(cov), p8)
    assert np.allclose(kalman.position_spread(cov), np.sqrt(p8[:, 0, 0] + p8[:, 1, 1]))
