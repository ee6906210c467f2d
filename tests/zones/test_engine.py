import numpy as np
import pytest

from maskwatch.zones import ZoneEngine, parse_zone_file, rasterize

ZF = {
    "units": "normalized",
    "zones": [{"id": "area", "polygon": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]}],
    "rules": [{"id": "in-area", "type": "intrusion", "zone": "area", "classes": ["excavator"],
               "min_overlap": 0.25, "min_duration_s": 0.3, "clear_after_s": 1.0, "severity": "critical"}],
}


def test_rasterize_half_frame():
    r = rasterize([(0, 0), (640, 0), (640, 720), (0, 720)], (1280, 720), (160, 90))
    assert r.shape == (90, 160)
    assert r[:, :80].all() and not r[:, 80:].any()


def test_rasterize_pixels_units_scale_with_frame():
    zf = parse_zone_file({"units": "pixels", "frame_size": [640, 360],
                          "zones": [{"id": "a", "polygon": [[0, 0], [320, 0], [320, 360], [0, 360]]}]})
    assert zf.polygon_px("a", (1280, 720))[1] == (640.0, 0.0)


def _mask(x0, x1, wh=(100, 50)):
    m = np.zeros((1, wh[1], wh[0]), bool)
    m[0, 10:40, x0:x1] = True
    return m


def _run(xs, dt=0.1, cls="excavator"):
    eng = ZoneEngine(parse_zone_file(ZF), "cam", (1000, 500), (100, 50))
    events = []
    for i, x in enumerate(xs):
        masks = _mask(x, x + 20) if x is not None else np.zeros((0, 50, 100), bool)
        n = len(masks)
        events += eng.update(i, i * dt, 1000 + i * dt, np.arange(1, n + 1), [cls] * n, np.full(n, 0.9),
                             np.tile([[x or 0, 100, (x or 0) + 200, 400]], (n, 1)).astype(np.float32), masks)
    events += eng.close(len(xs), len(xs) * dt, 1000 + len(xs) * dt)
    return events


def test_debounce_start_after_min_duration():
    # inside (x=10) from frame 0: start once 0.3 s have passed, i.e. at frame 3
    ev = _run([10] * 10)
    assert [e.type for e in ev] == ["start", "end"]
    assert ev[0].frame_index == 3 and ev[0].objects[0].overlap == 1.0
    assert ev[0].id == ev[1].id and [e.seq for e in ev] == [0, 1]


def test_short_visit_is_debounced():
    assert _run([10, 10, None, None, None, 90]) == []


def test_hysteresis_holds_through_a_short_gap():
    # inside 5 frames, gone 5 frames (0.5 s < clear_after_s), back: one alert, no flapping
    ev = _run([10] * 5 + [None] * 5 + [10] * 5)
    assert [e.type for e in ev] == ["start", "end"]


def test_clears_after_hold():
    ev = _run([10] * 5 + [90] * 15)
    assert [e.type for e in ev] == ["start", "end"]
    assert ev[1].frame_index == 14  # last inside at t=0.4 (frame 4), cleared at t=1.4
    assert ev[1].ended_at is not None


@pytest.mark.parametrize("x,expect", [(45, True), (46, False)])  # 5/20 = 0.25 overlap passes, 4/20 does not
def test_min_overlap_threshold(x, expect):
    assert bool(_run([x] * 10)) is expect


def test_other_classes_ignored():
    assert _run([10] * 10, cls="worker") == []
