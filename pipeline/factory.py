"""Build the runtime's parts from a config: the segmenter of a ``model`` section, and the checks that need it.

The command line, the benchmarks and the evaluations all build their segmenter here, so a config means
the same engine, thresholds and class filter everywhere. Errors are ``ConfigError`` naming the field.
"""

from __future__ import annotations

from pathlib import Path

from maskwatch.engines import Segmenter, load_engine
from maskwatch.zones import ConfigError, load_zone_file


def build_segmenter(model_cfg, file: str | Path | None = None, tracker_cfg=None, threads: int | None = None):
    """Engine + pre/post-processing for a ``model`` config section; errors name the field.

    ``tracker_cfg``: the tracker's second pass needs the low-confidence detections too, so the threshold
    becomes ``min(model.conf, tracker.low_conf)``. ``threads``: engine threads per call (default: the
    config's, else the runtime's).
    """
    try:
        engine = load_engine(model_cfg.path, backend=model_cfg.backend, device=model_cfg.device,
                             names=model_cfg.names, threads=threads or model_cfg.threads or None)
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
    kind = Segmenter
    if hasattr(engine, "infer_torch"):  # TensorRT / TorchScript: pre- and post-processing on the device too
        from maskwatch.engines.torch_ops import TorchSegmenter as kind
    return kind(engine, conf=conf, iou=model_cfg.iou, max_det=model_cfg.max_det,
                classes=classes, agnostic=model_cfg.agnostic_nms)


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
