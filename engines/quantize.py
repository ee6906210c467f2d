"""INT8 static quantization of an Ultralytics segmentation ONNX model, calibrated on the user's own frames.

ONNX Runtime's ``quantize_static`` in QDQ format: weights per channel (symmetric int8), activations int8 from
the ranges the calibration frames produce. The result is an ordinary ONNX file that ONNX Runtime runs with int8
kernels (VNNI where the CPU has it) and OpenVINO reads directly. The model's metadata (names, imgsz, stride) is
copied over, so maskwatch and Ultralytics load it as they load the original.

``keep_float="head"`` (the default) leaves the last convolution of each output branch (box distribution, class
scores, mask coefficients), the DFL and the output decoding in float: those produce the numbers NMS and the mask
threshold compare, and quantizing them costs accuracy for little speed. ``keep_float="none"`` quantizes every
convolution (measure with ``maskwatch eval masks --precision int8`` before using it).

Needs the ``onnx`` package (the ``[quantize]`` extra). The other quantizer, NNCF into an OpenVINO model folder
(``maskwatch engine quantize --method nncf``, the default where nncf is installed), is ``quantize_nncf``.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from maskwatch.engines.preprocess import InputBatch

log = logging.getLogger(__name__)

# Ultralytics' Segment head is the last module: model.<k>/cv2 (boxes), cv3 (classes), cv4 (mask coefficients),
# dfl, proto. Their final convolutions are the ones without a "/conv/" wrapper (no BN + SiLU after them).
_HEAD_OUTPUT_CONV = re.compile(r"/model\.\d+/(cv2|cv3|cv4)\.\d+/(cv\d\.\d+\.\d+|cv3\.\d+\.\d+)/Conv$")
_DFL = re.compile(r"/model\.\d+/dfl/")


class CalibrationError(ValueError):
    """The calibration source gives no usable frames (the message names it)."""


def head_nodes(model) -> list[str]:
    """Names of the nodes left in float with keep_float="head": the head's output convolutions, the DFL,
    and every node after the last convolution (the box decoding and concatenation of the outputs)."""
    nodes = list(model.graph.node)
    keep = [n.name for n in nodes if n.op_type == "Conv" and (_HEAD_OUTPUT_CONV.search(n.name) or _DFL.search(n.name))]
    last_conv = max((i for i, n in enumerate(nodes) if n.op_type in ("Conv", "ConvTranspose")), default=-1)
    proto_tail = {n.name for n in nodes if "/proto/" in n.name}
    keep += [n.name for n in nodes[last_conv + 1:] if n.name not in proto_tail]
    return sorted(set(keep))


class _Reader:
    """ONNX Runtime's calibration reader over letterboxed RGB uint8 frames."""

    def __init__(self, frames: Iterable[np.ndarray], input_name: str, input_hw: tuple[int, int]) -> None:
        self._frames = iter(frames)
        self._name = input_name
        self._batch = InputBatch(input_hw, 1)
        self.count = 0

    def get_next(self):
        frame = next(self._frames, None)
        if frame is None:
            return None
        self.count += 1
        return {self._name: self._batch.fill([frame]).copy()}

    def rewind(self):  # pragma: no cover - not used by the MinMax calibrator
        raise NotImplementedError


def quantize_onnx(model_path: Path, frames: Iterable[np.ndarray], out: Path, *, keep_float: str = "head",
                  method: str = "minmax") -> dict:
    """Write an INT8 QDQ copy of ``model_path`` to ``out``, calibrated on ``frames`` (letterboxed to the model's
    input size, RGB uint8). Returns a summary: frames used, nodes kept in float, sizes."""
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise ImportError(f"engine quantize needs the onnx package (pip install 'maskwatch[quantize]'): {exc}") \
            from None
    if keep_float not in ("head", "none"):
        raise ValueError(f"keep_float must be 'head' or 'none', got {keep_float!r}")
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise ValueError(f"calibration method must be one of {sorted(methods)}, got {method!r}")
    model_path, out = Path(model_path), Path(out)
    source = onnx.load(str(model_path))
    inp = source.graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4 or not dims[2] or not dims[3]:
        raise ValueError(f"{model_path}: quantization needs a fixed input size, got {dims}")
    input_hw = (dims[2], dims[3])
    excluded = head_nodes(source) if keep_float == "head" else []
    metadata = {p.key: p.value for p in source.metadata_props}
    with tempfile.TemporaryDirectory(prefix="maskwatch-quant-") as tmp:
        prep = Path(tmp) / "prep.onnx"
        quant_pre_process(str(model_path), str(prep), skip_symbolic_shape=True)
        reader = _Reader(frames, inp.name, input_hw)
        raw = Path(tmp) / "int8.onnx"
        quantize_static(str(prep), str(raw), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=methods[method], nodes_to_exclude=excluded,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        if reader.count == 0:
            raise CalibrationError("no calibration frames: the source gave none")
        model = onnx.load(str(raw))
    del model.metadata_props[:]
    for key, value in {**metadata, "precision": "int8", "quantization": f"QDQ int8 per-channel, {method}, "
                       f"{reader.count} calibration frames, float head: {keep_float == 'head'}"}.items():
        model.metadata_props.add(key=key, value=value)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    summary = {"frames": reader.count, "kept_float": len(excluded), "bytes_in": model_path.stat().st_size,
               "bytes_out": out.stat().st_size, "out": str(out)}
    log.info("quantized %s -> %s: %d calibration frames, %d nodes kept in float", model_path.name, out,
             reader.count, len(excluded))
    return summary
