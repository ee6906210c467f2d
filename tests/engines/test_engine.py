"""Loading models: metadata, layouts, backends, batching, and the Segmenter end to end."""

from __future__ import annotations

import ast

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from maskwatch import engines
from maskwatch.engines import Detections, Letterbox, MaskSpace, Segmenter, letterbox, load_engine
from maskwatch.engines.base import detect_layout, expected_anchors

from .helpers import (
    DYNAMIC_MODEL,
    NAMES,
    PARITY,
    SCORE,
    STATIC_MODEL,
    anchors,
    const_model,
    match_detections,
    strip_metadata,
    v5_output,
    v8_output,
)

FRAMES = sorted((PARITY / "frames").glob("*.png"))


def rgb_frames() -> list[np.ndarray]:
    return [np.ascontiguousarray(cv2.imread(str(p))[..., ::-1]) for p in FRAMES]


@pytest.fixture(scope="module")
def static_engine():
    eng = load_engine(STATIC_MODEL, threads=2)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def dynamic_engine():
    eng = load_engine(DYNAMIC_MODEL, threads=2)
    yield eng
    eng.close()


def test_public_api():
    api = ("ModelMeta", "Engine", "load_engine", "Letterbox", "letterbox", "Segmenter", "Detections", "MaskSpace")
    for name in api:
        assert hasattr(engines, name), name


@pytest.mark.parametrize(
    "model, input_hw, proto_hw, dynamic",
    [(STATIC_MODEL, (384, 640), (96, 160), False), (DYNAMIC_MODEL, (320, 320), (80, 80), True)],
)
def test_metadata_from_ultralytics_export(model, input_hw, proto_hw, dynamic):
    with load_engine(model) as eng:
        meta = eng.meta
    assert meta.names == NAMES
    assert meta.input_hw == input_hw and meta.input_wh == input_hw[::-1]
    assert meta.proto_hw == proto_hw
    assert meta.stride == 32 and meta.batch == 1 and meta.dynamic_batch is dynamic
    assert meta.layout == "v8" and meta.num_masks == 32 and meta.nc == 3
    assert meta.backend == "onnxruntime" and meta.path == model
    assert meta.task == "segment"


def test_infer_outputs(static_engine):
    x = np.random.default_rng(0).random((1, 3, 384, 640), dtype=np.float32)
    pred, protos = static_engine.infer(x)
    assert pred.shape == (1, 4 + 3 + 32, expected_anchors((384, 640))) and pred.dtype == np.float32
    assert protos.shape == (1, 32, 96, 160)


@pytest.mark.parametrize("batch", [2, 3])
def test_static_batch_model_loops_and_dynamic_model_batches(static_engine, dynamic_engine, batch):
    rng = np.random.default_rng(batch)
    for eng in (static_engine, dynamic_engine):
        h, w = eng.meta.input_hw
        x = rng.random((batch, 3, h, w), dtype=np.float32)
        together = eng.infer(x)
        one_by_one = [eng.infer(x[i : i + 1]) for i in range(batch)]
        for k in range(2):
            assert together[k].shape[0] == batch
            np.testing.assert_allclose(together[k], np.concatenate([o[k] for o in one_by_one]), rtol=1e-4, atol=1e-4)


# A batch of frames vs one frame at a time, through the same ONNX Runtime session. ONNX Runtime may choose other
# kernels for another batch size (by CPU), so scores and boxes may differ in the last bits and detections whose
# scores are that close may swap places: detections are compared as sets (helpers.match_detections: same class,
# boxes within BATCH_BOX_PX, scores within SCORE, a score within SCORE of conf may fall on either side of it), masks
# per matched pair. Measured on an AMD EPYC (Zen 4, AVX-512): the batched outputs are bit-identical to the single
# ones (boxes, scores, masks differ by 0); the closest score to conf 0.1 is 7.5e-4 above it (static model), 1.9e-3
# (dynamic, the one that batches).
BATCH_BOX_PX = 1e-2  # frame pixels
BATCH_MASK_PIXELS = 1e-3  # fraction of the matched detections' mask pixels that may differ


def test_segmenter_batch_equals_single_frames(dynamic_engine, static_engine):
    frames = rgb_frames()
    for eng in (dynamic_engine, static_engine):
        seg = Segmenter(eng, conf=0.1)
        boxed = [letterbox(f, seg.input_hw) for f in frames]
        batch = seg([b[0] for b in boxed], [b[1] for b in boxed])
        assert len(batch) == len(frames)
        total = 0
        for (img, box), got in zip(boxed, batch, strict=True):
            (single,) = seg([img], [box])
            ri, gi = match_detections(got.xyxy, got.confidence, got.class_id, single.xyxy, single.confidence,
                                      single.class_id, conf=seg.conf, box_px=BATCH_BOX_PX, score=SCORE)
            total += len(ri)
            assert got.masks.shape[1:] == single.masks.shape[1:]
            a, b = got.masks[gi], single.masks[ri]
            assert np.count_nonzero(a != b) <= BATCH_MASK_PIXELS * a.size
        assert total > 0


