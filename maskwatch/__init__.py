"""maskwatch: segment every object in camera streams, track it by its mask, alert when zone rules fire.

The import names follow the data flow; the folders of a source checkout keep the same names at the
repository's top. Installed, ``pyproject.toml`` maps them into the package (setuptools' ``package-dir``); in a
checkout, links in ``maskwatch/`` (``maskwatch/pipeline -> ../pipeline``, ...) make them importable as they are,
for scripts run without installing and for tools that read the package from its folder (import-linter):

    maskwatch.engines     engines/    model runtimes behind one interface, letterbox, output decoding
    maskwatch.zones       zones/      zone files, rule evaluation in mask space, alert lifecycle
    maskwatch.pipeline    pipeline/   the runtime: sources, rings, stages, tracker, outbox, sinks, config
    maskwatch.scenes      scenes/     synthetic scenes with ground truth
    maskwatch.bench       maskwatch/bench/        `maskwatch bench`
    maskwatch.evaluation  maskwatch/evaluation/   `maskwatch eval masks|tracking|alerts`
    maskwatch.web         maskwatch/web/          the web console of `maskwatch run` and `maskwatch edit`
    maskwatch.cli         maskwatch/cli.py        the `maskwatch` command; nothing imports it

The public API below is imported on first use, so ``import maskwatch.zones`` does not load the
model runtimes:

    from maskwatch import load_config, build_segmenter, Pipeline
    cfg = load_config("configs/demo.yaml")
    pipe = Pipeline(cfg, build_segmenter(cfg.model, "configs/demo.yaml", cfg.tracker))
    pipe.start(); pipe.wait()
"""

from __future__ import annotations

import importlib
import os

__version__ = "0.1.0"

# Small matrix products (mask coefficients x prototypes, mask IoU) run on the stage's own thread. A
# multi-threaded BLAS spins extra threads that fight the decoder and the inference runtime for the same
# cores: measured, a 20x6400 @ 6400x20 product took 160 ms with OpenBLAS' default threads on a busy 2-core
# machine and 0.11 ms with one; post-processing of a 720p frame with 19 detections, median 7.3 ms against
# 1.0 ms. Every subpackage imports this module first, so this runs before numpy is imported; an explicit
# setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

_API = {
    # config and runtime
    "load_config": "maskwatch.pipeline.config",
    "Config": "maskwatch.pipeline.config",
    "Pipeline": "maskwatch.pipeline.stages",
    "build_segmenter": "maskwatch.pipeline.factory",
    "MaskTracker": "maskwatch.pipeline.tracking",
    "TrackerParams": "maskwatch.pipeline.tracking",
    "Frame": "maskwatch.pipeline.types",
    # engines
    "load_engine": "maskwatch.engines",
    "Segmenter": "maskwatch.engines",
    "Detections": "maskwatch.engines",
    "MaskSpace": "maskwatch.engines",
    "letterbox": "maskwatch.engines",
    # zones
    "ZoneEngine": "maskwatch.zones",
    "load_zone_file": "maskwatch.zones",
    "AlertEvent": "maskwatch.zones",
    "AlertObject": "maskwatch.zones",
    "ConfigError": "maskwatch.zones",
}


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'maskwatch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = ["__version__", *_API]
