"""Two-stage models: a torchvision Mask R-CNN export through the same engines (issue 27).

Fixtures: ``tests/fixtures/maskrcnn`` (``scripts/make_maskrcnn_fixtures.py``): a small Mask R-CNN with random weights
exported by ``torch.onnx.export`` and torchvision's eager output on a landscape (1280x720), a portrait (540x960) and
an odd (517x333) frame. ONNX Runtime and OpenVINO (fp32) must give the same detections, matched as sets by class and
box (``match_detections``: every box corner within ``BOX_PX`` = 1 px, scores within ``SCORE`` = 1e-3), and masks at
frame resolution with IoU >= ``MIN_MASK_IOU`` = 0.95 against torchvision's pasted masks; where torchvision's
probability is not within 0.02 of the 0.5 threshold, the pixels must agree exactly.

Measured here (Python 3.11, onnxruntime 1.32, openvino 2026.4, 2 threads) against fixtures made with torch 2.14.1 /
torchvision 0.29.1: box error <= 0.002 px, score error <= 8e-5, mask IoU >= 0.997 for both backends (no pixel
outside the uncertain band differs).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from maskwatch.engines import TWO_STAGE, Letterbox, MaskSpace, Segmenter, TwoStageSegmenter, letterbox, load_engine
from maskwatch.engines.base import TWO_STAGE_INPUT_HW, parse_two_stage_names, two_stage_mask_hw
from maskwatch.engines.postprocess import content_crop, mask_space_of

from .helpers import BOX_PX, FIXTURES, SCORE, STATIC_MODEL, box_iou_matrix, mask_iou, match_detections, unpack_masks

FIX = FIXTURES / "maskrcnn"
MANIFEST = json.loads((FIX / "manifest.json").read_text())
MODEL = FIX / MANIFEST["model"]
FRAMES = list(MANIFEST["frames"])
NAMES = {0: "worker", 1: "excavator", 2: "dump_truck"}  # the metadata's list without '__background__'
BACKENDS = {"onnxruntime": {}, "openvino": {"precision": "fp32"}}  # fp32: bf16 would be another model's arithmetic
MIN_MASK_IOU = 0.95
UNCERTAIN = 0.02  # as the fixture script records masks_uncertain


@functools.cache
def engine(backend: str, **kw):
    return load_engine(MODEL, backend=backend, threads=2, **BACKENDS[backend], **kw)


@functools.cache
def frame(stem: str) -> np.ndarray:
    """The fixture frame, RGB as maskwatch's sources deliver it."""
    spec = MANIFEST["frames"][stem]
    x, y, w, h = spec["crop_xywh"]
    bgr = cv2.imread(str(FIXTURES / spec["file"]))
    return np.ascontiguousarray(bgr[y : y + h, x : x + w, ::-1])


@functools.cache
def reference(stem: str) -> dict:
    with np.load(FIX / f"{stem}.npz") as z:
        return {"boxes": z["boxes"], "scores": z["scores"], "class_id": z["labels"] - 1,
                "masks": unpack_masks(z, "masks"), "uncertain": unpack_masks(z, "masks_uncertain")}


@functools.cache
def raw(backend: str, stem: str) -> list[np.ndarray]:
    """The engine's outputs for the frame at its own size (decoded again by each test with its own settings)."""
    img = frame(stem)
    return engine(backend).infer_image(np.ascontiguousarray(img.transpose(2, 0, 1), np.float32) / np.float32(255))


def own_box(stem: str) -> Letterbox:
    h, w = frame(stem).shape[:2]
    return Letterbox.fit((w, h), (h, w))


def decode(stem: str, backend: str = "onnxruntime", full_masks: bool = True, **kw):
    seg = TwoStageSegmenter(engine(backend), **{"conf": 0.0, **kw})
    (dets,) = seg.postprocess([raw(backend, stem)], [own_box(stem)], full_masks=full_masks)
    return dets


