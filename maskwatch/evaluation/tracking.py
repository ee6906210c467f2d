"""`maskwatch eval tracking MODEL --data DIR`: tracking accuracy on synth clips.

The model runs once per frame through `engines`; the same detections then go to
maskwatch's MaskTracker and to ByteTrack (roboflow's `trackers` package, the maintained
home of supervision's ByteTrack), once with its published defaults and once with
thresholds matched to this detector. Every tracker's output is scored against the clip's
ground-truth masks with TrackEval's HOTA, Identity (IDF1) and CLEAR (MOTA, ID switches)
metrics, using mask IoU as the similarity (MOTS style). The decoded frames go along, as in the
pipeline: maskwatch's colour cue reads them, ByteTrack does not.

Each clip is also measured for how much its objects overlap (from the ground truth alone): a
clip where at least ``OCCLUSION_HEAVY`` of the instance-frames have another instance's box
over 10 % or more of their own box is occlusion-heavy, the others are easy. With the baseline,
the summary checks issue 5's floors against ByteTrack's defaults: on occlusion-heavy clips IDF1
at least 5 points higher and at most half the ID switches; on easy clips IDF1 no lower.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .masks import _frames, find_clips

OCCLUSION_HEAVY = 0.15  # fraction of instance-frames overlapped (see box_overlap)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("model", help="model file (.onnx)")
    p.add_argument("--data", required=True, help="a synth clip directory, or a folder of them")
    p.add_argument("--conf", type=float, default=0.35, help="detection confidence of the deployment (default 0.35)")
    p.add_argument("--low-conf", type=float, default=0.1, help="second-pass detections from this (default 0.1)")
    p.add_argument("--detector", choices=["model", "gt"], default="model",
                   help="model: the model's detections; gt: ground-truth masks with misses and confidence noise "
                        "(association quality apart from the detector)")
    p.add_argument("--no-baseline", action="store_true", help="only maskwatch's tracker")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "openvino", "tensorrt", "torchscript"],
                   help="inference runtime of the model's detections (default: by the model file's type)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16", "int8"],
                   help="arithmetic precision (default: the backend's choice)")
    p.add_argument("--cache", default=None, help="keep the model's detections here (keyed by clip, its gt.json, model hash "
                   "and conf): a second run only tracks and scores")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a tracker parameter (TrackerParams field), e.g. --set min_hits=3; repeatable")
    return p


class _ByteTrack:
    """roboflow `trackers` ByteTrackTracker on our detections (boxes; masks ride along)."""

    def __init__(self, fps: float, **kw):
        from trackers import ByteTrackTracker

        self.t = ByteTrackTracker(frame_rate=fps, **kw)

    def update(self, dets, pts_s: float, image=None):  # boxes only: the frame is not used
        import supervision as sv

        svd = sv.Detections(xyxy=dets.xyxy.astype(np.float32), confidence=dets.confidence.astype(np.float32),
                            class_id=dets.class_id.astype(int), data={"idx": np.arange(len(dets))})
        out = self.t.update(svd)
        if len(out) == 0 or out.tracker_id is None:
            res = dets[np.zeros(0, np.int64)]
            res.tracker_id = np.zeros(0, np.int64)
            return res
        keep = out.tracker_id >= 0
        if "idx" in out.data:
            idx = np.asarray(out.data["idx"])[keep].astype(np.int64)
        else:  # data not carried: find each output box among the inputs
            d = np.abs(out.xyxy[keep][:, None, :] - dets.xyxy[None, :, :]).sum(axis=2)
            idx = d.argmin(axis=1).astype(np.int64)
        res = dets[idx]
        res.tracker_id = np.asarray(out.tracker_id)[keep].astype(np.int64)
        return res


def _trackers(fps: float, conf: float, low_conf: float, baseline: bool, params: dict | None = None) -> dict:
    import dataclasses

    from maskwatch.pipeline.config import TrackerConfig
    from maskwatch.pipeline.tracking import MaskTracker

    # the tracker exactly as `maskwatch run` builds it from a config with model.conf = conf
    p = TrackerConfig(low_conf=low_conf).params(conf)
    out = {"maskwatch": MaskTracker(dataclasses.replace(p, **(params or {})))}
    if baseline:
        out["bytetrack-defaults"] = _ByteTrack(fps)
        out["bytetrack-matched"] = _ByteTrack(fps, track_activation_threshold=conf, high_conf_det_threshold=conf,
                                              lost_track_buffer=int(round(30 * 1.0)))
    return out


def box_overlap(gt: dict, cover: float = 0.1) -> float:
    """Fraction of a clip's instance-frames whose box has another instance's box over ``cover`` or more of it."""
    total = overlapped = 0
    for f in gt["frames"]:
        b = np.array([x["box_xyxy"] for x in f["instances"]], float).reshape(-1, 4)
        total += len(b)
        if len(b) < 2:
            continue
        w = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
        h = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
        inter = np.maximum(w, 0) * np.maximum(h, 0)
        np.fill_diagonal(inter, 0)
        area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1.0)
        overlapped += int((inter / area[:, None] >= cover).any(axis=1).sum())
    return overlapped / total if total else 0.0


def _score(gt_seq: list[list[tuple[int, dict]]], trk_seq: list[tuple[np.ndarray, list]]) -> dict:
    """TrackEval metrics for one sequence. gt_seq[t] = [(gt_key, rle)], trk_seq[t] = (ids, rles)."""
    from pycocotools import mask as mask_utils
    from trackeval.metrics import CLEAR, HOTA, Identity

    gt_map: dict[int, int] = {}
    tr_map: dict[int, int] = {}
    data = {"gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    n_gt = n_tr = 0
    for gts, (tids, trles) in zip(gt_seq, trk_seq):
        g = np.array([gt_map.setdefault(key, len(gt_map)) for key, _ in gts], int)
        t = np.array([tr_map.setdefault(int(i), len(tr_map)) for i in tids], int)
        if len(gts) and len(trles):
            sim = np.asarray(mask_utils.iou([r for _, r in gts], list(trles), [0] * len(trles)), float).reshape(len(gts), len(trles))
        else:
            sim = np.zeros((len(gts), len(trles)))
        data["gt_ids"].append(g)
        data["tracker_ids"].append(t)
        data["similarity_scores"].append(sim)
        n_gt += len(g)
        n_tr += len(t)
    data.update(num_timesteps=len(gt_seq), num_gt_ids=len(gt_map), num_tracker_ids=len(tr_map),
                num_gt_dets=n_gt, num_tracker_dets=n_tr)
    res = {}
    quiet = {"THRESHOLD": 0.5, "PRINT_CONFIG": False}  # TrackEval's defaults, without printing them per clip
    for metric in (HOTA(), Identity(quiet), CLEAR(quiet)):
        res.update(metric.eval_sequence(data))
    return {"HOTA": float(np.mean(res["HOTA"])), "IDF1": float(res["IDF1"]), "MOTA": float(res["MOTA"]),
            "IDSW": int(res["IDSW"]), "gt_ids": len(gt_map), "tracker_ids": len(tr_map)}


def gt_detections(instances: list[dict], rng: np.random.Generator, mask_wh=(160, 90), miss=0.1):
    """A noisy oracle detector: ground-truth masks, some missed, confidence lower when occluded.

    Detections carry their frame-resolution masks as COCO RLEs in ``data["rles"]``.
    """
    import cv2
    from pycocotools import mask as mask_utils

    from maskwatch.engines.results import Detections, MaskSpace

    keep = [x for x in instances if rng.random() >= miss]
    n = len(keep)
    small = np.zeros((n, mask_wh[1], mask_wh[0]), bool)
    conf = np.zeros(n, np.float32)
    rles = np.empty(n, object)
    h, w = instances[0]["mask"]["size"] if instances else (1, 1)
    for k, x in enumerate(keep):
        full = mask_utils.decode(x["mask"])
        small[k] = cv2.resize(full.astype(np.float32), mask_wh, interpolation=cv2.INTER_AREA) >= 0.5
        rles[k] = x["mask"]
        x0, y0, x1, y1 = x["box_xyxy"]
        visible = x["area"] / max(1.0, (x1 - x0) * (y1 - y0))  # occluded objects fill less of their box
        conf[k] = float(np.clip(rng.normal(0.35 + 0.6 * visible, 0.1), 0.05, 0.99))
    boxes = np.array([x["box_xyxy"] for x in keep], np.float32).reshape(n, 4)
    return Detections(boxes, conf, [x["class_id"] for x in keep], small, MaskSpace(mask_wh, (w, h)),
                      data={"rles": rles})


def _with_rles(dets):
    """The model's detections with their full-resolution masks as RLEs (``data["rles"]``)."""
    from pycocotools import mask as mask_utils

    full = np.asarray(dets.data.pop("masks_full"), bool)
    rles = np.empty(len(dets), object)
    if len(dets):
        for k, r in enumerate(mask_utils.encode(np.asfortranarray(full.transpose(1, 2, 0).astype(np.uint8)))):
            rles[k] = r
    dets.data["rles"] = rles
    return dets


