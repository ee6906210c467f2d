"""Decoding, NMS and masks on synthetic raw outputs (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from maskwatch.engines.postprocess import (
    MAX_WH,
    MaskCrop,
    content_crop,
    masks_full_resolution,
    masks_in_mask_space,
    nms,
    select,
)

from .helpers import v5_output, v8_output


def greedy_nms_reference(boxes, scores, iou_thr):
    """Textbook greedy NMS in plain Python (float64), for comparison."""
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        ok = True
        for k in keep:
            a, b = boxes[i], boxes[k]
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iw * ih
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            if union > 0 and inter / union > iou_thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


B = np.array
NMS_CASES = [
    # boxes, scores, iou threshold, expected kept indices (best first)
    pytest.param(B([[0, 0, 10, 10], [1, 0, 11, 10]]), B([0.9, 0.8]), 0.7, [0], id="overlap-0.82-suppressed"),
    pytest.param(B([[0, 0, 10, 10], [1, 0, 11, 10]]), B([0.8, 0.9]), 0.7, [1], id="higher-score-wins"),
    pytest.param(B([[0, 0, 10, 10], [5, 0, 15, 10]]), B([0.9, 0.8]), 0.7, [0, 1], id="overlap-0.33-kept"),
    pytest.param(B([[0, 0, 10, 10], [5, 0, 15, 10]]), B([0.9, 0.8]), 0.3, [0], id="lower-threshold"),
    pytest.param(B([[0, 0, 10, 10], [0, 0, 10, 10]]), B([0.5, 0.9]), 1.0, [1, 0], id="iou-1-suppresses-nothing"),
    # chain: 0 suppresses 1; 1 would suppress 2 but is gone, so 2 stays (greedy, not Fast-NMS)
    pytest.param(B([[0, 0, 10, 10], [2, 0, 12, 10], [4, 0, 14, 10]]), B([0.9, 0.8, 0.7]), 0.6, [0, 2], id="chain"),
    pytest.param(B([[5, 5, 5, 5], [5, 5, 5, 5]]), B([0.9, 0.8]), 0.5, [0, 1], id="zero-area-never-suppresses"),
    pytest.param(B(np.zeros((0, 4))), B(np.zeros(0)), 0.5, [], id="empty"),
]


@pytest.mark.parametrize("boxes, scores, iou, expected", NMS_CASES)
def test_nms_cases(boxes, scores, iou, expected):
    kept = nms(boxes.astype(np.float32), scores.astype(np.float32), iou)
    assert kept.tolist() == expected


@pytest.mark.parametrize("n", [50, 400, 900])  # 900 takes the loop path, the others the matrix path
@pytest.mark.parametrize("iou", [0.3, 0.7])
def test_nms_matches_textbook_greedy(n, iou):
    rng = np.random.default_rng(n)
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(20, 80, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.permutation(n).astype(np.float32) / n + 0.001  # distinct scores
    kept = nms(boxes, scores, iou)
    assert kept.tolist() == greedy_nms_reference(boxes.astype(np.float64), scores, iou)
    assert len(kept) < n  # the random boxes overlap: something was suppressed
    assert nms(boxes, scores, iou, max_keep=7).tolist() == kept[:7].tolist()


NC, NM, N = 3, 4, 50


def _row(a, cx, cy, w, h, c, s):
    return (a, cx, cy, w, h, c, s, np.full(NM, 0.5, np.float32))


SELECT_CASES = [
    # rows, kwargs, expected (class, score) in output order
    pytest.param([], {}, [], id="nothing"),
    pytest.param([_row(0, 50, 50, 20, 20, 1, 0.25)], {"conf": 0.25}, [], id="score-equal-to-conf-dropped"),
    pytest.param([_row(0, 50, 50, 20, 20, 1, 0.26)], {"conf": 0.25}, [(1, 0.26)], id="just-above-conf"),
    pytest.param([_row(0, 50, 50, 20, 20, 0, 0.9), _row(1, 51, 50, 20, 20, 0, 0.8)], {}, [(0, 0.9)],
                 id="same-class-overlap-suppressed"),
    pytest.param([_row(0, 50, 50, 20, 20, 0, 0.9), _row(1, 51, 50, 20, 20, 2, 0.8)], {}, [(0, 0.9), (2, 0.8)],
                 id="class-aware-keeps-both"),
    pytest.param([_row(0, 50, 50, 20, 20, 0, 0.9), _row(1, 51, 50, 20, 20, 2, 0.8)], {"agnostic": True},
                 [(0, 0.9)], id="agnostic-suppresses-across-classes"),
    pytest.param([_row(0, 50, 50, 20, 20, 0, 0.9), _row(1, 51, 50, 20, 20, 2, 0.8)], {"classes": np.array([2])},
                 [(2, 0.8)], id="class-subset-before-nms"),
    pytest.param([_row(i, 30 * i + 15, 15, 20, 20, i % 3, 0.3 + i / 100) for i in range(10)], {"max_det": 3},
                 [(0, 0.39), (2, 0.38), (1, 0.37)], id="max-det-keeps-best"),
    pytest.param([_row(i, 30 * i + 15, 15, 20, 20, 0, 0.3 + i / 100) for i in range(10)], {"max_nms": 2},
                 [(0, 0.39), (0, 0.38)], id="max-nms-caps-candidates"),
]


@pytest.mark.parametrize("rows, kwargs, expected", SELECT_CASES)
def test_select_v8(rows, kwargs, expected):
    pred = v8_output(rows, NC, NM, N)[0]
    cand = select(pred, "v8", NC, **kwargs)
    got = [(int(c), round(float(s), 4)) for c, s in zip(cand.class_id, cand.confidence, strict=True)]
    assert got == [(c, pytest.approx(s)) for c, s in expected]
    assert cand.coefficients.shape == (len(expected), NM)
    assert cand.xyxy.dtype == np.float32 and cand.class_id.dtype == np.int32


def test_select_converts_xywh_to_xyxy_and_keeps_coefficients():
    coef = np.arange(NM, dtype=np.float32)
    pred = v8_output([(7, 100, 60, 40, 20, 2, 0.9, coef)], NC, NM, N)[0]
    cand = select(pred, "v8", NC)
    np.testing.assert_array_equal(cand.xyxy, [[80, 50, 120, 70]])
    np.testing.assert_array_equal(cand.coefficients, [coef])


def test_class_offset_keeps_far_apart_classes_separate():
    # identical boxes of classes 0 and 1 never overlap once offset by class * MAX_WH
    assert MAX_WH == 7680
    pred = v8_output([_row(0, 7000, 50, 2000, 20, 0, 0.9), _row(1, 7000, 50, 2000, 20, 1, 0.8)], NC, NM, N)[0]
    assert len(select(pred, "v8", NC)) == 2


V5_CASES = [
    # rows (anchor, cx, cy, w, h, obj, class, score, coef), conf, expected (class, score)
    pytest.param([(0, 50, 50, 20, 20, 0.9, 1, 0.5, np.ones(NM))], 0.25, [(1, 0.45)], id="score-is-obj-times-cls"),
    pytest.param([(0, 50, 50, 20, 20, 0.2, 1, 1.0, np.ones(NM))], 0.25, [], id="low-objectness-dropped"),
    pytest.param([(0, 50, 50, 20, 20, 0.5, 1, 0.4, np.ones(NM))], 0.25, [], id="product-below-conf"),
    pytest.param([(0, 50, 50, 20, 20, 0.9, 0, 0.9, np.ones(NM)), (3, 51, 50, 20, 20, 0.9, 0, 0.8, np.ones(NM)),
                  (5, 300, 300, 20, 20, 0.9, 2, 0.7, np.ones(NM))], 0.25, [(0, 0.81), (2, 0.63)], id="nms"),
    pytest.param([], 0.25, [], id="empty"),
]


@pytest.mark.parametrize("rows, conf, expected", V5_CASES)
def test_select_v5(rows, conf, expected):
    pred = v5_output(rows, NC, NM, 3 * N)[0]
    cand = select(pred, "v5", NC, conf=conf)
    got = [(int(c), float(s)) for c, s in zip(cand.class_id, cand.confidence, strict=True)]
    assert got == [(c, pytest.approx(s, abs=1e-6)) for c, s in expected]
    assert cand.coefficients.shape == (len(expected), NM)


def test_v5_and_v8_decode_the_same_detections_alike():
    rows8 = [(0, 50, 50, 20, 20, 0, 0.9, np.ones(NM)), (1, 200, 80, 60, 30, 2, 0.6, -np.ones(NM))]
    rows5 = [(a, cx, cy, w, h, 1.0, c, s, coef) for a, cx, cy, w, h, c, s, coef in rows8]
    a = select(v8_output(rows8, NC, NM, N)[0], "v8", NC)
    b = select(v5_output(rows5, NC, NM, 3 * N)[0], "v5", NC)
    for field in ("xyxy", "confidence", "class_id", "coefficients"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_unknown_layout_is_an_error():
    with pytest.raises(ValueError, match="unknown output layout 'v9'"):
        select(np.zeros((10, 10), np.float32), "v9", 3)


CROP_CASES = [
    # prototype raster (h, w), frame (h, w) -> crop; cf. Ultralytics scale_masks
    pytest.param((96, 160), (720, 1280), MaskCrop(3, 93, 0, 160), id="720p-384x640"),
    pytest.param((96, 160), (960, 540), MaskCrop(0, 96, 53, 107), id="portrait"),
    pytest.param((96, 160), (384, 640), MaskCrop(0, 96, 0, 160), id="exact"),
    pytest.param((80, 80), (720, 1280), MaskCrop(17, 62, 0, 80), id="720p-320-square"),  # 17.5 -> round(17.4)
    pytest.param((96, 160), (61, 97), MaskCrop(0, 96, 3, 156), id="tiny"),  # 153 wide, 3.5 -> round(3.4)
    pytest.param((160, 160), (1, 3000), MaskCrop(79, 80, 0, 160), id="one-pixel-tall"),
]


@pytest.mark.parametrize("raster_hw, frame_hw, expected", CROP_CASES)
def test_content_crop(raster_hw, frame_hw, expected):
    assert content_crop(raster_hw, frame_hw) == expected


def _flat_protos(value: float, nm: int = 2, hw=(96, 160)) -> np.ndarray:
    protos = np.zeros((nm, *hw), np.float32)
    protos[0] = value
    return protos


def test_mask_space_mask_is_the_box_cut_from_the_prototypes():
    protos = _flat_protos(1.0)  # logit 1 everywhere for coefficient (1, 0)
    crop = MaskCrop(3, 93, 0, 160)
    xyxy_input = np.array([[40, 20, 80, 61], [0, 0, 640, 384]], np.float32)
    coef = np.array([[1, 0], [1, 0]], np.float32)
    masks = masks_in_mask_space(protos, coef, xyxy_input, crop, (384, 640))
    assert masks.shape == (2, 90, 160)
    expected = np.zeros((90, 160), bool)
    # input px -> prototype px (/4) -> minus the crop's top (3): cols 10..19, rows 5 - 3 = 2 .. 15.25 - 3 -> 2..12
    expected[2:13, 10:20] = True
    np.testing.assert_array_equal(masks[0], expected)
    assert masks[1].all()  # a box covering everything keeps the whole content region
    negative = masks_in_mask_space(protos, -coef, xyxy_input, crop, (384, 640))
    assert not negative.any()  # logit -1 < 0 everywhere
    empty = masks_in_mask_space(protos, np.zeros((0, 2), np.float32), np.zeros((0, 4), np.float32), crop, (384, 640))
    assert empty.shape == (0, 90, 160)


@pytest.mark.parametrize("frame_hw", [(720, 1280), (563, 1000), (960, 540)])
def test_full_resolution_mask_is_the_clipped_box(frame_hw):
    protos = _flat_protos(1.0)
    h, w = frame_hw
    xyxy = np.array([[10.5, 20, 300, 301.2], [0, 0, w, h]], np.float32)
    masks = masks_full_resolution(protos, np.array([[1, 0], [1, 0]], np.float32), xyxy, frame_hw)
    assert masks.shape == (2, h, w)
    expected = np.zeros((h, w), bool)
    expected[20:302, 11:300] = True  # pixel col c kept when x1 <= c < x2
    np.testing.assert_array_equal(masks[0], expected)
    assert masks[1].all()


def test_full_resolution_mask_follows_a_prototype_edge():
    # logits +1 on the left half of the prototype raster, -1 on the right: the frame mask flips at the middle
    protos = np.zeros((1, 96, 160), np.float32)
    protos[0, :, :80] = 1
    protos[0, :, 80:] = -1
    masks = masks_full_resolution(protos, np.ones((1, 1), np.float32), np.array([[0, 0, 1280, 720]]), (720, 1280))
    cols = masks[0].any(axis=0)
    assert cols[:639].all() and not cols[641:].any()
