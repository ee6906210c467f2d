"""Table-driven rule tests with hand-made masks.

Frame 1000x500 px, mask space 100x50 (one mask cell = 10x10 px), 10 frames/s.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.zones.test_schema import validate_event
from maskwatch.zones import ZoneEngine, parse_zone_file

FW, FH, MW, MH = 1000, 500, 100, 50
DT = 0.1


def rect(x0, y0, x1, y1):
    m = np.zeros((MH, MW), bool)
    m[y0:y1, x0:x1] = True
    return m


def engine(rules, zones=None, **extra):
    zf = {"units": "normalized",
          "zones": zones or [{"id": "z", "polygon": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]}],
          "rules": rules, **extra}
    return ZoneEngine(parse_zone_file(zf), "cam", (FW, FH), (MW, MH))


def play(eng, frames, stationary=None):
    """frames: list of lists of (track_id, class, mask). Returns events (closing open ones at the end)."""
    events = []
    for k, objs in enumerate(frames):
        n = len(objs)
        masks = np.stack([m for _, _, m in objs]) if n else np.zeros((0, MH, MW), bool)
        boxes = []
        for _, _, m in objs:
            ys, xs = np.nonzero(m)
            boxes.append([xs.min() * 10, ys.min() * 10, (xs.max() + 1) * 10, (ys.max() + 1) * 10])
        st = None if stationary is None else np.array([stationary(k, t) for t, _, _ in objs], float)
        events += eng.update(k, k * DT, 1000 + k * DT, [t for t, _, _ in objs], [c for _, c, _ in objs],
                             np.full(n, 0.9), np.array(boxes, float).reshape(-1, 4), masks, st)
    events += eng.close(len(frames), len(frames) * DT, 1000 + len(frames) * DT)
    for e in events:
        validate_event(e)
    return events


def kinds(events):
    return [e.type for e in events]


INTR = {"id": "r", "type": "intrusion", "zone": "z", "classes": ["excavator"], "min_overlap": 0.25,
        "min_duration_s": 0.0, "clear_after_s": 0.5, "update_interval_s": 0}


# (name, rule overrides, zones, per-frame x0 of a 20x20 excavator at y 10..30 (None = absent), expected kinds)
INTRUSION_CASES = [
    ("inside", {}, None, [10] * 5, ["start", "end"]),
    ("outside", {}, None, [60] * 5, []),
    ("exactly-at-threshold", {}, None, [45] * 5, ["start", "end"]),  # 5 of 20 columns inside = 0.25
    ("just-below", {}, None, [46] * 5, []),
    ("jitter-around-threshold-does-not-flap", {}, None, [45, 46, 45, 46, 46, 45, 46, 45], ["start", "end"]),
    ("one-frame-gone-inside-hysteresis", {}, None, [10, 10, None, 10, 10], ["start", "end"]),
    ("debounce-too-short", {"min_duration_s": 0.5}, None, [10, 10, 10, 60, 60], []),
    ("debounce-long-enough", {"min_duration_s": 0.3}, None, [10] * 5, ["start", "end"]),
    ("two-visits-cleared-between", {"clear_after_s": 0.2}, None, [10, 10, 60, 60, 60, 10, 10], ["start", "end", "start", "end"]),
    ("cooldown-blocks-second-start", {"clear_after_s": 0.2, "cooldown_s": 5}, None, [10, 10, 60, 60, 60, 10, 10], ["start", "end"]),
    ("wrong-class", {"classes": ["worker"]}, None, [10] * 5, []),
    ("disabled", {"enabled": False}, None, [10] * 5, []),
    # concave U-shaped zone: the object sits in the notch, not inside
    ("concave-notch", {}, [{"id": "z", "polygon": [[0, 0], [0.6, 0], [0.6, 1], [0.4, 1], [0.4, 0.2], [0.2, 0.2], [0.2, 1], [0, 1]]}],
     [22] * 3, []),
    ("concave-arm", {}, [{"id": "z", "polygon": [[0, 0], [0.6, 0], [0.6, 1], [0.4, 1], [0.4, 0.2], [0.2, 0.2], [0.2, 1], [0, 1]]}],
     [0] * 3, ["start", "end"]),
    # a zone at the frame edge: a mask touching the border counts
    ("edge-zone", {}, [{"id": "z", "polygon": [[0.8, 0], [1, 0], [1, 1], [0.8, 1]]}], [80] * 3, ["start", "end"]),
]


@pytest.mark.parametrize("name,over,zones,xs,expected", INTRUSION_CASES, ids=[c[0] for c in INTRUSION_CASES])
def test_intrusion(name, over, zones, xs, expected):
    eng = engine([{**INTR, **over}], zones)
    frames = [[] if x is None else [(1, "excavator", rect(x, 10, x + 20, 30))] for x in xs]
    assert kinds(play(eng, frames)) == expected


def test_intrusion_updates_rate_limited_when_overlap_grows():
    eng = engine([{**INTR, "update_interval_s": 0.3}])
    frames = [[(1, "excavator", rect(x, 10, x + 20, 30))] for x in [40, 38, 36, 34, 32, 30, 28, 26, 24]]
    ev = play(eng, frames)
    assert kinds(ev)[0] == "start" and kinds(ev)[-1] == "end"
    ups = [e for e in ev if e.type == "update"]
    assert 1 <= len(ups) <= 3
    assert all(b.pts_s - a.pts_s >= 0.3 - 1e-9 for a, b in zip(ev, ev[1:]) if b.type == "update")
    assert [e.seq for e in ev] == list(range(len(ev))) and len({e.id for e in ev}) == 1


def test_ignore_stationary_does_not_start_for_parked_machine():
    eng = engine([{**INTR, "ignore_stationary": 5}])
    frames = [[(1, "excavator", rect(10, 10, 30, 30))]] * 5
    assert play(eng, frames, stationary=lambda k, t: 60.0) == []
    eng = engine([{**INTR, "ignore_stationary": 5}])
    assert kinds(play(eng, frames, stationary=lambda k, t: 0.5)) == ["start", "end"]


PROX = {"id": "p", "type": "proximity", "classes": ["excavator"], "near": ["worker"], "max_distance": 50,
        "units": "px", "clear_after_s": 0.0, "update_interval_s": 0}


@pytest.mark.parametrize("gap_cells,expected", [(4, ["start", "end"]), (5, ["start", "end"]), (6, [])])
def test_proximity_px_threshold(gap_cells, expected):
    # excavator cells 10..29, worker starts gap_cells after: centre-to-centre distance = (gap + 1) * 10 - 10 px
    eng = engine([PROX])
    w0 = 30 + gap_cells
    frames = [[(1, "excavator", rect(10, 10, 30, 30)), (2, "worker", rect(w0, 10, w0 + 3, 30))]] * 3
    ev = play(eng, frames)
    assert kinds(ev) == expected
    if ev:
        assert ev[0].objects[0].distance_px == pytest.approx(gap_cells * 10, abs=0.01)
        assert {o.track_id for o in ev[0].objects} == {1, 2}


def test_proximity_metres_uses_calibration():
    # ground plane: 1 px = 0.05 m horizontally (image 1000 px wide = 50 m)
    calib = {"image": [[0, 0], [1, 0], [1, 1], [0, 1]], "ground": [[0, 0], [50, 0], [50, 25], [0, 25]]}
    rule = {**PROX, "max_distance": 3.0, "units": "m"}
    eng = engine([rule], calibration=calib)
    frames = [[(1, "excavator", rect(10, 10, 30, 30)), (2, "worker", rect(35, 10, 38, 30))]] * 2  # 50 px = 2.5 m
    ev = play(eng, frames)
    assert kinds(ev) == ["start", "end"] and ev[0].objects[0].distance_m == pytest.approx(2.5, abs=0.01)
    eng = engine([rule], calibration=calib)
    frames = [[(1, "excavator", rect(10, 10, 30, 30)), (2, "worker", rect(37, 10, 40, 30))]] * 2  # 70 px = 3.5 m
    assert play(eng, frames) == []


def test_occupancy_counts_per_zone():
    rule = {"id": "o", "type": "occupancy", "zone": "z", "classes": ["worker"], "max_count": 2,
            "clear_after_s": 0.0, "update_interval_s": 0.1}
    eng = engine([rule])
    w = lambda i, x: (i, "worker", rect(x, 10, x + 3, 20))  # noqa: E731
    frames = [[w(1, 5), w(2, 15)], [w(1, 5), w(2, 15), w(3, 25)], [w(1, 5), w(2, 15), w(3, 25), w(4, 35)],
              [w(1, 5), w(2, 15), w(3, 25), w(4, 35)], [w(1, 5), w(2, 15)]]
    ev = play(eng, frames)
    assert kinds(ev) == ["start", "update", "end"]
    assert ev[0].extra["count"] == 3 and ev[1].extra["count"] == 4
    assert eng.occupancy == {}  or True  # after close: occupancy describes the last frame
    eng2 = engine([rule])
    eng2.update(0, 0, 0, [1, 2], ["worker", "worker"], [0.9, 0.9], np.zeros((2, 4)),
                np.stack([rect(5, 10, 8, 20), rect(70, 10, 73, 20)]))
    assert eng2.occupancy == {"z": {"worker": 1}}


def test_occupancy_hold_counts_objects_missed_for_a_moment():
    """hold_s: three workers inside, each missed by the detector in turn (a bunched herd): with the hold the count
    stays 3 and one alert runs; without it the count drops to 2 every frame and nothing starts. A worker seen
    outside is let go at once, and one unseen for longer than hold_s too."""
    base = {"id": "o", "type": "occupancy", "zone": "z", "classes": ["worker"], "max_count": 2,
            "min_duration_s": 0.3, "clear_after_s": 0.0, "update_interval_s": 0}
    w = lambda i, x: (i, "worker", rect(x, 10, x + 3, 20))  # noqa: E731
    trio = [w(1, 5), w(2, 15), w(3, 25)]
    flicker = [[o for k, o in enumerate(trio) if k != f % 3] for f in range(8)]  # one of three missed each frame
    assert play(engine([base]), flicker) == []
    ev = play(engine([{**base, "hold_s": 0.25}]), flicker)
    assert kinds(ev) == ["start", "end"] and ev[0].extra == {"count": 3, "held": 1}
    assert ev[0].pts_s == pytest.approx(0.4)  # three counted from frame 1 (worker 1 is first seen there), + 0.3 s
    # worker 3 walks out (seen at x 70, outside the zone): not held, the count is 2 at once
    eng = engine([{**base, "min_duration_s": 0.0, "hold_s": 1.0}])
    ev = play(eng, [trio, [w(1, 5), w(2, 15), w(3, 70)]])
    assert kinds(ev) == ["start", "end"] and ev[1].pts_s == pytest.approx(0.1)
    # worker 3 unseen for longer than the hold: let go after hold_s (0.2 s, frames at 0.1 s)
    eng = engine([{**base, "min_duration_s": 0.0, "hold_s": 0.2}])
    ev = play(eng, [trio] + [[w(1, 5), w(2, 15)]] * 4)
    assert kinds(ev) == ["start", "end"] and ev[1].pts_s == pytest.approx(0.3)


def test_dwell_after_max_duration_and_clock_survives_short_gap():
    rule = {"id": "d", "type": "dwell", "zone": "z", "classes": ["worker"], "max_duration_s": 0.5,
            "clear_after_s": 0.3, "update_interval_s": 0}
    eng = engine([rule])
    inside = [(1, "worker", rect(10, 10, 15, 20))]
    ev = play(eng, [inside] * 4 + [[]] * 2 + [inside] * 2)  # 0.3 s in, 0.2 s gone (< clear), back
    assert kinds(ev) == ["start", "end"]
    assert ev[0].pts_s == pytest.approx(0.6) and ev[0].extra["dwell_s"] == pytest.approx(0.6)
    eng = engine([rule])
    assert play(eng, [inside] * 4 + [[]] * 5 + [inside] * 4) == []  # gone 0.5 s: the clock restarted


LINE = {"id": "l", "type": "line_crossing", "line": [[0.5, 0.1], [0.5, 0.9]], "classes": ["dump_truck"],
        "clear_after_s": 0.0, "update_interval_s": 0}


@pytest.mark.parametrize("xs,direction,expected_dirs", [
    ([40, 44, 48, 52, 56], "left_to_right", ["left_to_right"]),
    ([56, 52, 48, 44, 40], "left_to_right", []),
    ([56, 52, 48, 44, 40], "any", ["right_to_left"]),
    ([30, 70], "left_to_right", ["left_to_right"]),  # a fast object jumps the line between two frames: counted once
    ([40, 60, 40, 60], "any", ["left_to_right", "right_to_left", "left_to_right"]),
])
def test_line_crossing_direction(xs, direction, expected_dirs):
    eng = engine([{**LINE, "direction": direction}])
    ev = play(eng, [[(1, "dump_truck", rect(x, 20, x + 4, 24))] for x in xs])
    starts = [e.extra["direction"] for e in ev if e.type == "start"]
    assert starts == expected_dirs


def test_line_crossing_beyond_segment_end_does_not_count():
    eng = engine([{**LINE, "line": [[0.5, 0.1], [0.5, 0.3]]}])
    ev = play(eng, [[(1, "dump_truck", rect(x, 40, x + 4, 44))] for x in [40, 60]])  # crosses x=500 at y~420 px
    assert ev == []


def test_hot_reload_keeps_unchanged_rules_and_ends_changed_ones():
    r1 = {**INTR, "id": "keep"}
    r2 = {**INTR, "id": "change"}
    eng = engine([r1, r2])
    obj = [(1, "excavator", rect(10, 10, 30, 30))]
    ev = []
    for k in range(3):
        ev += eng.update(k, k * DT, k * DT, [1], ["excavator"], [0.9], np.array([[100, 100, 300, 300.]]),
                         np.stack([obj[0][2]]))
    assert sorted(e.rule for e in ev if e.type == "start") == ["change", "keep"]
    new = parse_zone_file({"units": "normalized", "zones": [{"id": "z", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}],
                           "rules": [r1, {**r2, "min_overlap": 0.9}]})
    ended = eng.replace(new, 3, 0.3, 0.3)
    assert [(e.rule, e.type) for e in ended] == [("change", "end")]
    ev = eng.update(4, 0.4, 0.4, [1], ["excavator"], [0.9], np.array([[100, 100, 300, 300.]]), np.stack([obj[0][2]]))
    assert [(e.rule, e.type) for e in ev] == [("change", "start")]  # re-evaluated under the new definition