def _save_detections(path: Path, seq: list) -> None:
    ms = seq[0].mask_space  # every frame's arrays have their (possibly empty) shapes: concatenate as they are
    rles = [{"size": r["size"], "counts": r["counts"].decode() if isinstance(r["counts"], bytes) else r["counts"]}
            for d in seq for r in d.data["rles"]]
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, counts=np.array([len(d) for d in seq], np.int64),
                        xyxy=np.concatenate([d.xyxy for d in seq]).astype(np.float32),
                        conf=np.concatenate([d.confidence for d in seq]).astype(np.float32),
                        cls=np.concatenate([d.class_id for d in seq]).astype(np.int32),
                        masks=np.packbits(np.concatenate([d.masks for d in seq]), axis=-1),
                        mask_wh=np.array(ms.mask_wh), frame_wh=np.array(ms.frame_wh),
                        rles=np.array(json.dumps(rles)))
    tmp.replace(path)


def _load_detections(path: Path) -> list:
    from maskwatch.engines.results import Detections, MaskSpace

    z = np.load(path)
    mw, mh = (int(v) for v in z["mask_wh"])
    ms = MaskSpace((mw, mh), tuple(int(v) for v in z["frame_wh"]))
    masks = np.unpackbits(z["masks"], axis=-1, count=mw).astype(bool)
    rles = np.empty(len(z["conf"]), object)
    rles[:] = [{"size": r["size"], "counts": r["counts"].encode()} for r in json.loads(str(z["rles"]))]
    seq, i = [], 0
    for n in z["counts"]:
        s = slice(i, i + int(n))
        seq.append(Detections(z["xyxy"][s].copy(), z["conf"][s].copy(), z["cls"][s].copy(), masks[s].copy(), ms,
                              data={"rles": rles[s].copy()}))
        i += int(n)
    return seq


