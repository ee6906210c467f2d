"""`maskwatch predict` writes COCO results that pycocotools loads."""

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO


def test_predict_writes_coco_results(tmp_path, clip, model_path, model_names):
    out = tmp_path / "pred.json"
    proc = subprocess.run([sys.executable, "-m", "maskwatch", "predict", str(model_path), str(clip), "--out", str(out),
                           "--conf", "0.02", "--track", "--max-frames", "10"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert results, "a low threshold on the test model yields detections"
    assert {r["image_id"] for r in results} <= set(range(10))
    for r in results:
        assert r["category_name"] == model_names[r["category_id"]]
        assert r["segmentation"]["size"] == [360, 640] and r["track_id"] >= 1
        x, y, w, h = r["bbox"]
        assert w >= 0 and h >= 0 and 0 <= x <= 640 and 0 <= y <= 360
    gt = COCO()
    gt.dataset = {"images": [{"id": i, "width": 640, "height": 360} for i in range(10)],
                  "annotations": [], "categories": [{"id": i, "name": n} for i, n in enumerate(model_names)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(str(out))
    assert len(dt.anns) == len(results)
    area = mask_utils.area(results[0]["segmentation"])
    assert area > 0 and np.isfinite(area)


def test_predict_missing_model_exits_2(tmp_path, clip):
    proc = subprocess.run([sys.executable, "-m", "maskwatch", "predict", str(tmp_path / "nope.onnx"), str(clip),
                           "--out", str(tmp_path / "p.json")], capture_output=True, text=True)
    assert proc.returncode == 2 and "model file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_engine_runs(tmp_path, model_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "maskwatch", "bench", "engine", str(model_path), "--runs", "5",
                           "--warmup", "1", "--json", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())
