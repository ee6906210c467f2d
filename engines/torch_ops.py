"""Pre- and post-processing in torch, on the engine's device (CPU here, CUDA where there is one).

The numpy path (``engines.preprocess``, ``engines.postprocess``, ``engines.segmenter``) is the
reference; everything here mirrors it step by step so the results are the same:

* ``letterbox_torch``: the same ``Letterbox`` geometry (``Letterbox.fit``), bilinear resize in cv2's
  own fixed-point arithmetic (bit-identical to ``cv2.INTER_LINEAR``; or, with ``exact=False``,
  ``interpolate(align_corners=False, antialias=False)`` within one uint8 level), pad 114, ``/ 255``
  in float32. One host->device copy per frame (a reused pinned staging buffer on CUDA).
* ``select_torch``: confidence and class filters, the ``max_nms`` cap and class-offset NMS exactly
  as ``engines.postprocess.select``; NMS by ``torchvision.ops.nms`` when torchvision works, else a
  pure-torch greedy NMS with the same keep order as the numpy ``nms``.
* ``masks_in_mask_space_torch`` / ``masks_full_resolution_torch``: the same crops, thresholds and
  box cuts as their numpy twins.
* ``TorchSegmenter``: ``Segmenter``'s contract; only the small ``Detections`` arrays (boxes, scores,
  classes, masks in mask space) come back to the host.

Float sums may run in another order than numpy's (another BLAS, another device), so a mask pixel
whose logit is within rounding of 0 can flip; boxes and classes come out the same.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from maskwatch.engines.base import Engine
from maskwatch.engines.postprocess import MAX_NMS, MAX_WH, _frame_maps, mask_space_of
from maskwatch.engines.preprocess import PAD_VALUE, InputBatch, Letterbox
from maskwatch.engines.results import Detections
from maskwatch.engines.segmenter import Segmenter

log = logging.getLogger(__name__)

NMS_BLOCK = 512  # boxes per block of the pure-torch NMS (the IoU matrix is at most NMS_BLOCK^2 per step)


# --------------------------------------------------------------------------------------- letterbox


class PinnedStaging:
    """Reused page-locked host buffers, one per batch slot, for asynchronous host->device copies.

    A slot's buffer is only rewritten after the copies that read it have finished (an event is
    recorded after each round of copies and waited on before the next round writes).
    """

    def __init__(self) -> None:
        self._bufs: list[torch.Tensor | None] = []
        self._event: torch.cuda.Event | None = None

    def begin(self) -> None:
        """Call before writing a new round of frames: waits for the last round's copies."""
        if self._event is not None:
            self._event.synchronize()
            self._event = None

    def upload(self, slot: int, frame: np.ndarray, device: torch.device) -> torch.Tensor:
        while len(self._bufs) <= slot:
            self._bufs.append(None)
        buf = self._bufs[slot]
        if buf is None or buf.numel() < frame.size:
            buf = torch.empty(frame.size, dtype=torch.uint8, pin_memory=True)
            self._bufs[slot] = buf
        view = buf[: frame.size].view(frame.shape)
        view.numpy()[...] = frame
        return view.to(device, non_blocking=True)

    def end(self, device: torch.device) -> None:
        """Call after the round's copies are queued."""
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(device))
        self._event = event


_COEF_BITS = 11  # cv2's INTER_RESIZE_COEF_BITS: bilinear weights in 1/2048


@functools.lru_cache(maxsize=64)
def _cv2_taps(dst: int, src: int, clamp_weight: bool, device: torch.device):
    """cv2.resize INTER_LINEAR's taps for one axis: (i0, i1, w0, w1), int weights in 1/2048.

    As OpenCV computes them: ``f = float((d + 0.5) * scale - 0.5)``, ``s = floor(f)``, weights
    ``round(2048 * (1 - (f - s)))`` and ``round(2048 * (f - s))``; source indices are clipped to the
    image. Along x a clipped tap also gets weight (2048, 0); along y OpenCV keeps the weights.
    """
    scale = 1.0 / (dst / src)
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s).astype(np.float32)
    if clamp_weight:
        f[(s < 0) | (s >= src - 1)] = 0
    one = np.float32(1 << _COEF_BITS)
    w1 = np.rint(f * one).astype(np.int32)
    w0 = np.rint((np.float32(1) - f) * one).astype(np.int32)
    i0, i1 = np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1)
    return tuple(torch.from_numpy(a).to(device) for a in (i0, i1, w0, w1))


