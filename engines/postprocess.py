"""Post-processing shared by every backend: decoding, NMS and masks, in vectorised numpy.

Each step follows Ultralytics 8.4 (``utils/nms.py``, ``utils/ops.py``, ``models/yolo/segment``):

* candidates: best class score ``> conf`` (YOLOv5 layout: objectness ``> conf``, then
  ``objectness * class score > conf``); optional class subset; at most ``max_nms`` into NMS;
* class-aware NMS by offsetting boxes by ``class * 7680`` (or agnostic), greedy, IoU ``> iou``
  suppresses, as torchvision's ``nms``; ``max_det`` kept;
* masks: ``coefficients @ prototypes`` logits thresholded at 0 and cropped to the box
  (pixel column ``c`` kept when ``x1 <= c < x2``); detections whose mask is empty are dropped.

Mask space is the prototype raster with the letterbox padding cropped away exactly as Ultralytics'
``scale_masks`` crops it; full-resolution masks follow ``process_mask_native`` (the
``retina_masks=True`` path).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from maskwatch.engines.preprocess import Letterbox
from maskwatch.engines.results import MaskSpace

MAX_WH = 7680  # class offset for class-aware NMS (Ultralytics' max_wh)
MAX_NMS = 30000  # most boxes into NMS
_MATRIX_NMS_MAX = 512  # up to this many boxes, NMS works on the full IoU matrix


@dataclass
class Candidates:
    """Detections of one image after NMS, in model-input pixels."""

    xyxy: np.ndarray  # float32 (n, 4), input pixels, not clipped
    confidence: np.ndarray  # float32 (n,)
    class_id: np.ndarray  # int32 (n,)
    coefficients: np.ndarray  # float32 (n, nm)

    def __len__(self) -> int:
        return len(self.xyxy)

    def take(self, index: np.ndarray) -> Candidates:
        return Candidates(self.xyxy[index], self.confidence[index], self.class_id[index], self.coefficients[index])


def _empty(nm: int) -> Candidates:
    return Candidates(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros((0, nm), np.float32)
    )


def xywh2xyxy(xywh: np.ndarray) -> np.ndarray:
    out = np.empty_like(xywh)
    half = xywh[:, 2:4] / 2
    out[:, :2] = xywh[:, :2] - half
    out[:, 2:] = xywh[:, :2] + half
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS; indices of kept boxes, highest score first (same result as ``torchvision.ops.nms``).

    A box is suppressed when its IoU with a kept, higher-scoring box is ``> iou``. Small inputs use the
    full IoU matrix and an exact fixed-point iteration (Cluster-NMS), larger ones the classic loop.
    """
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    b = np.ascontiguousarray(boxes[order], dtype=np.float32)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if n <= _MATRIX_NMS_MAX:
            w = (np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :])).clip(min=0)
            h = (np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :])).clip(min=0)
            inter = w * h
            over = inter / (areas[:, None] + areas[None, :] - inter) > iou  # NaN (0/0) never suppresses
            over = np.triu(over, k=1)  # over[i, j]: higher-scoring i would suppress j
            keep = np.ones(n, bool)
            # keep[j] = no kept i < j overlaps j. Iterating from "all kept" reaches the unique fixed point,
            # which is exactly greedy NMS; it takes as many rounds as the longest suppression chain.
            for _ in range(n):
                new = ~over[keep].any(axis=0)
                if np.array_equal(new, keep):
                    break
                keep = new
            kept = np.flatnonzero(keep)
        else:
            kept_list: list[int] = []
            rest = np.arange(n)
            while rest.size and (max_keep is None or len(kept_list) < max_keep):
                i = rest[0]
                kept_list.append(int(i))
                rest = rest[1:]
                w = (np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])).clip(min=0)
                h = (np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])).clip(min=0)
                inter = w * h
                rest = rest[~(inter / (areas[i] + areas[rest] - inter) > iou)]
            kept = np.asarray(kept_list, np.int64)
    if max_keep is not None:
        kept = kept[:max_keep]
    return order[kept]


