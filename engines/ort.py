"""ONNX Runtime backend."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from maskwatch.engines.base import Backend, Engine, TensorInfo, build_meta, register_backend

log = logging.getLogger(__name__)

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16"}


def _tensor_info(arg) -> TensorInfo:
    """An ORT NodeArg as ``TensorInfo``: symbolic axes become None, "tensor(int64)" becomes "int64"."""
    kind = arg.type.removeprefix("tensor(").removesuffix(")")
    dtype = {"float": "float32", "double": "float64"}.get(kind, kind)
    shape = tuple(int(d) if isinstance(d, int) and d > 0 else None for d in (arg.shape or ()))
    return TensorInfo(arg.name, shape, dtype)


def _providers(device: str, available: Sequence[str]) -> list:
    """ORT execution providers for ``device`` ("cpu", "cuda", "cuda:N" or "auto")."""
    device = device.strip().lower()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
        return _providers(device, available)
    if device == "cuda" or device.startswith("cuda:"):
        index = device.partition(":")[2] or "0"
        if not index.isdigit():
            raise ValueError(f"device {device!r}: expected 'cuda' or 'cuda:N'")
        if "CUDAExecutionProvider" not in available:
            raise ValueError(
                f"device {device!r} asked for, but this onnxruntime has no CUDAExecutionProvider "
                f"(available: {list(available)}); install onnxruntime-gpu or use device 'cpu'"
            )
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'auto'")


class OrtEngine(Engine):
    """A model run by ONNX Runtime (CPU by default, CUDA when asked for and present)."""

    def __init__(
        self,
        path: Path,
        device: str = "cpu",
        names: Mapping[int, str] | Sequence[str] | None = None,
        threads: int | None = None,
        precision: str = "auto",
    ) -> None:
        import onnxruntime as ort

        quantized = is_qdq(path)
        if precision == "int8" and not quantized:
            raise ValueError(f"{path}: precision int8 needs a quantized model (make one with `maskwatch engine "
                             f"quantize`)")
        if precision == "fp32" and quantized:
            raise ValueError(f"{path}: this model is quantized (INT8); use precision int8 or auto")
        self.precision = "int8" if quantized else "fp32"

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = int(threads or 0)  # 0: one per physical core
        opts.inter_op_num_threads = 1
        # Idle ORT worker threads spin by default; that steals the cores decoder threads need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        opts.log_severity_level = 3
        providers = _providers(device, ort.get_available_providers())
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # ORT raises its own types (InvalidProtobuf, Fail, ...)
            raise ValueError(f"{path}: onnxruntime cannot load the model: {exc}") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{path}: expected one image input, got {[i.name for i in inputs]}")
        inp = inputs[0]
        if inp.type not in _ORT_TYPES:
            raise ValueError(f"{path}: expected a float32 or float16 input, got {inp.type}")
        self._input_name = inp.name
        self._input_dtype = np.dtype(_ORT_TYPES[inp.type])
        self._output_names = [o.name for o in self._session.get_outputs()]
        self.providers = self._session.get_providers()
        metadata = dict(self._session.get_modelmeta().custom_metadata_map)

        def probe(batch: int, hw: tuple[int, int]) -> list[np.ndarray]:
            # The first run allocates ORT's memory arena and picks kernels; doing it here keeps that cost
            # off the first frame, and the real output shapes tell the layout (v8 / v5) and class count.
            # A two-stage model's input has no batch axis: (3, H, W).
            shape = (3, *hw) if len(inp.shape) == 3 else (batch, 3, *hw)
            return self._run(np.zeros(shape, np.float32))

        self.meta = build_meta(
            path=path,
            backend="onnxruntime",
            metadata=metadata,
            names=names,
            input_name=inp.name,
            input_dtype=self._input_dtype.name,
            input_shape=inp.shape,
            probe=probe,
            # the declared outputs tell a two-stage model (Mask R-CNN); an output of unknown rank tells nothing
            outputs=None if any(o.shape is None for o in self._session.get_outputs())
            else [_tensor_info(o) for o in self._session.get_outputs()],
        )
        if self._input_dtype == np.float16 and not quantized:
            self.precision = "fp16"
        log.info(
            "loaded %s with onnxruntime (%s): %s, input %s, batch %s%s, %d classes, layout %s",
            path.name, self.providers[0], self.precision, self.meta.input_hw, self.meta.batch,
            " (dynamic)" if self.meta.dynamic_batch else "", self.meta.nc, self.meta.layout,
        )

    @property
    def session_options(self):
        """The ONNX Runtime ``SessionOptions`` in force (threads, optimisation level, config entries)."""
        return self._session.get_session_options()

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._session is None:
            raise RuntimeError(f"{self.meta.path.name}: engine is closed")
        if batch.dtype != self._input_dtype:
            batch = batch.astype(self._input_dtype)
        outputs = self._session.run(self._output_names, {self._input_name: batch})
        return [o if o.dtype == np.float32 else o.astype(np.float32) for o in outputs]

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]


def is_qdq(path: Path) -> bool:
    """An ONNX model with QuantizeLinear/DequantizeLinear nodes (INT8, QDQ format). Node types are plain
    strings in the file, so a byte search finds them without parsing the graph."""
    with open(path, "rb") as f:
        return b"DequantizeLinear" in f.read()


register_backend(Backend("onnxruntime", (".onnx",), OrtEngine, "ONNX Runtime, CPU or CUDA",
                         precisions=("auto", "fp32", "int8")))
