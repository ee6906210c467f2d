"""`maskwatch eval masks MODEL --data DIR`: COCO mask and box mAP of a model on synth clips.

DIR is one clip written by `maskwatch synth` (gt.json, video.mp4) or a folder of them. The
model runs through `engines` (the runtime maskwatch itself uses), on the decoded H.264
frames (or, for a clip written with --no-video, on frames re-rendered from gt.json's
header, which is deterministic). Scores come from pycocotools' COCOeval, overall, per
scene and per class. Use clips whose seeds were never used for training
(`scenes.dataset.EVAL_SEED_OFFSET` and up).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from maskwatch.scenes.classes import CLASS_NAMES


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("model", help="model file (.onnx)")
    p.add_argument("--data", required=True, help="a synth clip directory, or a folder of them")
    p.add_argument("--conf", type=float, default=0.01, help="score threshold (low for mAP; default 0.01)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU (default 0.7)")
    p.add_argument("--max-det", type=int, default=100)
    p.add_argument("--every", type=int, default=1, help="evaluate every N-th frame (default 1)")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: runtime's)")
    p.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "openvino", "tensorrt", "torchscript"],
                   help="inference runtime (default: by the model file's type)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16", "int8"],
                   help="arithmetic precision (default: the backend's choice)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--min-mask-map50", type=float, default=None,
                   help="exit 1 when any scene's mask mAP50 is below this (an accuracy gate)")
    return p


def find_clips(data: Path) -> list[Path]:
    if (data / "gt.json").is_file():
        return [data]
    clips = sorted(p.parent for p in data.glob("*/gt.json"))
    if not clips:
        raise FileNotFoundError(f"no gt.json in {data} or its sub-folders")
    return clips


def _frames(clip: Path, gt: dict):
    """Yield (index, RGB frame) for every frame of a clip."""
    video = clip / "video.mp4"
    try:
        import av
    except ImportError:  # e.g. the training environment: re-render instead of decoding
        av = None
    if video.is_file() and av is not None:
        with av.open(str(video)) as c:
            for i, f in enumerate(c.decode(video=0)):
                yield i, f.to_ndarray(format="rgb24")
        return
    from maskwatch.scenes.dataset import make_scene

    sc = make_scene(gt["scene"], gt["seed"], gt["width"], gt["height"], gt.get("scenario"))
    for i in range(gt["num_frames"]):
        frame, _ = sc.render(i / gt["fps"], i, gt=False)
        yield i, frame[..., ::-1].copy()


def evaluate(model: str | Path, data: str | Path, *, conf=0.01, iou=0.7, max_det=100, every=1, threads=None, log=print,
             backend: str = "auto", precision: str = "auto") -> dict:
    from pycocotools import mask as mask_utils

    from maskwatch.engines import Segmenter, letterbox, load_engine

    eng = load_engine(model, backend=backend, threads=threads, precision=precision)
    log(f"engine: {eng.meta.backend}, {eng.precision}")
    names = eng.meta.names
    model_to_ours = {}
    for k, v in names.items():
        if v not in CLASS_NAMES:
            raise ValueError(f"model class {v!r} is not a scenes class {CLASS_NAMES}")
        model_to_ours[int(k)] = CLASS_NAMES.index(v)
    seg = Segmenter(eng, conf=conf, iou=iou, max_det=max_det)
    images, anns, dets = [], [], []
    scene_of: dict[int, str] = {}
    infer_s, n_frames = 0.0, 0
    for clip in find_clips(Path(data)):
        gt = json.loads((clip / "gt.json").read_text())
        h, w = gt["height"], gt["width"]
        frames_gt = gt["frames"]
        for i, rgb in _frames(clip, gt):
            if i % every or i >= len(frames_gt):
                continue
            img_id = len(images) + 1
            images.append({"id": img_id, "width": w, "height": h, "file_name": f"{clip.name}/{i}"})
            scene_of[img_id] = gt["scene"]
            for inst in frames_gt[i]["instances"]:
                x0, y0, x1, y1 = inst["box_xyxy"]
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": inst["class_id"] + 1,
                             "segmentation": inst["mask"], "area": float(inst["area"]),
                             "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})
            padded, box = letterbox(rgb, seg.input_hw)
            t0 = time.perf_counter()
            (res,) = seg([padded], [box], full_masks=True)
            infer_s += time.perf_counter() - t0
            n_frames += 1
            if len(res.xyxy) == 0:
                continue
            full = np.asarray(res.data["masks_full"], bool)
            rles = mask_utils.encode(np.asfortranarray(full.transpose(1, 2, 0).astype(np.uint8)))
            for k in range(len(res.xyxy)):
                x0, y0, x1, y1 = (float(v) for v in res.xyxy[k])
                r = rles[k]
                r["counts"] = r["counts"].decode("ascii")
                dets.append({"image_id": img_id, "category_id": model_to_ours[int(res.class_id[k])] + 1,
                             "segmentation": r, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(res.confidence[k])})
        log(f"eval: {clip.name}: {len(frames_gt)} frames")
    results = score(images, anns, dets, scene_of)
    results["model"] = str(model)
    results["frames"] = n_frames
    results["ms_per_frame"] = round(1000.0 * infer_s / max(n_frames, 1), 1)
    return results


def score(images, anns, dets, scene_of: dict[int, str]) -> dict:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cats = [{"id": i + 1, "name": n} for i, n in enumerate(CLASS_NAMES)]
    coco_gt = COCO()
    coco_gt.dataset = {"images": images, "annotations": anns, "categories": cats}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets) if dets else None

    def run(iou_type: str, img_ids: list[int], cat_ids: list[int]) -> tuple[float, float]:
        if coco_dt is None:
            return 0.0, 0.0
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.imgIds = img_ids
        ev.params.catIds = cat_ids
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return max(float(ev.stats[0]), 0.0), max(float(ev.stats[1]), 0.0)

    out: dict = {"scenes": {}}
    for scene in sorted(set(scene_of.values())):
        ids = [i for i, s in scene_of.items() if s == scene]
        present = sorted({a["category_id"] for a in anns if scene_of[a["image_id"]] == scene})
        entry = {"images": len(ids), "classes": {}}
        for kind in ("segm", "bbox"):
            m, m50 = run(kind, ids, present)
            entry["mask" if kind == "segm" else "box"] = {"map50_95": round(m, 4), "map50": round(m50, 4)}
        for c in present:
            n = sum(1 for a in anns if a["category_id"] == c and scene_of[a["image_id"]] == scene)
            cm, cm50 = run("segm", ids, [c])
            bm, bm50 = run("bbox", ids, [c])
            entry["classes"][CLASS_NAMES[c - 1]] = {"instances": n, "mask": {"map50_95": round(cm, 4), "map50": round(cm50, 4)},
                                                  "box": {"map50_95": round(bm, 4), "map50": round(bm50, 4)}}
        out["scenes"][scene] = entry
    all_ids = list(scene_of)
    present = sorted({a["category_id"] for a in anns})
    out["all"] = {}
    for kind in ("segm", "bbox"):
        m, m50 = run(kind, all_ids, present)
        out["all"]["mask" if kind == "segm" else "box"] = {"map50_95": round(m, 4), "map50": round(m50, 4)}
    return out


def format_table(res: dict) -> str:
    rows = [f"{'scene':8} {'class':11} {'inst':>6} {'mask50-95':>10} {'mask50':>8} {'box50-95':>9} {'box50':>7}"]
    for scene, e in res["scenes"].items():
        rows.append(f"{scene:8} {'all':11} {'':>6} {e['mask']['map50_95']:10.3f} {e['mask']['map50']:8.3f} "
                    f"{e['box']['map50_95']:9.3f} {e['box']['map50']:7.3f}")
        for c, ce in e["classes"].items():
            rows.append(f"{'':8} {c:11} {ce['instances']:6d} {ce['mask']['map50_95']:10.3f} {ce['mask']['map50']:8.3f} "
                        f"{ce['box']['map50_95']:9.3f} {ce['box']['map50']:7.3f}")
    a = res["all"]
    rows.append(f"{'all':8} {'all':11} {'':>6} {a['mask']['map50_95']:10.3f} {a['mask']['map50']:8.3f} "
                f"{a['box']['map50_95']:9.3f} {a['box']['map50']:7.3f}")
    rows.append(f"{res['frames']} frames, inference {res['ms_per_frame']} ms/frame (engine call incl. mask decode)")
    return "\n".join(rows)


def run(args) -> int:
    try:
        res = evaluate(args.model, args.data, conf=args.conf, iou=args.iou, max_det=args.max_det,
                       every=args.every, threads=args.threads, log=lambda m: print(m, file=sys.stderr),
                       backend=args.backend, precision=args.precision)
    except (FileNotFoundError, ValueError) as exc:
        print(f"maskwatch eval masks: {exc}", file=sys.stderr)
        return 2
    print(format_table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    if args.min_mask_map50 is not None:
        low = {s: e["mask"]["map50"] for s, e in res["scenes"].items() if e["mask"]["map50"] < args.min_mask_map50}
        if low:
            print(f"accuracy gate: mask mAP50 below {args.min_mask_map50}: {low}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`maskwatch eval masks MODEL --data DIR` (a leading "masks" is accepted and skipped)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "masks":
        argv = argv[1:]
    p = add_arguments(argparse.ArgumentParser(prog="maskwatch eval masks", description=__doc__,
                                              formatter_class=argparse.RawDescriptionHelpFormatter))
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