def select(
    pred: np.ndarray,
    layout: str,
    nc: int,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    classes: np.ndarray | None = None,
    agnostic: bool = False,
    max_nms: int = MAX_NMS,
) -> Candidates:
    """Confidence filter, class filter and NMS for one image's raw detection output.

    ``pred`` is (4 + nc + nm, N) for the ``v8`` layout (YOLOv8 / YOLO11) or (N, 5 + nc + nm) for
    ``v5`` (an objectness column after the box).
    """
    if layout == "v8":
        nm = pred.shape[0] - 4 - nc
        scores = pred[4 : 4 + nc]
        best = scores.max(axis=0) if nc > 1 else scores[0]
        idx = np.flatnonzero(best > conf)
        if idx.size == 0:
            return _empty(nm)
        x = pred[:, idx].T  # (k, 4 + nc + nm), small
        conf_k = best[idx]
        cls_k = x[:, 4 : 4 + nc].argmax(axis=1)
        coeff = x[:, 4 + nc :]
    elif layout == "v5":
        nm = pred.shape[1] - 5 - nc
        obj = pred[:, 4]
        x = pred[obj > conf]
        if len(x) == 0:
            return _empty(nm)
        cls_scores = x[:, 5 : 5 + nc] * x[:, 4:5]  # conf = objectness * class score
        cls_k = cls_scores.argmax(axis=1)
        conf_k = cls_scores[np.arange(len(x)), cls_k]
        ok = conf_k > conf
        x, cls_k, conf_k = x[ok], cls_k[ok], conf_k[ok]
        coeff = x[:, 5 + nc :]
    else:
        raise ValueError(f"unknown output layout {layout!r}; expected 'v8' or 'v5'")
    if classes is not None:
        ok = np.isin(cls_k, classes)
        x, cls_k, conf_k, coeff = x[ok], cls_k[ok], conf_k[ok], coeff[ok]
    if len(x) == 0:
        return _empty(nm)
    if len(x) > max_nms:
        top = np.argsort(-conf_k, kind="stable")[:max_nms]
        x, cls_k, conf_k, coeff = x[top], cls_k[top], conf_k[top], coeff[top]
    xyxy = xywh2xyxy(np.ascontiguousarray(x[:, :4], dtype=np.float32))
    conf_k = conf_k.astype(np.float32, copy=False)
    offset = 0.0 if agnostic else cls_k.astype(np.float32)[:, None] * np.float32(MAX_WH)
    keep = nms(xyxy + offset, conf_k, iou, max_keep=max_det)
    return Candidates(
        xyxy[keep],
        conf_k[keep],
        cls_k[keep].astype(np.int32),
        np.ascontiguousarray(coeff[keep], dtype=np.float32),
    )


# ---------------------------------------------------------------------------------------------- masks


@dataclass(frozen=True)
class MaskCrop:
    """The un-padded region of the prototype raster: rows ``top:bottom``, columns ``left:right``."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def wh(self) -> tuple[int, int]:
        return (self.right - self.left, self.bottom - self.top)


def content_crop(raster_hw: tuple[int, int], frame_hw: tuple[int, int]) -> MaskCrop:
    """Where a letterboxed frame's content lies in a raster of ``raster_hw`` (Ultralytics ``scale_masks``)."""
    mh, mw = raster_hw
    h, w = frame_hw
    gain = min(mh / h, mw / w)
    ch, cw = max(round(h * gain), 1), max(round(w * gain), 1)
    top, left = round((mh - ch) / 2 - 0.1), round((mw - cw) / 2 - 0.1)
    return MaskCrop(top, top + ch, left, left + cw)


def mask_space_of(box: Letterbox, proto_hw: tuple[int, int]) -> tuple[MaskSpace, MaskCrop]:
    """The mask space of a frame letterboxed by ``box`` for a model with prototypes of ``proto_hw``."""
    crop = content_crop(proto_hw, box.frame_hw)
    return MaskSpace(crop.wh, box.frame_wh), crop


