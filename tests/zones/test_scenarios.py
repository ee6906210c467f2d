"""Scripted synth scenarios through the tracker and zone engine in mask space.

The ground-truth masks (as a perfect detector would give them, reduced to the model's mask
space, 1/8 of 1280x720) go through MaskTracker and ZoneEngine; every ground-truth
activation (computed by `maskwatch synth` at full resolution) must yield exactly one start
and one end, no alert where none is expected, and the start within min_duration_s + 3 frames.
Model accuracy is gated elsewhere (tests/evaluation/test_model_gate.py).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from maskwatch.engines.results import Detections, MaskSpace
from maskwatch.pipeline.tracking import MaskTracker, TrackerParams
from maskwatch.evaluation.alerts import match, predicted_intervals
from maskwatch.scenes.classes import CLASS_NAMES
from maskwatch.scenes.clip import write_clip
from tests.zones.test_schema import validate_event
from maskwatch.zones import ZoneEngine, load_zone_file

MASK_WH = (160, 90)


def _dets(instances, ms: MaskSpace) -> Detections:
    n = len(instances)
    masks = np.zeros((n, MASK_WH[1], MASK_WH[0]), bool)
    for k, inst in enumerate(instances):
        full = mask_utils.decode(inst["mask"]).astype(np.float32)
        masks[k] = cv2.resize(full, MASK_WH, interpolation=cv2.INTER_AREA) >= 0.5
    boxes = np.array([inst["box_xyxy"] for inst in instances], np.float32).reshape(n, 4)
    return Detections(boxes, np.full(n, 0.9), [inst["class_id"] for inst in instances], masks, ms)


@pytest.mark.parametrize("scene,scenario,seed", [
    ("site", "excavator_swing", 20000011),
    ("site", "truck_reverse", 20000012),
    ("pitch", "box_entry", 20000013),
])
def test_scenario_alerts_match_ground_truth(tmp_path, scene, scenario, seed):
    write_clip(scene, seed, 16, tmp_path, scenario=scenario, video=False)
    gt = json.loads((tmp_path / "gt.json").read_text())
    truth = json.loads((tmp_path / "events.json").read_text())
    assert truth["intervals"], "the scenario scripts at least one activation"
    zf = load_zone_file(tmp_path / "zones.yaml")
    fw, fh = gt["width"], gt["height"]
    ms = MaskSpace(MASK_WH, (fw, fh))
    tracker = MaskTracker(TrackerParams(high_conf=0.5, low_conf=0.1, new_track_conf=0.5, min_hits=1))
    engine = ZoneEngine(zf, "synth", (fw, fh), MASK_WH)
    events = []
    for i, frame in enumerate(gt["frames"]):
        t = i / gt["fps"]
        dets = tracker.update(_dets(frame["instances"], ms), t)
        names = [CLASS_NAMES[c] for c in dets.class_id]
        events += engine.update(i, t, t, dets.tracker_id, names, dets.confidence, dets.xyxy, dets.masks,
                                dets.data["stationary_s"])
    events += engine.close(len(gt["frames"]) - 1, (len(gt["frames"]) - 1) / gt["fps"], 0.0)
    dicts = [e.to_dict() for e in events]
    for d in dicts:
        validate_event(d)
    pred = predicted_intervals(dicts)
    res = match(truth["intervals"], pred, gt["fps"])
    assert res["recall"] == 1.0 and res["precision"] == 1.0, res
    assert res["predicted"] == res["gt"] == res["matched"], res  # one alert per activation, one-to-one
    assert all(p["starts"] == 1 and p["ends"] == 1 for p in pred)
    rules = {r.id: r for r in zf.rules}
    for iv in truth["intervals"]:
        budget = rules[iv["rule"]].min_duration_s + 3 / gt["fps"]
        assert all(abs(lat) <= budget + 1e-6 for lat in res["start_latency_s"]), (res["start_latency_s"], budget)
