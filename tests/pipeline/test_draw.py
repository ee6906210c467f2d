"""draw.annotate: smooth masks at the drawn image's resolution, painted only inside their boxes,
drawn on an image of another size than the frame (``frame_wh``), and the plain cases.

Pixel comparisons use tolerances: OpenCV's SIMD paths differ between CPUs in the last bits.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskwatch.engines.results import Detections, MaskSpace
from maskwatch.pipeline.draw import _colour, annotate

S = 4  # frame pixels per mask cell, as a model's 1/4-resolution prototypes give
NAMES = {0: "person", 1: "car"}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def ellipse(frame_wh: tuple[int, int], cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    """The true shape at frame resolution (pixel centres inside the ellipse)."""
    yy, xx = np.mgrid[0:frame_wh[1], 0:frame_wh[0]]
    return ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1


def to_mask_space(truth: np.ndarray) -> tuple[np.ndarray, MaskSpace]:
    """Area-average S x S blocks and threshold, as a model's low-resolution mask would be."""
    fh, fw = truth.shape
    cover = truth.reshape(fh // S, S, fw // S, S).mean(axis=(1, 3))
    return cover > 0.5, MaskSpace((fw // S, fh // S), (fw, fh))


def dets_of(boxes, masks, ms, tracker_id=(3,), class_id=None) -> Detections:
    n = len(boxes)
    return Detections(np.asarray(boxes, np.float32), np.full(n, 0.9, np.float32),
                      np.zeros(n, np.int32) if class_id is None else class_id, masks, ms,
                      tracker_id=None if tracker_id is None else np.asarray(tracker_id))


def painted(image: np.ndarray, boxes, masks: np.ndarray, ms: MaskSpace, **kw) -> tuple[np.ndarray, np.ndarray]:
    """(annotated image, where the masks changed it): the same drawing with empty masks differs
    from it only by the mask paint (box outline and label are drawn over both alike)."""
    out = annotate(image, dets_of(boxes, masks, ms), NAMES, {}, set(), **kw)
    bare = annotate(image, dets_of(boxes, np.zeros_like(masks), ms), NAMES, {}, set(), **kw)
    return out, (out != bare).any(axis=2)


# (centre x, centre y, semi-axes) off the mask grid; (IoU floor, most mismatched pixels vs block upsampling)
SHAPES = [
    pytest.param((300.3, 200.7, 60.0, 60.0), 0.97, 0.90, id="disc-r60"),
    pytest.param((320.6, 240.2, 90.0, 45.0), 0.965, 0.90, id="ellipse-90x45"),
]


@pytest.mark.parametrize(("shape", "min_iou", "max_err_ratio"), SHAPES)
def test_masks_are_smooth_and_accurate_at_image_resolution(shape, min_iou, max_err_ratio):
    cx, cy, ax, ay = shape
    truth = ellipse((640, 480), cx, cy, ax, ay)
    mask, ms = to_mask_space(truth)
    box = [cx - ax - 6, cy - ay - 6, cx + ax + 6, cy + ay + 6]
    black = np.zeros((480, 640, 3), np.uint8)
    out, paint = painted(black, [box], mask[None], ms)

    # the colour of track 3 at alpha 0.45 over black, everywhere it painted
    expect = 0.45 * np.array(_colour(3), np.float64)
    assert np.abs(out[paint].astype(np.float64) - expect).max() <= 1.0

    smooth = iou(paint, truth)
    blocks = np.repeat(np.repeat(mask, S, axis=0), S, axis=1)  # nearest-neighbour upsampling
    nearest = iou(blocks, truth)
    # measured here: disc 0.975 vs 0.969 (289 vs 353 wrong pixels); ellipse 0.974 vs 0.969 (341 vs 401)
    assert smooth >= min_iou, (smooth, nearest)
    assert smooth > nearest, (smooth, nearest)
    wrong, wrong_blocks = int((paint ^ truth).sum()), int((blocks ^ truth).sum())
    assert wrong <= max_err_ratio * wrong_blocks, (wrong, wrong_blocks)

    # no shift of the edge by half a cell (2 px): the centroids agree to a fraction of a pixel
    ys, xs = np.nonzero(paint)
    ty, tx = np.nonzero(truth)
    assert abs(xs.mean() - tx.mean()) < 0.3 and abs(ys.mean() - ty.mean()) < 0.3

    # not mask-space blocks: the corners of the cell staircase are cut, so row ends leave the cell grid
    # (measured: 30% / 36% of the left ends; block upsampling: none). Bilinear on a boolean mask keeps the
    # straight runs on cell edges: the 0.5 level between an empty and a full cell is their common edge.
    def off_grid(region: np.ndarray) -> np.ndarray:
        rows = np.nonzero(region.any(axis=1))[0]
        left = np.array([np.argmax(region[r]) for r in rows])
        right = np.array([region.shape[1] - 1 - np.argmax(region[r, ::-1]) for r in rows])
        return np.concatenate([left % S != 0, right % S != S - 1])

    assert off_grid(paint).mean() >= 0.2
    assert not off_grid(blocks).any()  # what the check above rules out


@pytest.mark.parametrize("image_wh", [(640, 480), (320, 240)])
def test_a_detection_paints_nothing_outside_its_box(image_wh):
    ms = MaskSpace((160, 120), (640, 480))
    mask = np.ones((1, 120, 160), bool)  # the whole raster: only the box can limit the paint
    box = np.array([101.3, 77.6, 250.2, 190.9])
    iw, ih = image_wh
    image = np.full((ih, iw, 3), 30, np.uint8)
    _, paint = painted(image, [box], mask, ms)
    r = iw / 640
    x0, y0, x1, y1 = (int(np.ceil((v + 0.5) * r - 0.5)) for v in box)  # pixel centres in [x1, x2) x [y1, y2)
    inside = np.zeros_like(paint)
    inside[y0:y1, x0:x1] = True
    assert not paint[~inside].any()
    assert paint.sum() >= 0.9 * inside.sum()  # and it did paint the box (all but the outline)


def test_box_at_the_frame_edge_and_overlaps_last_detection_wins():
    ms = MaskSpace((160, 120), (640, 480))
    masks = np.ones((2, 120, 160), bool)
    boxes = [[-20.0, 300.0, 200.0, 500.0], [100.0, 350.0, 300.0, 470.0]]  # first crosses two frame edges
    out = annotate(np.zeros((480, 640, 3), np.uint8), dets_of(boxes, masks, ms, tracker_id=[1, 2]), NAMES, {}, set())
    one, two = 0.45 * np.array(_colour(1)), 0.45 * np.array(_colour(2))
    assert np.abs(out[400, 50].astype(float) - one).max() <= 1.0
    # where both masks lie the later one's colour is blended once (the earlier look: one overlay)
    assert np.abs(out[400, 150].astype(float) - two).max() <= 1.0
    assert np.abs(out[400, 250].astype(float) - two).max() <= 1.0


def test_half_size_image_draws_the_same_shape_as_downscaling_the_full_one():
    truth = ellipse((1280, 720), 611.3, 333.8, 150.0, 95.0)
    mask, ms = to_mask_space(truth)
    box = [611.3 - 156, 333.8 - 101, 611.3 + 156, 333.8 + 101]
    _, full = painted(np.zeros((720, 1280, 3), np.uint8), [box], mask[None], ms)
    half_img, half = painted(np.zeros((360, 640, 3), np.uint8), [box], mask[None], ms)
    _, half_explicit = painted(np.zeros((360, 640, 3), np.uint8), [box], mask[None], ms, frame_wh=(1280, 720))
    assert np.array_equal(half, half_explicit)  # the default frame_wh is the mask space's frame
    down = cv2.resize(full.astype(np.float32), (640, 360), interpolation=cv2.INTER_AREA) > 0.5
    agree = iou(half, down)
    assert agree >= 0.98, agree  # measured 1.0 (0 differing pixels); 0.986 against the true shape
    assert iou(half, cv2.resize(truth.astype(np.float32), (640, 360), interpolation=cv2.INTER_AREA) > 0.5) >= 0.97
    # and not drawn unscaled: the top-left quarter of the frame would hold a quarter of the shape
    assert half[:, :320].sum() > 0.35 * half.sum()
    assert half_img.shape == (360, 640, 3)


def test_boxes_and_zones_scale_with_frame_wh():
    black = np.zeros((360, 640, 3), np.uint8)
    dets = dets_of([[200.0, 100.0, 600.0, 500.0]], None, None, tracker_id=[5])
    out = annotate(black, dets, NAMES, {}, set(), frame_wh=(1280, 720))
    # box (200, 100)-(600, 500) in frame pixels -> (100, 50)-(300, 250) in this image
    assert out[150, 100].any() and out[150, 300].any() and out[50, 200].any() and out[250, 200].any()
    assert not out[150, 200].any() and not out[300, 150].any()
    # without frame_wh nor a mask space the image is the frame: the box lands at (200, 100)-(600, 500)
    same = annotate(black, dets, NAMES, {}, set())
    assert same[150, 200].any() and not same[150, 100].any()

    poly = np.array([[400.0, 200.0], [1000.0, 200.0], [1000.0, 600.0], [400.0, 600.0]])
    zoned = annotate(black, Detections.empty(), NAMES, {"door": poly}, {"door"}, frame_wh=(1280, 720))
    lit = zoned.any(axis=2)
    expect = np.zeros((360, 640), np.uint8)
    cv2.fillPoly(expect, [np.round((poly + 0.5) * 0.5 - 0.5).astype(np.int32)], 1)
    assert iou(lit, expect.astype(bool)) >= 0.95  # the fill, the outline and the label around it


def test_plain_cases_and_the_input_is_not_modified():
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    before = image.copy()
    ms = MaskSpace((80, 60), (320, 240))

    out = annotate(image, Detections.empty(), NAMES, {}, set())
    assert np.array_equal(out, before) and out is not image
    out = annotate(image, Detections.empty(ms), NAMES, {}, set(), frame_wh=(640, 480))
    assert np.array_equal(out, before)

    masks = np.zeros((2, 60, 80), bool)
    masks[0, 10:30, 10:30] = True
    masks[1, 30:50, 40:70] = True
    boxes = [[36.0, 36.0, 124.0, 124.0], [156.0, 116.0, 284.0, 204.0]]
    for dets in (dets_of(boxes, masks, ms, tracker_id=None, class_id=[0, 7]),  # no tracks; an unnamed class
                 dets_of(boxes, None, None, tracker_id=[4, 9]),  # no masks
                 dets_of(boxes, masks, ms, tracker_id=[4, 9])):
        zones = {"z": np.array([[10.0, 10.0], [100.0, 10.0], [60.0, 90.0]])}
        out = annotate(image, dets, NAMES, zones, {"z"})
        assert out.shape == image.shape and out.dtype == np.uint8
        assert not np.array_equal(out, before)
        assert np.array_equal(image, before)  # the input is left as it was
        # the mask interiors are tinted only when there are masks
        tinted = (out[80, 80] != before[80, 80]).any()
        assert tinted == (dets.masks is not None)


def test_drawn_masks_follow_the_model_logits_as_retina_masks_do():
    """With the segmenter's mask logits (``data["mask_logits"]``) a drawn mask is the model's own frame-resolution
    mask (Ultralytics' retina_masks: the logits resampled bilinearly, then thresholded), not an upsampled
    boolean: measured median IoU 1.000 against 0.82 for the boolean masks on these frames."""
    from pathlib import Path

    from maskwatch.engines import Segmenter, letterbox, load_engine
    from maskwatch.scenes import make_scene

    model = Path(__file__).resolve().parents[2] / "models" / "maskwatch-demo-seg.onnx"
    seg = Segmenter(load_engine(model, "onnxruntime", threads=2), conf=0.35, iou=0.6)
    ious = {"logits": [], "boolean": []}
    for scene, seed in (("site", 21_000_031), ("pitch", 21_000_032)):
        bgr, _ = make_scene(scene, seed, 1280, 720).render(2.0)
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        img, box = letterbox(rgb, seg.input_hw)
        d = seg([img], [box], full_masks=True)[0]
        assert d.data["mask_logits"].shape == d.masks.shape
        plain = Detections(d.xyxy, d.confidence, d.class_id, d.masks, d.mask_space)
        for i in range(len(d)):
            x1, y1, x2, y2 = (int(round(v)) for v in d.xyxy[i])
            inner = np.zeros(rgb.shape[:2], bool)
            inner[y1 + 2:y2 - 2, x1 + 2:x2 - 2] = True  # inside the box, off its outline
            want = d.data["masks_full"][i] & inner
            if want.sum() < 200:
                continue
            for mode, dets in (("logits", d), ("boolean", plain)):
                one = dets[i]
                one.tracker_id = np.array([1])
                painted = (annotate(np.zeros_like(rgb), one, {}, {}, set()).max(axis=2) > 20) & inner
                ious[mode].append((painted & want).sum() / (painted | want).sum())
    assert len(ious["logits"]) >= 10
    assert np.median(ious["logits"]) >= 0.98 and np.percentile(ious["logits"], 10) >= 0.95, ious
    assert np.median(ious["logits"]) >= np.median(ious["boolean"]) + 0.05, ious
