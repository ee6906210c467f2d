"""INT8 post-training quantization with NNCF into an OpenVINO model folder, calibrated on the user's own frames.

OpenVINO reads the ONNX model; NNCF (``nncf.quantize``, preset MIXED: symmetric int8 weights, asymmetric int8
activations) inserts FakeQuantize operations with the ranges the calibration frames produce; the result is saved
as an OpenVINO IR in full float precision beside a ``metadata.yaml`` (names, imgsz, stride, task, batch and the
rest of the ONNX model's metadata), the layout of Ultralytics' ``*_int8_openvino_model/`` exports, so maskwatch's
OpenVINO backend and Ultralytics load it as they load those.

``keep_float="head"`` (the default) leaves the output decoding in float, as Ultralytics' own INT8 export does: the
segmentation head's own operations (the box decoding's subtract / add / multiply, the class sigmoid, the
concatenations of the outputs), its DFL, and every sigmoid (SiLU's included; OpenVINO fuses those into the
convolutions before them anyway). The head's convolutions and the mask prototypes are quantized. Measured on the
bundled model (README, CPU inference), this costs less mask mAP than the ONNX Runtime QDQ model and runs faster.
``keep_float="none"``: nothing is excluded.

Needs the ``nncf`` package (the ``[quantize]`` extra); the runtime never imports it.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from maskwatch.engines.preprocess import InputBatch
from maskwatch.engines.quantize import CalibrationError

log = logging.getLogger(__name__)

_SCOPE = re.compile(r"^(/model\.\d+)/")  # an Ultralytics ONNX export names each op after its module: /model.23/...
_IR_NAME = "model"  # model.xml / model.bin, as Ultralytics' export names them
FOLDER_SUFFIX = "_openvino_model"


def nncf_available() -> bool:
    """Whether the nncf package is installed (without importing it)."""
    return importlib.util.find_spec("nncf") is not None


def default_out(model_path: Path) -> Path:
    """``models/x.onnx`` -> ``models/x_int8_openvino_model`` (Ultralytics' name for its INT8 OpenVINO export)."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}_int8{FOLDER_SUFFIX}")


def head_scope(model) -> str | None:
    """The module path of the model's head ("/model.23"): the first named module met walking up from the outputs."""
    queue = [result.input_value(0).get_node() for result in model.get_results()]
    seen: set[int] = set()
    while queue:
        node = queue.pop(0)
        if id(node) in seen:
            continue
        seen.add(id(node))
        match = _SCOPE.match(node.get_friendly_name())
        if match:
            return match.group(1)
        queue += [inp.get_source_output().get_node() for inp in node.inputs()]
    return None


def float_ops(model) -> list[str]:
    """Names of the operations kept in float with keep_float="head": every Sigmoid, the head module's own
    operations (not those of its convolution branches or mask prototypes), and its DFL."""
    scope = head_scope(model)
    own = re.compile(rf"^{re.escape(scope)}/([^/]+|dfl/.+)$") if scope else None
    keep = []
    for op in model.get_ordered_ops():
        kind, name = op.get_type_name(), op.get_friendly_name()
        if kind in ("Constant", "Parameter", "Result"):
            continue
        if kind == "Sigmoid" or (own is not None and own.match(name)):
            keep.append(name)
    return keep


def _metadata_yaml(metadata: dict[str, str]) -> dict:
    """ONNX metadata strings as YAML values: names a dict, imgsz a list, stride and batch ints (as Ultralytics
    writes them); strings that are no Python literal stay strings."""
    out: dict = {}
    for key, value in metadata.items():
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            out[key] = value
    return out


def quantize_openvino(model_path: Path, frames: Iterable[np.ndarray], out: Path | None = None, *,
                      keep_float: str = "head") -> dict:
    """Write an NNCF INT8 OpenVINO model folder (``model.xml``, ``model.bin``, ``metadata.yaml``) of the ONNX
    ``model_path`` to ``out`` (default: ``<stem>_int8_openvino_model`` beside it), calibrated on ``frames``
    (letterboxed to the model's input size, RGB uint8). Returns a summary: frames used, operations kept in float,
    sizes."""
    if keep_float not in ("head", "none"):
        raise ValueError(f"keep_float must be 'head' or 'none', got {keep_float!r}")
    model_path = Path(model_path)
    out = Path(out) if out is not None else default_out(model_path)
    if not out.name.endswith(FOLDER_SUFFIX):
        raise ValueError(f"{out}: the NNCF model is an OpenVINO model folder; name it *{FOLDER_SUFFIX} "
                         f"(default {default_out(model_path).name})")
    if out.exists() and (not out.is_dir() or {p.name for p in out.iterdir()} - {f"{_IR_NAME}.xml",
                                                                               f"{_IR_NAME}.bin", "metadata.yaml"}):
        raise ValueError(f"{out}: exists and is not an OpenVINO model folder this command wrote")
    # usage telemetry (NNCF sends it unless told not to): maskwatch sends nothing anywhere
    os.environ.setdefault("NNCF_CI", "1")
    try:
        import nncf
        import openvino as ov
        import yaml
    except ImportError as exc:
        raise ImportError(f"engine quantize --method nncf needs the nncf package (pip install 'maskwatch[quantize]'): "
                          f"{exc}") from None
    core = ov.Core()
    try:
        model = core.read_model(str(model_path))
    except Exception as exc:
        raise ValueError(f"{model_path}: openvino cannot read the model: {str(exc).strip().splitlines()[-1]}") \
            from None
    if len(model.inputs) != 1:
        raise ValueError(f"{model_path}: expected one image input, got {len(model.inputs)}")
    pshape = model.inputs[0].get_partial_shape()
    if pshape.rank.is_dynamic or len(pshape) != 4 or not pshape[2].is_static or not pshape[3].is_static:
        raise ValueError(f"{model_path}: quantization needs a fixed input size, got {pshape}")
    input_hw = (pshape[2].get_length(), pshape[3].get_length())
    metadata = {}
    if model.has_rt_info(["framework"]):
        metadata = {str(k): v.astype(str) for k, v in model.get_rt_info(["framework"]).astype(dict).items()}

    # NNCF walks the data set more than once (statistics, then bias correction): keep the uint8 frames (300 at
    # 384x640 are 220 MB) and make each float input when it is asked for
    calib = list(frames)
    if not calib:
        raise CalibrationError("no calibration frames: the source gave none")
    batch = InputBatch(input_hw, 1)
    dataset = nncf.Dataset(calib, lambda frame: batch.fill([frame]).copy())
    kept = float_ops(model) if keep_float == "head" else []
    # NNCF logs every operation it leaves alone at INFO on stdout: only with maskwatch's debug log level
    nncf.set_log_level(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.WARNING)
    quantized = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.MIXED, subset_size=len(calib),
                              ignored_scope=nncf.IgnoredScope(names=kept, validate=False) if kept else None)

    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {**_metadata_yaml(metadata), "precision": "int8",
            "quantization": f"NNCF {nncf.__version__} int8, preset mixed, {len(calib)} calibration frames, "
                            f"float head: {keep_float == 'head'}"}
    with tempfile.TemporaryDirectory(prefix=".maskwatch-quant-", dir=out.parent) as tmp:
        staged = Path(tmp) / out.name
        staged.mkdir()
        ov.save_model(quantized, str(staged / f"{_IR_NAME}.xml"), compress_to_fp16=False)
        (staged / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
        if out.exists():
            shutil.rmtree(out)
        staged.rename(out)
    bytes_out = sum(p.stat().st_size for p in out.iterdir())
    summary = {"frames": len(calib), "kept_float": len(kept), "bytes_in": model_path.stat().st_size,
               "bytes_out": bytes_out, "out": str(out)}
    log.info("quantized %s -> %s with NNCF: %d calibration frames, %d operations kept in float", model_path.name,
             out, len(calib), len(kept))
    return summary