def test_fixtures_are_small_and_useful():
    sizes = [f.stat().st_size for f in FIX.rglob("*") if f.is_file()]
    assert MODEL.stat().st_size < 5e6 and sum(sizes) < 8e6
    assert [frame(s).shape[:2] for s in FRAMES] == [(720, 1280), (960, 540), (333, 517)]
    labels = set()
    for stem in FRAMES:
        ref = reference(stem)
        assert len(ref["boxes"]) == MANIFEST["counts"][stem] >= 20
        assert len(np.unique(np.round(ref["scores"], 3))) >= 18  # distinct scores, not one value for all
        assert ref["masks"].shape == (len(ref["boxes"]), *frame(stem).shape[:2]) and ref["masks"].any(axis=(1, 2)).all()
        labels |= set(ref["class_id"].tolist())
        # the detection cap: the first dropped detection scored well below the last kept one, so a runtime's
        # rounding cannot swap them
        assert MANIFEST["score_gap_at_cap"][stem] > 3 * SCORE
    assert labels == {0, 1, 2}


# ----------------------------------------------------------------------------------------------- layout and names


@pytest.mark.parametrize("backend", BACKENDS)
def test_layout_detected(backend):
    eng = engine(backend)
    meta = eng.meta
    assert meta.layout == TWO_STAGE == "maskrcnn" and meta.two_stage
    assert meta.names == NAMES  # '__background__' dropped: class id = torchvision label - 1
    assert meta.input_hw == TWO_STAGE_INPUT_HW == (1280, 1280)  # no imgsz metadata: the default canvas
    assert meta.proto_hw == (320, 320) and meta.num_masks == 0
    assert (meta.batch, meta.dynamic_batch, meta.backend) == (1, False, backend)
    assert meta.output_index == (0, 1, 2, 3)  # boxes, labels, scores, masks, by name
    seg = Segmenter(eng, conf=0.3)  # the callers that build a Segmenter get the two-stage one
    assert isinstance(seg, TwoStageSegmenter) and not isinstance(seg, Segmenter)
    assert seg.conf == 0.3 and seg.input_hw == (1280, 1280) and seg.host_decode is False
    other = seg.clone()
    assert other is not seg and other.engine is seg.engine and other.conf == seg.conf
    assert not isinstance(Segmenter(load_engine(STATIC_MODEL)), TwoStageSegmenter)  # YOLO stays YOLO


def test_names_mapping():
    bg = ["__background__", "worker", "excavator"]
    want = {0: "worker", 1: "excavator"}
    assert parse_two_stage_names(bg, "t") == want  # torchvision's category list: label k -> class id k - 1
    assert parse_two_stage_names(["worker", "excavator"], "t") == want  # no background: item k is label k + 1
    assert parse_two_stage_names(repr(bg), "t") == want  # the metadata's literal string
    assert parse_two_stage_names({1: "worker", 2: "excavator"}, "t") == want  # keyed by label
    assert parse_two_stage_names({0: "background", 1: "worker", 2: "excavator"}, "t") == want
    assert parse_two_stage_names({0: "worker", 1: "excavator"}, "t") == want  # keyed by class id
    for bad, why in ((["__background__"], "no class besides"), ({2: "a", 5: "b"}, "keys must be"),
                     ("worker", "not a Python literal"), (3, "must be a dict of id -> name or a list")):
        with pytest.raises(ValueError, match=why):
            parse_two_stage_names(bad, "t")


def test_names_from_config_and_metadata(tmp_path):
    # the config's names win over the metadata's, with or without the background
    for given in (["__background__", "a", "b", "c"], ["a", "b", "c"]):
        eng = load_engine(MODEL, names=given, threads=1)
        assert eng.meta.names == {0: "a", 1: "b", 2: "c"}
    # no metadata: names must come from the config; imgsz metadata sets the canvas
    bare = onnx.load(str(MODEL))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ValueError, match="carries no class names"):
        load_engine(tmp_path / "bare.onnx")
    assert load_engine(tmp_path / "bare.onnx", names=["w", "e", "d"]).meta.names == {0: "w", 1: "e", 2: "d"}
    bare.metadata_props.add(key="names", value="['worker', 'excavator', 'dump_truck']")
    bare.metadata_props.add(key="imgsz", value="[736, 1280]")
    onnx.save(bare, str(tmp_path / "sized.onnx"))
    for backend in BACKENDS:
        meta = load_engine(tmp_path / "sized.onnx", backend=backend, threads=1).meta
        assert (meta.names, meta.input_hw, meta.proto_hw) == (NAMES, (736, 1280), (184, 320))