def resize_like_cv2(img: torch.Tensor, new_wh: tuple[int, int]) -> torch.Tensor:
    """uint8 (H, W, C) -> (h, w, C) int32 levels, bit-identical to ``cv2.resize(INTER_LINEAR)``.

    OpenCV resizes 8-bit images in fixed point: a horizontal pass with 11-bit weights into int sums,
    then a vertical pass that drops 4 bits, multiplies by 11-bit weights keeping the high 16 bits and
    rounds the last 2 bits (its SIMD ``VResizeLinearVec_32s8u``). Integer arithmetic, so the result is
    the same on any device. Verified against OpenCV 5.0 on up- and downscales of many sizes.
    """
    h, w = int(img.shape[0]), int(img.shape[1])
    nw, nh = new_wh
    x0, x1, a0, a1 = _cv2_taps(nw, w, True, img.device)
    y0, y1, b0, b1 = _cv2_taps(nh, h, False, img.device)
    a0, a1 = a0[None, :, None], a1[None, :, None]

    def hpass(rows: torch.Tensor) -> torch.Tensor:
        src = img.index_select(0, rows).to(torch.int32)
        return src.index_select(1, x0) * a0 + src.index_select(1, x1) * a1

    s0, s1 = hpass(y0) >> 4, hpass(y1) >> 4
    out = ((s0 * b0[:, None, None]) >> 16) + ((s1 * b1[:, None, None]) >> 16)
    return ((out + 2) >> 2).clamp_(0, 255)


def _as_device_frame(
    frame: np.ndarray | torch.Tensor, slot: int, device: torch.device, staging: PinnedStaging | None
) -> torch.Tensor:
    """One uint8 (H, W, 3) frame on ``device``: one host->device copy for a numpy frame."""
    if isinstance(frame, torch.Tensor):
        if frame.dtype != torch.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {slot}: expected a uint8 (H, W, 3) tensor, got {tuple(frame.shape)} {frame.dtype}")
        return frame.to(device, non_blocking=True)
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame {slot}: expected an RGB uint8 (H, W, 3) image, got {frame.shape} {frame.dtype}")
    if device.type == "cuda" and staging is not None:
        return staging.upload(slot, np.ascontiguousarray(frame), device)
    t = torch.from_numpy(np.ascontiguousarray(frame))
    return t if device.type == "cpu" else t.to(device)


