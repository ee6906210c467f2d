"""Parity with Ultralytics: fixtures made by scripts/make_parity_fixtures.py with Ultralytics 8.4.

For each model and frame: the same detections (count, classes), boxes within 1 px, scores within
1e-3, and per-detection mask IoU >= 0.98, for
* ``retina_masks=True`` vs ``full_masks=True`` (frame-resolution masks),
* Ultralytics' default predictor vs maskwatch's default (boxes, scores, classes),
* Ultralytics' prototype-resolution masks (``process_mask(upsample=False)``) vs maskwatch's mask space.
"""

from __future__ import annotations

import functools
import json

import cv2
import numpy as np
import pytest

from maskwatch.engines import Segmenter, letterbox, load_engine
from maskwatch.engines.postprocess import content_crop

from .helpers import MODELS, PARITY, mask_iou, unpack_masks

CASES = sorted(
    (model_dir.name, frame)
    for model_dir in PARITY.iterdir()
    if (model_dir / "manifest.json").is_file()
    for frame in json.loads((model_dir / "manifest.json").read_text())["counts"]
)
BOX_PX, SCORE, MIN_IOU = 1.0, 1e-3, 0.98


def test_fixtures_exist():
    models = {m for m, _ in CASES}
    assert {"yolo11n-seg-random-384x640", "yolo11-tiny-seg-random-dynamic"} <= models
    assert len(CASES) >= 10
    counts = [json.loads((PARITY / m / "manifest.json").read_text())["counts"][f]["retina"] for m, f in CASES]
    assert sum(counts) > 100  # the fixtures have detections to compare


@functools.cache
def segmenter(model: str) -> Segmenter:
    manifest = json.loads((PARITY / model / "manifest.json").read_text())
    engine = load_engine(MODELS / manifest["model"], threads=2)
    return Segmenter(engine, conf=manifest["conf"], iou=manifest["iou"])


def run(model: str, frame: str, full_masks: bool):
    seg = segmenter(model)
    bgr = cv2.imread(str(PARITY / "frames" / f"{frame}.png"))
    rgb = np.ascontiguousarray(bgr[..., ::-1])  # maskwatch works in RGB
    img, box = letterbox(rgb, seg.input_hw)
    (dets,) = seg([img], [box], full_masks=full_masks)
    return dets, box, np.load(PARITY / model / f"{frame}.npz")


def assert_same_detections(dets, ref, tag):
    assert len(dets) == len(ref[f"xyxy_{tag}"])
    np.testing.assert_array_equal(dets.class_id, ref[f"cls_{tag}"])
    np.testing.assert_allclose(dets.xyxy, ref[f"xyxy_{tag}"], atol=BOX_PX, rtol=0)
    np.testing.assert_allclose(dets.confidence, ref[f"conf_{tag}"], atol=SCORE, rtol=0)


@pytest.mark.parametrize("model, frame", CASES)
def test_retina_masks(model, frame):
    dets, box, ref = run(model, frame, full_masks=True)
    assert_same_detections(dets, ref, "retina")
    full = dets.data["masks_full"]
    want = unpack_masks(ref, "masks_retina")
    if len(dets):
        assert full.shape == want.shape == (len(dets), *box.frame_hw)
        iou = mask_iou(full, want)
        assert iou.min() >= MIN_IOU, f"worst mask IoU {iou.min():.4f} (detection {iou.argmin()})"


@pytest.mark.parametrize("model, frame", CASES)
def test_default_path(model, frame):
    dets, _, ref = run(model, frame, full_masks=False)
    assert_same_detections(dets, ref, "input")


@pytest.mark.parametrize("model, frame", CASES)
def test_mask_space(model, frame):
    dets, box, ref = run(model, frame, full_masks=False)
    protos = unpack_masks(ref, "masks_proto")  # (n, mh, mw): Ultralytics' NMS output, padding included
    crop = content_crop(protos.shape[1:], box.frame_hw)
    want = protos[:, crop.top : crop.bottom, crop.left : crop.right]
    kept = want.any(axis=(1, 2))  # maskwatch drops detections whose mask-space mask is empty
    assert len(dets) == int(kept.sum())
    np.testing.assert_allclose(dets.xyxy, box.to_frame_xyxy(ref["xyxy_nms"][kept]), atol=BOX_PX, rtol=0)
    np.testing.assert_array_equal(dets.class_id, ref["cls_nms"][kept])
    assert dets.mask_space.mask_wh == crop.wh
    if len(dets):
        iou = mask_iou(dets.masks, want[kept])
        assert iou.min() >= MIN_IOU, f"worst mask IoU {iou.min():.4f} (detection {iou.argmin()})"
