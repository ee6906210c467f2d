"""The farm scene: cows and workers with exact masks, cows that bunch and occlude at the gate, the three
scripted scenarios' zone files and ground-truth events, per-seed variation, the dataset export with the
farm, the command line and the example config."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from maskwatch.scenes.classes import CLASS_IDS, CLASS_NAMES, SCENE_CLASSES
from maskwatch.scenes.clip import write_clip
from maskwatch.scenes.dataset import export_dataset, make_scene
from maskwatch.scenes.farm import DOWN_DWELL_S, GATE_MAX_COUNT, GATE_MIN_DURATION_S, FarmScene
from maskwatch.scenes.render import draw_items, extract_instances
from maskwatch.scenes.rle import decode

ROOT = Path(__file__).resolve().parents[2]
SMALL = (640, 360)
COW, WORKER = CLASS_IDS["cow"], CLASS_IDS["worker"]
SCENARIO_SEED = 21
RULES = {"gate_crowding": "gate-crowding", "animal_on_track": "cow-on-track", "cow_down": "cow-down"}


def test_cow_is_the_sixth_class_and_the_farm_has_cows_and_workers():
    assert CLASS_NAMES[:5] == ("worker", "excavator", "dump_truck", "player", "ball")  # the bundled model's ids
    assert CLASS_NAMES[5] == "cow"
    assert SCENE_CLASSES["farm"] == ("cow", "worker")


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_farm_renders_cows_and_workers_with_masks_inside_boxes(seed):
    sc = make_scene("farm", seed, *SMALL)
    classes = set()
    for t in (0.0, 7.0, 15.0):
        frame, instances = sc.render(t, int(t * 15))
        assert frame.shape == (SMALL[1], SMALL[0], 3) and frame.dtype == np.uint8
        assert instances
        for x in instances:
            assert x.class_id in (COW, WORKER)
            x0, y0, x1, y1 = x.xyxy
            assert (x0, y0) == x.roi and x.mask.shape == (y1 - y0, x1 - x0)  # the mask is its box's size...
            assert x.mask[0].any() and x.mask[-1].any() and x.mask[:, 0].any() and x.mask[:, -1].any()  # ...and tight
            assert 0 <= x0 < x1 <= SMALL[0] and 0 <= y0 < y1 <= SMALL[1]
            classes.add(x.class_id)
    assert COW in classes
    ids = {x.track_id for x in instances}
    assert len(ids) == len(instances)


def test_every_labelled_class_appears_over_a_few_seeds():
    seen = set()
    for seed in range(1, 6):
        _, instances = make_scene("farm", seed, 320, 180).render(4.0)
        seen |= {x.class_id for x in instances}
    assert seen == {COW, WORKER}


def test_render_is_a_pure_function_of_time_with_the_herd_simulated():
    """The herd is simulated step by step, yet any frame is the same whatever was rendered before."""
    a = make_scene("farm", 4, 320, 180, "gate_crowding")
    b = make_scene("farm", 4, 320, 180, "gate_crowding")
    fa, ia = a.render(25.0, 375)
    b.render(3.0, 45)
    b.render(11.0, 165)
    fb, ib = b.render(25.0, 375)
    assert np.array_equal(fa, fb)
    assert [(x.track_id, x.xyxy) for x in ia] == [(x.track_id, x.xyxy) for x in ib]


# ---- scenarios -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scenario_clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("farm")
    out = {}
    for scenario in RULES:
        write_clip("farm", SCENARIO_SEED, 20.0, root / scenario, fps=5, size=SMALL, scenario=scenario, video=False)
        out[scenario] = root / scenario
    return out


@pytest.mark.parametrize("scenario", list(RULES))
def test_scenario_events_hold_the_intended_alert_and_nothing_else(scenario_clips, scenario):
    from maskwatch.zones import load_zone_file

    clip = scenario_clips[scenario]
    zf = load_zone_file(clip / "zones.yaml")
    assert [r.id for r in zf.rules] == [RULES[scenario]]
    assert [r.classes for r in zf.rules] == [["cow"]]
    ev = json.loads((clip / "events.json").read_text())
    assert ev["scene"] == "farm" and ev["scenario"] == scenario
    (iv,) = ev["intervals"]  # one activation: the scripted one, and no spurious other
    assert iv["rule"] == RULES[scenario]
    assert iv["start_pts_s"] < iv["end_pts_s"]
    starts = [e for e in ev["events"] if e["type"] == "start"]
    ends = [e for e in ev["events"] if e["type"] == "end"]
    assert len(starts) == len(ends) == 1
    sc = make_scene("farm", SCENARIO_SEED, *SMALL, scenario)
    if scenario == "gate_crowding":  # the bunch: more than max_count cows in the gate area for min_duration_s
        assert starts[0]["extra"]["count"] > GATE_MAX_COUNT
        assert sc.t_call + GATE_MIN_DURATION_S <= iv["start_pts_s"] < sc.t_release
        assert iv["end_pts_s"] < 20.0 - 0.2  # the herd leaves the gate again before the clip ends
        assert len(iv["track_ids"]) > GATE_MAX_COUNT
    elif scenario == "animal_on_track":  # the cow that goes through the gate, and only it
        assert iv["track_ids"] == [sc._escapee.track_id]
        assert iv["start_pts_s"] > sc.t_go
    else:  # the cow lying still, once it has lain there max_duration_s
        assert iv["track_ids"] == [sc._sick_cow.track_id]
        assert abs(iv["start_pts_s"] - DOWN_DWELL_S) <= 0.2 + 1e-6
        gt = json.loads((clip / "gt.json").read_text())
        boxes = [next(x["box_xyxy"] for x in f["instances"] if x["track_id"] == sc._sick_cow.track_id) for f in gt["frames"]]
        assert all(b == boxes[0] for b in boxes)  # it lies still the whole clip


@pytest.mark.parametrize("scenario", list(RULES))
def test_scenario_alerts_through_the_tracker_in_mask_space(scenario_clips, scenario):
    """The ground-truth masks, reduced to a model's mask space, through MaskTracker (with its stationary_s) and
    the zone engine: one alert per scripted activation, none elsewhere (as tests/zones/test_scenarios.py for site)."""
    from maskwatch.engines.results import Detections, MaskSpace
    from maskwatch.pipeline.tracking import MaskTracker, TrackerParams
    from maskwatch.zones import ZoneEngine, load_zone_file
    from maskwatch.zones.matching import match, predicted_intervals

    clip = scenario_clips[scenario]
    gt = json.loads((clip / "gt.json").read_text())
    truth = json.loads((clip / "events.json").read_text())
    mask_wh = (160, 90)
    ms = MaskSpace(mask_wh, (gt["width"], gt["height"]))
    tracker = MaskTracker(TrackerParams(high_conf=0.5, low_conf=0.1, new_track_conf=0.5, min_hits=1))
    engine = ZoneEngine(load_zone_file(clip / "zones.yaml"), "synth", (gt["width"], gt["height"]), mask_wh)
    events = []
    for i, f in enumerate(gt["frames"]):
        inst = f["instances"]
        masks = np.stack([cv2.resize(decode(x["mask"]).astype(np.float32), mask_wh, interpolation=cv2.INTER_AREA) >= 0.5
                          for x in inst]) if inst else np.zeros((0, mask_wh[1], mask_wh[0]), bool)
        boxes = np.array([x["box_xyxy"] for x in inst], np.float32).reshape(len(inst), 4)
        dets = tracker.update(Detections(boxes, np.full(len(inst), 0.9), [x["class_id"] for x in inst], masks, ms), f["pts_s"])
        events += engine.update(i, f["pts_s"], f["pts_s"], dets.tracker_id, [CLASS_NAMES[c] for c in dets.class_id],
                                dets.confidence, dets.xyxy, dets.masks, dets.data["stationary_s"])
    last = gt["frames"][-1]
    events += engine.close(last["index"], last["pts_s"], last["pts_s"])
    res = match(truth["intervals"], predicted_intervals([e.to_dict() for e in events]), gt["fps"])
    assert res["recall"] == 1.0 and res["precision"] == 1.0, res
    assert res["predicted"] == res["gt"] == res["matched"] == 1, res


def _touching(masks: list[np.ndarray]) -> int:
    """Pairs of masks that touch (one pixel apart at most)."""
    kernel = np.ones((3, 3), np.uint8)
    grown = [cv2.dilate(m.astype(np.uint8), kernel).astype(bool) for m in masks]
    return sum(1 for i in range(len(masks)) for j in range(i + 1, len(masks)) if (grown[i] & masks[j]).any())


def test_cows_bunch_touch_and_occlude_at_the_gate(scenario_clips):
    gt = json.loads((scenario_clips["gate_crowding"] / "gt.json").read_text())
    sc = make_scene("farm", SCENARIO_SEED, *SMALL, "gate_crowding")
    bunch = [f for f in gt["frames"] if sc.t_call + 6.0 <= f["pts_s"] <= sc.t_release]
    assert bunch
    touching = [_touching([decode(x["mask"]) for x in f["instances"] if x["class_id"] == COW]) for f in bunch]
    assert min(touching) >= 2, touching  # several cows touch in every frame of the bunch
    # occlusion: some cow shows fewer pixels than it has when drawn alone
    t = float(bunch[len(bunch) // 2]["pts_s"])
    items, _ = sc.dynamic(t)
    _, instances = sc.render(t)
    hidden = 0
    for x in instances:
        alone = [it for it in items if it.track_id == x.track_id]
        idm = np.zeros((SMALL[1], SMALL[0]), np.uint16)
        (solo,) = extract_instances(idm, draw_items(np.zeros((SMALL[1], SMALL[0], 3), np.uint8), idm, alone))
        assert x.area <= solo.area
        hidden += x.area < 0.9 * solo.area
    assert hidden >= 2


def test_one_seed_has_the_same_view_and_zones_in_every_scenario():
    docs = [make_scene("farm", 7, 320, 180, s).zone_file(all_scenarios=True) for s in FarmScene.scenarios]
    assert docs[0] == docs[1] == docs[2]
    assert [z["id"] for z in docs[0]["zones"]] == ["gate-area", "farm-track", "down-spot"]
    assert make_scene("farm", 7, 320, 180).zone_file() is None  # no scenario: no zone file


# ---- per-seed variation --------------------------------------------------------------------------
def test_seeds_vary_camera_layout_look_and_herd():
    scenes = [make_scene("farm", seed, 320, 180) for seed in range(1, 9)]
    cams = {(round(s.camera.position_m[1], 2), round(s.camera.pitch_deg, 1), round(s.camera.focal_px, 1)) for s in scenes}
    assert len(cams) == len(scenes)
    assert len({len(s.cows) for s in scenes}) >= 3
    assert len({len(s.workers) for s in scenes}) >= 2
    assert {s.layout.feed_side for s in scenes} == {-1, 1}
    assert len({c.coat.kind for s in scenes for c in s.cows}) == 4  # black, brown, patched, light
    assert {c.lying for s in scenes for c in s.cows} == {False, True}
    assert len({round(c.size, 2) for s in scenes for c in s.cows}) > 10
    assert len({s.effects.jpeg_quality for s in scenes}) >= 2
    assert len({s.effects.noise is None for s in scenes}) == 2 or len({s.effects.blur for s in scenes}) >= 2
    assert len({round(s.effects.shadow_strength, 3) for s in scenes}) == len(scenes)
    means = {round(float(s.background.mean()), 1) for s in scenes}
    assert len(means) == len(scenes)


# ---- dataset export, command line -----------------------------------------------------------------
def test_dataset_export_with_the_farm_loads_in_ultralytics_layout(tmp_path):
    data_yaml = export_dataset(tmp_path, ["farm"], 6, frames_per_seed=2, val_fraction=0.34, width=320, height=180,
                               log=lambda m: None)
    cfg = yaml.safe_load(data_yaml.read_text())
    assert Path(cfg["path"]) == tmp_path.resolve()
    assert cfg["names"] == dict(enumerate(CLASS_NAMES)) and cfg["names"][5] == "cow"  # ids fixed: cow is 5
    classes = set()
    for split in ("train", "val"):
        imgs = sorted((tmp_path / cfg[split]).glob("*.jpg"))
        labels = sorted((tmp_path / "labels" / split).glob("*.txt"))
        assert imgs and [p.stem for p in imgs] == [p.stem for p in labels]
        assert all(p.stem.startswith("farm_") for p in imgs)
        for lab in labels:
            for line in lab.read_text().splitlines():
                vals = line.split()
                classes.add(int(vals[0]))
                xy = np.array(vals[1:], float)
                assert len(xy) >= 6 and len(xy) % 2 == 0 and xy.min() >= 0.0 and xy.max() <= 1.0
        assert cv2.imread(str(imgs[0])).shape == (180, 320, 3)
    assert COW in classes and classes <= {COW, WORKER}


def test_scenario_frames_of_the_farm_extend_a_site_datasets_names(tmp_path):
    from maskwatch.scenes.dataset import export_scenario_frames

    export_dataset(tmp_path, ["site"], 2, frames_per_seed=2, width=320, height=180, log=lambda m: None)
    assert len(yaml.safe_load((tmp_path / "data.yaml").read_text())["names"]) == 5
    export_scenario_frames(tmp_path, {"farm": ["gate_crowding"]}, 2, frames_per_seed=2, width=320, height=180,
                           log=lambda m: None)
    assert yaml.safe_load((tmp_path / "data.yaml").read_text())["names"][5] == "cow"


def test_cli_farm_clip_scenario_and_dataset(tmp_path, capsys):
    from maskwatch.scenes.cli import main

    assert main(["synth", "farm", "--seed", "3", "--seconds", "0.4", "--fps", "5", "--size", "320x180",
                 "--scenario", "cow_down", "--no-video", "--out", str(tmp_path / "clip")]) == 0
    assert {p.name for p in (tmp_path / "clip").iterdir()} == {"gt.json", "zones.yaml", "events.json"}
    gt = json.loads((tmp_path / "clip" / "gt.json").read_text())
    assert gt["scene"] == "farm" and gt["classes"][5] == "cow" and gt["version"] == 2
    assert main(["synth", "dataset", "--scenes", "farm", "--images", "2", "--size", "320x180",
                 "--out", str(tmp_path / "ds")]) == 0
    assert yaml.safe_load((tmp_path / "ds" / "data.yaml").read_text())["names"][5] == "cow"
    assert main(["synth", "site", "--scenario", "gate_crowding", "--out", str(tmp_path / "x")]) == 2
    assert "belongs to scene 'farm'" in capsys.readouterr().err


# ---- example config -------------------------------------------------------------------------------
def test_farm_example_config_parses_and_its_zones_match_the_clips():
    from maskwatch.pipeline.config import load_config
    from maskwatch.pipeline.factory import check_rule_classes
    from maskwatch.zones import ConfigError, load_zone_file

    cfg = load_config(ROOT / "configs" / "farm-example.yaml")
    assert cfg.model.path.name == "maskwatch-demo-seg-960.onnx"
    assert {c.zones for c in cfg.cameras} == {(ROOT / "configs" / "zones" / "farm-demo.yaml").resolve()}
    zf = load_zone_file(ROOT / "configs" / "zones" / "farm-demo.yaml")
    assert {r.type for r in zf.rules} == {"occupancy", "intrusion", "dwell"}
    # the herd's tracker setting (chosen on the farm tuning seeds) reaches the tracker; other settings stay default
    params = cfg.tracker.params(cfg.model.conf)
    assert params.ambiguity_margin == 0.15 and params.max_lost_s == 4.0 and params.report_conf == 0.6
    assert all(r.classes == ["cow"] for r in zf.rules)
    # the zones and rules of the three clips of seed 7 (`maskwatch synth farm --seed 7 --scenario ...`)
    doc = yaml.safe_load((ROOT / "configs" / "zones" / "farm-demo.yaml").read_text())
    assert doc == make_scene("farm", 7, 1280, 720, "cow_down").zone_file(all_scenarios=True)
    from maskwatch.engines import load_engine

    check_rule_classes(cfg, load_engine(cfg.model.path).meta.names, "farm-example.yaml")  # the farm model: passes
    with pytest.raises(ConfigError, match="cow"):  # the bundled 5-class model does not know `cow`
        check_rule_classes(cfg, load_engine(ROOT / "models" / "maskwatch-demo-seg.onnx").meta.names,
                           "farm-example.yaml")
