"""The engine interface, model metadata and the backend registry.

A backend loads a model file and runs it; everything model-agnostic (metadata parsing, output
layout detection, batching a static-batch model in a loop) lives here so that every backend
behaves the same.

Two families of output layouts are read:

* one-stage YOLO segmentation (``v8``: YOLOv8/11, ``v5``): a (B, 3, H, W) input of a fixed size, raw
  detections and mask prototypes out, decoded by ``Segmenter`` (NMS and masks in numpy);
* two-stage torchvision Mask R-CNN (``maskrcnn``, ``TWO_STAGE``): one image [3, H, W] of any size in (no batch
  axis; the graph resizes it), ``boxes`` [N, 4], ``labels`` [N], ``scores`` [N] and ``masks`` [N, 1, H, W] out,
  already after NMS, decoded by ``engines.twostage.TwoStageSegmenter``.
"""

from __future__ import annotations

import ast
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TWO_STAGE = "maskrcnn"  # torchvision Mask R-CNN exported with torch.onnx.export
LAYOUTS = ("v8", "v5", TWO_STAGE)
DETECT_STRIDES = (8, 16, 32)  # P3-P5 heads of YOLOv5/v8/11 segmentation models
TWO_STAGE_OUTPUTS = ("boxes", "labels", "scores", "masks")  # torchvision's order and names
# A two-stage model takes any image size; the pipeline's sources still fit frames into one canvas (the letterbox),
# and the two-stage segmenter feeds the model the canvas' content (the frame, scaled) without the padding. Unless
# the file's ``imgsz`` metadata says otherwise the canvas is 1280 x 1280: a 1280x720 or 720x1280 frame goes in at
# its own size, larger ones are scaled down to 1280 on their long side (torchvision's default transform then
# resizes to 800 / 1333 anyway).
TWO_STAGE_INPUT_HW = (1280, 1280)
MASK_SPACE_STRIDE = 4  # mask space of a two-stage model: the canvas / 4, as YOLO's prototypes
BACKGROUND_NAMES = ("__background__", "background")  # a names list starting with one of these names label 0


@dataclass(frozen=True)
class ModelMeta:
    """What maskwatch knows about a loaded model."""

    path: Path
    names: dict[int, str]
    input_hw: tuple[int, int]  # (height, width) of the model input, may be rectangular
    stride: int
    batch: int  # the input's fixed batch size; for a dynamic batch axis, the exporter's batch (>= 1)
    dynamic_batch: bool
    layout: str  # "v8": (B, 4 + nc + nm, N); "v5": (B, N, 5 + nc + nm); "maskrcnn": see TWO_STAGE
    num_masks: int = 32  # mask coefficients per detection (prototype channels); 0 for a two-stage model
    proto_hw: tuple[int, int] = (0, 0)  # prototype raster (height, width), usually input_hw / 4 (two-stage: the
    # mask-space raster of a frame filling input_hw)
    backend: str = ""
    input_name: str = "images"
    input_dtype: str = "float32"
    task: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)  # raw metadata as the file carries it
    # two-stage only: where boxes, labels, scores and masks are among the file's outputs
    output_index: tuple[int, ...] = ()

    @property
    def two_stage(self) -> bool:
        return self.layout == TWO_STAGE

    @property
    def nc(self) -> int:
        return len(self.names)

    @property
    def input_wh(self) -> tuple[int, int]:
        return (self.input_hw[1], self.input_hw[0])