def letterbox_torch(
    frames: Sequence[np.ndarray | torch.Tensor],
    input_hw: tuple[int, int],
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    out: torch.Tensor | None = None,
    staging: PinnedStaging | None = None,
    exact: bool = True,
) -> tuple[torch.Tensor, list[Letterbox]]:
    """Letterbox RGB uint8 (H, W, 3) frames into a (B, 3, H, W) tensor of ``dtype``, 0..1, on ``device``.

    ``frames``: numpy arrays (uploaded once each; through ``staging``'s pinned buffers on CUDA) or
    uint8 tensors (already on the device, or moved there). ``out`` is filled in place when it has the
    right shape, dtype and device (else a new tensor is returned). The geometry is
    ``Letterbox.fit``'s, so boxes map back exactly as on the numpy path. ``exact`` (default): resize
    with cv2's fixed-point arithmetic (``resize_like_cv2``), so the input equals the numpy path's bit
    for bit; ``exact=False``: ``interpolate(bilinear, align_corners=False, antialias=False)`` in float,
    rounded half up (whole-factor downscales still match; other ratios differ by one level on some
    pixels, which can move a borderline score across ``conf``).
    """
    device = torch.device(device)
    n = len(frames)
    if n == 0:
        raise ValueError("letterbox_torch: no frames")
    ih, iw = (int(v) for v in input_hw)
    shape = (n, 3, ih, iw)
    if out is None or tuple(out.shape) != shape or out.dtype != dtype or out.device != device:
        out = torch.empty(shape, dtype=dtype, device=device)
    pad = torch.tensor(PAD_VALUE, dtype=torch.float32) / 255  # the numpy path's float32(114) / 255
    boxes: list[Letterbox] = []
    use_staging = staging is not None and device.type == "cuda"
    if use_staging:
        staging.begin()
    for i, frame in enumerate(frames):
        img = _as_device_frame(frame, i, device, staging if use_staging else None)
        h, w = int(img.shape[0]), int(img.shape[1])
        box = Letterbox.fit((w, h), (ih, iw))
        boxes.append(box)
        nw, nh = box.new_wh
        left, top = box.pad_xy
        if (w, h) == (nw, nh):
            chw = img.permute(2, 0, 1).to(torch.float32)  # (3, h, w), 0..255, a new tensor
        elif exact:
            chw = resize_like_cv2(img, (nw, nh)).permute(2, 0, 1).to(torch.float32)
        else:
            chw = img.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
            chw = F.interpolate(chw, size=(nh, nw), mode="bilinear", align_corners=False, antialias=False)[0]
            chw = chw.add_(0.5).floor_().clamp_(0, 255)  # uint8 levels rounded half up, as cv2.resize does
        content = chw.div_(255)  # float32(level) / 255, the numpy path's arithmetic
        dst = out[i]
        if (nw, nh) != (iw, ih):
            dst[:, :top].fill_(pad.item())
            dst[:, top + nh :].fill_(pad.item())
            dst[:, top : top + nh, :left].fill_(pad.item())
            dst[:, top : top + nh, left + nw :].fill_(pad.item())
        dst[:, top : top + nh, left : left + nw].copy_(content)
    if use_staging:
        staging.end(device)
    return out, boxes


# --------------------------------------------------------------------------------------------- NMS


@functools.lru_cache(maxsize=1)
def torchvision_nms_available() -> bool:
    """Whether ``torchvision.ops.nms`` imports and runs (its compiled ops must match this torch)."""
    try:
        import torchvision

        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
        keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
        return keep.tolist() == [0, 2]
    except Exception as exc:  # not installed, or built for another torch
        log.debug("torchvision NMS unavailable (%s); using the pure-torch NMS", exc)
        return False


def _over_matrix(a: torch.Tensor, b: torch.Tensor, area_a: torch.Tensor, area_b: torch.Tensor, iou: float) -> torch.Tensor:
    """(len(a), len(b)) bool: IoU > iou, computed in the numpy ``nms``'s order (NaN never suppresses)."""
    w = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp_(min=0)
    h = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1])).clamp_(min=0)
    inter = w * h
    return inter / (area_a[:, None] + area_b[None, :] - inter) > iou


