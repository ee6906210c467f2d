"""`maskwatch eval tracking` against ByteTrack, OC-SORT and McByte (roboflow `trackers`, the real ones), on clips
it renders itself (`--scenes`, `--seeds`) and caches, with per-scene means and worst clips; the seed ranges.

Short clips at a small size keep this fast; the figures mean nothing here, only that every tracker ran and was
scored, and what the summaries and files hold."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from maskwatch.scenes.clip import write_clip

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "maskwatch-demo-seg.onnx"
ALL = ["maskwatch", "bytetrack-defaults", "bytetrack-matched", "ocsort-defaults", "ocsort-matched",
       "mcbyte-defaults", "mcbyte-matched"]
SEEDS = (21_000_051, 21_000_052)  # test clips: far from the tuning and held-out ranges


def test_every_baseline_runs_and_the_best_is_the_bar(tmp_path):
    from maskwatch.evaluation.tracking import evaluate

    # crowded pitch: players pass each other, so the trackers differ
    write_clip("pitch", 21_000_053, 3.0, tmp_path / "clip", size=(640, 360), events=False)
    res = evaluate(BUNDLED, tmp_path / "clip", detector="gt", log=lambda m: None)
    r = res["clips"]["clip"]
    assert list(r["scores"]) == ALL and res["trackers"] == ALL
    for name, s in r["scores"].items():
        assert math.isfinite(s["HOTA"]) and math.isfinite(s["IDF1"]) and s["tracker_ids"] > 0, name
        assert 0 < s["HOTA"] <= 1 and 0 < s["IDF1"] <= 1 and s["IDSW"] >= 0, name
    base = {n: s for n, s in r["scores"].items() if n != "maskwatch"}
    best = r["best_baseline"]
    assert best["HOTA"] == max(s["HOTA"] for s in base.values()) and best["by"]["HOTA"] in base
    assert best["IDF1"] == max(s["IDF1"] for s in base.values())
    assert best["IDSW"] == min(s["IDSW"] for s in base.values())
    assert r["margin"]["IDF1"] == pytest.approx(r["scores"]["maskwatch"]["IDF1"] - best["IDF1"])
    assert r["margin"]["IDSW"] == r["scores"]["maskwatch"]["IDSW"] - best["IDSW"]
    # McByte's masks are the detector's: its mask-conditioned association ran (and scored differently from
    # ByteTrack with the same thresholds on at least one variant)
    assert (r["scores"]["mcbyte-matched"], r["scores"]["mcbyte-defaults"]) != \
        (r["scores"]["bytetrack-matched"], r["scores"]["bytetrack-defaults"])
    scene = res["scenes"]["pitch"]
    assert list(scene) == [*ALL, "best baseline", "margin"]
    assert scene["maskwatch"]["IDF1"]["mean"] == pytest.approx(r["scores"]["maskwatch"]["IDF1"])


def test_mcbyte_masks_follow_the_detections():
    """The stand-in for SAM + Cutie: a track's mask is its last detection's, moved by its last step per frame."""
    import numpy as np
    from pycocotools import mask as mask_utils

    from maskwatch.engines.results import Detections, MaskSpace
    from maskwatch.evaluation.baselines import _DetectorMasks

    def dets(x):  # one 10x10 object at column x of a 40x30 frame, track 7
        full = np.zeros((30, 40), np.uint8)
        full[5:15, x:x + 10] = 1
        d = Detections(np.array([[x, 5, x + 10, 15]], np.float32), np.array([0.9], np.float32), [0],
                       np.zeros((1, 3, 4), bool), MaskSpace((4, 3), (40, 30)),
                       data={"rles": np.array([mask_utils.encode(np.asfortranarray(full))], object)})
        d.tracker_id = np.array([7])
        return d

    m = _DetectorMasks()
    frame = np.zeros((30, 40, 3), np.uint8)
    m.seen(dets(2))
    m.initialize(frame, m.generate(frame, []))
    m.add_masks(frame, m.generate(frame, [type("S", (), {"tracker_id": 7, "xyxy": np.array([2, 5, 12, 15])})()]))
    out = m.propagate(frame)
    assert out.tracklet_mask_dict == {7: 0} and out.mask_avg_prob_dict == {7: 1.0}
    assert out.masks.shape == (1, 30, 40) and out.masks[0, 5:15, 2:12].all() and out.masks[0].sum() == 100
    m.seen(dets(5))  # moved 3 px: the next frame's mask is 3 px further on
    assert np.flatnonzero(m.propagate(frame).masks[0].any(axis=0)).tolist() == list(range(8, 18))
    m.seen(dets(5)[np.zeros(0, np.int64)])  # lost for a frame: carried on at the same pace
    assert np.flatnonzero(m.propagate(frame).masks[0].any(axis=0)).tolist() == list(range(11, 21))
    m.remove_masks([7])
    assert m.propagate(frame).masks.shape == (0, 30, 40)


def test_scenes_render_once_and_report_mean_and_worst(tmp_path, capsys):
    """`--scenes site --seeds A..A+1`: both clips rendered into the cache, evaluated with the model's and the
    noisy ground-truth detections; a second run renders nothing and reads the model's detections back."""
    from maskwatch.evaluation.tracking import main

    cache = tmp_path / "cache"
    args = [str(BUNDLED), "--scenes", "site", "--seeds", f"{SEEDS[0]}..{SEEDS[1]}", "--seconds", "2", "--size", "320x180",
            "--cache", str(cache), "--threads", "1"]
    assert main(args + ["--out", str(tmp_path / "a.json"), "--out", str(tmp_path / "a.md")]) == 0
    a = json.loads((tmp_path / "a.json").read_text())
    clips = sorted((cache / "clips" / "320x180-2s").iterdir())
    assert [c.name for c in clips] == [f"site-{SEEDS[0]}-truck_reverse", f"site-{SEEDS[1]}"]  # scenarios mixed in
    assert a["source"]["rendered"] == 2 and a["source"]["reused"] == 0 and a["source"]["seed_range"] == "other"
    assert list(a["detectors"]) == ["model", "gt"] and a["baselines"] == ["bytetrack", "ocsort", "mcbyte"]
    for det, res in a["detectors"].items():
        assert sorted(res["clips"]) == [c.name for c in clips]
        site = res["scenes"]["site"]
        assert list(site) == [*ALL, "best baseline", "margin"]
        for name, row in site.items():
            assert row["clips"] == 2
            for metric in ("HOTA", "IDF1", "IDSW"):
                vals = {c: (r["margin"] if name == "margin" else r["best_baseline"] if name == "best baseline"
                            else r["scores"][name])[metric] for c, r in res["clips"].items()}
                assert row[metric]["mean"] == pytest.approx(sum(vals.values()) / 2), (det, name, metric)
                worst = (max if metric == "IDSW" else min)(vals.values())
                assert row[metric]["worst"] == worst, (det, name, metric)
                if row[metric]["worst_clip"] is not None:
                    assert vals[row[metric]["worst_clip"]] == worst
            assert math.isfinite(row["HOTA"]["mean"]) and math.isfinite(row["IDF1"]["mean"])
    md = (tmp_path / "a.md").read_text()
    assert md.count("### Per scene: mean and worst clip") == 2 and md.count("### Per clip") == 2
    for name in [*ALL, "best baseline", "maskwatch - best baseline"]:
        assert f"| {name} |" in md
    out = capsys.readouterr().out
    assert "| clip | overlap | maskwatch | bytetrack-defaults |" in out and "site (2 clips" in out

    stamps = {c.name: (c / "gt.json").stat().st_mtime_ns for c in clips}
    dets = sorted(p.name for p in cache.glob("*.npz"))
    assert len(dets) == 2  # the model's detections of each clip
    assert main(args + ["--out", str(tmp_path / "b.json")]) == 0
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["source"]["rendered"] == 0 and b["source"]["reused"] == 2
    assert {c.name: (c / "gt.json").stat().st_mtime_ns for c in clips} == stamps
    assert sorted(p.name for p in cache.glob("*.npz")) == dets
    assert b["detectors"] == a["detectors"]