class Engine(ABC):
    """A loaded model. ``infer`` takes float32 (B, 3, H, W) RGB 0..1 and returns the raw outputs.

    Subclasses implement ``_run`` for exactly the model's batch size (any size when
    ``meta.dynamic_batch``); ``infer`` loops (and pads the last chunk) for static-batch models.
    Outputs are returned as ``[detections, prototypes]`` (3-D, then 4-D), whatever the file's order.

    A two-stage model (``meta.layout == "maskrcnn"``) has no batch axis and takes any image size: ``_run`` gets one
    (3, H, W) image, ``infer_image`` runs one and ``infer`` a list of them (one output list per image).
    """

    meta: ModelMeta
    precision: str = "fp32"  # what runs: fp32, bf16, fp16 or int8

    @abstractmethod
    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the model once on a batch it accepts; return its outputs as float32 numpy arrays."""

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        meta = self.meta
        if meta.layout == TWO_STAGE:  # one image at a time, sizes free: one [boxes, labels, scores, masks] each
            return [self.infer_image(image) for image in batch]  # type: ignore[misc]
        h, w = meta.input_hw
        if batch.ndim != 4 or batch.shape[1:] != (3, h, w) or batch.shape[0] == 0:
            raise ValueError(f"{meta.path.name}: infer expects a (B, 3, {h}, {w}) batch, got shape {batch.shape}")
        if batch.dtype != np.float32:
            raise ValueError(f"{meta.path.name}: infer expects float32 input, got {batch.dtype}")
        b = len(batch)
        if meta.dynamic_batch or b == meta.batch:
            return _order_outputs(self._run(batch))
        step = meta.batch
        parts: list[list[np.ndarray]] = []
        for i in range(0, b, step):
            chunk = batch[i : i + step]
            n = len(chunk)
            if n < step:  # pad a short last chunk up to the model's fixed batch
                padded = np.zeros((step, 3, h, w), np.float32)
                padded[:n] = chunk
                chunk = padded
            parts.append([o[:n] for o in _order_outputs(self._run(chunk))])
        if len(parts) == 1:
            return parts[0]
        return [np.concatenate(outs, axis=0) for outs in zip(*parts, strict=True)]

    def infer_image(self, image: np.ndarray) -> list[np.ndarray]:
        """Two-stage models: one float32 (3, H, W) RGB 0..1 image of any size -> ``[boxes (N, 4) float32 in the
        image's pixels (x1, y1, x2, y2), labels (N,) int64 as the model numbers them (torchvision: 1-based, 0 =
        background), scores (N,) float32, masks (N, 1, H, W) float32 probabilities]``, whatever the file's order."""
        meta = self.meta
        if meta.layout != TWO_STAGE:
            raise ValueError(f"{meta.path.name}: infer_image is for two-stage models; this one has the {meta.layout} "
                             "layout (use infer with a (B, 3, H, W) batch)")
        if image.ndim != 3 or image.shape[0] != 3 or image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(f"{meta.path.name}: infer_image expects one (3, H, W) image, got shape {image.shape}")
        if image.dtype != np.float32:
            raise ValueError(f"{meta.path.name}: infer_image expects float32 input, got {image.dtype}")
        outputs = self._run(image)
        boxes, labels, scores, masks = (outputs[i] for i in meta.output_index)
        n = len(boxes)
        h, w = image.shape[1:]
        return [np.asarray(boxes, np.float32).reshape(n, 4), np.rint(labels).astype(np.int64).reshape(n),
                np.asarray(scores, np.float32).reshape(n), np.asarray(masks, np.float32).reshape(n, 1, h, w)]

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release the runtime's resources."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


KNOWN_LAYOUTS = (
    "YOLO-seg (an image batch (B, 3, H, W) in; detections (B, C, N) and mask prototypes (B, nm, h, w) out) or "
    "torchvision Mask R-CNN (one image [3, H, W] in; boxes [N, 4], labels [N], scores [N], masks [N, 1, H, W] out)"
)


