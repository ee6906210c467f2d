"""Accuracy gate for tracking (issue 5): MaskTracker on fixed short held-out clips, fed by the
noisy ground-truth detector of `maskwatch eval tracking --detector gt` (deterministic, so the
gate measures association, not the demo model). IDF1 must stay within 2 points of the value
measured when the gate was set, and the ByteTrack baseline is scored on the same detections."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenes.clip import write_clip

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "tests" / "fixtures" / "models" / "yolo11-tiny-seg-random-dynamic.onnx"  # unused by --detector gt
# (scene, seed, scenario) -> IDF1 measured with this test's clips when the gate was set
CASES = {
    ("pitch", 20000024, "box_entry"): 0.949,  # ByteTrack 0.882
    ("pitch", 20000023, None): 0.930,  # ByteTrack 0.853
    ("site", 20000022, "truck_reverse"): 0.943,  # ByteTrack 0.912; a worker hidden behind the truck comes back
}


@pytest.mark.parametrize("scene,seed,scenario", list(CASES), ids=[f"{s}-{n}" for s, n, _ in CASES])
def test_tracking_idf1_gate(tmp_path, scene, seed, scenario):
    from scenes.track_eval import evaluate

    write_clip(scene, seed, 6.0, tmp_path / "clip", scenario=scenario)
    res = evaluate(MODEL, tmp_path / "clip", detector="gt", log=lambda m: None)
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
    from scenes.track_eval import main

    write_clip("site", 20000022, 2.0, tmp_path / "clip", scenario="truck_reverse")
    args = [str(BUNDLED), "--data", str(tmp_path / "clip"), "--cache", str(tmp_path / "cache"), "--threads", "1"]
    assert main(args + ["--json", str(tmp_path / "a.json")]) == 0
    cached = list((tmp_path / "cache").glob("clip-*.npz"))
    assert len(cached) == 1
    assert main(args + ["--json", str(tmp_path / "b.json")]) == 0
    import json

    a, b = (json.loads((tmp_path / f"{n}.json").read_text())["clips"]["clip"]["scores"] for n in "ab")
    assert a == b and a["maskwatch"]["tracker_ids"] > 0  # the model found and tracked something
    assert main(args + ["--no-baseline", "--set", "new_track_conf=0.99", "--json", str(tmp_path / "c.json")]) == 0
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["params"] == {"new_track_conf": 0.99}
    assert c["clips"]["clip"]["scores"]["maskwatch"]["tracker_ids"] < a["maskwatch"]["tracker_ids"]
    capsys.readouterr()
    assert main(args + ["--set", "min_hitz=2"]) == 2
    assert "min_hitz" in capsys.readouterr().err
