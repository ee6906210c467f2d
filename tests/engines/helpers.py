"""Test helpers: tiny ONNX models with known outputs, fixture paths, raw-output builders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = FIXTURES / "models"
PARITY = FIXTURES / "parity"
STATIC_MODEL = MODELS / "yolo11n-seg-random-384x640.onnx"  # YOLO11n-seg, static batch 1, 384x640
DYNAMIC_MODEL = MODELS / "yolo11-tiny-seg-random-dynamic.onnx"  # tiny YOLO11-seg, dynamic batch/h/w, imgsz 320
NAMES = {0: "worker", 1: "excavator", 2: "dump_truck"}


def const_model(
    path: Path,
    pred: np.ndarray,
    protos: np.ndarray,
    input_shape: list,
    metadata: dict[str, str] | None = None,
    half: bool = False,
) -> Path:
    """An ONNX model whose outputs are ``pred`` (1, C, N) and ``protos`` (1, nm, h, w) whatever the input.

    The outputs are broadcast over the input's batch (``0 * mean(images)`` is added), so a symbolic batch
    axis in ``input_shape`` (a string) works. ``half``: the input is float16 (cast to float32 inside).
    """
    nodes = [
        helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=1),  # (B,1,1,1)
        helper.make_node("Mul", ["m", "zero"], ["z4"]),
        helper.make_node("Reshape", ["z4", "shape3"], ["z3"]),  # (B,1,1)
        helper.make_node("Add", ["z3", "pred"], ["output0"]),
        helper.make_node("Add", ["z4", "protos"], ["output1"]),
    ]
    inits = [
        numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"),
        numpy_helper.from_array(np.ascontiguousarray(pred, np.float32), "pred"),
        numpy_helper.from_array(np.ascontiguousarray(protos, np.float32), "protos"),
    ]
    batch = input_shape[0]
    graph = helper.make_graph(
        nodes,
        "const",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT16 if half else TensorProto.FLOAT, input_shape)],
        [
            helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, *pred.shape[1:]]),
            helper.make_tensor_value_info("output1", TensorProto.FLOAT, [batch, *protos.shape[1:]]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def strip_metadata(src: Path, dst: Path) -> Path:
    model = onnx.load(str(src))
    del model.metadata_props[:]
    onnx.save(model, str(dst))
    return dst


def anchors(input_hw: tuple[int, int]) -> int:
    h, w = input_hw
    return sum((h // s) * (w // s) for s in (8, 16, 32))


def v8_output(rows: list[tuple], nc: int, nm: int, n_anchors: int, fill_score: float = 0.0) -> np.ndarray:
    """A (1, 4 + nc + nm, N) output; ``rows``: (anchor, cx, cy, w, h, class, score, coefficients)."""
    out = np.zeros((1, 4 + nc + nm, n_anchors), np.float32)
    out[0, 4 : 4 + nc] = fill_score
    for a, cx, cy, w, h, c, s, coef in rows:
        out[0, :4, a] = (cx, cy, w, h)
        out[0, 4 + c, a] = s
        out[0, 4 + nc :, a] = coef
    return out


def v5_output(rows: list[tuple], nc: int, nm: int, n_anchors: int) -> np.ndarray:
    """A (1, N, 5 + nc + nm) output; ``rows``: (anchor, cx, cy, w, h, objectness, class, score, coefficients)."""
    out = np.zeros((1, n_anchors, 5 + nc + nm), np.float32)
    for a, cx, cy, w, h, obj, c, s, coef in rows:
        out[0, a, :5] = (cx, cy, w, h, obj)
        out[0, a, 5 + c] = s
        out[0, a, 5 + nc :] = coef
    return out


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pair IoU of two (n, h, w) boolean stacks; two empty masks count as 1."""
    inter = (a & b).reshape(len(a), -1).sum(1)
    union = (a | b).reshape(len(a), -1).sum(1)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def unpack_masks(npz, key: str) -> np.ndarray:
    shape = tuple(int(v) for v in npz[f"{key}_shape"])
    return np.unpackbits(npz[key], axis=-1, count=shape[-1]).astype(bool).reshape(shape)