def test_segmenter_result_shapes(static_engine):
    frame = rgb_frames()[FRAMES.index(PARITY / "frames" / "site_1280x720.png")]
    seg = Segmenter(static_engine, conf=0.1, max_det=10)
    img, box = letterbox(frame, seg.input_hw)
    (d,) = seg([img], [box], full_masks=True)
    assert isinstance(d, Detections) and 0 < len(d) <= 10
    assert d.mask_space == MaskSpace((160, 90), (1280, 720))
    assert d.masks.shape == (len(d), 90, 160)
    assert d.data["masks_full"].shape == (len(d), 720, 1280)
    assert (d.xyxy[:, [0, 2]] <= 1280).all() and (d.xyxy[:, [1, 3]] <= 720).all() and (d.xyxy >= 0).all()
    assert (np.diff(d.confidence) <= 0).all()  # best first
    assert d.masks.any(axis=(1, 2)).all() and d.data["masks_full"].any(axis=(1, 2)).all()
    # mask space and frame masks agree on where each object is (coarsely: upsampled mask space vs exact)
    up = d.mask_space.upsample(d.masks)
    inter = (up & d.data["masks_full"]).sum((1, 2))
    assert (inter > 0).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"conf": 1.5}, "conf must be in"),
        ({"iou": -0.1}, "iou must be in"),
        ({"max_det": 0}, "max_det must be"),
        ({"classes": [7]}, "unknown class ids"),
        ({"classes": []}, "empty list"),
    ],
)
def test_segmenter_rejects_bad_settings(static_engine, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Segmenter(static_engine, **kwargs)


def test_segmenter_rejects_wrong_inputs(static_engine):
    seg = Segmenter(static_engine)
    good = np.zeros((384, 640, 3), np.uint8)
    box = Letterbox.fit((1280, 720), (384, 640))
    with pytest.raises(ValueError, match="2 images but 1 letterboxes"):
        seg([good, good], [box])
    with pytest.raises(ValueError, match=r"expected a letterboxed RGB uint8 image of shape \(384, 640, 3\)"):
        seg([np.zeros((320, 320, 3), np.uint8)], [box])
    with pytest.raises(ValueError, match="letterbox for input"):
        seg([good], [Letterbox.fit((1280, 720), (320, 320))])
    with pytest.raises(ValueError, match=r"infer expects a \(B, 3, 384, 640\) batch"):
        static_engine.infer(np.zeros((1, 3, 320, 320), np.float32))
    with pytest.raises(ValueError, match="infer expects float32"):
        static_engine.infer(np.zeros((1, 3, 384, 640), np.float64))
    assert seg([], []) == []


# ------------------------------------------------------------------------------------- no metadata


def test_model_without_metadata_needs_names(tmp_path):
    bare = strip_metadata(STATIC_MODEL, tmp_path / "bare.onnx")
    with pytest.raises(ValueError, match="no class names.*pass names"):
        load_engine(bare)
    with load_engine(bare, names=["a", "b", "c"]) as eng:
        assert eng.meta.names == {0: "a", 1: "b", 2: "c"}
        assert eng.meta.input_hw == (384, 640) and eng.meta.stride == 32  # from the input shape; default stride
    with load_engine(bare, names={0: "x", 1: "y", 2: "z"}) as eng:
        assert eng.meta.names == {0: "x", 1: "y", 2: "z"}
    with pytest.raises(ValueError, match="predicts 3 classes.*lists 2"):
        load_engine(bare, names=["a", "b"])


def test_config_names_override_model_names():
    with load_engine(STATIC_MODEL, names=["person", "digger", "truck"]) as eng:
        assert eng.meta.names == {0: "person", 1: "digger", 2: "truck"}


def test_dynamic_model_without_metadata_needs_imgsz(tmp_path):
    bare = strip_metadata(DYNAMIC_MODEL, tmp_path / "bare-dynamic.onnx")
    with pytest.raises(ValueError, match="dynamic height/width.*no 'imgsz' metadata"):
        load_engine(bare, names=["a", "b", "c"])


@pytest.mark.parametrize(
    "names, match",
    [
        ("{0: 'a', 2: 'b'}", "class ids in 'names' must be 0..1"),
        ("not python", "not a Python literal"),
        ("42", "must be a dict of id -> name or a list"),
        ("{'a': 'b'}", "keys must be class ids"),
    ],
)
def test_bad_names_metadata(tmp_path, names, match):
    hw = (64, 64)
    pred = v8_output([], 2, 4, anchors(hw))
    path = const_model(tmp_path / "m.onnx", pred, np.zeros((1, 4, 16, 16), np.float32), [1, 3, *hw], {"names": names})
    with pytest.raises(ValueError, match=match):
        load_engine(path)


# ---------------------------------------------------------------------------------- synthetic models

HW = (64, 96)  # rectangular
NM = 4


def _coef(v: float) -> np.ndarray:
    return np.full(NM, v, np.float32)


def _protos() -> np.ndarray:
    return np.ones((1, NM, HW[0] // 4, HW[1] // 4), np.float32)  # logit = sum(coef) everywhere


@pytest.mark.parametrize("layout", ["v8", "v5"])
@pytest.mark.parametrize("batch_dim", [1, "batch"])
def test_synthetic_model_end_to_end(tmp_path, layout, batch_dim):
    a = anchors(HW)
    if layout == "v8":
        pred = v8_output([(3, 48, 32, 32, 16, 1, 0.9, _coef(1)), (9, 20, 20, 8, 8, 0, 0.8, _coef(-1))], 2, NM, a)
    else:
        pred = v5_output(
            [(3, 48, 32, 32, 16, 1.0, 1, 0.9, _coef(1)), (9, 20, 20, 8, 8, 1.0, 0, 0.8, _coef(-1))], 2, NM, 3 * a
        )
    meta = {"names": "{0: 'cat', 1: 'dog'}", "imgsz": str(list(HW)), "stride": "32"}
    path = const_model(tmp_path / f"{layout}.onnx", pred, _protos(), [batch_dim, 3, *HW], meta)
    with load_engine(path) as eng:
        assert eng.meta.layout == layout and eng.meta.nc == 2 and eng.meta.num_masks == NM
        assert eng.meta.dynamic_batch is (batch_dim == "batch")
        seg = Segmenter(eng, conf=0.5)
        frame = np.zeros((96, 192, 3), np.uint8)  # letterboxed into 64x96 at scale 0.5, pad top 8
        img, box = letterbox(frame, HW)
        assert box.pad_xy == (0, 8) and box.scale == 0.5
        dets = seg([img, img, img], [box] * 3, full_masks=True)
    assert len(dets) == 3
    for d in dets:
        # the second detection's mask is all negative logits: dropped, as Ultralytics drops empty masks
        assert len(d) == 1 and d.class_id.tolist() == [1]
        assert d.confidence.tolist() == [pytest.approx(0.9)]
        # (48 +- 16, 32 +- 8) input px -> minus pad (0, 8) -> / 0.5
        np.testing.assert_allclose(d.xyxy, [[64, 32, 128, 64]])
        assert d.mask_space == MaskSpace((24, 12), (192, 96))
        expected = np.zeros((12, 24), bool)
        expected[4:8, 8:16] = True  # box / 4 in prototype px, minus crop top 2
        np.testing.assert_array_equal(d.masks[0], expected)
        full = np.zeros((96, 192), bool)
        full[32:64, 64:128] = True
        np.testing.assert_array_equal(d.data["masks_full"][0], full)


def test_static_batch_of_two_pads_the_last_chunk(tmp_path):
    pred = v8_output([(3, 48, 32, 32, 16, 1, 0.9, _coef(1))], 2, NM, anchors(HW))
    path = const_model(tmp_path / "b2.onnx", pred, _protos(), [2, 3, *HW], {"names": "['a', 'b']"})
    with load_engine(path) as eng:
        assert eng.meta.batch == 2 and not eng.meta.dynamic_batch
        for b in (1, 2, 3, 5):
            out_pred, out_protos = eng.infer(np.zeros((b, 3, *HW), np.float32))
            assert out_pred.shape == (b, *pred.shape[1:]) and out_protos.shape == (b, NM, 16, 24)
            np.testing.assert_array_equal(out_pred, np.repeat(pred, b, axis=0))
        seg = Segmenter(eng, conf=0.5)
        img, box = letterbox(np.zeros((96, 192, 3), np.uint8), HW)
        assert [len(d) for d in seg([img] * 3, [box] * 3)] == [1, 1, 1]


def test_float16_input_model(tmp_path):
    pred = v8_output([(3, 48, 32, 32, 16, 1, 0.9, _coef(1))], 2, NM, anchors(HW))
    path = const_model(tmp_path / "half.onnx", pred, _protos(), [1, 3, *HW], {"names": "['a', 'b']"}, half=True)
    with load_engine(path) as eng:
        assert eng.meta.input_dtype == "float16"
        out_pred, _ = eng.infer(np.zeros((1, 3, *HW), np.float32))  # float32 in, cast by the engine
        assert out_pred.dtype == np.float32
        np.testing.assert_array_equal(out_pred, pred)


def test_synthetic_model_with_nothing_above_conf(tmp_path):
    pred = v8_output([], 2, NM, anchors(HW), fill_score=0.1)
    path = const_model(tmp_path / "empty.onnx", pred, _protos(), [1, 3, *HW], {"names": "['a', 'b']"})
    with load_engine(path) as eng:
        seg = Segmenter(eng, conf=0.25)
        img, box = letterbox(np.zeros((96, 192, 3), np.uint8), HW)
        (d,) = seg([img], [box], full_masks=True)
        (d2,) = seg([img], [box])
    for det in (d, d2):
        assert len(det) == 0
        assert det.masks.shape == (0, 12, 24)
        assert det.xyxy.shape == (0, 4)
    assert d.data["masks_full"].shape == (0, 96, 192)
    assert "masks_full" not in d2.data


def test_end_to_end_outputs_are_rejected(tmp_path):
    pred = np.zeros((1, 300, 6 + NM), np.float32)
    path = const_model(tmp_path / "e2e.onnx", pred, _protos(), [1, 3, *HW], {"names": "['a', 'b']"})
    with pytest.raises(ValueError, match="end-to-end"):
        load_engine(path)


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((4 + 80 + 32, 8400), ("v8", 80)),
        ((25200, 5 + 80 + 32), ("v5", 80)),
        ((4 + 3 + 32, 5040), ("v8", 3)),
        ((3 * 5040, 5 + 1 + 32), ("v5", 1)),
        ((4 + 2 + 32, 1000), ("v8", 2)),  # odd anchor count: fewer channels than anchors
    ],
)
def test_detect_layout(shape, expected):
    hw = (640, 640) if 8400 in shape or 25200 in shape else (384, 640)
    assert detect_layout(shape, 32, hw, "m.onnx") == expected


# ------------------------------------------------------------------------------------------ backends


@pytest.mark.parametrize(
    "filename, backend, error, match",
    [
        ("m.onnx", "nope", ValueError, "unknown engine backend 'nope'"),
        ("m.engine", "auto", ValueError, "TensorRT"),  # not installed, or cannot deserialize the file
        ("m.onnx", "tensorrt", ValueError, "TensorRT|not a readable ONNX model"),
        ("m.torchscript", "auto", ValueError, "PyTorch cannot load the TorchScript model"),
        ("m.xyz", "auto", ValueError, "no backend reads '.xyz'"),
        ("missing.onnx", "auto", FileNotFoundError, "model file not found"),
        ("garbage.onnx", "onnxruntime", ValueError, "onnxruntime cannot load"),
    ],
)
def test_backend_errors(tmp_path, filename, backend, error, match):
    path = tmp_path / filename
    if filename != "missing.onnx":
        path.write_bytes(b"not a model")
    with pytest.raises(error, match=match):
        load_engine(path, backend=backend)


def test_registry_lists_every_backend():
    names = engines.backends()
    assert set(names) >= {"onnxruntime", "tensorrt", "torchscript"}
    assert all(names[n].loader is not None for n in ("onnxruntime", "tensorrt", "torchscript"))
    assert ".onnx" in names["onnxruntime"].suffixes


def test_cuda_device_needs_the_cuda_provider():
    if "CUDAExecutionProvider" in ort.get_available_providers():
        with load_engine(STATIC_MODEL, device="cuda") as eng:
            assert eng.providers[0] == "CUDAExecutionProvider"
    else:
        with pytest.raises(ValueError, match="no CUDAExecutionProvider"):
            load_engine(STATIC_MODEL, device="cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        load_engine(STATIC_MODEL, device="tpu")
    with pytest.raises(ValueError, match="threads must be >= 0"):
        load_engine(STATIC_MODEL, threads=-1)
    with load_engine(STATIC_MODEL, device="auto", threads=1) as eng:
        assert eng.providers[-1] == "CPUExecutionProvider"


@pytest.mark.parametrize("threads, expected", [(2, 2), (1, 1), (None, 0)])
def test_session_options(threads, expected):
    with load_engine(DYNAMIC_MODEL, threads=threads) as eng:
        opts = eng.session_options
        assert opts.intra_op_num_threads == expected
        assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_closed_engine_refuses_to_run(tmp_path):
    eng = load_engine(DYNAMIC_MODEL)
    eng.close()
    with pytest.raises(RuntimeError, match="closed"):
        eng.infer(np.zeros((1, 3, 320, 320), np.float32))


def test_metadata_is_kept_raw():
    with load_engine(STATIC_MODEL) as eng:
        assert ast.literal_eval(eng.meta.metadata["imgsz"]) == [384, 640]
