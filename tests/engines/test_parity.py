"""Parity with Ultralytics: fixtures made by scripts/make_parity_fixtures.py with Ultralytics 8.4.

For each model and frame: the same detections as a set (matched one-to-one by class and box IoU; boxes within
``BOX_PX``, scores within ``SCORE``, scores that close may come in either order) and per-detection mask IoU
>= ``MIN_MASK_IOU`` (tolerances in tests/engines/helpers.py), for
* ``retina_masks=True`` vs ``full_masks=True`` (frame-resolution masks),
* Ultralytics' default predictor vs maskwatch's default (boxes, scores, classes),
* Ultralytics' prototype-resolution masks (``process_mask(upsample=False)``) vs maskwatch's mask space.
``test_a_real_difference_fails`` shows that each comparison still fails on a perturbed fixture.
"""

from __future__ import annotations

import functools
import json

import cv2
import numpy as np
import pytest

from maskwatch.engines import Segmenter, letterbox, load_engine
from maskwatch.engines.postprocess import content_crop

from .helpers import MIN_MASK_IOU, MODELS, PARITY, match_detections, mask_iou, unpack_masks

CASES = sorted(
    (model_dir.name, frame)
    for model_dir in PARITY.iterdir()
    if (model_dir / "manifest.json").is_file()
    for frame in json.loads((model_dir / "manifest.json").read_text())["counts"]
)


def test_fixtures_exist():
    models = {m for m, _ in CASES}
    assert {"yolo11n-seg-random-384x640", "yolo11-tiny-seg-random-dynamic"} <= models
    assert len(CASES) >= 10
    counts = [json.loads((PARITY / m / "manifest.json").read_text())["counts"][f]["retina"] for m, f in CASES]
    assert sum(counts) > 100  # the fixtures have detections to compare


@functools.cache
def manifest(model: str) -> dict:
    return json.loads((PARITY / model / "manifest.json").read_text())


@functools.cache
def segmenter(model: str) -> Segmenter:
    engine = load_engine(MODELS / manifest(model)["model"], threads=2)
    return Segmenter(engine, conf=manifest(model)["conf"], iou=manifest(model)["iou"])


@functools.cache
def run(model: str, frame: str, full_masks: bool):
    seg = segmenter(model)
    bgr = cv2.imread(str(PARITY / "frames" / f"{frame}.png"))
    rgb = np.ascontiguousarray(bgr[..., ::-1])  # maskwatch works in RGB
    img, box = letterbox(rgb, seg.input_hw)
    (dets,) = seg([img], [box], full_masks=full_masks)
    return dets, box


def reference(model: str, frame: str) -> dict:
    """The fixture as a dict of arrays, masks unpacked (a test may perturb its copy)."""
    with np.load(PARITY / model / f"{frame}.npz") as z:
        ref = {k: z[k] for k in z.files if not k.startswith("masks_")}
        for key in ("masks_retina", "masks_proto"):
            ref[key] = unpack_masks(z, key)
    return ref


def same_detections(dets, ref: dict, tag: str, conf: float):
    return match_detections(dets.xyxy, dets.confidence, dets.class_id,
                            ref[f"xyxy_{tag}"], ref[f"conf_{tag}"], ref[f"cls_{tag}"], conf=conf)


def assert_masks(got: np.ndarray, want: np.ndarray) -> None:
    if len(got):
        iou = mask_iou(got, want)
        assert iou.min() >= MIN_MASK_IOU, f"worst mask IoU {iou.min():.4f} (detection {iou.argmin()})"


def check_retina(dets, box, ref: dict, conf: float) -> None:
    ri, gi = same_detections(dets, ref, "retina", conf)
    full = dets.data["masks_full"]
    assert full.shape == (len(dets), *box.frame_hw)
    if len(ri):
        assert ref["masks_retina"].shape[1:] == box.frame_hw
    assert_masks(full[gi], ref["masks_retina"][ri])


def check_default(dets, box, ref: dict, conf: float) -> None:
    same_detections(dets, ref, "input", conf)


def check_mask_space(dets, box, ref: dict, conf: float) -> None:
    protos = ref["masks_proto"]  # (n, mh, mw): Ultralytics' NMS output, padding included
    crop = content_crop(protos.shape[1:], box.frame_hw)
    want = protos[:, crop.top : crop.bottom, crop.left : crop.right]
    kept = want.any(axis=(1, 2))  # maskwatch drops detections whose mask-space mask is empty
    ri, gi = match_detections(dets.xyxy, dets.confidence, dets.class_id, box.to_frame_xyxy(ref["xyxy_nms"][kept]),
                              ref["conf_nms"][kept], ref["cls_nms"][kept], conf=conf)
    assert dets.mask_space.mask_wh == crop.wh
    assert_masks(dets.masks[gi], want[kept][ri])


