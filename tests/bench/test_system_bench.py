"""`maskwatch bench` with tiny arguments: structure and positive figures (no timing thresholds)."""

import json
import subprocess
import sys

from tests.conftest import write_clip, write_config


def test_bench_json_structure(tmp_path, model_path, model_names):
    video = write_clip(tmp_path / "v.mp4", frames=15, fps=15)
    cfg = write_config(tmp_path, model_path, video, model_names)
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "maskwatch", "bench", "--config", str(cfg), "--video", str(video),
                           "--seconds", "1", "--cameras", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "| mode |" in proc.stdout
    data = json.loads(out.read_text())
    assert data["env"]["frames_per_mode"] == 15
    modes = [r["mode"] for r in data["results"]]
    workers = data["env"]["inference_workers"]
    assert workers >= 1
    concurrent = [f"model only, {workers} concurrent calls"] if workers > 1 else []
    assert modes[:5 + len(concurrent)] == ["model only", *concurrent, "decode only", "naive loop", "pipeline, 1 camera",
                                          "pipeline, 2 cameras"]
    for r in data["results"]:
        assert r["frames"] > 0 and r["fps"] > 0 and r["cpu_s_per_frame"] > 0 and r["peak_rss_mb"] > 0, r
        assert r["stages_ms"], r
        for stage in r["stages_ms"].values():
            assert stage["median"] > 0 and stage["p95"] >= stage["median"], r
    pipe2 = data["results"][modes.index("pipeline, 2 cameras")]
    assert pipe2["frames"] == 30 and set(pipe2["per_camera_frames"].values()) == {15}
    assert pipe2["latency_ms"]["p99"] >= pipe2["latency_ms"]["p50"] > 0
    for name in ("pipeline/naive", "pipeline/model-only", "multi-camera/1-camera"):
        assert data["ratios"][name] > 0
    # every backend x precision this machine runs, after the config's own modes
    variants = {(r["variant"]["backend"], r["variant"]["precision"]) for r in data["results"] if r.get("variant")}
    assert {("onnxruntime", "fp32"), ("openvino", "fp32")} <= variants
    assert len(data["variant_ratios"]) == len(variants) and data["variant_ratios"]["onnxruntime fp32"][
        "pipeline_vs_first"] == 1.0
    assert data["env"]["cpu"]["model"] and isinstance(data["env"]["cpu"]["flags"], list)


def test_ratios_name_each_ultralytics_model():
    """Several --ultralytics-model runs: one pipeline/ultralytics ratio each, named like its mode; the variant modes
    never count as the config's own figures."""
    from maskwatch.bench.system import _ulx_label, ratios

    res = [{"mode": "model only, 1 call", "fps": 40.0}, {"mode": "pipeline, 1 camera", "fps": 30.0},
           {"mode": "pipeline, 1 camera [openvino int8]", "fps": 90.0, "variant": "openvino int8"},
           {"mode": "ultralytics track loop [a_openvino_model]", "fps": 20.0},
           {"mode": "ultralytics track loop [b_int8_openvino_model]", "fps": 15.0}]
    r = ratios(res)
    assert r["pipeline/model-only"] == 0.75
    assert r["pipeline/ultralytics [a_openvino_model]"] == 1.5 and r["pipeline/ultralytics [b_int8_openvino_model]"] == 2.0
    assert ratios(res[:2] + [{"mode": "ultralytics track loop", "fps": 10.0}])["pipeline/ultralytics"] == 3.0
    from pathlib import Path

    two = [Path("x/fp16/demo_openvino_model"), Path("x/demo_openvino_model"), Path("x/demo_int8_openvino_model")]
    assert [_ulx_label(m, two) for m in two] == ["fp16/demo_openvino_model", "x/demo_openvino_model",
                                                 "demo_int8_openvino_model"]
