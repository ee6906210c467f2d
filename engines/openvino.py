"""OpenVINO backend: Intel's runtime for CPUs (and Intel GPUs / NPUs), with bf16 and INT8 on CPUs that have them.

Reads an ``.onnx`` file directly, an OpenVINO IR (``.xml`` beside its ``.bin``), or Ultralytics' OpenVINO export
folder (``*_openvino_model/`` with the IR and ``metadata.yaml``: names, imgsz, stride). ONNX metadata comes from
the file itself (OpenVINO keeps it in the model's ``framework`` info).

Precision (``precision``): ``fp32``, ``bf16`` or ``fp16`` set OpenVINO's inference precision hint (bf16 runs in
hardware on CPUs with AVX512_BF16 or AMX; elsewhere OpenVINO emulates or refuses it); ``int8`` needs a quantized
model (QDQ ONNX from ``maskwatch engine quantize``, or an NNCF IR), whose remaining float parts run in bf16 where
the CPU has it. ``auto``: bf16 on such CPUs, else fp32 (int8 when the model is quantized).

Several inference threads share one compiled model, each with its own infer request; the model is compiled with
as many CPU streams as fit the cores at ``threads`` each, so concurrent calls really run at once.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from maskwatch.engines.base import Backend, Engine, TensorInfo, build_meta, register_backend
from maskwatch.engines.cpu import has_bf16

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_DEVICES = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU", "auto": "AUTO"}


def _one_line(exc: BaseException) -> str:
    """OpenVINO's multi-line errors ("Exception from src/...cpp:84:" frames) as their last, telling line."""
    lines = [ln.strip() for ln in str(exc).splitlines()
             if ln.strip() and not re.match(r"^(Exception from |Check ')", ln.strip())]
    return lines[0] if lines else type(exc).__name__


def _import_openvino():
    try:
        import openvino as ov
    except ImportError as exc:  # pragma: no cover - the extra is installed where this backend is chosen
        raise ImportError("the openvino backend needs the openvino package (pip install openvino)") from exc
    return ov


def resolve_model_files(path: Path) -> tuple[Path, dict]:
    """(the file OpenVINO reads, metadata from a metadata.yaml beside it) for .onnx, .xml or an export folder."""
    path = Path(path)
    if path.is_dir():
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) != 1:
            raise ValueError(f"{path}: an OpenVINO model folder must hold exactly one .xml, found "
                             f"{[x.name for x in xmls]}")
        return xmls[0], _metadata_yaml(path / "metadata.yaml")
    if path.suffix.lower() == ".xml":
        return path, _metadata_yaml(path.parent / "metadata.yaml")
    return path, {}