def _crop_to_boxes(masks: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """Zero every pixel outside its box, in place (Ultralytics ``crop_mask``: kept when x1 <= col < x2)."""
    n, h, w = masks.shape
    cols = np.arange(w, dtype=np.float32)
    rows = np.arange(h, dtype=np.float32)
    in_x = (cols[None, :] >= xyxy[:, 0:1]) & (cols[None, :] < xyxy[:, 2:3])  # (n, w)
    in_y = (rows[None, :] >= xyxy[:, 1:2]) & (rows[None, :] < xyxy[:, 3:4])  # (n, h)
    masks &= in_y[:, :, None]
    masks &= in_x[:, None, :]
    return masks


def masks_in_mask_space(
    protos: np.ndarray, coefficients: np.ndarray, xyxy_input: np.ndarray, crop: MaskCrop, input_hw: tuple[int, int],
    logits_out: list | None = None,
) -> np.ndarray:
    """Boolean masks (n, h, w) in mask space: logits > 0 on the cropped prototypes, cut to the boxes.

    ``protos`` is (nm, mh, mw); boxes are in model-input pixels and are scaled to the prototype
    raster as Ultralytics' ``process_mask`` does (``upsample=False``). ``logits_out``: a list that receives the
    mask logits (n, h, w), float32, for drawing smooth edges (the boolean masks lose where inside a cell the
    edge runs; the logits keep it). They are the product computed anyway: kept, not copied.
    """
    nm, mh, mw = protos.shape
    w, h = crop.wh
    if len(coefficients) == 0:
        if logits_out is not None:
            logits_out.append(np.zeros((0, h, w), np.float32))
        return np.zeros((0, h, w), bool)
    region = protos[:, crop.top : crop.bottom, crop.left : crop.right].reshape(nm, -1)
    logits = (coefficients @ region).reshape(-1, h, w)
    if logits_out is not None:
        logits_out.append(logits)
    masks = logits > 0
    sx, sy = mw / input_hw[1], mh / input_hw[0]
    boxes = xyxy_input * np.array([sx, sy, sx, sy], np.float32)
    boxes -= np.array([crop.left, crop.top, crop.left, crop.top], np.float32)
    return _crop_to_boxes(masks, boxes)


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D bilinear resampling as torch's ``interpolate(align_corners=False)``."""
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    w = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    np.add.at(w, (rows, i0), 1.0 - lam)
    np.add.at(w, (rows, i1), lam)
    return w


@dataclass(frozen=True)
class _AxisMap:
    """A (frame, proto) resampling matrix and, per frame pixel, the proto pixels it reads (start, stop)."""

    weights: np.ndarray
    start: np.ndarray
    stop: np.ndarray

    @classmethod
    def of(cls, weights: np.ndarray) -> _AxisMap:
        nz = weights != 0  # every row has a non-zero weight; taps are contiguous and move forward
        start = nz.argmax(axis=1)
        stop = weights.shape[1] - nz[:, ::-1].argmax(axis=1)
        w = weights.astype(np.float32)
        for a in (w, start, stop):
            a.flags.writeable = False
        return cls(w, start, stop)

    def support(self, lo: int, hi: int) -> tuple[int, int]:
        """Proto pixels read by frame pixels lo:hi."""
        return int(self.start[lo]), int(self.stop[hi - 1])


@functools.lru_cache(maxsize=32)
def _frame_maps(proto_hw: tuple[int, int], frame_hw: tuple[int, int]) -> tuple[_AxisMap, _AxisMap]:
    """Per-axis linear maps from prototype logits to frame logits, as ``process_mask_native`` resamples.

    Ultralytics upsamples by f (1, 2 or 4, so the padding falls on whole pixels), crops the padding and
    resizes to the frame, bilinearly each time. All three steps are linear and separable, so each axis
    collapses into one (frame, proto) matrix: frame logits = ``my @ logits @ mx.T``. Frame pixels near
    each other read nearby proto pixels only, so a box needs only a band of each matrix.
    """
    mh, mw = proto_hw
    h, w = frame_hw
    gain = min(4 * mh / h, 4 * mw / w)
    pad = (4 * mh - max(round(h * gain), 1)) | (4 * mw - max(round(w * gain), 1))
    f = 4 // math.gcd(4, pad | pad // 2)
    crop = content_crop((f * mh, f * mw), (h, w))
    up_y = _interp_matrix(f * mh, mh) if f > 1 else np.eye(mh)
    up_x = _interp_matrix(f * mw, mw) if f > 1 else np.eye(mw)
    crop_h, crop_w = crop.bottom - crop.top, crop.right - crop.left
    my = up_y[crop.top : crop.bottom]
    mx = up_x[crop.left : crop.right]
    if (crop_h, crop_w) != (h, w):
        my = _interp_matrix(h, crop_h) @ my
        mx = _interp_matrix(w, crop_w) @ mx
    return _AxisMap.of(my), _AxisMap.of(mx)


def masks_full_resolution(
    protos: np.ndarray, coefficients: np.ndarray, xyxy_frame: np.ndarray, frame_hw: tuple[int, int]
) -> np.ndarray:
    """Boolean masks (n, H, W) at frame resolution, as Ultralytics' ``process_mask_native``.

    Logits are resampled to the frame the way Ultralytics does it (upsample by f in 1, 2, 4, crop the
    letterbox padding, bilinear resize), thresholded at 0 and cut to the (frame-pixel, clipped) boxes.
    Only the pixels inside each box are computed.
    """
    nm, mh, mw = protos.shape
    h, w = frame_hw
    n = len(coefficients)
    out = np.zeros((n, h, w), bool)
    if n == 0:
        return out
    my, mx = _frame_maps((mh, mw), (h, w))
    boxes = np.asarray(xyxy_frame, np.float32)
    # crop_mask keeps column c when x1 <= c < x2, i.e. c in [ceil(x1), ceil(x2))
    edges = np.ceil(boxes).astype(np.int64)
    edges[:, [0, 2]] = edges[:, [0, 2]].clip(0, w)
    edges[:, [1, 3]] = edges[:, [1, 3]].clip(0, h)
    flat = protos.reshape(nm, -1)
    for i, (c0, r0, c1, r1) in enumerate(edges):
        if c1 <= c0 or r1 <= r0:
            continue
        s0, s1 = my.support(r0, r1)
        t0, t1 = mx.support(c0, c1)
        proto = protos[:, s0:s1, t0:t1].reshape(nm, -1) if (s1 - s0, t1 - t0) != (mh, mw) else flat
        logits = (coefficients[i] @ proto).reshape(s1 - s0, t1 - t0)
        frame_logits = my.weights[r0:r1, s0:s1] @ logits @ mx.weights[c0:c1, t0:t1].T
        np.greater(frame_logits, 0, out=out[i, r0:r1, c0:c1])
    return out


def set_thresholds(seg, engine, conf: float, iou: float, max_det: int, classes, agnostic: bool) -> None:
    """Check and set a segmenter's ``engine``, ``conf``, ``iou``, ``max_det``, ``agnostic`` and ``classes`` (sorted
    class ids as an array, or None for all), the same for every kind of segmenter; ValueError names the setting."""
    if not 0.0 <= conf <= 1.0:
        raise ValueError(f"conf must be in [0, 1], got {conf}")
    if not 0.0 <= iou <= 1.0:
        raise ValueError(f"iou must be in [0, 1], got {iou}")
    if max_det < 1:
        raise ValueError(f"max_det must be >= 1, got {max_det}")
    seg.engine = engine
    seg.conf = float(conf)
    seg.iou = float(iou)
    seg.max_det = int(max_det)
    seg.agnostic = bool(agnostic)
    seg.classes = None
    if classes is not None:
        ids = sorted({int(c) for c in classes})
        unknown = [c for c in ids if c not in engine.meta.names]
        if unknown or not ids:
            raise ValueError(
                f"classes {ids}: unknown class ids {unknown}; the model has {engine.meta.names}"
                if unknown
                else "classes: empty list; leave it out to keep every class"
            )
        seg.classes = np.asarray(ids, np.int64)
