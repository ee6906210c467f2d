"""Two-stage segmentation: a torchvision Mask R-CNN export behind the ``Segmenter`` interface.

The model (layout ``maskrcnn``, see ``engines.base``) takes one RGB image, float 0..1, [3, H, W] of any size (it
resizes inside the graph) and returns ``boxes`` [N, 4] in the image's pixels, ``labels`` [N] (1-based, 0 is the
background), ``scores`` [N] and ``masks`` [N, 1, H, W]: probabilities pasted at the image's resolution, already
after NMS. ``TwoStageSegmenter`` turns them into the same ``Detections`` the YOLO ``Segmenter`` makes, so the
tracker, zones and alerts downstream do not change:

* input: the pipeline's sources letterbox every frame into ``input_hw`` (the canvas); the model gets the canvas'
  content without the padding, i.e. the frame scaled by the letterbox's ratio (1280x720 frames at their own size
  on the default 1280 x 1280 canvas). ``segment_frames`` runs frames at their own size, whatever the canvas.
* class ids: maskwatch's class id is torchvision's label - 1 (``meta.names`` is keyed that way, the background
  dropped; ``engines.base.parse_two_stage_names``). A label outside 1..nc is an error naming the names' length.
* ``conf`` (score > conf), ``classes`` and ``max_det`` apply as for YOLO; ``iou`` / ``agnostic`` run the same
  greedy NMS on the graph's output (class-aware unless agnostic), which changes nothing unless it is stricter
  than the model's own (torchvision's ``box_nms_thresh``, 0.5 by default, per class).
* masks: mask space is the YOLO one for the same canvas (``canvas / 4`` with the padding cropped away,
  ``postprocess.mask_space_of``); each mask's probabilities over the content are averaged over the area of each
  mask-space cell (``cv2.INTER_AREA``) and thresholded at 0.5. ``data["mask_logits"]`` holds those averaged
  probabilities minus 0.5 (zero at the threshold, as drawing expects of logits). With ``full_masks`` each result
  also has ``data["masks_full"]`` at frame resolution: the probabilities resized to the frame (unchanged when the
  content is the frame) thresholded at 0.5. As the YOLO segmenter does, detections whose mask is empty (in the
  space being produced) are dropped.

Decoding happens in ``__call__`` on the calling thread (``host_decode`` is False: the pipeline hands frames to
``__call__``, not raw outputs to the analytics threads).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from maskwatch.engines.base import TWO_STAGE, Engine, ModelMeta, two_stage_mask_hw
from maskwatch.engines.postprocess import MAX_WH, mask_space_of, nms, set_thresholds
from maskwatch.engines.preprocess import Letterbox
from maskwatch.engines.results import Detections

MASK_THRESHOLD = 0.5


class TwoStageSegmenter:
    """Runs a two-stage (Mask R-CNN) engine on letterboxed RGB frames and returns ``Detections`` in mask space.

    Same constructor and methods as ``Segmenter`` (``__call__``, ``preprocess``, ``postprocess``, ``clone``,
    ``meta``, ``input_hw``); ``Segmenter(engine)`` gives one of these for a two-stage engine.
    """

    host_decode = False  # decodes in __call__: outputs are per-image lists, not a batch the pipeline can split

    def __init__(
        self,
        engine: Engine,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        classes: Iterable[int] | None = None,
        agnostic: bool = False,
    ) -> None:
        if engine.meta.layout != TWO_STAGE:
            raise ValueError(f"{engine.meta.path.name}: layout {engine.meta.layout!r} is not a two-stage model; "
                             "use Segmenter")
        set_thresholds(self, engine, conf, iou, max_det, classes, agnostic)

    def clone(self) -> TwoStageSegmenter:
        """The same engine and settings, for another inference thread (it holds no buffers)."""
        return copy.copy(self)

    @property
    def meta(self) -> ModelMeta:
        return self.engine.meta

    @property
    def input_hw(self) -> tuple[int, int]:
        """The letterbox canvas sources fit frames into (the model itself takes any size)."""
        return self.engine.meta.input_hw

    def preprocess(self, inputs: Sequence[np.ndarray], boxes: Sequence[Letterbox] | None = None) -> list[np.ndarray]:
        """Letterboxed RGB uint8 (H, W, 3) images -> float32 (3, h, w) images, 0..1.

        With ``boxes`` (what ``__call__`` passes) each image is cut to its letterbox's content, so the model sees
        the frame and no padding; without them the whole canvas goes in (``postprocess`` reads either).
        """
        if boxes is not None and len(boxes) != len(inputs):
            raise ValueError(f"TwoStageSegmenter: {len(inputs)} images but {len(boxes)} letterboxes")
        out = []
        for i, img in enumerate(inputs):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"model input {i}: expected an RGB uint8 image (H, W, 3), got {img.shape} {img.dtype}")
            if boxes is not None:
                box = boxes[i]
                if img.shape[:2] != box.input_hw:
                    raise ValueError(f"model input {i}: image {img.shape[:2]} but its letterbox is for {box.input_hw}")
                (x, y), (w, h) = box.pad_xy, box.new_wh
                img = img[y : y + h, x : x + w]
            chw = np.empty((3, *img.shape[:2]), np.float32)
            # as torchvision's ToTensor / the export script: uint8 -> float32, then / 255
            np.divide(img.transpose(2, 0, 1), np.float32(255), out=chw, dtype=np.float32)
            out.append(chw)
        return out

    def postprocess(
        self, outputs: Sequence[Sequence[np.ndarray]], boxes: Sequence[Letterbox], full_masks: bool = False
    ) -> list[Detections]:
        """One ``[boxes, labels, scores, masks]`` per image (``engine.infer``) -> one ``Detections`` per frame."""
        if len(outputs) != len(boxes):
            raise ValueError(f"postprocess: {len(boxes)} letterboxes for {len(outputs)} images' outputs")
        return [self._decode(out, box, full_masks) for out, box in zip(outputs, boxes, strict=True)]

    def __call__(
        self, inputs: Sequence[np.ndarray], boxes: Sequence[Letterbox], full_masks: bool = False
    ) -> list[Detections]:
        """Segment letterboxed RGB uint8 frames (each the size its letterbox says: ``input_hw`` from the
        pipeline's sources, or the frame itself with an identity letterbox, as ``segment_frames`` does).

        With ``full_masks`` each result carries ``data["masks_full"]``, bool (n, H, W) at frame size.
        """
        if len(inputs) != len(boxes):
            raise ValueError(f"TwoStageSegmenter: {len(inputs)} images but {len(boxes)} letterboxes")
        if not inputs:
            return []
        images = self.preprocess(inputs, boxes)
        return self.postprocess(self.engine.infer(images), boxes, full_masks)  # type: ignore[arg-type]

    def segment_frames(self, frames: Sequence[np.ndarray], full_masks: bool = False) -> list[Detections]:
        """RGB uint8 frames (H, W, 3) at their own size, no letterbox: the model sees each frame as it is."""
        boxes = [Letterbox.fit((f.shape[1], f.shape[0]), f.shape[:2]) for f in frames]
        return self(list(frames), boxes, full_masks)

    # ------------------------------------------------------------------------------------------ decoding

    def _decode(self, out: Sequence[np.ndarray], box: Letterbox, full_masks: bool) -> Detections:
        meta = self.meta
        raw_boxes, labels, scores, probs = out
        ph, pw = probs.shape[2:]
        (px, py), (nw, nh) = box.pad_xy, box.new_wh
        if (pw, ph) == (nw, nh):  # the content went in (what __call__ does)
            offset = np.array([px, py, px, py], np.float32)
            content = probs[:, 0]
        elif (pw, ph) == box.input_wh:  # the whole canvas went in
            offset = np.zeros(4, np.float32)
            content = probs[:, 0, py : py + nh, px : px + nw]
        else:
            raise ValueError(f"postprocess: masks of {pw}x{ph} fit neither the letterbox's content {nw}x{nh} nor "
                             f"its canvas {box.input_wh[0]}x{box.input_wh[1]}")
        cls = labels.astype(np.int64) - 1  # torchvision's label 1 is class id 0
        bad = (cls < 0) | (cls >= meta.nc)
        if bad.any():
            raise ValueError(
                f"{meta.path.name}: the model output label {int(labels[bad][0])}, but its names cover labels "
                f"1..{meta.nc} ({list(meta.names.values())}); give every class's name, in label order, with or "
                "without '__background__' first"
            )
        keep = scores > self.conf
        if self.classes is not None:
            keep &= np.isin(cls, self.classes)
        idx = np.flatnonzero(keep)
        xyxy_in = raw_boxes[idx].astype(np.float32) + offset  # canvas pixels
        class_offset = 0.0 if self.agnostic else cls[idx].astype(np.float32)[:, None] * np.float32(MAX_WH)
        idx = idx[nms(xyxy_in + class_offset, scores[idx].astype(np.float32), self.iou, max_keep=self.max_det)]
        xyxy_in = raw_boxes[idx].astype(np.float32) + offset

        mask_space, crop = mask_space_of(box, two_stage_mask_hw(box.input_hw))
        mw, mh = crop.wh
        soft = np.empty((len(idx), mh, mw), np.float32)
        for j, i in enumerate(idx):  # area average of the probabilities over each mask-space cell
            soft[j] = cv2.resize(content[i], (mw, mh), interpolation=cv2.INTER_AREA)
        masks = soft > MASK_THRESHOLD
        soft -= MASK_THRESHOLD  # "logits" for drawing: positive inside
        data: dict[str, np.ndarray] = {"mask_logits": soft}
        if full_masks:
            full = self._full_masks(content, idx, box)
            keep = full.any(axis=(1, 2))
            data["masks_full"] = full
        else:
            keep = masks.any(axis=(1, 2))
        if not keep.all():
            idx, xyxy_in, masks = idx[keep], xyxy_in[keep], masks[keep]
            data = {k: v[keep] for k, v in data.items()}
        return Detections(
            xyxy=box.to_frame_xyxy(xyxy_in),
            confidence=scores[idx].astype(np.float32),
            class_id=cls[idx].astype(np.int32),
            masks=masks,
            mask_space=mask_space,
            data=data,
        )

    @staticmethod
    def _full_masks(content: np.ndarray, idx: np.ndarray, box: Letterbox) -> np.ndarray:
        """Masks at frame resolution: the content's probabilities resized to the frame, > 0.5."""
        fw, fh = box.frame_wh
        nw, nh = box.new_wh
        full = np.zeros((len(idx), fh, fw), bool)
        interp = cv2.INTER_AREA if nw * nh > fw * fh else cv2.INTER_LINEAR
        for j, i in enumerate(idx):
            p = content[i]
            if (nw, nh) != (fw, fh):
                p = cv2.resize(p, (fw, fh), interpolation=interp)
            np.greater(p, MASK_THRESHOLD, out=full[j])
        return full
