"""TorchScript backend: an Ultralytics ``format="torchscript"`` export run by PyTorch, on CPU or CUDA.

Ultralytics traces the model (``torch.jit.trace``) and saves its metadata (names, imgsz, stride,
batch, task, args...) as JSON in the archive's extra file ``config.txt``; it is read back here with
``torch.jit.load(..., _extra_files=...)``, the same entry Ultralytics' ``read_metadata`` opens.
A traced YOLO head holds its anchors as constants, so the input height/width is fixed to the export's
``imgsz``; the batch axis follows the input.

PyTorch is imported only when a TorchScript model is loaded, so ``import engines`` works without it;
the backend then says what to install.

Options: ``device`` ("cpu", "cuda", "cuda:N"), ``half`` (fp16 weights and inputs, CUDA only),
``threads`` (``torch.set_num_threads``, process-wide) and ``cuda_graph`` (capture one CUDA graph per
batch size and replay it; CUDA only).
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskwatch.engines.base import Backend, Engine, build_meta, register_backend

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

METADATA_FILE = "config.txt"  # Ultralytics' torch.jit extra file (utils/export/torchscript.py)


def _import_torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            "the torchscript engine backend needs PyTorch, which is not installed: install torch "
            "(https://pytorch.org/get-started/locally/) or export the model to ONNX (backend onnxruntime)"
        ) from exc
    return torch


def parse_device(device: str):
    """'cpu', 'cuda' or 'cuda:N' -> torch.device (checked: CUDA must be present)."""
    torch = _import_torch()
    name = str(device).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        index = name.partition(":")[2] or "0"
        if not index.isdigit():
            raise ValueError(f"device {device!r}: expected 'cuda' or 'cuda:N'")
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but this PyTorch sees no CUDA device; use device 'cpu'")
        if int(index) >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return torch.device("cuda", int(index))
    raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'auto'")


def read_metadata(raw: bytes | str) -> dict[str, str]:
    """Ultralytics' ``config.txt`` JSON -> metadata as ONNX exports carry it (every value a string).

    JSON turns the ``names`` keys into strings; they are made ints again so ``names`` reads exactly as
    in an ONNX file ("{0: 'worker', ...}"). An empty or missing entry (a TorchScript file not made by
    Ultralytics) gives no metadata.
    """
    text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = ast.literal_eval(text)  # very old exports wrote a Python literal
    if not isinstance(data, Mapping):
        raise ValueError(f"TorchScript metadata ({METADATA_FILE}) is not a mapping: {text[:80]!r}")
    out: dict[str, str] = {}
    for key, value in data.items():
        if key == "names" and isinstance(value, Mapping):
            try:
                value = {int(k): v for k, v in value.items()}
            except (TypeError, ValueError):
                pass
        out[str(key)] = value if isinstance(value, str) else str(value)
    return out


def _flatten(out: Any) -> list:
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    if isinstance(out, Mapping):
        return [t for o in out.values() for t in _flatten(o)]
    return [out]


def order_outputs_torch(outputs: Any) -> list:
    """``[detections (3-D), prototypes (4-D)]`` from a model's (possibly nested) outputs, float32."""
    flat = _flatten(outputs)
    dets = [o for o in flat if getattr(o, "ndim", 0) == 3]
    protos = [o for o in flat if getattr(o, "ndim", 0) == 4]
    if len(dets) != 1 or len(protos) != 1:
        shapes = [tuple(getattr(o, "shape", ())) for o in flat]
        raise ValueError(
            "expected a segmentation model with two outputs, detections (B, C, N) and mask prototypes "
            f"(B, nm, h, w); got outputs of shapes {shapes}"
        )
    return [dets[0].float(), protos[0].float()]


