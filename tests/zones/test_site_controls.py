"""Site controls in the zone engine, driven by the frames' own clock (no sleeping): arming schedules, remote
switches and their override, and the false-positive filters and ignore regions."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from maskwatch.zones import ZoneEngine, ZoneFileError, parse_zone_file
from maskwatch.zones.filters import DetectionFilter

BERLIN = ZoneInfo("Europe/Berlin")
MON_0800 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=BERLIN).timestamp()  # a Monday
ZONE = {"id": "area", "polygon": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]}
RULE = {"id": "in-area", "type": "intrusion", "zone": "area", "classes": ["excavator"], "min_overlap": 0.25,
        "min_duration_s": 0.0, "clear_after_s": 0.5}
WORKDAY = {"timezone": "Europe/Berlin", "windows": [{"days": "weekdays", "start": "07:00", "end": "18:00"}]}


def _engine(**top) -> ZoneEngine:
    doc = {"units": "normalized", "zones": [ZONE], "rules": [dict(RULE, **top.pop("rule", {}))], **top}
    return ZoneEngine(parse_zone_file(doc), "cam", (1000, 500), (100, 50))


def _step(eng: ZoneEngine, i: int, wall_s: float, present: bool = True):
    masks = np.zeros((1 if present else 0, 50, 100), bool)
    if present:
        masks[0, 10:40, 10:30] = True
    n = len(masks)
    return eng.update(i, i * 0.1, wall_s, np.arange(1, n + 1), ["excavator"] * n, np.full(n, 0.9),
                      np.tile([[100, 100, 300, 400]], (n, 1)).astype(np.float32), masks)


def _kinds(events) -> list[tuple[str, str | None]]:
    return [(e.type, e.extra.get("reason")) for e in events if e.type != "update"]


def test_a_schedule_window_ending_during_a_run_ends_the_alert_and_starts_nothing():
    eng = _engine(schedule=WORKDAY)
    end_of_day = dt.datetime(2026, 12, 7, 18, 0, tzinfo=BERLIN).timestamp()
    got = []
    for i, t in enumerate([end_of_day - 2, end_of_day - 1, end_of_day, end_of_day + 1, end_of_day + 60]):
        got.append(_kinds(_step(eng, i, t)))
    assert got == [[("start", None)], [], [("end", "disarmed")], [], []]
    assert eng.armed_rules == {"in-area": False}
    next_morning = dt.datetime(2026, 12, 8, 7, 0, tzinfo=BERLIN).timestamp()
    assert _kinds(_step(eng, 9, next_morning)) == [("start", None)]


def test_a_rule_schedule_and_date_exceptions():
    holiday = {**WORKDAY, "exceptions": [{"date": "2026-12-08"}]}
    eng = _engine(rule={"schedule": holiday})
    assert _kinds(_step(eng, 0, MON_0800)) == [("start", None)]
    tuesday = dt.datetime(2026, 12, 8, 9, 0, tzinfo=BERLIN).timestamp()
    assert _kinds(_step(eng, 1, tuesday)) == [("end", "disarmed")]


def test_a_switch_turns_a_rule_off_and_on_mid_run():
    eng = _engine()
    assert _kinds(_step(eng, 0, MON_0800)) == [("start", None)]
    assert eng.set_switch("in-area", False, MON_0800 + 1) is None  # no schedule: holds until switched back
    assert _kinds(_step(eng, 1, MON_0800 + 1)) == [("end", "disarmed")]
    for i in range(2, 5):
        assert _kinds(_step(eng, i, MON_0800 + 86400 * i)) == []  # days later: still off
    eng.set_switch("in-area", True, MON_0800 + 500000)
    assert _kinds(_step(eng, 5, MON_0800 + 500000)) == [("start", None)]


def test_the_camera_switch_disarms_every_rule():
    eng = _engine()
    _step(eng, 0, MON_0800)
    eng.set_switch(None, False, MON_0800 + 1)
    assert _kinds(_step(eng, 1, MON_0800 + 1)) == [("end", "disarmed")]
    eng.set_switch(None, None, MON_0800 + 2)  # back to the schedule (none: armed)
    assert _kinds(_step(eng, 2, MON_0800 + 2)) == [("start", None)]


@pytest.mark.parametrize("override, armed_after_boundary", [("next_boundary", True), ("until_switched", False)])
def test_a_switch_overrides_the_schedule_until_the_next_boundary_or_until_switched(override, armed_after_boundary):
    eng = _engine(schedule=WORKDAY, switch_override=override)
    _step(eng, 0, MON_0800)
    expires = eng.set_switch(None, False, MON_0800 + 10)  # off during working hours
    boundary = dt.datetime(2026, 12, 7, 18, 0, tzinfo=BERLIN).timestamp()
    assert expires == (boundary if override == "next_boundary" else None)
    assert _kinds(_step(eng, 1, MON_0800 + 20)) == [("end", "disarmed")]
    _step(eng, 2, boundary + 60)  # evening: disarmed by the schedule either way
    morning = dt.datetime(2026, 12, 8, 7, 30, tzinfo=BERLIN).timestamp()
    assert bool(_kinds(_step(eng, 3, morning))) is armed_after_boundary  # the next day: the schedule again?


def test_schedule_errors_name_the_field():
    for sched, field, expect in [
        ({"timezone": "Mars/Base", "windows": [{"days": "all", "start": "00:00", "end": "24:00"}]},
         "schedule.timezone", "IANA"),
        ({"timezone": "UTC", "windows": [{"days": ["funday"], "start": "00:00", "end": "01:00"}]},
         "schedule.windows[0].days", "unknown day"),
        ({"timezone": "UTC", "windows": [{"days": "all", "start": "7:00", "end": "18:00"}]},
         "schedule.windows[0].start", "HH:MM"),
    ]:
        with pytest.raises(ZoneFileError) as err:
            parse_zone_file({"units": "normalized", "schedule": sched}, "z.yaml")
        assert err.value.field == field and expect in err.value.message, (err.value.field, err.value.message)


def _filter(**top) -> DetectionFilter:
    return DetectionFilter(parse_zone_file({"units": "normalized", **top}), (1000, 500), (100, 50))


def _boxes(*rects):
    masks = np.zeros((len(rects), 50, 100), bool)
    for k, (x0, y0, x1, y1) in enumerate(rects):
        masks[k, y0:y1, x0:x1] = True
    xyxy = np.array([[x0 * 10, y0 * 10, x1 * 10, y1 * 10] for x0, y0, x1, y1 in rects], np.float32)
    return xyxy, masks


def test_filters_drop_by_score_area_and_ratio_per_class():
    flt = _filter(filters={"default": {"min_score": 0.5},
                           "worker": {"min_score": 0.3, "min_area": 0.01, "max_area": 0.1, "max_ratio": 1.0}})
    xyxy, masks = _boxes((0, 0, 10, 20), (0, 0, 2, 2), (0, 0, 40, 40), (0, 0, 30, 10), (0, 0, 10, 20))
    got = flt.reasons(["worker", "worker", "worker", "worker", "excavator"], [0.4, 0.9, 0.9, 0.9, 0.4], xyxy, masks)
    # 200 of 5000 cells = 0.04 kept; 4 cells = 0.0008 too small; 1600 = 0.32 too large; 3:1 too wide; the
    # excavator falls under the default's score
    assert got == [None, "min_area", "max_area", "max_ratio", "min_score"]


def test_area_in_square_metres_through_the_calibration():
    calib = {"image": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], "ground": [[0, 0], [100, 0], [100, 50], [0, 50]]}
    flt = _filter(calibration=calib, filters={"worker": {"min_area": 1.0, "max_area": 3.0, "area_units": "m2"}})
    # 1 px = 0.1 m here: a 10x20-cell mask is 100x200 px = 10 x 20 m = 200 m2; a 2x1-cell one 2 m2
    xyxy, masks = _boxes((0, 0, 10, 20), (0, 0, 2, 1))
    assert flt.reasons(["worker", "worker"], [0.9, 0.9], xyxy, masks) == ["max_area", None]
    with pytest.raises(ZoneFileError) as err:
        parse_zone_file({"units": "normalized", "filters": {"worker": {"min_area": 1, "area_units": "m2"}}}, "z")
    assert err.value.field == "filters.worker.area_units"


def test_ignore_regions_drop_masks_mostly_inside_per_class():
    flt = _filter(ignore=[{"id": "cones", "polygon": [[0.0, 0.0], [0.2, 0.0], [0.2, 1.0], [0.0, 1.0]],
                           "classes": ["worker"], "min_overlap": 0.5}])
    # columns 0-19 of 100 are in the region: a mask fully inside, 60 % inside, 37.5 %; an excavator fully inside
    xyxy, masks = _boxes((0, 0, 10, 10), (14, 0, 24, 10), (17, 0, 25, 10), (0, 0, 10, 10))
    got = flt.reasons(["worker", "worker", "worker", "excavator"], [0.9] * 4, xyxy, masks)
    assert got == ["ignore:cones", "ignore:cones", None, None]


def test_unquoted_times_in_yaml_are_read_as_times():
    """PyYAML (YAML 1.1) reads an unquoted 22:00 as the base-60 number 1320: still 22:00 here."""
    import yaml

    doc = yaml.safe_load("units: normalized\nschedule: {timezone: UTC, windows: [{days: all, start: 06:30, end: 22:00}]}")
    assert doc["schedule"]["windows"][0]["end"] == 1320
    w = parse_zone_file(doc).schedule.windows[0]
    assert (w.start, w.end) == ("06:30", "22:00")