def _model_key(model, conf: float) -> str:
    import hashlib

    h = hashlib.sha256(Path(model).read_bytes()).hexdigest()[:16]
    return f"{h}-c{conf:g}"


def _clip_key(clip: Path) -> str:
    """A regenerated clip under the same name (a changed renderer) must not reuse old detections."""
    import hashlib

    return hashlib.sha256((clip / "gt.json").read_bytes()).hexdigest()[:12]


def clip_detections(clip: Path, gt: dict, *, detector: str, seg=None, model_to_ours=None, cache: Path | None = None,
                    key: str = "") -> list:
    """Per-frame detections of a clip (a list of Detections with ``data["rles"]``), cached by model and conf."""
    if detector == "gt":
        rng = np.random.default_rng(int(gt["seed"]))
        return [gt_detections(f["instances"], rng) for f in gt["frames"]]
    path = None
    if cache is not None:
        path = Path(cache) / f"{clip.name}-{_clip_key(clip)}-{key}.npz"
        if path.is_file():
            return _load_detections(path)
    from maskwatch.engines import letterbox

    seq = []
    for i, rgb in _frames(clip, gt):
        if i >= len(gt["frames"]):
            break
        padded, box = letterbox(rgb, seg.input_hw)
        (dets,) = seg([padded], [box], full_masks=True)
        dets.class_id = np.array([model_to_ours[int(c)] for c in dets.class_id], np.int32)
        seq.append(_with_rles(dets))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_detections(path, seq)
    return seq


