"""Segmentation engines: model runtimes behind one interface, Ultralytics-exact pre/post-processing.

``load_engine`` picks a backend (ONNX Runtime now; TensorRT and TorchScript are planned) and reads the
model's metadata; ``letterbox`` fits a frame into the model input; ``Segmenter`` turns letterboxed
frames into ``Detections`` with masks in mask space.

This package imports numpy, OpenCV and the runtime only; never ``pipeline``, ``zones``, ``scenes`` or
Ultralytics.
"""

from engines import ort as _ort  # noqa: F401  (registers the backends)
from engines.base import Backend, Engine, ModelMeta, backends, load_engine, register_backend
from engines.preprocess import InputBatch, Letterbox, letterbox
from engines.results import Detections, MaskSpace
from engines.segmenter import Segmenter

__all__ = [
    "Backend",
    "Detections",
    "Engine",
    "InputBatch",
    "Letterbox",
    "MaskSpace",
    "ModelMeta",
    "Segmenter",
    "backends",
    "letterbox",
    "load_engine",
    "register_backend",
]
