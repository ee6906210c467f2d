"""Segmentation engines: model runtimes behind one interface, Ultralytics-exact pre/post-processing.

``load_engine`` picks a backend (ONNX Runtime, TensorRT, TorchScript) and reads the
model's metadata; ``letterbox`` fits a frame into the model input; ``Segmenter`` turns letterboxed
frames into ``Detections`` with masks in mask space.

This package imports numpy, OpenCV and the runtime only; never ``pipeline``, ``zones``, ``scenes`` or
Ultralytics.
"""

import os

# The mask products (coefficients x prototypes) are small; a multi-threaded BLAS only adds threads that
# wake and spin against the decoders and ONNX Runtime on the same cores (measured: post-processing of a
# 720p frame with 19 detections, median 7.3 ms with OpenBLAS' default threads on a busy 2-core machine,
# 1.0 ms with one). Effective only when this runs before numpy is imported (pipeline/__init__.py does the
# same); an explicit setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from engines import ort as _ort  # noqa: E402, F401  (registers the backends)
from engines import torchscript as _torchscript  # noqa: E402, F401  (imports torch only when used)
from engines import tensorrt as _tensorrt  # noqa: E402, F401  (registers TensorRT; imports it lazily)
from engines.base import Backend, Engine, ModelMeta, backends, load_engine, register_backend  # noqa: E402
from engines.preprocess import InputBatch, Letterbox, letterbox  # noqa: E402
from engines.results import Detections, MaskSpace  # noqa: E402
from engines.segmenter import Segmenter  # noqa: E402

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