def track_clip(gt: dict, dets_seq: list, trackers: dict, frames=None) -> dict:
    """Run every tracker over the clip's detections and score each against the ground truth.

    ``frames`` yields the clip's RGB frames in order (the trackers' appearance cue), or is None.
    """
    fps = float(gt["fps"])
    # ground-truth track ids are per class (a player and the ball can both be 1)
    gt_seq = [[((inst["class_id"], inst["track_id"]), inst["mask"]) for inst in f["instances"]]
              for f in gt["frames"][: len(dets_seq)]]
    out = {name: [] for name in trackers}
    frames = iter(frames) if frames is not None else None
    for i, dets in enumerate(dets_seq):
        image = next(frames, None) if frames is not None else None
        for name, tracker in trackers.items():
            res = tracker.update(dets[np.arange(len(dets))], i / fps, image)
            out[name].append((res.tracker_id, list(res.data["rles"])))
    return {name: _score(gt_seq, seq) for name, seq in out.items()}


def evaluate(model, data, *, conf=0.35, low_conf=0.1, baseline=True, threads=None, detector="model",
             cache: str | Path | None = None, params: dict | None = None, log=print, backend: str = "auto",
             precision: str = "auto") -> dict:
    """Score maskwatch's tracker (and ByteTrack) on every clip under ``data``.

    ``params`` overrides TrackerParams fields; ``cache`` keeps the model's detections per clip
    (keyed by the clip's gt.json, the model file's hash and conf) so a second run only tracks and scores.
    """
    seg = model_to_ours = None
    key = ""
    if detector == "model":
        from maskwatch.engines import Segmenter, load_engine

        from maskwatch.scenes.classes import CLASS_NAMES

        eng = load_engine(model, backend=backend, threads=threads, precision=precision)
        log(f"engine: {eng.meta.backend}, {eng.precision}")
        seg = Segmenter(eng, conf=min(conf, low_conf), iou=0.6, max_det=100)
        model_to_ours = {int(k): CLASS_NAMES.index(v) for k, v in eng.meta.names.items()}
        key = _model_key(model, min(conf, low_conf))
        if (eng.meta.backend, eng.precision) != ("onnxruntime", "fp32"):  # the cache keeps each runtime's own
            key += f"-{eng.meta.backend}-{eng.precision}"
    results = {"model": str(model), "detector": detector, "conf": conf, "low_conf": low_conf, "params": params or {},
               "clips": {}}
    for clip in find_clips(Path(data)):
        gt = json.loads((clip / "gt.json").read_text())
        dets_seq = clip_detections(clip, gt, detector=detector, seg=seg, model_to_ours=model_to_ours,
                                   cache=Path(cache) if cache else None, key=key)
        scores = track_clip(gt, dets_seq, _trackers(float(gt["fps"]), conf, low_conf, baseline, params),
                            (rgb for _, rgb in _frames(clip, gt)))
        overlap = box_overlap(gt)
        results["clips"][clip.name] = {"scene": gt["scene"], "scenario": gt.get("scenario"), "frames": len(dets_seq),
                                       "overlap": overlap, "occlusion_heavy": overlap >= OCCLUSION_HEAVY,
                                       "scores": scores}
        log(f"eval tracking: {clip.name}: " + "; ".join(
            f"{n} IDF1 {s['IDF1']:.3f} IDSW {s['IDSW']}" for n, s in scores.items()))
    return results


