"""scripts/compare_models.py (issue 27's comparison table): the bundled YOLO model and a Mask R-CNN ONNX file
through the same public commands, on a short synth clip, into one markdown table and its JSON."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from maskwatch.scenes.clip import write_clip
from maskwatch.scenes.dataset import EVAL_SEED_OFFSET

ROOT = Path(__file__).resolve().parents[2]
YOLO = ROOT / "models" / "maskwatch-demo-seg.onnx"
MRCNN = ROOT / "tests" / "fixtures" / "maskrcnn" / "maskrcnn-tiny-random.onnx"


def _script():
    spec = importlib.util.spec_from_file_location("compare_models", ROOT / "scripts" / "compare_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_table_of_two_models(tmp_path):
    clip = tmp_path / "site"
    write_clip("site", EVAL_SEED_OFFSET + 103, 4.0, clip, fps=1)  # 4 frames, 1 s apart, held-out seed
    out = tmp_path / "cmp.md"
    rc = _script().main([f"yolo={YOLO}", f"mrcnn={MRCNN}", "--data", str(clip), "--every", "1", "--runs", "2",
                         "--alert-scenes", "", "--out", str(out)])
    assert rc == 0
    text = out.read_text()
    assert "| | yolo | mrcnn |" in text
    row = next(line for line in text.splitlines() if line.startswith("| site: mask mAP50 / 50-95"))
    yolo50, _, mrcnn50, _ = (float(x) for x in re.findall(r"\d\.\d+", row))
    assert yolo50 > 0.8  # the bundled model finds the site's objects
    assert 0.0 <= mrcnn50 <= 1.0  # random weights: a figure, whatever it is
    assert re.search(r"CPU ms per 720p frame.*\| \d+ / \d+ \| \d+ / \d+ \|", text)
    res = json.loads(out.with_suffix(".json").read_text())
    assert set(res) == {"yolo", "mrcnn"}
    assert res["yolo"]["bench"]["total"]["median_ms"] > 0
    assert "AMD" in text or "Intel" in text or "CPU" in text  # the machine is named


def test_bad_spec_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        _script().main(["no-equals-sign"])
    assert e.value.code == 2
    assert "expected LABEL=MODEL" in capsys.readouterr().err