def nms_torch(
    boxes: torch.Tensor, scores: torch.Tensor, iou: float, max_keep: int | None = None, impl: str = "auto"
) -> torch.Tensor:
    """Greedy NMS; int64 indices of kept boxes, highest score first (``engines.postprocess.nms``'s result).

    ``impl``: "torch" (pure torch), "torchvision", or "auto" (torchvision when it works, else torch).
    The pure-torch version sorts stably (ties keep input order, as the numpy NMS) and works through
    blocks of ``NMS_BLOCK`` boxes: each block is first cut by the boxes kept so far, then resolved
    inside by the fixed-point iteration the numpy NMS uses; it stops once ``max_keep`` are kept.
    """
    n = len(boxes)
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    if impl not in ("auto", "torch", "torchvision"):
        raise ValueError(f"nms_torch: impl must be 'auto', 'torch' or 'torchvision', got {impl!r}")
    if impl == "torchvision" or (impl == "auto" and torchvision_nms_available()):
        import torchvision

        keep = torchvision.ops.nms(boxes.float(), scores.float(), float(iou))
        return keep[:max_keep] if max_keep is not None else keep
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order].float().contiguous()
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    kept: list[torch.Tensor] = []  # positions in ``order``
    n_kept = 0
    for start in range(0, n, NMS_BLOCK):
        if max_keep is not None and n_kept >= max_keep:
            break
        stop = min(start + NMS_BLOCK, n)
        blk, blk_area = b[start:stop], areas[start:stop]
        alive = torch.ones(stop - start, dtype=torch.bool, device=b.device)
        if kept:
            k = torch.cat(kept)
            alive = ~_over_matrix(b[k], blk, areas[k], blk_area, iou).any(dim=0)
        over = torch.triu(_over_matrix(blk, blk, blk_area, blk_area, iou), diagonal=1)
        over &= alive[:, None]  # a box suppressed by an earlier block suppresses nothing
        # keep[j] = alive[j] and no kept i < j overlaps j; the unique fixed point from "all alive"
        # is greedy NMS (as in the numpy nms), reached in as many rounds as the longest chain.
        keep = alive.clone()
        for _ in range(stop - start):
            new = alive & ~(over & keep[:, None]).any(dim=0)
            if torch.equal(new, keep):
                break
            keep = new
        idx = torch.nonzero(keep).flatten() + start
        kept.append(idx)
        n_kept += len(idx)
    pos = torch.cat(kept) if kept else torch.zeros(0, dtype=torch.int64, device=b.device)
    if max_keep is not None:
        pos = pos[:max_keep]
    return order[pos]


# ------------------------------------------------------------------------------------------ select


class TorchCandidates:
    """Detections of one image after NMS, in model-input pixels, as tensors on the device."""

    def __init__(self, xyxy: torch.Tensor, confidence: torch.Tensor, class_id: torch.Tensor, coefficients: torch.Tensor):
        self.xyxy = xyxy  # float32 (n, 4)
        self.confidence = confidence  # float32 (n,)
        self.class_id = class_id  # int64 (n,)
        self.coefficients = coefficients  # float32 (n, nm)

    def __len__(self) -> int:
        return len(self.xyxy)

    def take(self, index: torch.Tensor) -> TorchCandidates:
        return TorchCandidates(self.xyxy[index], self.confidence[index], self.class_id[index], self.coefficients[index])


def _empty_torch(nm: int, device: torch.device) -> TorchCandidates:
    return TorchCandidates(
        torch.zeros((0, 4), dtype=torch.float32, device=device),
        torch.zeros(0, dtype=torch.float32, device=device),
        torch.zeros(0, dtype=torch.int64, device=device),
        torch.zeros((0, nm), dtype=torch.float32, device=device),
    )