def test_outputs_found_by_rank_and_type_when_unnamed(tmp_path):
    """An export without output_names (numbered outputs), in another order: roles by rank and element type."""
    m = onnx.load(str(MODEL))
    order = ["masks", "scores", "boxes", "labels"]
    for i, name in enumerate(order):
        m.graph.node.append(helper.make_node("Identity", [name], [f"{1000 + i}"]))
    by_name = {o.name: o for o in m.graph.output}
    outs = []
    for i, name in enumerate(order):
        vi = onnx.ValueInfoProto()
        vi.CopyFrom(by_name[name])
        vi.name = f"{1000 + i}"
        outs.append(vi)
    del m.graph.output[:]
    m.graph.output.extend(outs)
    onnx.save(m, str(tmp_path / "unnamed.onnx"))
    stem = "odd_517x333"
    for backend in BACKENDS:
        eng = load_engine(tmp_path / "unnamed.onnx", backend=backend, threads=2, **BACKENDS[backend])
        assert eng.meta.layout == TWO_STAGE and eng.meta.output_index == (2, 3, 1, 0)
        (dets,) = TwoStageSegmenter(eng, conf=0.0).segment_frames([frame(stem)])
        ref = decode(stem, backend, full_masks=False)
        assert np.array_equal(dets.xyxy, ref.xyxy) and np.array_equal(dets.class_id, ref.class_id)
        assert np.array_equal(dets.masks, ref.masks)


def test_label_outside_the_names_is_an_error():
    eng = load_engine(MODEL, names=["worker"], threads=2)  # the model predicts labels 1..3
    with pytest.raises(ValueError, match=r"output label [23], but its names cover labels 1..1"):
        Segmenter(eng, conf=0.0).segment_frames([frame("odd_517x333")])


def _graph_model(path: Path, input_shape: list, outputs: list[tuple[str, np.ndarray, list]]) -> Path:
    """An ONNX model with one float input and constant outputs (plus 0 * mean(input)) of the declared shapes."""
    nodes = [helper.make_node("ReduceMean", ["image"], ["m"], axes=list(range(len(input_shape))), keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"])]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    decl = []
    for name, value, shape in outputs:
        inits.append(numpy_helper.from_array(value, f"{name}_c"))
        if value.dtype == np.float32:
            nodes.append(helper.make_node("Add", ["z", f"{name}_c"], [name]))
        else:
            nodes.append(helper.make_node("Identity", [f"{name}_c"], [name]))
        elem = TensorProto.FLOAT if value.dtype == np.float32 else TensorProto.INT64
        decl.append(helper.make_tensor_value_info(name, elem, shape))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, input_shape)],
                              decl, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(key="names", value="['a', 'b']")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_output_layout_is_a_clear_error(tmp_path, backend):
    f32, i64 = np.float32, np.int64
    cases = {
        # a Mask R-CNN-like image input without labels
        "three_outputs": ([3, "h", "w"], [("boxes", np.zeros((2, 4), f32), ["n", 4]),
                                          ("scores", np.zeros(2, f32), ["n"]),
                                          ("masks", np.zeros((2, 1, 8, 8), f32), ["n", 1, "h", "w"])]),
        # four outputs of the wrong ranks
        "wrong_ranks": ([3, "h", "w"], [("boxes", np.zeros((2, 4, 1), f32), ["n", 4, 1]),
                                        ("labels", np.zeros(2, i64), ["n"]),
                                        ("scores", np.zeros(2, f32), ["n"]),
                                        ("masks", np.zeros((2, 8, 8), f32), ["n", "h", "w"])]),
        # a batched image input with one end-to-end detection output
        "one_output": ([1, 3, 64, 64], [("dets", np.zeros((1, 100, 6), f32), [1, 100, 6])]),
    }
    for case, (shape, outputs) in cases.items():
        path = _graph_model(tmp_path / f"{case}.onnx", shape, outputs)
        with pytest.raises(ValueError) as err:
            load_engine(path, backend=backend, **BACKENDS[backend])
        msg = str(err.value)
        assert "unknown output layout" in msg and "YOLO-seg" in msg and "Mask R-CNN" in msg, (case, msg)
        assert outputs[0][0] in msg  # the outputs it saw are named


