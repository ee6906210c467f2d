"""The engine interface, model metadata and the backend registry.

A backend loads a model file and runs it; everything model-agnostic (metadata parsing, output
layout detection, batching a static-batch model in a loop) lives here so that every backend
behaves the same.
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

LAYOUTS = ("v8", "v5")
DETECT_STRIDES = (8, 16, 32)  # P3-P5 heads of YOLOv5/v8/11 segmentation models


@dataclass(frozen=True)
class ModelMeta:
    """What maskwatch knows about a loaded model."""

    path: Path
    names: dict[int, str]
    input_hw: tuple[int, int]  # (height, width) of the model input, may be rectangular
    stride: int
    batch: int  # the input's fixed batch size; for a dynamic batch axis, the exporter's batch (>= 1)
    dynamic_batch: bool
    layout: str  # "v8": (B, 4 + nc + nm, N); "v5": (B, N, 5 + nc + nm)
    num_masks: int = 32  # mask coefficients per detection (prototype channels)
    proto_hw: tuple[int, int] = (0, 0)  # prototype raster (height, width), usually input_hw / 4
    backend: str = ""
    input_name: str = "images"
    input_dtype: str = "float32"
    task: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)  # raw metadata as the file carries it

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
    """

    meta: ModelMeta
    precision: str = "fp32"  # what runs: fp32, bf16, fp16 or int8

    @abstractmethod
    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the model once on a batch it accepts; return its outputs as float32 numpy arrays."""

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        meta = self.meta
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

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release the runtime's resources."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _order_outputs(outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Detections (3-D) first, prototypes (4-D) second; anything else is an error."""
    dets = [o for o in outputs if o.ndim == 3]
    protos = [o for o in outputs if o.ndim == 4]
    if len(dets) != 1 or len(protos) != 1:
        shapes = [tuple(o.shape) for o in outputs]
        raise ValueError(
            "expected a segmentation model with two outputs, detections (B, C, N) and mask prototypes "
            f"(B, nm, h, w); got outputs of shapes {shapes}"
        )
    return [np.asarray(dets[0], np.float32), np.asarray(protos[0], np.float32)]


# ------------------------------------------------------------------------------------------ metadata


def parse_names(value: Any, source: str) -> dict[int, str]:
    """Class names from a dict {id: name}, a list, or their Python-literal string (Ultralytics' metadata)."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"{source}: 'names' is not a Python literal dict or list: {value[:80]!r}") from exc
    if isinstance(value, Mapping):
        try:
            names = {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: 'names' keys must be class ids (integers), got {list(value)[:5]}") from exc
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        names = {i: str(v) for i, v in enumerate(value)}
    else:
        raise ValueError(f"{source}: 'names' must be a dict of id -> name or a list, got {type(value).__name__}")
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
) -> ModelMeta:
    """Assemble ``ModelMeta`` from the file's metadata, its input signature and one probe run.

    ``input_shape`` is (B, C, H, W) where a dynamic axis is a string or None; ``probe(batch, hw)``
    runs the model once on zeros and returns its outputs (this doubles as the warm-up).
    """
    source = str(path)

    def static(v: Any) -> int | None:
        return int(v) if isinstance(v, (int, np.integer)) and int(v) > 0 else None

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
