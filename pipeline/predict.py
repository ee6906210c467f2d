"""``maskwatch predict``: per-frame detections as COCO results (what evaluation reads).

With ``--track`` the detections are the tracks the pipeline reports: the segmenter and the tracker are
built from a config (``--config``; without one, the pipeline's defaults) exactly as ``maskwatch run``
builds them (``factory.build_segmenter``: threshold ``min(model.conf, tracker.low_conf)`` for the
tracker's second pass; ``MaskTracker(cfg.tracker.params(cfg.model.conf))``), and only what the tracker
reports (what the zone engine sees) is written, each with its ``track_id``. MODEL replaces the config's
``model.path``; ``--conf``, ``--iou``, ``--max-det``, ``--backend``, ``--precision`` and ``--names``,
when given, replace the config's model settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .sources import VideoSource
from .tracking import MaskTracker

# without --track (detections only): the thresholds of a COCO evaluation, not the pipeline's
DETECT_DEFAULTS = {"conf": 0.25, "iou": 0.7, "max_det": 300, "backend": "auto", "precision": "auto"}


def coco_results(dets, names: dict[int, str], image_id: int) -> list[dict]:
    """One frame's Detections (with ``data['masks_full']``) -> COCO result dicts."""
    out = []
    full = dets.data.get("masks_full")
    for i in range(len(dets)):
        x1, y1, x2, y2 = (float(v) for v in dets.xyxy[i])
        cid = int(dets.class_id[i])
        r = {
            "image_id": image_id,
            "category_id": cid,
            "category_name": names.get(cid, str(cid)),
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "score": round(float(dets.confidence[i]), 5),
        }
        if full is not None:
            rle = mask_utils.encode(np.asfortranarray(full[i].astype(np.uint8)))
            r["segmentation"] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
        if dets.tracker_id is not None:
            r["track_id"] = int(dets.tracker_id[i])
        out.append(r)
    return out


def _opt(args, name: str):
    """An option's value when given on the command line, else None."""
    return getattr(args, name, None)


def _names(args) -> list[str] | None:
    return [n.strip() for n in args.names.split(",")] if _opt(args, "names") else None


def detection_segmenter(args):
    """The segmenter of ``predict`` without ``--track``: MODEL with the command line's thresholds."""
    from maskwatch.engines import Segmenter, load_engine
    from maskwatch.zones import ConfigError

    def opt(name):
        v = _opt(args, name)
        return DETECT_DEFAULTS[name] if v is None else v

    try:
        engine = load_engine(args.model, backend=opt("backend"), names=_names(args), precision=opt("precision"))
    except FileNotFoundError:
        raise ConfigError(None, "MODEL", f"model file not found: {args.model}") from None
    except (ValueError, RuntimeError, OSError) as exc:
        raise ConfigError(None, "MODEL", f"cannot load {args.model}: {exc}") from None
    return Segmenter(engine, conf=opt("conf"), iou=opt("iou"), max_det=opt("max_det"))


def pipeline_tracking(args):
    """(segmenter, tracker, model config) as ``maskwatch run`` builds them from ``--config`` (or the defaults).

    MODEL replaces ``model.path``; the model options given on the command line replace the config's.
    """
    from pydantic import ValidationError

    from maskwatch.zones import ConfigError

    from .config import ModelConfig, TrackerConfig, load_config
    from .factory import build_segmenter

    config = _opt(args, "config")
    if config:
        cfg = load_config(config)
        model_cfg, tracker_cfg = cfg.model, cfg.tracker
    else:  # the pipeline's defaults: a config that names only its model
        model_cfg, tracker_cfg = ModelConfig(path=Path(args.model)), TrackerConfig()
    over: dict = {"path": Path(args.model)}
    for name in ("conf", "iou", "max_det", "backend", "precision"):
        if _opt(args, name) is not None:
            over[name] = _opt(args, name)
    if _names(args):
        over["names"] = _names(args)
    try:
        model_cfg = ModelConfig.model_validate({**model_cfg.model_dump(), **over})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = "model." + ".".join(str(x) for x in err.get("loc", ()))
        raise ConfigError(config, field, f"{err.get('msg')} (from the command line: {', '.join(sorted(over))})") from None
    path = model_cfg.path
    if not path.is_file() and not (path.is_dir() and path.name.endswith("_openvino_model")):
        raise ConfigError(None, "MODEL", f"model file not found: {args.model}")
    seg = build_segmenter(model_cfg, config, tracker_cfg)  # threshold min(model.conf, tracker.low_conf)
    tracker = MaskTracker(tracker_cfg.params(model_cfg.conf))  # as Pipeline._analytics builds it
    return seg, tracker, model_cfg


def predict(args) -> int:
    from maskwatch.zones import ConfigError

    if _opt(args, "config") and not args.track:
        raise ConfigError(None, "--config", "goes with --track (the config's tracker and model settings)")
    if args.track:
        seg, tracker, model_cfg = pipeline_tracking(args)
    else:
        seg, tracker = detection_segmenter(args), None
    if "://" not in args.source and not Path(args.source).is_file():
        raise ConfigError(None, "SOURCE", f"video file not found: {args.source}")
    src = VideoSource("predict", args.source, seg.input_hw)
    results: list[dict] = []
    frames = 0
    for frame in src.frames():
        dets = seg([frame.input], [frame.letterbox], full_masks=True)[0]
        if tracker is not None:  # only the reported tracks, as the pipeline's zone engine sees them
            dets = tracker.update(dets, frame.pts_s, frame.content)
        results.extend(coco_results(dets, seg.meta.names, frame.index))
        frames += 1
        if args.max_frames and frames >= args.max_frames:
            break
    src.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results))
    what = "detections"
    if tracker is not None:
        p = tracker.p
        what = (f"detections on {len({r['track_id'] for r in results})} reported tracks (model.conf {model_cfg.conf:g}, "
                f"second pass from {p.low_conf:g}, min_hits {p.min_hits}, report_conf {p.report_conf:g})")
    print(f"{frames} frames, {len(results)} {what} -> {out}")
    return 0
