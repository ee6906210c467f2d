"""Saving an edited zone file: comments, order and style kept; validated first; written atomically."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from maskwatch.web import zonefile
from maskwatch.zones import ZoneFileError, load_zone_file

ROOT = Path(__file__).resolve().parents[2]
DEMO_ZONES = ROOT / "configs" / "zones" / "site-demo.yaml"
NAMES = {"worker", "excavator", "dump_truck", "player", "ball"}


@pytest.fixture
def zones(tmp_path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(DEMO_ZONES.read_text())
    return path


def comments(text: str) -> list[str]:
    return [line[line.index("#"):].strip() for line in text.splitlines() if "#" in line]


def test_unchanged_data_writes_the_same_text(zones):
    before = zones.read_text()
    zonefile.save(zones, zonefile.read_plain(zones), NAMES)
    assert zones.read_text() == before
    # as the console sends it: JSON has no 1.0, only 1; a number nobody changed keeps its spelling
    data = json.loads(json.dumps(zonefile.read_plain(zones)))
    data["rules"][0]["clear_after_s"] = 1
    data["calibration"]["ground"] = [[0, 0], [12.0, 0], [12, 14], [0, 14]]
    zonefile.save(zones, data, NAMES)
    assert zones.read_text() == before
    assert "clear_after_s: 1.0" in before
    assert (zones.parent / "site.yaml.prev").read_text() == before


def test_edits_keep_comments_order_and_flow_style(zones):
    before = zones.read_text()
    data = zonefile.read_plain(zones)
    data["zones"][0]["polygon"] = [[0.1, 0.2], [0.5, 0.2], [0.5, 0.6], [0.1, 0.6]]
    data["rules"].reverse()  # rules move: each keeps its own comments
    data["rules"][0]["max_count"] = 6
    data["zones"].append({"id": "gate", "name": "Gate", "polygon": [[0.7, 0.7], [0.9, 0.7], [0.9, 0.9]]})
    del data["calibration"]
    data["rules"] = [r for r in data["rules"] if r["type"] != "proximity"]  # needs the calibration
    zonefile.save(zones, data, NAMES)
    text = zones.read_text()
    assert yaml.safe_load(text) == data
    # the comments of what is left stay, those of the removed calibration and proximity rule go with them
    assert comments(text) == [c for c in comments(before) if "ground marks" not in c and "parked machine" not in c]
    assert len(comments(text)) == 3
    assert "    polygon: [[0.1, 0.2], [0.5, 0.2], [0.5, 0.6], [0.1, 0.6]]" in text  # flow style, in place
    assert text.index("crowding") < text.index("machine-in-worker-area")  # the new order
    assert load_zone_file(zones).zone("gate").name == "Gate"


@pytest.mark.parametrize("change, field", [
    (lambda d: d["zones"][0].update(polygon=[[0, 0], [1, 1], [1, 0], [0, 1]]), "zones[0].polygon"),
    (lambda d: d["rules"][0].update(classes=["tractor"]), "rules[0].classes"),
    (lambda d: d["rules"][1].update(near=["tractor"]), "rules[1].near"),
    (lambda d: d["rules"][0].update(zone="nowhere"), "rules[0].zone"),
    (lambda d: d.pop("units"), "units"),
    (lambda d: d["zones"].append(copy.deepcopy(d["zones"][0])), "zones[1].id"),
])
def test_invalid_edits_write_nothing(zones, change, field):
    before = zones.read_bytes()
    data = zonefile.read_plain(zones)
    change(data)
    with pytest.raises(ZoneFileError) as exc:
        zonefile.save(zones, data, NAMES)
    assert exc.value.field == field, str(exc.value)
    assert zones.read_bytes() == before
    assert sorted(p.name for p in zones.parent.iterdir()) == ["site.yaml"]


def test_class_names_are_not_checked_without_a_model(zones):
    data = zonefile.read_plain(zones)
    data["rules"][0]["classes"] = ["tractor"]
    zonefile.save(zones, data, None)
    assert load_zone_file(zones).rules[0].classes == ["tractor"]


def test_a_new_file(tmp_path):
    path = tmp_path / "new.yaml"
    data = {"units": "normalized", "zones": [{"id": "a", "polygon": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]]}],
            "rules": [{"id": "r", "type": "intrusion", "zone": "a", "classes": ["worker"]}]}
    zonefile.save(path, data, NAMES)
    assert yaml.safe_load(path.read_text()) == data
    assert "polygon: [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]]" in path.read_text()
    assert not (tmp_path / "new.yaml.prev").exists()


def test_a_failed_write_leaves_the_old_file(zones, monkeypatch):
    before = zones.read_bytes()
    data = zonefile.read_plain(zones)
    data["zones"][0]["name"] = "Renamed"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        zonefile.save(zones, data, NAMES)
    assert zones.read_bytes() == before
    assert not [p for p in zones.parent.iterdir() if p.name.endswith(".tmp")]


def test_site_controls_and_speed_rules_survive_a_console_save(zones):
    """The editor PUTs the whole file: filters, ignore regions, schedules and a speed rule come back as they
    were, validated by the same schema (an edit elsewhere keeps them)."""
    data = zonefile.read_plain(zones)
    data["filters"] = {"default": {"min_score": 0.4}, "worker": {"max_area": 0.05}}
    data["ignore"] = [{"id": "cones", "polygon": [[0.0, 0.8], [0.1, 0.8], [0.1, 1.0]], "classes": ["worker"]}]
    data["schedule"] = {"timezone": "Europe/Berlin", "windows": [{"days": ["mon", "tue"], "start": "06:30",
                                                                   "end": "19:00"}]}
    data["rules"].append({"id": "speeding", "type": "speed", "classes": ["dump_truck"], "max_kmh": 15,
                          "schedule": {"timezone": "UTC", "windows": [{"days": ["sat"], "start": "22:00",
                                                                        "end": "02:00"}]}})
    zf = zonefile.save(zones, data)
    again = load_zone_file(zones)
    assert again == zf and again.filters["worker"].max_area == 0.05 and again.ignore[0].id == "cones"
    assert again.schedule.windows[0].days == ["mon", "tue"] and again.rules[-1].type == "speed"
    data = zonefile.read_plain(zones)
    data["zones"][0]["name"] = "renamed"  # an unrelated edit
    zonefile.save(zones, data)
    kept = load_zone_file(zones)
    assert kept.filters == again.filters and kept.ignore == again.ignore and kept.schedule == again.schedule
    bad = zonefile.read_plain(zones)
    bad["ignore"][0]["min_overlap"] = 2
    with pytest.raises(ZoneFileError) as err:
        zonefile.save(zones, bad)
    assert err.value.field == "ignore[0].min_overlap"