def select_torch(
    pred: torch.Tensor,
    layout: str,
    nc: int,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    classes: Iterable[int] | torch.Tensor | np.ndarray | None = None,
    agnostic: bool = False,
    max_nms: int = MAX_NMS,
    nms_impl: str = "auto",
) -> TorchCandidates:
    """``engines.postprocess.select`` on a tensor: one image's raw detection output, on its device.

    ``pred`` is (4 + nc + nm, N) for the ``v8`` layout or (N, 5 + nc + nm) for ``v5``; any float dtype
    (computed in float32, as the numpy path casts the outputs).
    """
    device = pred.device
    pred = pred.float()
    if layout == "v8":
        nm = pred.shape[0] - 4 - nc
        scores = pred[4 : 4 + nc]
        best = scores.max(dim=0).values if nc > 1 else scores[0]
        idx = torch.nonzero(best > conf).flatten()
        if idx.numel() == 0:
            return _empty_torch(nm, device)
        x = pred[:, idx].T
        conf_k = best[idx]
        cls_k = x[:, 4 : 4 + nc].argmax(dim=1)  # first maximum on ties, as numpy
        coeff = x[:, 4 + nc :]
    elif layout == "v5":
        nm = pred.shape[1] - 5 - nc
        x = pred[pred[:, 4] > conf]
        if len(x) == 0:
            return _empty_torch(nm, device)
        cls_scores = x[:, 5 : 5 + nc] * x[:, 4:5]
        cls_k = cls_scores.argmax(dim=1)
        conf_k = cls_scores.gather(1, cls_k[:, None])[:, 0]
        ok = conf_k > conf
        x, cls_k, conf_k = x[ok], cls_k[ok], conf_k[ok]
        coeff = x[:, 5 + nc :]
    else:
        raise ValueError(f"unknown output layout {layout!r}; expected 'v8' or 'v5'")
    if classes is not None:
        wanted = torch.as_tensor(np.asarray(classes if not isinstance(classes, torch.Tensor) else classes.cpu()),
                                 dtype=torch.int64).to(device)
        ok = torch.isin(cls_k, wanted)
        x, cls_k, conf_k, coeff = x[ok], cls_k[ok], conf_k[ok], coeff[ok]
    if len(x) == 0:
        return _empty_torch(nm, device)
    if len(x) > max_nms:
        top = torch.sort(conf_k, descending=True, stable=True).indices[:max_nms]
        x, cls_k, conf_k, coeff = x[top], cls_k[top], conf_k[top], coeff[top]
    xywh = x[:, :4]
    half = xywh[:, 2:4] / 2
    xyxy = torch.cat([xywh[:, :2] - half, xywh[:, :2] + half], dim=1)
    nms_boxes = xyxy if agnostic else xyxy + cls_k.to(torch.float32)[:, None] * float(MAX_WH)
    keep = nms_torch(nms_boxes, conf_k, iou, max_keep=max_det, impl=nms_impl)
    return TorchCandidates(xyxy[keep], conf_k[keep], cls_k[keep], coeff[keep].contiguous())


# ------------------------------------------------------------------------------------------- masks


def _crop_to_boxes_torch(masks: torch.Tensor, xyxy: torch.Tensor) -> torch.Tensor:
    """Zero every pixel outside its box (kept when x1 <= col < x2), as the numpy ``_crop_to_boxes``."""
    n, h, w = masks.shape
    cols = torch.arange(w, dtype=torch.float32, device=masks.device)
    rows = torch.arange(h, dtype=torch.float32, device=masks.device)
    in_x = (cols[None, :] >= xyxy[:, 0:1]) & (cols[None, :] < xyxy[:, 2:3])
    in_y = (rows[None, :] >= xyxy[:, 1:2]) & (rows[None, :] < xyxy[:, 3:4])
    return masks & in_y[:, :, None] & in_x[:, None, :]


def masks_in_mask_space_torch(
    protos: torch.Tensor, coefficients: torch.Tensor, xyxy_input: torch.Tensor, crop, input_hw: tuple[int, int]
) -> torch.Tensor:
    """``engines.postprocess.masks_in_mask_space`` on the device: bool (n, h, w) in mask space."""
    nm, mh, mw = protos.shape
    w, h = crop.wh
    if len(coefficients) == 0:
        return torch.zeros((0, h, w), dtype=torch.bool, device=protos.device)
    region = protos[:, crop.top : crop.bottom, crop.left : crop.right].reshape(nm, -1)
    masks = (coefficients.to(region.dtype) @ region).reshape(-1, h, w) > 0
    scale = torch.tensor([mw / input_hw[1], mh / input_hw[0]] * 2, dtype=torch.float32, device=protos.device)
    offset = torch.tensor([crop.left, crop.top] * 2, dtype=torch.float32, device=protos.device)
    boxes = xyxy_input.float() * scale - offset
    return _crop_to_boxes_torch(masks, boxes)


@functools.lru_cache(maxsize=32)
def _frame_maps_on(proto_hw: tuple[int, int], frame_hw: tuple[int, int], device: torch.device):
    my, mx = _frame_maps(proto_hw, frame_hw)
    return my, mx, torch.from_numpy(my.weights).to(device), torch.from_numpy(mx.weights).to(device)