def test_bad_scene_seeds_and_baselines_exit_2(tmp_path, capsys):
    from maskwatch.evaluation.tracking import main

    base = [str(BUNDLED), "--cache", str(tmp_path / "cache")]
    assert main(base + ["--scenes", "site,moon", "--seeds", "1..2"]) == 2
    err = capsys.readouterr().err
    assert "--scenes" in err and "'moon'" in err and "site" in err
    assert not (tmp_path / "cache").exists()  # nothing rendered before the scenes are known
    assert main(base + ["--scenes", "site"]) == 2 and "--seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(base + ["--scenes", "site", "--seeds", "9..3"])
    assert exc.value.code == 2 and "--seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(base + ["--data", str(tmp_path), "--baselines", "bytetrack,sort"])
    assert exc.value.code == 2 and "--baselines" in capsys.readouterr().err


def test_seed_ranges_are_fixed_disjoint_and_unused_elsewhere():
    """The tuning and held-out seeds: 20 per scene each, apart, and no seed of the project's scripts or tests in them."""
    from maskwatch.evaluation.tracking import HELDOUT_SEEDS, TUNING_SEEDS, parse_seeds, scenario_for
    from maskwatch.scenes.dataset import EVAL_SEED_OFFSET

    assert parse_seeds("tuning") == TUNING_SEEDS and parse_seeds("heldout") == HELDOUT_SEEDS
    assert parse_seeds("7..9") == (7, 9) and parse_seeds("30,000,000..30,000,019") == TUNING_SEEDS
    for a, b in (TUNING_SEEDS, HELDOUT_SEEDS):
        assert b - a + 1 >= 20 and a > EVAL_SEED_OFFSET
    assert TUNING_SEEDS[1] < HELDOUT_SEEDS[0]
    used = set()
    for path in [*ROOT.glob("scripts/*"), *ROOT.glob("tests/**/*.py"), ROOT / "README.md"]:
        if path.is_file() and path.name != Path(__file__).name:
            text = path.read_text(errors="replace")
            if path.name == "README.md":  # the evaluation's own clips, cited by name (site-30000010), are results
                text = re.sub(r"\b(?:site|pitch|farm)-\d{8}\b", "", text)
            used |= {int(m.replace("_", "").replace(",", ""))
                     for m in re.findall(r"\b\d{2}[_,]?\d{3}[_,]?\d{3}\b", text)}
    for a, b in (TUNING_SEEDS, HELDOUT_SEEDS):  # only the ranges' own ends, where the README names them
        assert {s for s in used if a <= s <= b} <= {a, b}
    site = [scenario_for(("excavator_swing", "truck_reverse", "truck_speed"), s)
            for s in range(TUNING_SEEDS[0], TUNING_SEEDS[1] + 1)]
    assert site.count(None) >= 9 and {"excavator_swing", "truck_reverse", "truck_speed"} <= set(site)
    pitch = [scenario_for(("box_entry",), s) for s in range(HELDOUT_SEEDS[0], HELDOUT_SEEDS[1] + 1)]
    assert pitch.count("box_entry") == 4


def test_model_key_of_a_file_and_of_a_model_folder(tmp_path):
    """The detection cache keys a model by its bytes: a file's as before, an OpenVINO folder's by its files (a folder
    once crashed `eval tracking`)."""
    import hashlib

    from maskwatch.evaluation.tracking import _model_key

    f = tmp_path / "m.onnx"
    f.write_bytes(b"weights")
    assert _model_key(f, 0.1) == hashlib.sha256(b"weights").hexdigest()[:16] + "-c0.1"
    d = tmp_path / "m_int8_openvino_model"
    d.mkdir()
    (d / "model.xml").write_text("<net/>")
    (d / "model.bin").write_bytes(b"\x00\x01")
    k1 = _model_key(d, 0.1)
    (d / "model.bin").write_bytes(b"\x00\x02")
    assert _model_key(d, 0.1) != k1 and _model_key(d, 0.1).endswith("-c0.1")
