"""Scene generator: determinism, ground truth equals drawn pixels, occlusion, RLE, clips, track ids
unique within a clip, scenario events and the YOLO-seg dataset export."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml

from maskwatch.scenes.classes import CLASS_NAMES, names_for
from maskwatch.scenes.clip import write_clip
from maskwatch.scenes.dataset import (
    SCENARIO_SEED_OFFSET,
    VAL_SEED_OFFSET,
    export_dataset,
    export_scenario_frames,
    make_scene,
    mask_to_polygon,
)
from maskwatch.scenes.render import SHIFT, Item, Part, draw_items, extract_instances, to_fixed
from maskwatch.scenes.rle import decode, encode, rle_counts

SMALL = (640, 360)


# ---- determinism ---------------------------------------------------------------------------
@pytest.mark.parametrize("scene,scenario", [("site", None), ("pitch", None), ("site", "truck_reverse"), ("farm", None),
                                            ("farm", "gate_crowding")])
def test_same_seed_gives_identical_gt_bytes(tmp_path, scene, scenario):
    a = write_clip(scene, 11, 1.0, tmp_path / "a", fps=5, size=SMALL, scenario=scenario, video=False, events=False)
    b = write_clip(scene, 11, 1.0, tmp_path / "b", fps=5, size=SMALL, scenario=scenario, video=False, events=False)
    c = write_clip(scene, 12, 1.0, tmp_path / "c", fps=5, size=SMALL, scenario=scenario, video=False, events=False)
    assert a["instances"] > 0
    ga, gb, gc = ((tmp_path / d / "gt.json").read_bytes() for d in "abc")
    assert ga == gb
    assert ga != gc


def test_render_is_pure_function_of_time():
    """Frames can be rendered in any order (datasets sample random times)."""
    s1 = make_scene("site", 5, *SMALL)
    s2 = make_scene("site", 5, *SMALL)
    f_late, _ = s1.render(30.0, 450)
    s2.render(3.0, 45)
    f_late2, _ = s2.render(30.0, 450)
    assert np.array_equal(f_late, f_late2)


# ---- ground truth equals the drawn pixels ----------------------------------------------------
def _recolored(items: list[Item]) -> tuple[list[Item], dict[tuple[int, int, int], int]]:
    """Each labelled instance drawn in its own flat colour; distractors in black."""
    out, colors = [], {}
    n = 0
    for it in sorted(items, key=lambda i: -i.depth):
        if it.class_id >= 0:
            n += 1
            col = (n % 256, (n // 256) % 256, 200)
            colors[col] = n
        else:
            col = (0, 0, 0)
        out.append(Item(it.depth, [Part(p.pts, col) for p in it.parts], it.class_id, it.track_id,
                        [type(ln)(ln.pts, col, ln.thickness) for ln in it.lines]))
    return out, colors


@pytest.mark.parametrize("scene,seed,t", [("site", 1, 2.0), ("site", 4, 9.0), ("pitch", 2, 4.0), ("pitch", 7, 1.5),
                                          ("farm", 1, 3.0), ("farm", 6, 12.0)])
def test_gt_masks_equal_drawn_pixels(scene, seed, t):
    sc = make_scene(scene, seed, *SMALL)
    _, instances = sc.render(t, gt=True)
    items, _ = sc.dynamic(t)
    rec, colors = _recolored(sc.static_items + items)
    canvas = np.full((SMALL[1], SMALL[0], 3), 255, np.uint8)
    draw_items(canvas, None, rec)
    assert instances, "scene should show some instances"
    by_track = {(x.class_id, x.track_id): x for x in instances}
    # map draw order -> (class, track) as draw_items numbers labelled items
    order = [(it.class_id, it.track_id) for it in sorted(sc.static_items + items, key=lambda i: -i.depth) if it.class_id >= 0]
    seen = 0
    for col, n in colors.items():
        drawn = np.all(canvas == np.array(col, np.uint8), axis=-1)
        key = order[n - 1]
        if not drawn.any():
            assert key not in by_track  # fully hidden or off-frame: no GT entry
            continue
        inst = by_track[key]
        gt = inst.full_mask(SMALL[1], SMALL[0])
        assert np.array_equal(gt, drawn), f"{key}: {int((gt ^ drawn).sum())} pixels differ"
        ys, xs = np.nonzero(drawn)
        assert inst.xyxy == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        seen += 1
    assert seen == len(instances)


def _square(x0, y0, x1, y1):
    return to_fixed(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float))


def test_occlusion_hidden_instance_has_no_entry_and_partial_is_cut():
    far_hidden = Item(50.0, [Part(_square(20, 20, 30, 40), (1, 2, 3))], class_id=0, track_id=1)
    far_partial = Item(50.0, [Part(_square(60, 20, 80, 40), (1, 2, 3))], class_id=0, track_id=2)
    machine = Item(30.0, [Part(_square(70, 10, 100, 50), (4, 5, 6))], class_id=1, track_id=3)
    wall = Item(10.0, [Part(_square(10, 10, 40, 50), (7, 8, 9))])  # unlabelled distractor in front
    off_frame = Item(5.0, [Part(_square(500, 500, 520, 520), (1, 1, 1))], class_id=0, track_id=4)
    frame = np.zeros((120, 160, 3), np.uint8)
    idmap = np.zeros((120, 160), np.uint16)
    labelled = draw_items(frame, idmap, [far_hidden, far_partial, machine, wall, off_frame])
    inst = {x.track_id: x for x in extract_instances(idmap, labelled)}
    assert set(inst) == {2, 3}
    m2 = inst[2].full_mask(120, 160)
    ref = np.zeros((120, 160), np.uint8)
    cv2.fillPoly(ref, [_square(60, 20, 70, 40)], 1, cv2.LINE_8, SHIFT)
    cv2.fillPoly(ref, [_square(70, 10, 100, 50)], 0, cv2.LINE_8, SHIFT)
    assert np.array_equal(m2, ref.astype(bool))
    assert inst[2].xyxy[2] <= 70  # the nearer machine cut it
    assert inst[3].area == int(np.count_nonzero(idmap == [v for v, it in labelled if it.track_id == 3][0]))


def test_real_scene_occlusion_reduces_area():
    """Rendering an instance alone never gives fewer pixels than its GT mask in the scene."""
    sc = make_scene("site", 3, *SMALL)
    items, _ = sc.dynamic(5.0)
    _, instances = sc.render(5.0)
    for x in instances:
        alone = [it for it in items if it.track_id == x.track_id and it.class_id == x.class_id]
        idm = np.zeros((SMALL[1], SMALL[0]), np.uint16)
        lab = draw_items(np.zeros((SMALL[1], SMALL[0], 3), np.uint8), idm, alone)
        (solo,) = extract_instances(idm, lab)
        full, gt = solo.full_mask(SMALL[1], SMALL[0]), x.full_mask(SMALL[1], SMALL[0])
        assert not (gt & ~full).any()


# ---- RLE --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_rle_matches_pycocotools(seed):
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    h, w = 37, 53
    mh, mw = int(rng.integers(1, 20)), int(rng.integers(1, 30))
    x0, y0 = int(rng.integers(0, w - mw + 1)), int(rng.integers(0, h - mh + 1))
    m = rng.uniform(size=(mh, mw)) < 0.5
    if seed == 0:
        m[:] = True
        x0, y0, mh, mw = 0, 0, *m.shape
    full = np.zeros((h, w), np.uint8)
    full[y0 : y0 + mh, x0 : x0 + mw] = m
    ref = mask_utils.encode(np.asfortranarray(full))
    ours = encode(m, (x0, y0), h, w)
    assert ours["counts"] == ref["counts"].decode("ascii")
    assert np.array_equal(decode(ours), full.astype(bool))
    assert sum(rle_counts(m, (x0, y0), h, w)) == h * w


# ---- clips ----------------------------------------------------------------------------------
def test_clip_video_decodes_with_right_frame_count(tmp_path):
    write_clip("pitch", 3, 1.0, tmp_path, fps=10, size=SMALL)
    with av.open(str(tmp_path / "video.mp4")) as c:
        vs = c.streams.video[0]
        assert vs.codec_context.name == "h264"
        frames = [f for f in c.decode(video=0)]
    assert len(frames) == 10
    assert (frames[0].width, frames[0].height) == SMALL
    assert frames[0].format.name == "yuv420p"
    gt = json.loads((tmp_path / "gt.json").read_text())
    assert gt["version"] == 2  # track ids unique within the clip
    assert gt["num_frames"] == len(gt["frames"]) == 10
    inst = gt["frames"][0]["instances"][0]
    assert set(inst) >= {"track_id", "class_id", "class", "box_xyxy", "mask", "area"}
    assert inst["class"] == CLASS_NAMES[inst["class_id"]]
    m = decode(inst["mask"])
    assert m.shape == (SMALL[1], SMALL[0]) and int(m.sum()) == inst["area"]


@pytest.mark.parametrize("scene,scenario,rule", [
    ("site", "excavator_swing", "machine-in-worker-area"),
    ("site", "truck_reverse", "truck-in-walkway"),
    ("pitch", "box_entry", "player-in-box"),
])
def test_scenarios_have_zone_file_and_gt_events(tmp_path, scene, scenario, rule):
    from maskwatch.zones import load_zone_file

    write_clip(scene, 21, 20.0, tmp_path, fps=5, size=SMALL, scenario=scenario, video=False)
    zf = load_zone_file(tmp_path / "zones.yaml")
    assert [r.id for r in zf.rules] == [rule]
    ev = json.loads((tmp_path / "events.json").read_text())
    assert ev["intervals"], "the scripted activation must appear"
    for iv in ev["intervals"]:
        assert iv["rule"] == rule
        assert iv["start_pts_s"] is not None and iv["end_pts_s"] is not None
        assert iv["start_pts_s"] < iv["end_pts_s"]
    starts = [e for e in ev["events"] if e["type"] == "start"]
    ends = [e for e in ev["events"] if e["type"] == "end"]
    assert len(starts) == len(ends) == len(ev["intervals"])


# ---- track ids ----------------------------------------------------------------------------
@pytest.mark.parametrize("scene,seed,scenario", [
    ("pitch", 61208, None),  # the ball and a player were both id 1 in gt.json version 1
    ("pitch", 3, None), ("pitch", 17, "box_entry"),
    ("site", 2, None), ("site", 9, None), ("site", 21, "excavator_swing"),
    ("farm", 2, None), ("farm", 8, None), ("farm", 21, "animal_on_track"),
])
def test_track_ids_unique_within_a_clip(tmp_path, scene, seed, scenario):
    """gt.json: no frame holds an id twice, and an id never changes class within the clip (MOTS and COCO-video
    evaluators key on the id)."""
    write_clip(scene, seed, 3.0, tmp_path, fps=2, size=(320, 180), scenario=scenario, video=False, events=False)
    gt = json.loads((tmp_path / "gt.json").read_text())
    assert gt["version"] == 2
    class_of: dict[int, int] = {}
    n = 0
    for f in gt["frames"]:
        ids = [x["track_id"] for x in f["instances"]]
        assert len(ids) == len(set(ids)), f"frame {f['index']}: an id twice: {sorted(ids)}"
        for x in f["instances"]:
            assert class_of.setdefault(x["track_id"], x["class_id"]) == x["class_id"], f"id {x['track_id']} changed class"
            assert x["class"] == CLASS_NAMES[x["class_id"]]
            n += 1
    assert n > 0
    if (scene, seed) == ("pitch", 61208):
        assert len(set(class_of.values())) == 2  # the ball and the players, each with ids of their own


def test_tracking_eval_keys_ground_truth_by_id_from_version_2():
    from maskwatch.evaluation.tracking import gt_key

    inst = {"track_id": 1, "class_id": 4}
    assert gt_key({"version": 2}, inst) == 1
    assert gt_key({"version": 1}, inst) == (4, 1)
    assert gt_key({}, inst) == (4, 1)  # files before the version field was read


# ---- dataset export -----------------------------------------------------------------------
def test_dataset_export_loads_in_ultralytics_layout(tmp_path):
    data_yaml = export_dataset(tmp_path, ["site", "pitch"], 12, frames_per_seed=2, val_fraction=0.25,
                               width=SMALL[0], height=SMALL[1], log=lambda m: None)
    cfg = yaml.safe_load(data_yaml.read_text())
    assert Path(cfg["path"]) == tmp_path.resolve()
    # site and pitch: the bundled 5-class model's names, in its order (the farm's `cow` is not declared unasked)
    assert cfg["names"] == dict(enumerate(names_for(["site", "pitch"]))) == dict(enumerate(CLASS_NAMES[:5]))
    n_lines = 0
    for split in ("train", "val"):
        imgs = sorted((tmp_path / cfg[split]).glob("*.jpg"))
        labels = sorted((tmp_path / "labels" / split).glob("*.txt"))
        assert imgs and [p.stem for p in imgs] == [p.stem for p in labels]
        for lab in labels:
            for line in lab.read_text().splitlines():
                vals = line.split()
                assert int(vals[0]) in range(len(cfg["names"]))
                xy = np.array(vals[1:], float)
                assert len(xy) >= 6 and len(xy) % 2 == 0
                assert xy.min() >= 0.0 and xy.max() <= 1.0
                n_lines += 1
        assert cv2.imread(str(imgs[0])).shape == (SMALL[1], SMALL[0], 3)
    assert n_lines > 10
    man = json.loads((tmp_path / "manifest.json").read_text())
    train_seeds = {r["seed"] for r in man["records"] if r["split"] == "train"}
    val_seeds = {r["seed"] for r in man["records"] if r["split"] == "val"}
    assert train_seeds and val_seeds and not (train_seeds & val_seeds)
    assert min(val_seeds) >= VAL_SEED_OFFSET > max(train_seeds)


def test_scenario_frames_added_to_train_split(tmp_path):
    export_dataset(tmp_path, ["site"], 3, frames_per_seed=3, width=SMALL[0], height=SMALL[1], log=lambda m: None)
    before = {p.name for p in (tmp_path / "images" / "train").glob("*.jpg")}
    n = export_scenario_frames(tmp_path, {"site": ["excavator_swing", "truck_reverse"]}, 4, frames_per_seed=2,
                               width=SMALL[0], height=SMALL[1], log=lambda m: None)
    assert n == 4
    after = {p.name for p in (tmp_path / "images" / "train").glob("*.jpg")}
    added = after - before
    assert before < after and len(added) == 4
    assert {a.split("_")[0] for a in added} == {"site-excavator", "site-truck"}
    man = json.loads((tmp_path / "manifest.json").read_text())
    recs = man["scenario_records"]
    assert {r["scenario"] for r in recs} == {"excavator_swing", "truck_reverse"}
    seeds = {r["seed"] for r in recs}
    assert min(seeds) >= SCENARIO_SEED_OFFSET and not seeds & {r["seed"] for r in man["records"]}
    assert max(seeds) < VAL_SEED_OFFSET  # disjoint from val and held-out seeds
    for r in recs:  # the excavator is labelled in every excavator_swing frame
        labels = (tmp_path / "labels" / "train" / r["file"].replace(".jpg", ".txt")).read_text().splitlines()
        if r["scenario"] == "excavator_swing":
            assert any(line.split()[0] == str(CLASS_NAMES.index("excavator")) for line in labels)
    with pytest.raises(FileNotFoundError, match="manifest"):
        export_scenario_frames(tmp_path / "none", {"site": ["excavator_swing"]}, 1, log=lambda m: None)


def test_polygon_labels_reproduce_masks_including_split_masks():
    m = np.zeros((40, 60), bool)
    m[5:15, 5:20] = True
    m[25:35, 30:50] = True  # second part, e.g. a worker cut in two by a fence post
    poly = mask_to_polygon(m, (100, 200))
    back = np.zeros((240, 160), np.uint8)
    cv2.fillPoly(back, [np.round(poly).astype(np.int32)], 1)
    got = back[200:240, 100:160].astype(bool)
    assert (got & m).sum() == m.sum()  # every mask pixel covered
    assert (got & ~m).sum() <= 60  # only the zero-width bridge adds pixels


# ---- CLI ------------------------------------------------------------------------------------
def test_cli_clip_dataset_and_errors(tmp_path, capsys):
    from maskwatch.scenes.cli import main

    assert main(["synth", "site", "--seed", "2", "--seconds", "0.4", "--fps", "5", "--size", "320x180",
                 "--out", str(tmp_path / "clip")]) == 0
    assert (tmp_path / "clip" / "video.mp4").is_file() and (tmp_path / "clip" / "gt.json").is_file()
    assert main(["synth", "dataset", "--scenes", "site,pitch", "--images", "4", "--size", "320x180",
                 "--out", str(tmp_path / "ds")]) == 0
    assert (tmp_path / "ds" / "data.yaml").is_file()
    assert main(["synth", "dataset", "--scenes", "moon", "--images", "4", "--out", str(tmp_path / "x")]) == 2
    assert main(["synth", "pitch", "--scenario", "excavator_swing", "--out", str(tmp_path / "y")]) == 2
    assert "belongs to scene 'site'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", "site", "--size", "big", "--out", str(tmp_path / "z")])