def _order_outputs(outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Detections (3-D) first, prototypes (4-D) second; anything else is an error."""
    dets = [o for o in outputs if o.ndim == 3]
    protos = [o for o in outputs if o.ndim == 4]
    if len(dets) != 1 or len(protos) != 1:
        shapes = [tuple(o.shape) for o in outputs]
        raise ValueError(
            "expected a segmentation model with two outputs, detections (B, C, N) and mask prototypes "
            f"(B, nm, h, w); got outputs of shapes {shapes}. maskwatch reads {KNOWN_LAYOUTS}"
        )
    return [np.asarray(dets[0], np.float32), np.asarray(protos[0], np.float32)]


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output as a backend declares it: name, shape (None for a dynamic axis), element type
    as numpy names it ("float32", "int64", ...)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} [{dims}] {self.dtype}"


def two_stage_outputs(input_shape: Sequence[Any], outputs: Sequence[TensorInfo]) -> tuple[int, ...] | None:
    """Where boxes, labels, scores and masks are among ``outputs`` when the graph is a torchvision Mask R-CNN export,
    else None.

    The signature decides: one image input [3, H, W] (no batch axis) and four outputs, boxes [N, 4], labels [N]
    (integer), scores [N] (float) and masks [N, 1, H, W]. Outputs named boxes/labels/scores/masks (the names
    ``torch.onnx.export(..., output_names=[...])`` gives them) are taken by name; unnamed ones (an export without
    ``output_names``) by rank and type, labels before scores as torchvision returns them when both are floats.
    """
    if len(input_shape) != 3 or input_shape[0] not in (3, None) or len(outputs) != 4:
        return None
    by_name = {o.name.lower(): i for i, o in enumerate(outputs)}
    if set(by_name) == set(TWO_STAGE_OUTPUTS):
        index = tuple(by_name[k] for k in TWO_STAGE_OUTPUTS)
    else:
        rank2 = [i for i, o in enumerate(outputs) if len(o.shape) == 2]
        rank4 = [i for i, o in enumerate(outputs) if len(o.shape) == 4]
        rank1 = [i for i, o in enumerate(outputs) if len(o.shape) == 1]
        if len(rank2) != 1 or len(rank4) != 1 or len(rank1) != 2:
            return None
        ints = [i for i in rank1 if outputs[i].dtype.startswith(("int", "uint"))]
        labels = ints[0] if len(ints) == 1 else rank1[0]
        scores = rank1[1] if labels == rank1[0] else rank1[0]
        index = (rank2[0], labels, scores, rank4[0])
    boxes, labels, scores, masks = (outputs[i] for i in index)
    if (len(boxes.shape) != 2 or boxes.shape[1] not in (4, None) or len(labels.shape) != 1
            or len(scores.shape) != 1 or len(masks.shape) != 4 or masks.shape[1] not in (1, None)):
        return None
    return index


# ------------------------------------------------------------------------------------------ metadata


def _names_value(value: Any, source: str) -> dict[int, str] | list[str]:
    """A 'names' value as a dict {int id: name} or a list of names, from either or their Python-literal string."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"{source}: 'names' is not a Python literal dict or list: {value[:80]!r}") from exc
    if isinstance(value, Mapping):
        try:
            return {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: 'names' keys must be class ids (integers), got {list(value)[:5]}") from exc
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [str(v) for v in value]
    raise ValueError(f"{source}: 'names' must be a dict of id -> name or a list, got {type(value).__name__}")


def parse_names(value: Any, source: str) -> dict[int, str]:
    """Class names from a dict {id: name}, a list, or their Python-literal string (Ultralytics' metadata)."""
    value = _names_value(value, source)
    names = value if isinstance(value, dict) else dict(enumerate(value))
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{source}: class ids in 'names' must be 0..{len(names) - 1}, got {sorted(names)}")
    return names


def parse_imgsz(value: Any, source: str) -> tuple[int, int]:
    """``imgsz`` metadata ('[384, 640]', '640', [h, w]) -> (h, w)."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"{source}: 'imgsz' must be an int or [h, w], got {value!r}") from exc
    if isinstance(value, int):
        value = [value, value]
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, int) and v > 0 for v in value)
    ):
        raise ValueError(f"{source}: 'imgsz' must be a positive int or [h, w], got {value!r}")
    return (int(value[0]), int(value[1]))


def expected_anchors(input_hw: tuple[int, int], strides: Sequence[int] = DETECT_STRIDES) -> int:
    h, w = input_hw
    return sum(-(-h // s) * -(-w // s) for s in strides)


def detect_layout(
    pred_shape: tuple[int, int], num_masks: int, input_hw: tuple[int, int], source: str
) -> tuple[str, int]:
    """Tell the YOLOv8/11 layout (4 + nc + nm, N) from YOLOv5's (3N, 5 + nc + nm); returns (layout, nc).

    The anchor count decides: v8 has one anchor per cell of the stride-8/16/32 grids, v5 three.
    """
    a, b = pred_shape
    anchors = expected_anchors(input_hw)
    if b == anchors and a - 4 - num_masks > 0:
        return "v8", a - 4 - num_masks
    if a == 3 * anchors and b - 5 - num_masks > 0:
        return "v5", b - 5 - num_masks
    if b == 6 + num_masks:
        raise ValueError(
            f"{source}: detection output {pred_shape} looks like an end-to-end (NMS-free) export "
            f"(rows of x1, y1, x2, y2, score, class, {num_masks} coefficients); export with nms=False and "
            "end2end=False for maskwatch"
        )
    # Unusual strides or input sizes: fall back on "channels are fewer than anchors".
    if a < b and a - 4 - num_masks > 0:
        return "v8", a - 4 - num_masks
    if b < a and b - 5 - num_masks > 0:
        return "v5", b - 5 - num_masks
    raise ValueError(
        f"{source}: cannot read detection output of shape {pred_shape} with {num_masks} mask coefficients; "
        f"expected (4 + nc + {num_masks}, anchors) for YOLOv8/11-seg or (anchors, 5 + nc + {num_masks}) for YOLOv5-seg"
    )


def build_meta(
    *,
    path: Path,
    backend: str,
    metadata: Mapping[str, str],
    names: Mapping[int, str] | Sequence[str] | None,
    input_name: str,
    input_dtype: str,
    input_shape: Sequence[Any],
    probe: Callable[[int, tuple[int, int]], Sequence[np.ndarray]],
    outputs: Sequence[TensorInfo] | None = None,
) -> ModelMeta:
    """Assemble ``ModelMeta`` from the file's metadata, its input signature and one probe run.

    ``input_shape`` is (B, C, H, W) where a dynamic axis is a string or None (a two-stage model: (C, H, W));
    ``probe(batch, hw)`` runs the model once on zeros shaped like its input (batch ``batch``, height and width
    ``hw``; no batch axis for a (C, H, W) input) and returns its outputs (this doubles as the warm-up).
    ``outputs``: the graph's outputs as declared (backends that can tell them), which is how a two-stage model is
    recognised; without them only the YOLO layouts are read.
    """
    source = str(path)

    def static(v: Any) -> int | None:
        return int(v) if isinstance(v, (int, np.integer)) and int(v) > 0 else None

    if outputs is not None:
        index = two_stage_outputs([static(v) for v in input_shape], outputs)
        if index is not None:
            return _two_stage_meta(path=path, backend=backend, metadata=metadata, names=names, input_name=input_name,
                                   input_dtype=input_dtype, probe=probe, output_index=index)
        ranks = [len(o.shape) for o in outputs]
        if len(input_shape) != 4 or ranks.count(3) != 1 or ranks.count(4) != 1:  # what _order_outputs can read
            raise ValueError(
                f"{source}: unknown output layout: input {list(input_shape)}, outputs "
                f"{'; '.join(o.describe() for o in outputs)}. maskwatch reads {KNOWN_LAYOUTS}"
            )
    if len(input_shape) == 3:
        raise ValueError(
            f"{source}: a single-image input {list(input_shape)} (a two-stage model such as Mask R-CNN) runs on the "
            f"onnxruntime and openvino backends only"
        )
    if len(input_shape) != 4:
        raise ValueError(f"{source}: expected an image input (B, 3, H, W), got {list(input_shape)}")
    b_dim, c_dim, h_dim, w_dim = (static(v) for v in input_shape)
    if c_dim not in (None, 3):
        raise ValueError(f"{source}: expected 3 input channels (RGB), got {c_dim}")

    if h_dim and w_dim:
        input_hw = (h_dim, w_dim)
        if "imgsz" in metadata:
            meta_hw = parse_imgsz(metadata["imgsz"], source)
            if meta_hw != input_hw:
                log.warning("%s: metadata imgsz %s differs from the input shape %s; using the input shape",
                            source, meta_hw, input_hw)
    elif "imgsz" in metadata:
        input_hw = parse_imgsz(metadata["imgsz"], source)
    else:
        raise ValueError(
            f"{source}: the input has dynamic height/width {list(input_shape)} and the model has no 'imgsz' "
            "metadata; export it with a fixed imgsz or with Ultralytics' metadata"
        )

    stride = 32
    if "stride" in metadata:
        try:
            stride = int(ast.literal_eval(str(metadata["stride"])))
        except (ValueError, SyntaxError, TypeError) as exc:
            raise ValueError(f"{source}: 'stride' metadata must be an int, got {metadata['stride']!r}") from exc

    dynamic_batch = b_dim is None
    if dynamic_batch:
        batch = 1
        try:
            batch = max(1, int(ast.literal_eval(str(metadata.get("batch", "1")))))
        except (ValueError, SyntaxError, TypeError):
            pass
    else:
        batch = b_dim  # type: ignore[assignment]

    model_names = parse_names(metadata["names"], f"{source} metadata") if "names" in metadata else None
    given = parse_names(names, "names (from config)") if names is not None else None
    if given is None and model_names is None:
        raise ValueError(
            f"{source}: the model carries no class names ('names' metadata is missing); pass names "
            "(a list or {id: name}) in the model config"
        )

    outputs = _order_outputs(probe(1 if dynamic_batch else batch, input_hw))
    pred, protos = outputs
    num_masks = int(protos.shape[1])
    layout, nc = detect_layout(tuple(pred.shape[1:]), num_masks, input_hw, source)  # type: ignore[arg-type]
    chosen = given if given is not None else model_names
    assert chosen is not None
    if len(chosen) != nc:
        origin = "names (from config)" if given is not None else "'names' metadata"
        raise ValueError(
            f"{source}: the model predicts {nc} classes (output {tuple(pred.shape[1:])}, layout {layout}) "
            f"but {origin} lists {len(chosen)}: {chosen}"
        )
    return ModelMeta(
        path=path,
        names=dict(chosen),
        input_hw=input_hw,
        stride=stride,
        batch=batch,
        dynamic_batch=dynamic_batch,
        layout=layout,
        num_masks=num_masks,
        proto_hw=(int(protos.shape[2]), int(protos.shape[3])),
        backend=backend,
        input_name=input_name,
        input_dtype=input_dtype,
        task=metadata.get("task"),
        metadata=dict(metadata),
    )


def parse_two_stage_names(value: Any, source: str) -> dict[int, str]:
    """Class names of a two-stage model -> maskwatch's 0-based ids.

    torchvision numbers its labels from 1 (label 0 is the background, never output). maskwatch's class id is
    ``label - 1``. Accepted, as a value or its Python-literal string:

    * a list whose first name is ``__background__`` (or ``background``), as torchvision's category lists
      (``weights.meta["categories"]``): that name is dropped, the list's item k names label k, class id k - 1;
    * a list without it: item k names label k + 1, i.e. class id k;
    * a dict keyed 1..n: label ids; a dict keyed 0..n-1: item 0 is dropped when it is the background (then as
      1..n), else the keys are maskwatch's class ids (label id + 1).
    """
    value = _names_value(value, source)
    if isinstance(value, dict):
        keyed = value
        if keyed and sorted(keyed) == list(range(1, len(keyed) + 1)):  # torchvision label ids
            items = [keyed[k] for k in sorted(keyed)]
        elif sorted(keyed) == list(range(len(keyed))):
            items = [keyed[k] for k in sorted(keyed)]
            if items and items[0].strip().lower() in BACKGROUND_NAMES:
                items = items[1:]
        else:
            raise ValueError(f"{source}: 'names' keys must be 1..n (label ids) or 0..n-1, got {sorted(keyed)}")
    else:
        items = value
        if items and items[0].strip().lower() in BACKGROUND_NAMES:
            items = items[1:]
    if not items:
        raise ValueError(f"{source}: 'names' lists no class besides the background")
    return dict(enumerate(items))


def _two_stage_meta(
    *,
    path: Path,
    backend: str,
    metadata: Mapping[str, str],
    names: Mapping[int, str] | Sequence[str] | None,
    input_name: str,
    input_dtype: str,
    probe: Callable[[int, tuple[int, int]], Sequence[np.ndarray]],
    output_index: tuple[int, ...],
) -> ModelMeta:
    """``ModelMeta`` of a torchvision Mask R-CNN export (see ``two_stage_outputs``)."""
    source = str(path)
    if names is not None:
        chosen = parse_two_stage_names(names, "names (from config)")
    elif "names" in metadata:
        chosen = parse_two_stage_names(metadata["names"], f"{source} metadata")
    else:
        raise ValueError(
            f"{source}: the model carries no class names ('names' metadata is missing); pass names in the model "
            "config (a list, with or without '__background__' first)"
        )
    input_hw = parse_imgsz(metadata["imgsz"], source) if "imgsz" in metadata else TWO_STAGE_INPUT_HW
    hw = (32, 32)
    outs = probe(1, hw)  # a warm-up, and a check that the outputs are what the signature said
    boxes, labels, scores, masks = (np.asarray(outs[i]) for i in output_index)
    n = len(boxes)
    if boxes.shape != (n, 4) or labels.shape != (n,) or scores.shape != (n,) or masks.shape != (n, 1, *hw):
        raise ValueError(
            f"{source}: a Mask R-CNN export was expected to give boxes [N, 4], labels [N], scores [N], masks "
            f"[N, 1, H, W] for a [3, {hw[0]}, {hw[1]}] image; got {[tuple(o.shape) for o in outs]}"
        )
    return ModelMeta(
        path=path,
        names=chosen,
        input_hw=input_hw,
        stride=32,
        batch=1,
        dynamic_batch=False,
        layout=TWO_STAGE,
        num_masks=0,
        proto_hw=two_stage_mask_hw(input_hw),
        backend=backend,
        input_name=input_name,
        input_dtype=input_dtype,
        task=metadata.get("task"),
        metadata=dict(metadata),
        output_index=output_index,
    )


def two_stage_mask_hw(canvas_hw: tuple[int, int]) -> tuple[int, int]:
    """The mask-space raster of a two-stage model for a letterbox canvas: its size / 4, rounded up."""
    return (-(-canvas_hw[0] // MASK_SPACE_STRIDE), -(-canvas_hw[1] // MASK_SPACE_STRIDE))


# ------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class Backend:
    """A registered backend: its name, the model files it reads, and how to load one (None: planned)."""

    name: str
    suffixes: tuple[str, ...]  # file suffixes, or folder-name endings (Ultralytics' "_openvino_model")
    loader: Callable[..., Engine] | None
    summary: str = ""
    precisions: tuple[str, ...] = ("auto",)  # what `precision` may ask of it ("auto": the backend's choice)


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    _BACKENDS[backend.name] = backend


def backends() -> dict[str, Backend]:
    return dict(_BACKENDS)


def resolve_backend(path: Path, backend: str) -> Backend:
    """The backend for ``path``: by name, or for "auto" by the file's suffix."""
    if backend == "auto":
        suffix = path.suffix.lower() if not path.is_dir() else next(
            (s for b in _BACKENDS.values() for s in b.suffixes if path.name.endswith(s)), path.name)
        for b in _BACKENDS.values():
            if suffix in b.suffixes:
                chosen = b
                break
        else:
            known = sorted({s for b in _BACKENDS.values() for s in b.suffixes})
            raise ValueError(f"{path}: no backend reads '{suffix}' model files; expected one of {known}")
    elif backend in _BACKENDS:
        chosen = _BACKENDS[backend]
    else:
        raise ValueError(f"unknown engine backend {backend!r}; expected 'auto' or one of {sorted(_BACKENDS)}")
    if chosen.loader is None:
        ready = sorted(b.name for b in _BACKENDS.values() if b.loader is not None)
        raise ValueError(
            f"engine backend {chosen.name!r} ({path.name}) is not available yet: {chosen.summary}; "
            f"available now: {ready} (export the model to ONNX)"
        )
    return chosen


def load_engine(
    path: str | Path,
    backend: str = "auto",
    device: str = "cpu",
    names: Mapping[int, str] | Sequence[str] | None = None,
    threads: int | None = None,
    precision: str = "auto",
) -> Engine:
    """Load a segmentation model.

    ``backend``: "auto" (by file suffix), "onnxruntime", "openvino" (an .onnx, an IR .xml or Ultralytics'
    ``*_openvino_model`` folder), "tensorrt" (an .engine, or an .onnx built through the engine cache),
    "torchscript".
    ``device``: "cpu", "cuda" or "cuda:N" (openvino: "cpu", "gpu", "npu", "auto"). ``names`` overrides or supplies
    the class names (needed for a model without metadata). ``threads``: intra-op threads (None: the runtime's
    default). ``precision``: "auto" (the backend's choice for this model and device) or one the backend lists in
    ``backends()[name].precisions``; the engine's ``precision`` says what runs.
    """
    path = Path(path)
    if not path.is_file() and not (path.is_dir() and backend in ("auto", "openvino")):
        raise FileNotFoundError(f"model file not found: {path}")
    if threads is not None and threads < 0:
        raise ValueError(f"threads must be >= 0 (0 or None: runtime default), got {threads}")
    chosen = resolve_backend(path, backend)
    assert chosen.loader is not None
    if precision == "auto":
        return chosen.loader(path, device=device, names=names, threads=threads)
    if precision not in chosen.precisions:
        offered = [p for p in chosen.precisions if p != "auto"]
        raise ValueError(f"precision {precision!r}: the {chosen.name} backend runs {offered} (or auto)")
    return chosen.loader(path, device=device, names=names, threads=threads, precision=precision)