def masks_full_resolution_torch(
    protos: torch.Tensor, coefficients: torch.Tensor, xyxy_frame: np.ndarray, frame_hw: tuple[int, int]
) -> torch.Tensor:
    """``engines.postprocess.masks_full_resolution`` on the device: bool (n, H, W) at frame size.

    ``xyxy_frame`` is the (host, float32, clipped) frame boxes; only each box's band is computed.
    """
    nm, mh, mw = protos.shape
    h, w = frame_hw
    n = len(coefficients)
    out = torch.zeros((n, h, w), dtype=torch.bool, device=protos.device)
    if n == 0:
        return out
    my, mx, wy, wx = _frame_maps_on((mh, mw), (h, w), protos.device)
    edges = np.ceil(np.asarray(xyxy_frame, np.float32)).astype(np.int64)
    edges[:, [0, 2]] = edges[:, [0, 2]].clip(0, w)
    edges[:, [1, 3]] = edges[:, [1, 3]].clip(0, h)
    protos = protos.float()
    coefficients = coefficients.float()
    for i, (c0, r0, c1, r1) in enumerate(edges.tolist()):
        if c1 <= c0 or r1 <= r0:
            continue
        s0, s1 = my.support(r0, r1)
        t0, t1 = mx.support(c0, c1)
        logits = (coefficients[i] @ protos[:, s0:s1, t0:t1].reshape(nm, -1)).reshape(s1 - s0, t1 - t0)
        frame_logits = wy[r0:r1, s0:s1] @ logits @ wx[c0:c1, t0:t1].T
        out[i, r0:r1, c0:c1] = frame_logits > 0
    return out


# --------------------------------------------------------------------------------------- segmenter


def _engine_device(engine: Engine) -> torch.device:
    dev = getattr(engine, "device", None)
    return dev if isinstance(dev, torch.device) else torch.device("cpu")


