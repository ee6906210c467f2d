"""Build the runtime's parts from a config: the segmenter of a ``model`` section, and the checks that need it.

The command line, the benchmarks and the evaluations all build their segmenter here, so a config means
the same engine, thresholds and class filter everywhere. Errors are ``ConfigError`` naming the field.
"""

from __future__ import annotations

import logging
from pathlib import Path

from maskwatch.engines import Segmenter, load_engine
from maskwatch.zones import ConfigError, load_zone_file

log = logging.getLogger(__name__)


def build_segmenter(model_cfg, file: str | Path | None = None, tracker_cfg=None, threads: int | None = None):
    """Engine + pre/post-processing for a ``model`` config section; errors name the field.

    ``tracker_cfg``: the tracker's second pass needs the low-confidence detections too, so the threshold
    becomes ``min(model.conf, tracker.low_conf)``. ``threads``: engine threads per call (default: the
    config's, else the runtime's).
    """
    backend, why = choose_backend(model_cfg)
    try:
        engine = load_engine(model_cfg.path, backend=backend, device=model_cfg.device, names=model_cfg.names,
                             threads=threads or model_cfg.threads or None, precision=model_cfg.precision)
    except ImportError as exc:
        raise ConfigError(file, "model.backend", str(exc)) from None
    except FileNotFoundError:
        raise ConfigError(file, "model.path", f"model file not found: {model_cfg.path}") from None
    except (ValueError, RuntimeError, OSError) as exc:
        raise ConfigError(file, "model", f"cannot load {model_cfg.path}: {exc}") from None
    classes = None
    if model_cfg.classes:
        by_name = {v: k for k, v in engine.meta.names.items()}
        unknown = [c for c in model_cfg.classes if c not in by_name]
        if unknown:
            raise ConfigError(file, "model.classes",
                              f"unknown class {unknown[0]!r}, expected one of {sorted(by_name)}")
        classes = [by_name[c] for c in model_cfg.classes]
    conf = model_cfg.conf
    if tracker_cfg is not None:
        conf = min(conf, tracker_cfg.low_conf)
    engine.choice = why  # why this backend and precision (maskwatch check and the start-up line say it)
    log.info("inference: %s, %s on %s (%s)", engine.meta.backend, engine.precision, model_cfg.device, why)
    kind = Segmenter  # a Mask R-CNN engine makes it a TwoStageSegmenter (Segmenter.__new__)
    if hasattr(engine, "infer_torch") and not engine.meta.two_stage:  # TensorRT / TorchScript: pre- and
        from maskwatch.engines.torch_ops import TorchSegmenter as kind  # post-processing on the device too
    return kind(engine, conf=conf, iou=model_cfg.iou, max_det=model_cfg.max_det,
                classes=classes, agnostic=model_cfg.agnostic_nms)


def choose_backend(model_cfg) -> tuple[str, str]:
    """(backend, why) for a model section. ``auto`` with an .onnx on the CPU picks what measured fastest in the
    pipeline at the asked precision (README, "CPU inference"): OpenVINO in bf16 on a CPU with AVX512_BF16 or AMX
    (1.5x ONNX Runtime fp32); ONNX Runtime for fp32 elsewhere (OpenVINO fp32 measured 0.91x of it) and for an
    INT8 model (1.85x fp32, against OpenVINO's 1.48x); OpenVINO for bf16 and fp16, which ONNX Runtime does not
    run on the CPU. Otherwise by the file's type."""
    from maskwatch.engines.cpu import has_bf16

    path, backend, precision = Path(model_cfg.path), model_cfg.backend, model_cfg.precision
    if backend != "auto":
        return backend, f"backend {backend} as configured"
    if model_cfg.device != "cpu" or path.suffix.lower() != ".onnx":
        return "auto", f"auto: by the model file's type ({path.suffix or path.name})"
    try:
        import openvino  # noqa: F401
        have_ov = True
    except ImportError:
        have_ov = False
    if precision in ("bf16", "fp16"):
        return "openvino", f"auto: precision {precision} on the CPU runs in OpenVINO"
    if precision == "int8":
        return "onnxruntime", "auto: an INT8 model on the CPU, ONNX Runtime measured fastest"
    if precision == "auto" and has_bf16() and have_ov:
        from maskwatch.engines.ort import is_qdq

        if not is_qdq(path):
            return "openvino", "auto: this CPU has bf16 (AVX512_BF16/AMX); OpenVINO bf16 measured fastest"
        return "onnxruntime", "auto: an INT8 model on the CPU, ONNX Runtime measured fastest"
    why = "no bf16 on this CPU" if not has_bf16() else "OpenVINO is not installed" if not have_ov else "fp32"
    return "onnxruntime", f"auto: .onnx on the CPU ({why}), ONNX Runtime measured fastest in fp32"


def check_rule_classes(cfg, names: dict[int, str], file: str | Path | None) -> None:
    """Every class a camera's rules name (``classes``, ``near``) is one of the model's ``names``."""
    known = set(names.values())
    for cam in cfg.cameras:
        if cam.zones is None:
            continue
        zf = load_zone_file(cam.zones)
        for j, rule in enumerate(zf.rules):
            for field in ("classes", "near"):
                for cls in getattr(rule, field, None) or []:
                    if cls not in known:
                        raise ConfigError(cam.zones, f"rules[{j}].{field}",
                                          f"class {cls!r} is not a model class, expected one of {sorted(known)}")
