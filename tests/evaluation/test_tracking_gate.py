"""Accuracy gate for tracking (issue 5): MaskTracker on fixed short held-out clips, fed by the
noisy ground-truth detector of `maskwatch eval tracking --detector gt` (deterministic, so the
gate measures association, not the demo model). IDF1 must stay within 2 points of the value
measured when the gate was set, and the ByteTrack baseline is scored on the same detections (the other
baselines: tests/evaluation/test_tracking_baselines.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from maskwatch.scenes.clip import write_clip

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "tests" / "fixtures" / "models" / "yolo11-tiny-seg-random-dynamic.onnx"  # unused by --detector gt
# (scene, seed, scenario) -> IDF1 measured with this test's clips when the gate was set
CASES = {
    ("pitch", 20000024, "box_entry"): 0.947,  # ByteTrack 0.880
    ("pitch", 20000023, None): 0.929,  # ByteTrack 0.853
    # ByteTrack 0.912; a worker hidden behind the truck comes back. 0.943 before report_conf: a worker first
    # seen half hidden (low confidence) is now reported from its first confident detection on
    ("site", 20000022, "truck_reverse"): 0.936,
    # ByteTrack 0.900; two kits, players of both teams pass each other: 0.921 without the colour cue
    ("pitch", 20000026, None): 0.944,
}


@pytest.mark.parametrize("scene,seed,scenario", list(CASES), ids=[f"{s}-{n}" for s, n, _ in CASES])
def test_tracking_idf1_gate(tmp_path, scene, seed, scenario):
    from maskwatch.evaluation.tracking import evaluate

    write_clip(scene, seed, 6.0, tmp_path / "clip", scenario=scenario)
    res = evaluate(MODEL, tmp_path / "clip", detector="gt", baselines=("bytetrack",), log=lambda m: None)
    scores = res["clips"]["clip"]["scores"]
    idf1 = scores["maskwatch"]["IDF1"]
    print(scene, seed, {k: (round(v["IDF1"], 4), v["IDSW"]) for k, v in scores.items()})
    measured = CASES[(scene, seed, scenario)]
    assert idf1 >= measured - 0.02, f"IDF1 {idf1:.3f} fell below {measured:.3f} - 0.02"
    assert scores["bytetrack-matched"]["IDF1"] > 0  # the baseline ran on the same detections


BUNDLED = ROOT / "models" / "maskwatch-demo-seg.onnx"


def test_eval_tracking_cli_caches_model_detections(tmp_path, capsys):
    """`maskwatch eval tracking` with the bundled model: a second run reads the cached detections and
    scores the same; --set overrides a tracker parameter; a bad --set exits 2 naming the field."""
    from maskwatch.evaluation.tracking import main

    write_clip("site", 20000022, 2.0, tmp_path / "clip", scenario="truck_reverse")
    args = [str(BUNDLED), "--data", str(tmp_path / "clip"), "--cache", str(tmp_path / "cache"), "--threads", "1",
            "--baselines", "bytetrack"]
    assert main(args + ["--json", str(tmp_path / "a.json")]) == 0
    cached = list((tmp_path / "cache").glob("clip-*.npz"))
    assert len(cached) == 1
    assert main(args + ["--json", str(tmp_path / "b.json")]) == 0
    import json

    a, b = (json.loads((tmp_path / f"{n}.json").read_text())["detectors"]["model"]["clips"]["clip"]["scores"]
            for n in "ab")
    assert a == b and a["maskwatch"]["tracker_ids"] > 0  # the model found and tracked something
    assert main(args + ["--no-baseline", "--set", "new_track_conf=0.99", "--json", str(tmp_path / "c.json")]) == 0
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["params"] == {"new_track_conf": 0.99} and c["baselines"] == []
    clip = c["detectors"]["model"]["clips"]["clip"]
    assert list(clip["scores"]) == ["maskwatch"] and clip["best_baseline"] is None
    assert clip["scores"]["maskwatch"]["tracker_ids"] < a["maskwatch"]["tracker_ids"]
    capsys.readouterr()
    assert main(args + ["--set", "min_hitz=2"]) == 2
    assert "min_hitz" in capsys.readouterr().err


def test_box_overlap_and_floor_checks():
    from maskwatch.evaluation.tracking import OCCLUSION_HEAVY, box_overlap, floors

    def inst(box):
        return {"box_xyxy": box}

    gt = {"frames": [{"instances": [inst([0, 0, 10, 10]), inst([5, 5, 15, 15]), inst([50, 50, 60, 60])]},
                     {"instances": [inst([0, 0, 10, 10]), inst([9.5, 0, 20, 10])]},  # 5 % of a box: not counted
                     {"instances": [inst([0, 0, 10, 10])]}]}
    assert box_overlap(gt) == pytest.approx(2 / 6)
    assert box_overlap({"frames": []}) == 0.0

    def clip(heavy, ours, base):
        return {"occlusion_heavy": heavy, "scores": {"maskwatch": {"IDF1": ours[0], "IDSW": ours[1]},
                                                     "bytetrack-defaults": {"IDF1": base[0], "IDSW": base[1]}}}

    lines = floors({"clips": {"a": clip(True, (0.90, 4), (0.84, 8)), "b": clip(True, (0.88, 5), (0.84, 8)),
                              "c": clip(False, (0.95, 0), (0.95, 0)), "d": clip(False, (0.94, 0), (0.95, 1))}})
    assert lines[0].count("ok") == 2 and "SHORT" not in lines[0]
    assert lines[1].count("SHORT") == 2  # +4 points, 5 > 8 / 2
    assert lines[2].endswith("ok") and lines[3].endswith("SHORT")
    assert lines[4] == "all 2 occlusion-heavy clips: mean IDF1 0.890 vs 0.840 (+5.0 points), ID switches 9 vs 16"
    assert lines[5].startswith("all 2 easy clips: mean IDF1 0.945 vs 0.950 (-0.5 points)")
    assert 0 < OCCLUSION_HEAVY < 1
