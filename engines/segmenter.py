"""Segmenter: letterboxed frames in, ``Detections`` out, for any engine."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from maskwatch.engines.base import Engine, ModelMeta
from maskwatch.engines.postprocess import (mask_space_of, masks_full_resolution, masks_in_mask_space, select,
                                           set_thresholds)
from maskwatch.engines.preprocess import InputBatch, Letterbox
from maskwatch.engines.results import Detections


class Segmenter:
    """Runs an engine on letterboxed RGB frames and decodes its outputs into ``Detections``.

    ``conf``/``iou``/``max_det``/``agnostic``/``classes`` mean what they mean in Ultralytics' predictor.
    Not thread-safe (it reuses its input buffer): one Segmenter per inference thread.

    For a two-stage engine (``engine.meta.layout == "maskrcnn"``) ``Segmenter(engine, ...)`` returns an
    ``engines.twostage.TwoStageSegmenter`` (same arguments and methods), so every caller that builds a
    Segmenter runs Mask R-CNN models too.
    """

    host_decode = True  # outputs are numpy arrays; ``postprocess`` may run on any thread

    def __new__(cls, engine: Engine, *args, **kwargs):
        if cls is Segmenter and engine.meta.two_stage:
            from maskwatch.engines.twostage import TwoStageSegmenter

            return TwoStageSegmenter(engine, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        engine: Engine,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        classes: Iterable[int] | None = None,
        agnostic: bool = False,
    ) -> None:
        set_thresholds(self, engine, conf, iou, max_det, classes, agnostic)
        self._batch = InputBatch(self.input_hw, engine.meta.batch)

    def clone(self) -> Segmenter:
        """The same engine and settings with its own input buffer, for another inference thread
        (engines whose runtime allows concurrent calls, as ONNX Runtime sessions do)."""
        other = object.__new__(Segmenter)
        other.__dict__.update(self.__dict__)
        other._batch = InputBatch(self.input_hw, self.engine.meta.batch)
        return other

    @property
    def meta(self) -> ModelMeta:
        return self.engine.meta

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.engine.meta.input_hw

    def preprocess(self, inputs: list[np.ndarray]) -> np.ndarray:
        """Letterboxed RGB uint8 (H, W, 3) images -> float32 (B, 3, H, W), a view of a reused buffer."""
        return self._batch.fill(inputs)

    def postprocess(
        self, outputs: list[np.ndarray], boxes: list[Letterbox], full_masks: bool = False
    ) -> list[Detections]:
        """Raw engine outputs ``[detections, prototypes]`` -> one ``Detections`` per frame."""
        pred, protos = outputs
        if len(pred) != len(boxes) or len(protos) != len(boxes):
            raise ValueError(f"postprocess: {len(boxes)} letterboxes for outputs of batch {len(pred)}")
        return [self._decode(pred[i], protos[i], boxes[i], full_masks) for i in range(len(boxes))]

    def _decode(self, pred: np.ndarray, protos: np.ndarray, box: Letterbox, full_masks: bool) -> Detections:
        meta = self.meta
        if box.input_hw != meta.input_hw:
            raise ValueError(f"letterbox for input {box.input_hw}, but the model takes {meta.input_hw}")
        cand = select(
            pred, meta.layout, meta.nc, self.conf, self.iou, self.max_det, self.classes, self.agnostic
        )
        mask_space, crop = mask_space_of(box, protos.shape[1:])
        logits: list = []
        masks = masks_in_mask_space(protos, cand.coefficients, cand.xyxy, crop, meta.input_hw, logits)
        xyxy = box.to_frame_xyxy(cand.xyxy)
        # the logits, for drawing smooth mask edges (pipeline/draw.py): computed anyway, 60 kB per detection
        data: dict[str, np.ndarray] = {"mask_logits": logits[0]}
        if full_masks:
            full = masks_full_resolution(protos, cand.coefficients, xyxy, box.frame_hw)
            keep = full.any(axis=(1, 2))
            data["masks_full"] = full
        else:
            keep = masks.any(axis=(1, 2))
        # Like Ultralytics, drop detections whose mask is empty (in the space being produced).
        if not keep.all():
            cand, masks, xyxy = cand.take(keep), masks[keep], xyxy[keep]
            data = {k: v[keep] for k, v in data.items()}
        return Detections(
            xyxy=xyxy,
            confidence=cand.confidence,
            class_id=cand.class_id,
            masks=masks,
            mask_space=mask_space,
            data=data,
        )

    def __call__(
        self, inputs: list[np.ndarray], boxes: list[Letterbox], full_masks: bool = False
    ) -> list[Detections]:
        """Segment a batch of letterboxed RGB uint8 frames (each exactly ``input_hw``).

        With ``full_masks`` each result carries ``data["masks_full"]``, bool (n, H, W) at frame size,
        computed as Ultralytics' ``retina_masks=True``; detections are then kept when that mask is
        non-empty (otherwise when the mask-space mask is).
        """
        if len(inputs) != len(boxes):
            raise ValueError(f"Segmenter: {len(inputs)} images but {len(boxes)} letterboxes")
        if not inputs:
            return []
        x = self.preprocess(inputs)
        outputs = self.engine.infer(x)
        return self.postprocess(outputs, boxes, full_masks)