def table(results: dict) -> str:
    rows = ["| clip | overlap | tracker | HOTA | IDF1 | MOTA | ID switches |", "|---|---|---|---|---|---|---|"]
    for clip, r in results["clips"].items():
        kind = "occlusion-heavy" if r["occlusion_heavy"] else "easy"
        for name, s in r["scores"].items():
            rows.append(f"| {clip} | {r['overlap']:.0%} {kind} | {name} | {s['HOTA']:.3f} | {s['IDF1']:.3f} | "
                        f"{s['MOTA']:.3f} | {s['IDSW']} |")
    return "\n".join(rows)


def floors(results: dict, baseline: str = "bytetrack-defaults") -> list[str]:
    """Issue 5's floors per clip, against ``baseline``: one line each, ``ok`` or ``SHORT``."""
    lines = []
    for clip, r in results["clips"].items():
        ours, base = r["scores"]["maskwatch"], r["scores"].get(baseline)
        if base is None:
            continue
        gain = ours["IDF1"] - base["IDF1"]
        if r["occlusion_heavy"]:
            ok_idf1, ok_sw = gain >= 0.05, 2 * ours["IDSW"] <= base["IDSW"]
            lines.append(f"{clip} (occlusion-heavy): IDF1 {gain * 100:+.1f} points (floor +5) "
                         f"{'ok' if ok_idf1 else 'SHORT'}; ID switches {ours['IDSW']} vs {base['IDSW']} "
                         f"(floor: at most half) {'ok' if ok_sw else 'SHORT'}")
        else:
            lines.append(f"{clip} (easy): IDF1 {gain * 100:+.1f} points (floor: not lower) "
                         f"{'ok' if gain >= 0 else 'SHORT'}")
    for heavy, kind in ((True, "occlusion-heavy"), (False, "easy")):
        group = [r["scores"] for r in results["clips"].values() if r["occlusion_heavy"] == heavy and baseline in r["scores"]]
        if group:
            ours = sum(g["maskwatch"]["IDF1"] for g in group) / len(group)
            base = sum(g[baseline]["IDF1"] for g in group) / len(group)
            lines.append(f"all {len(group)} {kind} clips: mean IDF1 {ours:.3f} vs {base:.3f} ({(ours - base) * 100:+.1f} "
                         f"points), ID switches {sum(g['maskwatch']['IDSW'] for g in group)} vs "
                         f"{sum(g[baseline]['IDSW'] for g in group)}")
    return lines


def _parse_sets(items: list[str]) -> dict:
    from dataclasses import fields

    from maskwatch.pipeline.tracking import TrackerParams

    types = {f.name: type(getattr(TrackerParams(), f.name)) for f in fields(TrackerParams)}
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in types:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(types))}")
        try:
            out[name] = types[name](value)
        except ValueError:
            raise ValueError(f"--set {item!r}: {name} expects a {types[name].__name__}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    epilog = ("Each clip's overlap is the share of its instance-frames with another object's box over 10 % of theirs "
              f"(ground truth); from {round(OCCLUSION_HEAVY * 100)} % a clip is occlusion-heavy. With the baseline, issue "
              "5's floor checks against ByteTrack's defaults follow the table.")
    parser = argparse.ArgumentParser(prog="maskwatch eval tracking", description=__doc__.split("\n\n")[0], epilog=epilog)
    args = add_arguments(parser).parse_args(argv)
    try:
        params = _parse_sets(args.set)
    except ValueError as exc:
        print(f"maskwatch: error: {exc}", file=sys.stderr)
        return 2
    try:
        results = evaluate(args.model, args.data, conf=args.conf, low_conf=args.low_conf,
                           baseline=not args.no_baseline, threads=args.threads, detector=args.detector,
                           cache=args.cache, params=params, backend=args.backend, precision=args.precision,
                           log=lambda m: print(m, file=sys.stderr))
    except FileNotFoundError as exc:
        print(f"maskwatch: error: {exc}", file=sys.stderr)
        return 2
    print(table(results))
    checks = floors(results)
    if checks:
        print("\nFloors against ByteTrack's defaults:")
        print("\n".join(f"  {line}" for line in checks))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0