def test_engine_entries():
    eng = engine("onnxruntime")
    a = np.zeros((3, 40, 56), np.float32)
    b = np.ascontiguousarray(frame("odd_517x333").transpose(2, 0, 1), np.float32) / np.float32(255)
    outs = eng.infer([a, b])  # a list of images of any sizes: one [boxes, labels, scores, masks] each
    assert len(outs) == 2
    for out, img in zip(outs, (a, b), strict=True):
        boxes, labels, scores, masks = out
        n = len(boxes)
        assert boxes.shape == (n, 4) and labels.dtype == np.int64 and scores.shape == (n,)
        assert masks.shape == (n, 1, *img.shape[1:])
    assert np.array_equal(outs[1][0], raw("onnxruntime", "odd_517x333")[0])
    with pytest.raises(ValueError, match=r"one \(3, H, W\) image"):
        eng.infer_image(b[None])
    with pytest.raises(ValueError, match="float32"):
        eng.infer_image(b.astype(np.float64))
    with pytest.raises(ValueError, match="infer_image is for two-stage models"):
        load_engine(STATIC_MODEL).infer_image(b)


# ------------------------------------------------------------------------------------------------------ parity


@pytest.mark.parametrize("stem", FRAMES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_parity_with_torchvision(backend, stem):
    """The whole path (``segment_frames``: the frame at its own size) against torchvision's eager output."""
    seg = TwoStageSegmenter(engine(backend), conf=0.0)  # torchvision already kept scores > 0.05
    (dets,) = seg.segment_frames([frame(stem)], full_masks=True)
    ref = reference(stem)
    ri, gi = match_detections(dets.xyxy, dets.confidence, dets.class_id, ref["boxes"], ref["scores"],
                              ref["class_id"], box_px=BOX_PX, score=SCORE)
    assert len(ri) == len(ref["boxes"]) == len(dets)
    full = dets.data["masks_full"]
    assert full.shape == ref["masks"].shape
    iou = mask_iou(full[gi], ref["masks"][ri])
    assert iou.min() >= MIN_MASK_IOU, f"worst mask IoU {iou.min():.4f} (reference {ri[iou.argmin()]})"
    differ = full[gi] ^ ref["masks"][ri]
    assert not (differ & ~ref["uncertain"][ri]).any(), "masks differ where torchvision's probability was not near 0.5"


# ----------------------------------------------------------------------------------------------------- filters


def _subset(ref: dict, keep: np.ndarray) -> tuple:
    return ref["boxes"][keep], ref["scores"][keep], ref["class_id"][keep]


@pytest.mark.parametrize("stem", ["landscape_1280x720", "odd_517x333"])
def test_conf_classes_max_det(stem):
    ref = reference(stem)
    scores = ref["scores"]
    conf = float(np.median(scores))
    dets = decode(stem, conf=conf)
    assert 0 < len(dets) < len(scores) and (dets.confidence > conf).all()
    match_detections(dets.xyxy, dets.confidence, dets.class_id, *_subset(ref, scores > conf), conf=conf)

    for cls in sorted(set(ref["class_id"].tolist())):
        dets = decode(stem, classes=[cls])
        assert len(dets) and (dets.class_id == cls).all()
        match_detections(dets.xyxy, dets.confidence, dets.class_id, *_subset(ref, ref["class_id"] == cls))

    order = np.argsort(-scores, kind="stable")
    k = next(k for k in range(5, len(scores)) if scores[order[k - 1]] - scores[order[k]] > SCORE)  # no tie at k
    dets = decode(stem, max_det=k)
    assert len(dets) == k
    match_detections(dets.xyxy, dets.confidence, dets.class_id, *_subset(ref, order[:k]))

    cls = int(ref["class_id"][order[0]])
    dets = decode(stem, conf=0.6, classes=[cls], max_det=3)
    want = [i for i in order if scores[i] > 0.6 and ref["class_id"][i] == cls][:3]
    assert len(dets) == len(want) > 0
    match_detections(dets.xyxy, dets.confidence, dets.class_id, *_subset(ref, np.array(want)))

    with pytest.raises(ValueError, match="unknown class ids"):
        TwoStageSegmenter(engine("onnxruntime"), classes=[7])


@pytest.mark.parametrize(("iou", "agnostic"), [(0.3, False), (0.3, True), (0.45, True)])
def test_stricter_nms_on_the_graphs_output(iou, agnostic):
    """``iou``/``agnostic`` run greedy NMS again: kept detections overlap no more than ``iou`` (any class when
    agnostic), and every dropped one overlaps a kept one that scores higher."""
    removed = 0
    for stem in FRAMES:
        ref = reference(stem)
        dets = decode(stem, iou=iou, agnostic=agnostic, full_masks=False)
        ri, _ = _matched_subset(dets, ref)
        same = np.ones((len(ref["boxes"]),) * 2, bool) if agnostic else ref["class_id"][:, None] == ref["class_id"]
        over = (box_iou_matrix(ref["boxes"], ref["boxes"]) > iou) & same
        np.fill_diagonal(over, False)
        kept = np.zeros(len(ref["boxes"]), bool)
        kept[ri] = True
        assert not over[np.ix_(kept, kept)].any()
        for d in np.flatnonzero(~kept):
            assert (over[d] & kept & (ref["scores"] > ref["scores"][d])).any(), f"{stem}: {d} dropped for nothing"
        removed += int((~kept).sum())
    assert removed > 0  # the setting is stricter than the model's own NMS on these frames


def _matched_subset(dets, ref) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the reference detections ``dets`` holds (each result must be one of them)."""
    iou = box_iou_matrix(dets.xyxy, ref["boxes"])
    ri = iou.argmax(axis=1)
    assert (iou.max(axis=1) > 0.999).all() and len(set(ri.tolist())) == len(ri)
    assert np.array_equal(dets.class_id, ref["class_id"][ri])
    return ri, np.arange(len(ri))


# -------------------------------------------------------------------------------------------------- mask space


@pytest.mark.parametrize("stem", FRAMES)
@pytest.mark.parametrize("path", ["own_size", "canvas"])
def test_mask_space_agrees_with_full_resolution(stem, path):
    img = frame(stem)
    seg = TwoStageSegmenter(engine("onnxruntime"), conf=0.0)
    if path == "own_size":
        (dets,) = seg.segment_frames([img], full_masks=True)
        box = own_box(stem)
    else:  # as the pipeline's sources deliver it: letterboxed into the 1280 x 1280 canvas
        padded, box = letterbox(img, seg.input_hw)
        (dets,) = seg([padded], [box], full_masks=True)
    h, w = img.shape[:2]
    # the YOLO segmenter's mask space for the same canvas: canvas / 4, padding cropped
    assert dets.mask_space == mask_space_of(box, two_stage_mask_hw(box.input_hw))[0]
    assert dets.mask_space.frame_wh == (w, h)
    if path == "canvas":
        assert dets.mask_space == MaskSpace(content_crop((320, 320), (h, w)).wh, (w, h))
    assert dets.masks.shape == (len(dets), *dets.mask_space.mask_wh[::-1]) and len(dets) >= 20
    assert np.array_equal(dets.masks, dets.data["mask_logits"] > 0)  # drawing's edge is the mask's
    assert ((dets.xyxy >= 0) & (dets.xyxy <= [w, h, w, h])).all()
    full = dets.data["masks_full"]
    assert full.shape == (len(dets), h, w)
    mw, mh = dets.mask_space.mask_wh
    cells = np.stack([cv2.resize(f.astype(np.float32), (mw, mh), interpolation=cv2.INTER_AREA) > 0.5 for f in full])
    iou = mask_iou(dets.masks, cells)  # in mask space: the full mask's cells more than half covered
    big = full.sum(axis=(1, 2)) >= 1000
    assert np.median(iou) >= 0.95 and iou[big].min() >= 0.85, (np.median(iou), iou[big].min())
    drawn = mask_iou(dets.mask_space.upsample(dets.masks), full)  # as pipeline/draw.py scales masks up
    assert np.median(drawn) >= 0.9, np.median(drawn)


def test_canvas_path_equals_own_size_when_the_frame_fills_it():
    """A 1280x720 frame in the 1280 x 1280 canvas is not scaled: the pipeline's path gives what the frame at its own
    size gives, in the same mask space."""
    stem = "landscape_1280x720"
    seg = TwoStageSegmenter(engine("onnxruntime"), conf=0.0)
    padded, box = letterbox(frame(stem), seg.input_hw)
    assert box.scale == 1.0 and box.pad_xy == (0, 280)
    (a,) = seg([padded], [box], full_masks=True)
    b = decode(stem)
    assert a.mask_space == b.mask_space
    assert np.allclose(a.xyxy, b.xyxy, rtol=0, atol=1e-3)  # float32 rounding of + 280 then - 280 px
    for x, y in ((a.confidence, b.confidence), (a.class_id, b.class_id), (a.masks, b.masks),
                 (a.data["masks_full"], b.data["masks_full"])):
        assert np.array_equal(x, y)


def test_postprocess_reads_content_and_canvas_outputs():
    """Outputs of the letterbox's content and of the whole canvas map to the same frame boxes and masks."""
    seg = TwoStageSegmenter(engine("onnxruntime"), conf=0.1)
    box = Letterbox.fit((32, 16), (64, 64))  # scaled x2 to 64x32, padded 16 rows above and below
    assert box.pad_xy == (0, 16) and box.new_wh == (64, 32)
    canvas = np.zeros((1, 1, 64, 64), np.float32)
    canvas[0, 0, 20:40, 8:32] = 0.9  # rows 20..39 of the canvas: frame rows 2..11
    out_canvas = [np.array([[8, 20, 32, 40]], np.float32), np.array([2]), np.array([0.8], np.float32), canvas]
    out_content = [np.array([[8, 4, 32, 24]], np.float32), np.array([2]), np.array([0.8], np.float32),
                   canvas[:, :, 16:48]]
    a, b = seg.postprocess([out_canvas, out_content], [box, box], full_masks=True)
    for d in (a, b):
        assert np.allclose(d.xyxy, [[4, 2, 16, 12]]) and d.class_id.tolist() == [1]
        full = np.zeros((16, 32), bool)
        full[2:12, 4:16] = True
        assert np.array_equal(d.data["masks_full"][0], full)
        assert d.mask_space == MaskSpace((16, 8), (32, 16)) and d.masks.sum() == 5 * 6
    low = [out_canvas[0], out_canvas[1], np.array([0.05], np.float32), canvas]  # under conf
    assert len(seg.postprocess([low], [box])[0]) == 0
    with pytest.raises(ValueError, match="fit neither"):
        seg.postprocess([[out_canvas[0], out_canvas[1], out_canvas[2], canvas[:, :, :40]]], [box])


# ---------------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    from tests.conftest import write_clip

    return write_clip(tmp_path_factory.mktemp("maskrcnn-clip") / "clip.mp4", frames=8, size=(640, 360))


def test_pipeline_end_to_end(tmp_path, small_clip):
    """``maskwatch run``'s pipeline with the Mask R-CNN file: the factory picks the two-stage segmenter, the tracker,
    zone rules and alerts downstream work unchanged."""
    from maskwatch.pipeline.config import load_config
    from maskwatch.pipeline.factory import build_segmenter
    from maskwatch.pipeline.stages import Pipeline
    from tests.conftest import write_config

    cfg_path = write_config(tmp_path, MODEL, small_clip, list(NAMES.values()), conf=0.05)
    cfg = load_config(cfg_path)
    seg = build_segmenter(cfg.model, cfg_path, cfg.tracker)
    assert isinstance(seg, TwoStageSegmenter) and seg.conf == 0.05
    pipe = Pipeline(cfg, seg)
    pipe.start()
    pipe.wait()
    assert pipe.failure is None
    _, dets, _, _ = pipe.latest["cam1"]
    assert dets.mask_space.frame_wh == (640, 360) and dets.mask_space.mask_wh == (320, 180)
    assert len(dets) and dets.tracker_id is not None
    events = [json.loads(x) for x in (tmp_path / "var/alerts.jsonl").read_text().splitlines()]
    starts = [e for e in events if e["type"] == "start"]
    assert starts and starts[0]["rule"] == "anything" and starts[0]["zone"] == "all"
    assert {o["class"] for e in starts for o in e["objects"]} <= set(NAMES.values())
    assert any(e["type"] == "end" for e in events)  # ended at the end of the file


def test_predict_end_to_end(tmp_path, small_clip):
    """``maskwatch predict`` (which builds a plain Segmenter) writes COCO results with frame-resolution masks."""
    out = tmp_path / "pred.json"
    proc = subprocess.run([sys.executable, "-m", "maskwatch", "predict", str(MODEL), str(small_clip), "--out", str(out),
                           "--conf", "0.05", "--max-frames", "3"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert results and {r["image_id"] for r in results} <= {0, 1, 2}
    for r in results:
        assert r["category_name"] == NAMES[r["category_id"]] and r["score"] > 0.05
        assert r["segmentation"]["size"] == [360, 640]
        x, y, w, h = r["bbox"]
        assert 0 <= x <= x + w <= 640 and 0 <= y <= y + h <= 360
