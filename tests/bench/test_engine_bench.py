"""The engine benchmark runs, reports every stage and writes JSON."""

from __future__ import annotations

import json

import pytest

from maskwatch.bench.engine import main, synthetic_frame

from tests.engines.helpers import DYNAMIC_MODEL, STATIC_MODEL


@pytest.mark.parametrize("model, batches", [(STATIC_MODEL, [1, 2]), (DYNAMIC_MODEL, [1, 3])])
def test_bench_writes_json(tmp_path, capsys, model, batches):
    out = tmp_path / "bench.json"
    argv = [str(model), "--runs", "3", "--warmup", "1", "--batch", *map(str, batches), "--frame-size", "640x360",
            "--conf", "0.1", "--threads", "1", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["frame_wh"] == [640, 360]
    assert [r["batch"] for r in report["results"]] == batches
    for r in report["results"]:
        assert r["runs"] == 3
        for stage in ("pre", "infer", "post", "pre_post", "total"):
            assert 0 < r[stage]["median_ms"] <= r[stage]["p95_ms"] + 1e-9
        assert r["total"]["median_ms"] >= r["infer"]["median_ms"] * 0.5
        assert r["pre_post_over_infer"] > 0
    printed = capsys.readouterr().out
    assert "pre+post" in printed and "infer" in printed


@pytest.mark.parametrize(
    "argv, code",
    [(["missing.onnx"], 2), (["x.onnx", "--frame-size", "wide"], "usage"), (["x.onnx", "--runs", "0"], "usage")],
)
def test_bench_rejects_bad_arguments(tmp_path, capsys, argv, code):
    if code == "usage":
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    else:
        assert main([str(tmp_path / argv[0]), *argv[1:]]) == code
        assert "model file not found" in capsys.readouterr().err


def test_synthetic_frame_is_deterministic():
    a, b = synthetic_frame(320, 180), synthetic_frame(320, 180)
    assert a.shape == (180, 320, 3) and (a == b).all() and a.std() > 10
