"""Annotated frames and video: masks, track ids, zones (lit while a rule is active).

A side path: it reads copies and never feeds back into analytics.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import cv2
import numpy as np

from .types import Detections

log = logging.getLogger(__name__)


def _colour(track_id: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(track_id * 7919 + 17)
    return tuple(int(c) for c in rng.integers(60, 255, 3))


MASK_ALPHA = 0.45
_MARGIN = 2  # mask cells kept around a box so bilinear samples at its edge see their neighbours


def _to_image(xy: np.ndarray, scale_xy: tuple[float, float]) -> np.ndarray:
    """Frame pixel coordinates (..., 2) -> pixel coordinates of an image scaled by ``scale_xy``.

    Same pixel-centre convention as ``MaskSpace``: ``image_x = (frame_x + 0.5) * rx - 0.5``.
    """
    xy = np.asarray(xy, dtype=np.float64)
    return np.stack([(xy[..., 0] + 0.5) * scale_xy[0] - 0.5, (xy[..., 1] + 0.5) * scale_xy[1] - 0.5], axis=-1)


def _box_mask(mask: np.ndarray, mask_xyxy: np.ndarray, region: tuple[int, int, int, int],
              cell_wh: tuple[float, float], threshold: float = 0.5) -> np.ndarray:
    """The mask inside ``region`` (x0, y0, x1, y1; image pixels, end-exclusive), bilinear, thresholded
    at ``threshold`` (0.5 for a boolean mask, 0 for logits): uint8, 255 inside.

    ``mask_xyxy`` is the box in mask-space pixels and ``cell_wh`` the image pixels per mask cell. Only
    the mask cells around the box are read; the warp keeps their exact place (image pixel j samples
    mask-space ``(j + 0.5) / cell_w - 0.5``), so the edge lands where ``MaskSpace`` says it is.
    """
    mh, mw = mask.shape
    cx0 = max(0, int(np.floor(mask_xyxy[0])) - _MARGIN)
    cy0 = max(0, int(np.floor(mask_xyxy[1])) - _MARGIN)
    cx1 = min(mw, int(np.ceil(mask_xyxy[2])) + _MARGIN + 1)
    cy1 = min(mh, int(np.ceil(mask_xyxy[3])) + _MARGIN + 1)
    x0, y0, x1, y1 = region
    if cx1 <= cx0 or cy1 <= cy0:
        return np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    crop = mask[cy0:cy1, cx0:cx1].astype(np.float32)
    cw, ch = cell_wh
    # dst pixel (u, v) of the region -> crop coordinates (inverse map)
    m = np.array([[1.0 / cw, 0.0, (x0 + 0.5) / cw - 0.5 - cx0],
                  [0.0, 1.0 / ch, (y0 + 0.5) / ch - 0.5 - cy0]])
    up = cv2.warpAffine(crop, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                        borderMode=cv2.BORDER_REPLICATE)
    return cv2.compare(up, threshold, cv2.CMP_GT)


def annotate(image: np.ndarray, dets: Detections, names: dict[int, str], zones: dict[str, np.ndarray],
             active_zones: set[str], *, frame_wh: tuple[int, int] | None = None) -> np.ndarray:
    """Draw on a copy of an RGB image. Boxes, masks and ``zones`` (zone id -> polygon (k, 2)) are in
    frame pixels of a frame ``frame_wh`` (default: the detections' mask space's frame, else the
    image's own size); they are scaled to the image, which may be a smaller copy of the frame.

    Masks are drawn smooth at the image's resolution: each detection's mask-space cells around its
    box are upsampled bilinearly into the box only (pixels outside a box are never painted by it),
    thresholded at 0.5 and blended with the track's colour (alpha 0.45; a later detection's colour
    wins where masks overlap). The input image is left as it is.
    """
    out = image.copy()
    ih, iw = out.shape[:2]
    if frame_wh is None:
        frame_wh = dets.mask_space.frame_wh if dets.mask_space is not None else (iw, ih)
    scale = (iw / frame_wh[0], ih / frame_wh[1])
    n = len(dets)
    boxes = _to_image(dets.xyxy.reshape(n, 2, 2), scale).reshape(n, 4) if n else np.zeros((0, 4))
    if n and dets.masks is not None and dets.mask_space is not None:
        ms = dets.mask_space
        mask_boxes = ms.from_frame(dets.xyxy.reshape(n, 2, 2)).reshape(n, 4)
        cell_wh = (iw / ms.mask_wh[0], ih / ms.mask_wh[1])  # image pixels per mask cell
        logits = dets.data.get("mask_logits")
        if logits is not None and logits.shape != dets.masks.shape:
            logits = None
        overlay = None
        ux0, uy0, ux1, uy1 = iw, ih, 0, 0  # the union of painted regions: the only part blended
        for i in range(n):
            bx0, by0, bx1, by1 = boxes[i]
            # image pixels whose centre lies in [x1, x2) x [y1, y2)
            x0, y0 = max(0, int(np.ceil(bx0))), max(0, int(np.ceil(by0)))
            x1, y1 = min(iw, int(np.ceil(bx1))), min(ih, int(np.ceil(by1)))
            if x1 <= x0 or y1 <= y0:
                continue
            if logits is not None:  # the model's own logits: the edge where it falls inside a cell
                m = _box_mask(logits[i], mask_boxes[i], (x0, y0, x1, y1), cell_wh, threshold=0.0)
            else:
                m = _box_mask(dets.masks[i], mask_boxes[i], (x0, y0, x1, y1), cell_wh)
            if not cv2.countNonZero(m):
                continue
            if overlay is None:
                overlay = out.copy()
            tid = int(dets.tracker_id[i]) if dets.tracker_id is not None else i
            region = overlay[y0:y1, x0:x1]
            solid = np.empty((y1 - y0, x1 - x0, 3), dtype=np.uint8)
            cv2.rectangle(solid, (0, 0), (x1 - x0 - 1, y1 - y0 - 1), _colour(tid), cv2.FILLED)  # fast fill
            painted = cv2.copyTo(solid, m, region)  # in place: region is the right size and type
            if painted is not region:
                region[...] = painted
            ux0, uy0, ux1, uy1 = min(ux0, x0), min(uy0, y0), max(ux1, x1), max(uy1, y1)
        if overlay is not None:
            # unpainted pixels are equal in both, so the blend returns them unchanged (0.45 v + 0.55 v = v)
            out[uy0:uy1, ux0:ux1] = cv2.addWeighted(overlay[uy0:uy1, ux0:ux1], MASK_ALPHA,
                                                    out[uy0:uy1, ux0:ux1], 1.0 - MASK_ALPHA, 0)
    for zid, poly in zones.items():
        active = zid in active_zones
        colour = (255, 40, 40) if active else (255, 220, 0)
        pts = np.round(_to_image(np.asarray(poly, dtype=np.float64).reshape(-1, 2), scale)).astype(np.int32)
        if active:
            layer = out.copy()
            cv2.fillPoly(layer, [pts], colour)
            out = cv2.addWeighted(layer, 0.3, out, 0.7, 0)
        cv2.polylines(out, [pts], True, colour, 2, cv2.LINE_AA)
        cv2.putText(out, zid, tuple(int(v) for v in pts[0]), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2, cv2.LINE_AA)
    for i in range(n):
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[i])
        tid = int(dets.tracker_id[i]) if dets.tracker_id is not None else -1
        colour = _colour(tid if tid >= 0 else i)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 1)
        label = f"#{tid} {names.get(int(dets.class_id[i]), dets.class_id[i])} {dets.confidence[i]:.2f}"
        cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return out


class VideoWriter:
    """H.264 (yuv420p) writer through PyAV; frames are stamped by their index."""

    def __init__(self, path: str | Path, fps: float, frame_wh: tuple[int, int]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w")
        rate = max(1, int(round(fps)))
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = (frame_wh[0] // 2) * 2, (frame_wh[1] // 2) * 2
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"preset": "veryfast", "crf": "23"}
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        h, w = self._stream.height, self._stream.width
        if rgb.shape[0] != h or rgb.shape[1] != w:
            rgb = np.ascontiguousarray(rgb[:h, :w])
        vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        vf.pts = self.frames
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
