"""``maskwatch predict``: per-frame detections as COCO results (what evaluation reads)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .sources import VideoSource
from .tracking import MaskTracker, TrackerParams


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


def predict(args) -> int:
    from maskwatch.engines import Segmenter, load_engine
    from maskwatch.zones import ConfigError

    names = [n.strip() for n in args.names.split(",")] if args.names else None
    try:
        engine = load_engine(args.model, backend=args.backend, names=names, precision=args.precision)
    except FileNotFoundError:
        raise ConfigError(None, "MODEL", f"model file not found: {args.model}") from None
    except (ValueError, RuntimeError, OSError) as exc:
        raise ConfigError(None, "MODEL", f"cannot load {args.model}: {exc}") from None
    seg = Segmenter(engine, conf=args.conf, iou=args.iou, max_det=args.max_det)
    src = VideoSource("predict", args.source, seg.input_hw)
    if "://" not in args.source and not Path(args.source).is_file():
        raise ConfigError(None, "SOURCE", f"video file not found: {args.source}")
    tracker = (MaskTracker(TrackerParams(high_conf=args.conf, low_conf=args.conf, new_track_conf=args.conf, min_hits=1))
               if args.track else None)  # min_hits 1: every detection is reported, with its track id
    results: list[dict] = []
    frames = 0
    for frame in src.frames():
        dets = seg([frame.input], [frame.letterbox], full_masks=True)[0]
        if tracker is not None:
            dets = tracker.update(dets, frame.pts_s, frame.content)
        results.extend(coco_results(dets, seg.meta.names, frame.index))
        frames += 1
        if args.max_frames and frames >= args.max_frames:
            break
    src.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results))
    print(f"{frames} frames, {len(results)} detections -> {out}")
    return 0