class TorchSegmenter(Segmenter):
    """``Segmenter`` with pre- and post-processing in torch on the engine's device.

    Engines that run on a device expose ``infer_torch(batch) -> [pred, protos]`` (tensors on the
    device), ``device`` (``torch.device``) and ``input_dtype`` (the torch dtype they take); any other
    engine (ONNX Runtime) is run through its numpy ``infer`` on the CPU, which is how this path is
    compared with the numpy one. Only the final ``Detections`` arrays come back to the host.
    Not thread-safe (it reuses its input and staging buffers): one per inference thread.
    """

    host_decode = False  # decoding runs where the tensors are, in the inference thread

    def __init__(
        self,
        engine: Engine,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        classes: Iterable[int] | None = None,
        agnostic: bool = False,
        nms_impl: str = "auto",
    ) -> None:
        super().__init__(engine, conf, iou, max_det, classes, agnostic)
        self.device = _engine_device(engine)
        self.input_dtype: torch.dtype = getattr(engine, "input_dtype", torch.float32)
        if not isinstance(self.input_dtype, torch.dtype):
            self.input_dtype = torch.float32
        self.nms_impl = nms_impl
        self._classes_t = None if self.classes is None else torch.as_tensor(self.classes, device=self.device)
        self._out: torch.Tensor | None = None
        self._staging = PinnedStaging() if self.device.type == "cuda" else None

    def clone(self) -> TorchSegmenter:
        """The same engine and settings with its own buffers, for another inference thread."""
        other = object.__new__(TorchSegmenter)
        other.__dict__.update(self.__dict__)
        other._batch = InputBatch(self.input_hw, self.engine.meta.batch)
        other._out = None
        other._staging = PinnedStaging() if self.device.type == "cuda" else None
        return other

    # -- device steps

    def to_device(self, frames: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, list[Letterbox]]:
        """Letterbox RGB uint8 frames on the device into the reused input tensor."""
        self._out, boxes = letterbox_torch(
            frames, self.input_hw, self.device, self.input_dtype, out=self._out, staging=self._staging
        )
        return self._out, boxes

    def infer(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """Run the engine on a device batch; ``[pred, protos]`` on the device."""
        infer_torch = getattr(self.engine, "infer_torch", None)
        if infer_torch is not None:
            pred, protos = infer_torch(batch)
            return [pred, protos]
        outs = self.engine.infer(batch.to(torch.float32).cpu().numpy())
        return [torch.from_numpy(o).to(self.device) for o in outs]

    def postprocess_torch(
        self, outputs: Sequence[torch.Tensor], boxes: list[Letterbox], full_masks: bool = False
    ) -> list[Detections]:
        """Device outputs ``[pred, protos]`` -> one ``Detections`` per frame (numpy fields)."""
        pred, protos = outputs
        if len(pred) != len(boxes) or len(protos) != len(boxes):
            raise ValueError(f"postprocess: {len(boxes)} letterboxes for outputs of batch {len(pred)}")
        return [self._decode_torch(pred[i], protos[i], boxes[i], full_masks) for i in range(len(boxes))]

    def _decode_torch(self, pred: torch.Tensor, protos: torch.Tensor, box: Letterbox, full_masks: bool) -> Detections:
        meta = self.meta
        if box.input_hw != meta.input_hw:
            raise ValueError(f"letterbox for input {box.input_hw}, but the model takes {meta.input_hw}")
        cand = select_torch(
            pred, meta.layout, meta.nc, self.conf, self.iou, self.max_det, self._classes_t, self.agnostic,
            nms_impl=self.nms_impl,
        )
        mask_space, crop = mask_space_of(box, tuple(protos.shape[1:]))
        protos = protos.float()
        masks = masks_in_mask_space_torch(protos, cand.coefficients, cand.xyxy, crop, meta.input_hw)
        # Boxes go to frame pixels on the host, with the numpy path's own float32 arithmetic.
        xyxy = box.to_frame_xyxy(cand.xyxy.cpu().numpy())
        data: dict[str, np.ndarray] = {}
        if full_masks:
            full = masks_full_resolution_torch(protos, cand.coefficients, xyxy, box.frame_hw)
            keep_t = full.flatten(1).any(dim=1)
        else:
            keep_t = masks.flatten(1).any(dim=1)
        if not bool(keep_t.all()):
            cand, masks = cand.take(keep_t), masks[keep_t]
            xyxy = xyxy[keep_t.cpu().numpy()]
            if full_masks:
                full = full[keep_t]
        if full_masks:
            data["masks_full"] = full.cpu().numpy()
        return Detections(
            xyxy=xyxy,
            confidence=cand.confidence.cpu().numpy(),
            class_id=cand.class_id.to(torch.int32).cpu().numpy(),
            masks=masks.cpu().numpy(),
            mask_space=mask_space,
            data=data,
        )

    # -- the Segmenter contract

    def __call__(
        self, inputs: list[np.ndarray], boxes: list[Letterbox], full_masks: bool = False
    ) -> list[Detections]:
        """Segment letterboxed RGB uint8 frames (each exactly ``input_hw``), as ``Segmenter.__call__``."""
        if len(inputs) != len(boxes):
            raise ValueError(f"Segmenter: {len(inputs)} images but {len(boxes)} letterboxes")
        if not inputs:
            return []
        h, w = self.input_hw
        for i, img in enumerate(inputs):
            if tuple(img.shape) != (h, w, 3) or (img.dtype != np.uint8 and img.dtype != torch.uint8):
                raise ValueError(
                    f"model input {i}: expected a letterboxed RGB uint8 image of shape ({h}, {w}, 3), "
                    f"got {tuple(img.shape)} {img.dtype}"
                )
        x, _ = self.to_device(inputs)  # exact fit: a copy and / 255, no resize, no padding
        return self.postprocess_torch(self.infer(x), boxes, full_masks)

    def segment_frames(
        self, frames: Sequence[np.ndarray | torch.Tensor], full_masks: bool = False
    ) -> list[Detections]:
        """Segment whole RGB uint8 frames (any sizes): letterboxed on the device, then as ``__call__``."""
        if not frames:
            return []
        x, boxes = self.to_device(frames)
        return self.postprocess_torch(self.infer(x), boxes, full_masks)