class TorchScriptEngine(Engine):
    """A TorchScript model run by PyTorch. ``infer_torch`` keeps everything on the device."""

    def __init__(
        self,
        path: Path,
        device: str = "cpu",
        names: Mapping[int, str] | Sequence[str] | None = None,
        threads: int | None = None,
        half: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        torch = _import_torch()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        self.device = parse_device(device)
        if half and self.device.type != "cuda":
            raise ValueError(f"{path.name}: half=True (fp16) needs a CUDA device, got device {device!r}; "
                             "use half=False on the CPU")
        if cuda_graph and self.device.type != "cuda":
            raise ValueError(f"{path.name}: cuda_graph=True needs a CUDA device, got device {device!r}")
        if threads:
            torch.set_num_threads(int(threads))  # process-wide in PyTorch
        self.half = bool(half)
        self.cuda_graph = bool(cuda_graph)
        self.input_dtype = torch.float16 if self.half else torch.float32
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, list]] = {}
        extra = {METADATA_FILE: ""}
        try:
            model = torch.jit.load(str(path), map_location=self.device, _extra_files=extra)
        except Exception as exc:  # RuntimeError for a corrupt archive, ValueError for a non-TorchScript file
            raise ValueError(f"{path}: PyTorch cannot load the TorchScript model: {exc}") from exc
        model.eval()
        self._model = model.half() if self.half else model.float()
        metadata = read_metadata(extra[METADATA_FILE])

        def probe(batch: int, hw: tuple[int, int]) -> list[np.ndarray]:
            # One run on zeros: the output shapes tell the layout and class count; also the warm-up.
            return self._run(np.zeros((batch, 3, *hw), np.float32))

        # Height and width are fixed by the traced anchors: the export's imgsz; the batch axis is free.
        self.meta = build_meta(
            path=path,
            backend="torchscript",
            metadata=metadata,
            names=names,
            input_name="images",
            input_dtype="float16" if self.half else "float32",
            input_shape=["batch", 3, "height", "width"],
            probe=probe,
        )
        log.info(
            "loaded %s with PyTorch %s (%s%s%s): input %s, %d classes, layout %s",
            path.name, torch.__version__, self.device, ", fp16" if self.half else "",
            ", CUDA graphs" if self.cuda_graph else "", self.meta.input_hw, self.meta.nc, self.meta.layout,
        )

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        import torch

        if self._model is None:
            raise RuntimeError(f"{self.meta.path.name}: engine is closed")
        with torch.inference_mode():
            if self.cuda_graph:
                return self._replay(x)
            return order_outputs_torch(self._model(x))

    def _replay(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Run through a CUDA graph captured for this input shape (captured on first use)."""
        import torch

        key = tuple(x.shape)
        if key not in self._graphs:
            static_in = torch.zeros_like(x)
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up outside the graph (cuDNN picks its kernels)
                    self._model(static_in)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = order_outputs_torch(self._model(static_in))
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return [o.clone() for o in static_out]  # the next replay overwrites the graph's outputs

    def infer_torch(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) tensor 0..1 (any float dtype, any device) -> ``[pred, protos]`` float32 on the device."""
        h, w = self.meta.input_hw
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (3, h, w) or batch.shape[0] == 0:
            raise ValueError(f"{self.meta.path.name}: infer expects a (B, 3, {h}, {w}) batch, got {tuple(batch.shape)}")
        x = batch.to(device=self.device, dtype=self.input_dtype, non_blocking=True)
        return self._forward(x.contiguous())

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self.input_dtype)
        return [o.cpu().numpy() for o in self._forward(x)]

    def close(self) -> None:
        self._model = None
        self._graphs.clear()


def load_torchscript(
    path: Path,
    device: str = "cpu",
    names: Mapping[int, str] | Sequence[str] | None = None,
    threads: int | None = None,
    **options: Any,
) -> TorchScriptEngine:
    """The backend's loader (``load_engine`` passes device, names, threads); ``options``: half, cuda_graph,
    precision (fp16: half)."""
    precision = options.pop("precision", None)
    if precision is not None:
        options["half"] = precision == "fp16"
    return TorchScriptEngine(path, device=device, names=names, threads=threads, **options)


register_backend(
    Backend("torchscript", (".torchscript",), load_torchscript, "TorchScript (Ultralytics export) on PyTorch, CPU or CUDA",
            precisions=("auto", "fp32", "fp16"))
)
