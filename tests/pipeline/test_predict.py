"""`maskwatch predict` writes COCO results that pycocotools loads; `--track` writes the pipeline's tracks."""

import contextlib
import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "maskwatch-demo-seg.onnx"


def _predict(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskwatch", "predict", *map(str, args)], capture_output=True, text=True)


def _check_coco(out: Path, model_names: list[str], frames: int, tracked: bool) -> list[dict]:
    results = json.loads(out.read_text())
    assert results, "a low threshold on the test model yields detections"
    assert {r["image_id"] for r in results} <= set(range(frames))
    for r in results:
        assert r["category_name"] == model_names[r["category_id"]]
        assert r["segmentation"]["size"] == [360, 640]
        assert (r["track_id"] >= 1) if tracked else ("track_id" not in r)
        x, y, w, h = r["bbox"]
        assert w >= 0 and h >= 0 and 0 <= x <= 640 and 0 <= y <= 360
    gt = COCO()
    gt.dataset = {"images": [{"id": i, "width": 640, "height": 360} for i in range(frames)],
                  "annotations": [], "categories": [{"id": i, "name": n} for i, n in enumerate(model_names)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(str(out))
    assert len(dt.anns) == len(results)
    area = mask_utils.area(results[0]["segmentation"])
    assert area > 0 and np.isfinite(area)
    return results


def test_predict_writes_coco_results(tmp_path, clip, model_path, model_names):
    out = tmp_path / "pred.json"
    proc = _predict(model_path, clip, "--out", out, "--conf", "0.02", "--max-frames", "10")
    assert proc.returncode == 0, proc.stderr
    _check_coco(out, model_names, 10, tracked=False)
    # --track with a config: the random test model never reaches a trained model's confidence, so the config
    # reports every confirmed track (report_conf 0, as the other pipeline tests do)
    cfg = write_config(tmp_path, model_path, clip, model_names, conf=0.02)
    proc = _predict(model_path, clip, "--out", out, "--track", "--config", cfg, "--max-frames", "10")
    assert proc.returncode == 0, proc.stderr
    _check_coco(out, model_names, 10, tracked=True)
    assert "reported tracks" in proc.stdout and "min_hits 2" in proc.stdout


def test_predict_missing_model_exits_2(tmp_path, clip):
    proc = _predict(tmp_path / "nope.onnx", clip, "--out", tmp_path / "p.json")
    assert proc.returncode == 2 and "model file not found" in proc.stderr and "Traceback" not in proc.stderr
    proc = _predict(tmp_path / "nope.onnx", clip, "--out", tmp_path / "p.json", "--track")
    assert proc.returncode == 2 and "model file not found" in proc.stderr and "Traceback" not in proc.stderr
    proc = _predict(BUNDLED, clip, "--out", tmp_path / "p.json", "--config", tmp_path / "c.yaml")
    assert proc.returncode == 2 and "--config: goes with --track" in proc.stderr


def _by_frame(rows) -> dict[int, list]:
    """frame -> sorted (track id, box x, y, w, h rounded to 0.1 px)."""
    out: dict[int, list] = {}
    for frame, tid, box in rows:
        out.setdefault(frame, []).append((tid, *(round(float(v), 1) for v in box)))
    return {f: sorted(v) for f, v in out.items()}


def _same_tracks(exported, seen) -> None:
    """The same track ids on the same frames, boxes equal but for predict's rounding to 0.01 px."""
    def group(rows):
        out: dict[int, dict[int, np.ndarray]] = {}
        for frame, tid, box in rows:
            out.setdefault(frame, {})[tid] = np.asarray(box, float)
        return out

    a, b = group(exported), group(seen)
    assert sorted(a) == sorted(b)
    for f in a:
        assert sorted(a[f]) == sorted(b[f]), f"frame {f}: track ids {sorted(a[f])} against {sorted(b[f])}"
        for tid in a[f]:
            assert np.allclose(a[f][tid], b[f][tid], atol=0.011), f"frame {f}, track {tid}: {a[f][tid]} {b[f][tid]}"


def test_predict_track_exports_the_pipelines_tracks(tmp_path, monkeypatch):
    """`predict --track --config` writes, frame by frame, the track ids and boxes that a `Pipeline` run of the
    same config hands its zone engine (the tracker's output); the old predict tracker (its own thresholds,
    min_hits 1, no report_conf) reported other tracks."""
    from maskwatch.pipeline import stages
    from maskwatch.pipeline.config import load_config
    from maskwatch.pipeline.factory import build_segmenter
    from maskwatch.pipeline.stages import Pipeline
    from maskwatch.pipeline.tracking import MaskTracker, TrackerParams
    from maskwatch.scenes.clip import write_clip

    write_clip("pitch", 21_000_042, 3.0, tmp_path / "clip", events=False)  # a player found at frame 34
    video = tmp_path / "clip" / "video.mp4"
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "model": {"path": str(BUNDLED), "threads": 1},  # one thread: the same arithmetic in both runs
        "cameras": [{"id": "cam1", "source": str(video)}],
        "alerts": {"jsonl": "var/alerts.jsonl", "outbox": "var/outbox.sqlite"},
        "tracker": {"min_hits": 3, "max_lost_s": 1.0},
    }))

    seen, inputs = [], []
    real_update = stages.MaskTracker.update

    def spy(self, dets, pts_s, image=None):  # what the analytics thread's tracker gets and reports
        frame = round(pts_s * 15)
        inputs.append((frame, dets[np.arange(len(dets))], pts_s, None if image is None else image.copy()))
        res = real_update(self, dets, pts_s, image)
        seen.extend((frame, int(t), (x0, y0, x1 - x0, y1 - y0)) for t, (x0, y0, x1, y1) in zip(res.tracker_id, res.xyxy))
        return res

    monkeypatch.setattr(stages.MaskTracker, "update", spy)
    cfg = load_config(cfg_path)
    pipe = Pipeline(cfg, build_segmenter(cfg.model, None, cfg.tracker))
    pipe.start()
    pipe.wait()
    monkeypatch.undo()
    assert pipe.failure is None
    assert len(inputs) == 45 and seen, "the demo model finds the players"

    out = tmp_path / "tracks.json"
    proc = _predict(BUNDLED, video, "--out", out, "--track", "--config", cfg_path)
    assert proc.returncode == 0, proc.stderr
    exported = [(r["image_id"], r["track_id"], r["bbox"]) for r in json.loads(out.read_text())]
    _same_tracks(exported, seen)

    # the old `predict --track`: every threshold at --conf (default 0.25), min_hits 1, no report_conf
    def track(params, conf):
        tracker, rows = MaskTracker(params), []
        for frame, dets, pts_s, image in inputs:
            res = tracker.update(dets[dets.confidence >= conf], pts_s, image)
            rows += [(frame, int(t), (x0, y0, x1 - x0, y1 - y0)) for t, (x0, y0, x1, y1) in zip(res.tracker_id, res.xyxy)]
        return rows

    old = track(TrackerParams(high_conf=0.25, low_conf=0.25, new_track_conf=0.25, min_hits=1), 0.25)
    assert len(old) > len(exported) and _by_frame(old) != _by_frame(exported)
    # min_hits 3 honoured: the same tracker with min_hits 1 reports a track found after the first frame from its
    # first detection, where the exported one waits for its third match
    params = cfg.tracker.params(cfg.model.conf)
    assert params.min_hits == 3
    ours = track(params, 0.0)
    _same_tracks(ours, seen)  # the pipeline's tracker, again, on what it was given
    ours = _by_frame(ours)
    eager = _by_frame(track(dataclasses.replace(params, min_hits=1), 0.0))
    early = [(f, r[0]) for f, rows in eager.items() for r in rows if r not in ours.get(f, [])]
    assert early, "a track found after the first frame is reported earlier with min_hits 1"
    assert all(f > 0 for f, _ in early)