@pytest.mark.parametrize("model, frame", CASES)
def test_retina_masks(model, frame):
    dets, box = run(model, frame, True)
    check_retina(dets, box, reference(model, frame), manifest(model)["conf"])


@pytest.mark.parametrize("model, frame", CASES)
def test_default_path(model, frame):
    dets, box = run(model, frame, False)
    check_default(dets, box, reference(model, frame), manifest(model)["conf"])


@pytest.mark.parametrize("model, frame", CASES)
def test_mask_space(model, frame):
    dets, box = run(model, frame, False)
    check_mask_space(dets, box, reference(model, frame), manifest(model)["conf"])


# -- the comparisons still catch a real difference -----------------------------------------------------------------
def _shift_box(tag, px):
    def f(ref):
        ref[f"xyxy_{tag}"][0, [0, 2]] += px
    return f


def _score(tag, delta):
    def f(ref):
        ref[f"conf_{tag}"][0] += delta
    return f


def _class(tag):
    def f(ref):
        ref[f"cls_{tag}"][0] = (ref[f"cls_{tag}"][0] + 1) % 3
    return f


def _drop(tag):
    def f(ref):
        for k in [k for k in ref if k.endswith(f"_{tag}") or (tag == "nms" and k == "masks_proto")
                  or (tag == "retina" and k == "masks_retina")]:
            ref[k] = np.delete(ref[k], 0, axis=0)
    return f


def _extra(tag):
    def f(ref):  # a copy of the top detection moved well away
        for k in [k for k in ref if k.endswith(f"_{tag}") or (tag == "nms" and k == "masks_proto")
                  or (tag == "retina" and k == "masks_retina")]:
            ref[k] = np.concatenate([ref[k], ref[k][:1]])
        ref[f"xyxy_{tag}"][-1] += 40
    return f


def _erode_mask(key):
    def f(ref):  # the top detection's mask loses its left half
        m = ref[key][0]
        cols = np.flatnonzero(m.any(axis=0))
        m[:, : (cols[0] + cols[-1]) // 2] = False
    return f


def _swap(tag):
    def f(ref):  # two detections change places: the same set
        for k in [k for k in ref if k.endswith(f"_{tag}") or (tag == "nms" and k == "masks_proto")
                  or (tag == "retina" and k == "masks_retina")]:
            ref[k][[0, 1]] = ref[k][[1, 0]]
    return f


CHECKS = {"retina": (check_retina, True, "retina"), "default": (check_default, False, "input"),
          "mask-space": (check_mask_space, False, "nms")}
PERTURBATIONS = [
    # (check, perturbation, must fail)
    *[(c, name, fn, True) for c in CHECKS for name, fn in [
        ("box-1.5px", lambda tag: _shift_box(tag, 1.5)), ("score+2e-3", lambda tag: _score(tag, 2e-3)),
        ("class", _class), ("missing", _drop), ("extra", _extra)]],
    ("retina", "mask-half", lambda tag: _erode_mask("masks_retina"), True),
    ("mask-space", "mask-half", lambda tag: _erode_mask("masks_proto"), True),
    *[(c, "swapped", _swap, False) for c in CHECKS],
    *[(c, "score+5e-4", lambda tag: _score(tag, 5e-4), False) for c in CHECKS],
]


@pytest.mark.parametrize("check, name, perturb, must_fail", PERTURBATIONS,
                         ids=[f"{c}-{n}" for c, n, _, _ in PERTURBATIONS])
def test_a_real_difference_fails(check, name, perturb, must_fail):
    """The comparisons above, on a perturbed copy of a fixture: a difference beyond the tolerances fails; a change
    of order, or one within them, passes."""
    model, frame = "yolo11n-seg-random-384x640", "portrait_540x960"
    fn, full, tag = CHECKS[check]
    dets, box = run(model, frame, full)
    ref = reference(model, frame)
    fn(dets, box, ref, manifest(model)["conf"])  # the fixture itself passes
    perturb(tag)(ref)
    if must_fail:
        with pytest.raises(AssertionError):
            fn(dets, box, ref, manifest(model)["conf"])
    else:
        fn(dets, box, ref, manifest(model)["conf"])
