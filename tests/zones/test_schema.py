"""The zone-file loader never raises anything but ZoneFileError; events match the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskwatch.zones import ZoneFileError, load_zone_file, parse_zone_file

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "configs" / "alert-event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def validate_event(event) -> None:
    """Raises if an AlertEvent (or its dict) does not match configs/alert-event.schema.json."""
    VALIDATOR.validate(event if isinstance(event, dict) else json.loads(event.to_json()))


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 2000), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12))
point = st.lists(st.one_of(st.floats(-0.5, 1.5), st.integers(-5, 2000), st.text(max_size=3)), min_size=0, max_size=3)
polygon = st.lists(point, min_size=0, max_size=6)
zone = st.fixed_dictionaries({"id": st.one_of(st.text(max_size=8), st.sampled_from(["a", "b"])), "polygon": polygon},
                             optional={"name": scalars, "extra": scalars})
rule = st.fixed_dictionaries(
    {"id": st.sampled_from(["r1", "r2", ""]),
     "type": st.sampled_from(["intrusion", "proximity", "occupancy", "dwell", "line_crossing", "nope", 3])},
    optional={"zone": st.sampled_from(["a", "b", "zz"]), "classes": st.lists(st.text(max_size=5), max_size=3),
              "min_overlap": scalars, "near": st.lists(st.text(max_size=4), max_size=2), "max_distance": scalars,
              "units": st.sampled_from(["m", "px", "ft"]), "max_count": scalars, "max_duration_s": scalars,
              "line": st.lists(point, max_size=3), "direction": st.sampled_from(["any", "left_to_right", "up"]),
              "min_duration_s": scalars, "clear_after_s": scalars, "cooldown_s": scalars, "severity": scalars})
zone_file = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.fixed_dictionaries({"units": st.sampled_from(["normalized", "pixels", "cm"])},
                          optional={"frame_size": st.lists(st.integers(-1, 2000), max_size=3), "zones": st.lists(zone, max_size=3),
                                    "rules": st.lists(rule, max_size=3),
                                    "calibration": st.fixed_dictionaries({"image": polygon, "ground": polygon}),
                                    "bogus": scalars}),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone_file)
def test_loader_raises_only_zone_file_error(data):
    try:
        parse_zone_file(data, "fuzz.yaml")
    except ZoneFileError as exc:
        msg = str(exc)
        assert msg.startswith("fuzz.yaml") and "\n" not in msg


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_loader_survives_arbitrary_bytes(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("z") / "zones.yaml"
    path.write_bytes(blob)
    try:
        load_zone_file(path)
    except ZoneFileError as exc:
        assert str(exc).startswith(str(path))


def test_degenerate_calibration_is_rejected():
    data = {"units": "normalized", "zones": [],
            "calibration": {"image": [[0, 0], [0.1, 0.1], [0.2, 0.2], [0.3, 0.3]], "ground": [[0, 0], [1, 0], [1, 1], [0, 1]]}}
    try:
        parse_zone_file(data, "z.yaml")
    except ZoneFileError as exc:
        assert exc.field == "calibration" and "collinear" in exc.message
    else:
        raise AssertionError("collinear calibration accepted")


def test_example_zone_files_are_valid():
    for path in (Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and "units" in data:
            load_zone_file(path)
