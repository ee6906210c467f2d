"""Segmentation engines: model runtimes behind one interface, Ultralytics-exact pre/post-processing.

``load_engine`` picks a backend (ONNX Runtime, OpenVINO, TensorRT, TorchScript) and reads the
model's metadata; ``letterbox`` fits a frame into the model input; ``Segmenter`` turns letterboxed
frames into ``Detections`` with masks in mask space (``TwoStageSegmenter`` for a torchvision Mask R-CNN
export, layout ``maskrcnn``; ``Segmenter(engine)`` picks it).

This package imports numpy, OpenCV and the runtime only; never ``maskwatch.pipeline``, ``maskwatch.zones``,
``maskwatch.scenes`` or Ultralytics (import-linter contracts in pyproject.toml).
"""

from maskwatch.engines import ort as _ort  # noqa: F401  (registers the backends)
from maskwatch.engines import torchscript as _torchscript  # noqa: F401  (imports torch only when used)
from maskwatch.engines import tensorrt as _tensorrt  # noqa: F401  (registers TensorRT; imports it lazily)
from maskwatch.engines import openvino as _openvino  # noqa: F401  (registers OpenVINO; imports it lazily)
from maskwatch.engines.base import TWO_STAGE, Backend, Engine, ModelMeta, backends, load_engine, register_backend
from maskwatch.engines.preprocess import InputBatch, Letterbox, letterbox
from maskwatch.engines.results import Detections, MaskSpace
from maskwatch.engines.segmenter import Segmenter
from maskwatch.engines.twostage import TwoStageSegmenter

__all__ = [
    "TWO_STAGE",
    "Backend",
    "Detections",
    "Engine",
    "InputBatch",
    "Letterbox",
    "MaskSpace",
    "ModelMeta",
    "Segmenter",
    "TwoStageSegmenter",
    "backends",
    "letterbox",
    "load_engine",
    "register_backend",
]