def _metadata_yaml(path: Path) -> dict:
    if not path.is_file():
        return {}
    import yaml

    data = yaml.safe_load(path.read_text())
    # as strings, the way ONNX metadata carries them (names as a dict literal, imgsz as a list literal)
    return {str(k): v if isinstance(v, str) else str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _framework_metadata(model) -> dict:
    """An ONNX file's metadata_props, as OpenVINO keeps them."""
    out: dict[str, str] = {}
    try:
        if model.has_rt_info(["framework"]):
            for key, value in model.get_rt_info(["framework"]).astype(dict).items():
                out[str(key)] = value.astype(str)
    except Exception:  # an IR without framework info: metadata.yaml or the config must name the classes
        pass
    return out


def _outputs_info(model) -> list[TensorInfo] | None:
    """The model's outputs as ``TensorInfo`` (how a two-stage model is recognised); None when a rank is dynamic."""
    out = []
    for i, o in enumerate(model.outputs):
        ps = o.get_partial_shape()
        if ps.rank.is_dynamic:
            return None
        names = o.get_names()
        name = o.get_any_name() if names else f"output{i}"
        dtype = o.get_element_type().to_dtype().name
        out.append(TensorInfo(name, tuple(d.get_length() if d.is_static else None for d in ps), dtype))
    return out


def is_quantized(model) -> bool:
    """A model with quantize/dequantize pairs (ONNX QDQ becomes FakeQuantize in OpenVINO)."""
    return any(op.get_type_name() in ("FakeQuantize", "DequantizeLinear", "QuantizeLinear") for op in model.get_ops())


def choose_precision(precision: str, quantized: bool, device: str) -> str:
    if precision == "auto":
        if quantized:
            return "int8"
        return "bf16" if device == "CPU" and has_bf16() else "fp32"
    if precision == "int8" and not quantized:
        raise ValueError("precision int8 needs a quantized model (make one with `maskwatch engine quantize`)")
    if precision != "int8" and quantized:
        raise ValueError(f"precision {precision}: this model is quantized (INT8); use precision int8 or auto")
    return precision


class OpenVinoEngine(Engine):
    def __init__(self, path: Path, device: str = "cpu", names: Mapping[int, str] | Sequence[str] | None = None,
                 threads: int | None = None, precision: str = "auto") -> None:
        ov = _import_openvino()
        path = Path(path)
        model_file, yaml_meta = resolve_model_files(path)
        ov_device = _DEVICES.get(device.strip().lower())
        if ov_device is None:
            raise ValueError(f"device {device!r}: the openvino backend runs on cpu, gpu, npu or auto")
        core = ov.Core()
        try:
            model = core.read_model(str(model_file))
        except Exception as exc:
            raise ValueError(f"openvino cannot read the model: {_one_line(exc)}") from None
        if len(model.inputs) != 1:
            raise ValueError(f"{path}: expected one image input, got {len(model.inputs)}")
        metadata = {**_framework_metadata(model), **yaml_meta}
        self.precision = choose_precision(precision, is_quantized(model), ov_device)
        inp = model.inputs[0]
        pshape = inp.get_partial_shape()
        input_shape = [d.get_length() if d.is_static else None for d in pshape]
        config: dict = {"PERFORMANCE_HINT": "LATENCY"}
        hint = _HINTS.get(self.precision, "bf16" if has_bf16() else "f32")  # int8: the float rest
        if ov_device == "CPU":
            config["INFERENCE_PRECISION_HINT"] = hint
            cores = os.cpu_count() or 1
            per_call = int(threads or 0) or cores
            config["INFERENCE_NUM_THREADS"] = per_call
            config["NUM_STREAMS"] = max(1, cores // per_call)  # concurrent calls from several workers
            config["ENABLE_CPU_PINNING"] = False  # share the cores with decoders and the other stages
        elif self.precision in _HINTS:
            config["INFERENCE_PRECISION_HINT"] = hint
        # a (B, 3, H, W) model with dynamic H/W runs at its imgsz; a two-stage model's (3, H, W) stays dynamic
        if len(input_shape) == 4 and any(v is None for v in input_shape[2:]) and "imgsz" in metadata:
            from maskwatch.engines.base import parse_imgsz

            h, w = parse_imgsz(metadata["imgsz"], str(path))
            model.reshape({inp.get_any_name(): [input_shape[0] or -1, 3, h, w]})
            input_shape = [input_shape[0], 3, h, w]
        try:
            self._compiled = core.compile_model(model, ov_device, config)
        except Exception as exc:
            raise ValueError(f"openvino cannot compile the model for {ov_device} ({self.precision}): "
                             f"{_one_line(exc)}") from None
        self.device = ov_device
        self.streams = int(self._compiled.get_property("NUM_STREAMS")) if ov_device == "CPU" else 1
        self._outputs = list(self._compiled.outputs)
        self._local = threading.local()  # one infer request per calling thread
        self._closed = False

        def probe(batch: int, hw: tuple[int, int]) -> list[np.ndarray]:
            # the first run picks kernels and allocates; doing it here keeps that off the first frame
            shape = (3, *hw) if len(input_shape) == 3 else (batch, 3, *hw)  # two-stage: no batch axis
            return self._run(np.zeros(shape, np.float32))

        self.meta = build_meta(path=path, backend="openvino", metadata=metadata, names=names,
                               input_name=inp.get_any_name(), input_dtype="float32", input_shape=input_shape,
                               probe=probe, outputs=_outputs_info(model))
        log.info("loaded %s with openvino %s on %s: %s, %d stream(s) x %s thread(s), input %s, %d classes",
                 path.name, ov.__version__.split("-")[0], ov_device, self.precision, self.streams,
                 config.get("INFERENCE_NUM_THREADS", "auto"), self.meta.input_hw, self.meta.nc)

    def _request(self):
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self._compiled.create_infer_request()
        return req

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._closed:
            raise RuntimeError("openvino engine is closed")
        req = self._request()
        req.infer({0: np.ascontiguousarray(batch, np.float32)})
        return [np.array(req.get_tensor(o).data, dtype=np.float32, copy=True) for o in self._outputs]

    def close(self) -> None:
        self._closed = True


def load_openvino(path: Path, device: str = "cpu", names=None, threads: int | None = None,
                  precision: str = "auto") -> OpenVinoEngine:
    return OpenVinoEngine(path, device=device, names=names, threads=threads, precision=precision)


register_backend(Backend("openvino", (".xml", "_openvino_model"), load_openvino,
                         "OpenVINO, CPU (bf16 / INT8 where the CPU has them), Intel GPU or NPU",
                         precisions=("auto", *PRECISIONS)))