# -- parity with a reference (Ultralytics' fixtures), across CPUs -------------------------------------------------------
# ONNX Runtime picks kernels by CPU (AVX2, AVX-512, VNNI), so scores, boxes and mask logits differ in the last bits
# between machines: detections are compared as sets, within these tolerances. Measured on an AMD EPYC (Zen 4,
# AVX-512, BF16, VNNI) against the fixtures, made on another machine: boxes 0.016 px, scores 4.1e-5, mask IoU
# >= 0.9997 at frame resolution and >= 0.9988 in mask space; 4 detections came in another order than the fixture's.
BOX_PX = 1.0  # box corners, pixels
SCORE = 1e-3  # class scores after the sigmoid; scores this close are ties and may come in either order
MIN_MASK_IOU = 0.98  # per matched detection


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of two xyxy box arrays."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=-1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_detections(got_xyxy, got_conf, got_cls, ref_xyxy, ref_conf, ref_cls, *, conf: float | None = None,
                     box_px: float = BOX_PX, score: float = SCORE) -> tuple[np.ndarray, np.ndarray]:
    """Pair two detection sets one-to-one, ignoring their order; fail (AssertionError) on any real difference.

    A pair has the same class, boxes within ``box_px`` (every corner) and scores within ``score``; among such
    pairs the assignment maximizes the total box IoU (Hungarian). Every detection on either side must have a
    partner, except one whose score lies within ``score`` of the threshold ``conf``: on another CPU it may fall
    on the other side of it. Returns the matched (reference indices, result indices).
    """
    from scipy.optimize import linear_sum_assignment

    got_xyxy, ref_xyxy = np.asarray(got_xyxy, np.float64).reshape(-1, 4), np.asarray(ref_xyxy, np.float64).reshape(-1, 4)
    got_conf, ref_conf = np.asarray(got_conf, np.float64), np.asarray(ref_conf, np.float64)
    got_cls, ref_cls = np.asarray(got_cls), np.asarray(ref_cls)
    iou = box_iou_matrix(ref_xyxy, got_xyxy)
    box_err = np.abs(ref_xyxy[:, None] - got_xyxy[None]).max(-1) if len(ref_xyxy) and len(got_xyxy) else iou
    score_err = np.abs(ref_conf[:, None] - got_conf[None])
    ok = (ref_cls[:, None] == got_cls[None]) & (box_err <= box_px) & (score_err <= score)
    rows, cols = linear_sum_assignment(np.where(ok, 1.0 - iou, 1e6)) if ok.size else (np.zeros(0, int),) * 2
    keep = ok[rows, cols]
    ri, gi = rows[keep], cols[keep]

    def borderline(s: float) -> bool:
        return conf is not None and abs(s - conf) <= score

    problems = []
    for r in sorted(set(range(len(ref_xyxy))) - set(ri.tolist())):
        if borderline(ref_conf[r]):
            continue
        near = int(np.argmax(iou[r])) if len(got_xyxy) else None
        hint = "" if near is None else (f"; nearest result {near}: class {got_cls[near]}, box off by "
                                        f"{box_err[r, near]:.3f} px, score off by {score_err[r, near]:.2e}")
        problems.append(f"reference {r} (class {ref_cls[r]}, score {ref_conf[r]:.6f}, box "
                        f"{np.round(ref_xyxy[r], 2).tolist()}) has no partner{hint}")
    for g in sorted(set(range(len(got_xyxy))) - set(gi.tolist())):
        if not borderline(got_conf[g]):
            problems.append(f"result {g} (class {got_cls[g]}, score {got_conf[g]:.6f}, box "
                            f"{np.round(got_xyxy[g], 2).tolist()}) is not in the reference")
    assert not problems, (f"{len(problems)} detection(s) differ (tolerances: box {box_px} px, score {score}):\n  "
                          + "\n  ".join(problems[:10]))
    order = np.argsort(ri)
    return ri[order], gi[order]
