"""`maskwatch eval tracking MODEL --data DIR | --scenes S,.. --seeds A..B`: tracking accuracy on synth clips.

The model runs once per frame through `engines`; the same detections then go to maskwatch's
MaskTracker and to the baselines: roboflow's `trackers` ByteTrack, OC-SORT and McByte (see
`baselines`), each once with its published defaults and once with thresholds matched to this
detector. Every tracker's output is scored against the clip's ground-truth masks with TrackEval's
HOTA, Identity (IDF1) and CLEAR (MOTA, ID switches) metrics, using mask IoU as the similarity
(MOTS style). The decoded frames go along, as in the pipeline: maskwatch's colour cue reads them,
McByte's camera-motion compensation too. Per clip, the best baseline is the best value of each
metric among all baselines (each may come from another one), and maskwatch's margin is against it.

The clips are a folder of synth clips (``--data``), or rendered here (``--scenes`` and ``--seeds``:
the same seed numbers in every scene, 12 s at 1280x720 and 15 fps, scripted scenarios mixed in)
into a cache folder that later runs reuse, as they reuse the model's detections. Results come per
clip and per scene (the mean and the worst clip of HOTA, IDF1 and ID switches per tracker).

Seeds: settings are chosen on ``TUNING_SEEDS`` only; ``HELDOUT_SEEDS`` is reported once, after
choosing. Both are far from every other seed of the project (training below 20,000,000, the clips
of ``scripts/make_eval_clips.sh``: held-out 20,000,021..28, tuning 30,000,021..31; the tests' clips).

Each clip is also measured for how much its objects overlap (from the ground truth alone): a
clip where at least ``OCCLUSION_HEAVY`` of the instance-frames have another instance's box
over 10 % or more of their own box is occlusion-heavy, the others are easy. With the ByteTrack
baseline, the summary checks issue 5's floors against ByteTrack's defaults: on occlusion-heavy
clips IDF1 at least 5 points higher and at most half the ID switches; on easy clips IDF1 no lower.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .baselines import BASELINES, baseline_names, make_baselines, parse_baselines
from maskwatch.scenes.cli import parse_size

from .masks import _frames, find_clips

OCCLUSION_HEAVY = 0.15  # fraction of instance-frames overlapped (see box_overlap)

#: seeds of the tuning clips (inclusive, the same numbers in every scene): every setting is chosen on these
TUNING_SEEDS = (30_000_000, 30_000_019)
#: seeds of the held-out clips (inclusive): reported once, after every setting was chosen on the tuning seeds
HELDOUT_SEEDS = (31_000_000, 31_000_019)
SEED_RANGES = {"tuning": TUNING_SEEDS, "heldout": HELDOUT_SEEDS}
CLIP_SECONDS = 12.0  # rendered clips: as long as, and the size of, the other evaluation clips
CLIP_SIZE = (1280, 720)
CLIP_FPS = 15.0
DEFAULT_CACHE = Path("var/cache/eval-tracking")
DETECTORS = ("model", "gt")


def parse_seeds(text: str) -> tuple[int, int]:
    """``A..B`` (inclusive), ``A``, or ``tuning`` / ``heldout`` -> (first, last)."""
    t = text.strip().lower().replace(",", "").replace("_", "")
    if t in SEED_RANGES:
        return SEED_RANGES[t]
    a, sep, b = t.partition("..")
    try:
        first, last = int(a), int(b if sep else a)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A..B (inclusive), A, tuning ({TUNING_SEEDS[0]}..{TUNING_SEEDS[1]}) "
                                         f"or heldout ({HELDOUT_SEEDS[0]}..{HELDOUT_SEEDS[1]}), got {text!r}") from None
    if first < 0 or last < first:
        raise argparse.ArgumentTypeError(f"expected 0 <= A <= B, got {text!r}")
    return first, last


def _parse_detectors(text: str) -> tuple[str, ...]:
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if items == ["both"]:
        return DETECTORS
    if not items or any(t not in DETECTORS for t in items):
        raise argparse.ArgumentTypeError(f"expected model, gt or model,gt, got {text!r}")
    return tuple(dict.fromkeys(items))


def _parse_baselines(text: str) -> tuple[str, ...]:
    try:
        return parse_baselines(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("model", help="model file (.onnx); unused with --detector gt")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="a synth clip directory, or a folder of them")
    src.add_argument("--scenes", metavar="S,..", help="render clips of these scenes (e.g. site,pitch) for --seeds "
                     "into the --cache folder, or reuse the ones there")
    p.add_argument("--seeds", type=parse_seeds, metavar="A..B",
                   help=f"with --scenes: seeds A to B inclusive, the same in every scene; 'tuning' = "
                        f"{TUNING_SEEDS[0]}..{TUNING_SEEDS[1]} (choose settings here), 'heldout' = "
                        f"{HELDOUT_SEEDS[0]}..{HELDOUT_SEEDS[1]} (report once, after choosing)")
    p.add_argument("--seconds", type=float, default=CLIP_SECONDS,
                   help=f"with --scenes: length of a rendered clip (default {CLIP_SECONDS:g})")
    p.add_argument("--size", type=parse_size, default=CLIP_SIZE, metavar="WxH",
                   help=f"with --scenes: size of a rendered clip (default {CLIP_SIZE[0]}x{CLIP_SIZE[1]})")
    p.add_argument("--conf", type=float, default=0.35, help="detection confidence of the deployment (default 0.35)")
    p.add_argument("--low-conf", type=float, default=0.1, help="second-pass detections from this (default 0.1)")
    p.add_argument("--detector", type=_parse_detectors, default=None, metavar="model|gt|model,gt",
                   help="model: the model's detections; gt: ground-truth masks with misses and confidence noise "
                        "(association quality apart from the detector); model,gt: both, one after the other "
                        "(default: model with --data, model,gt with --scenes)")
    p.add_argument("--baselines", type=_parse_baselines, default=BASELINES, metavar="B,..",
                   help=f"roboflow trackers to compare, each with its defaults and with matched thresholds: "
                        f"{','.join(BASELINES)} (default all) or none")
    p.add_argument("--no-baseline", action="store_true", help="only maskwatch's tracker (= --baselines none)")
    p.add_argument("--out", action="append", default=[], metavar="FILE.json|FILE.md",
                   help="write the per-clip tables and per-scene summaries here: JSON for .json, Markdown "
                        "otherwise; repeatable")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results here as JSON (= --out FILE.json)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "openvino", "tensorrt", "torchscript"],
                   help="inference runtime of the model's detections (default: by the model file's type)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16", "int8"],
                   help="arithmetic precision (default: the backend's choice)")
    p.add_argument("--cache", default=None, help="keep the model's detections here (keyed by clip, its gt.json, model hash "
                   "and conf): a second run only tracks and scores. With --scenes the rendered clips go here too, "
                   f"under clips/ (default {DEFAULT_CACHE})")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a tracker parameter (TrackerParams field), e.g. --set min_hits=3; repeatable")
    return p


def _trackers(fps: float, conf: float, low_conf: float, baselines=BASELINES, params: dict | None = None) -> dict:
    import dataclasses

    from maskwatch.pipeline.config import TrackerConfig
    from maskwatch.pipeline.tracking import MaskTracker

    # the tracker exactly as `maskwatch run` builds it from a config with model.conf = conf
    p = TrackerConfig(low_conf=low_conf).params(conf)
    out = {"maskwatch": MaskTracker(dataclasses.replace(p, **(params or {})))}
    out.update(make_baselines(baselines, fps, conf))
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
            "IDSW": int(res["IDSW"]), "gt_ids": len(gt_map), "tracker_ids": len(tr_map),
            # where IDF1 is lost: instance-frames unmatched on either side (identity, then per frame)
            "IDFN": int(res["IDFN"]), "IDFP": int(res["IDFP"]), "FN": int(res["CLR_FN"]), "FP": int(res["CLR_FP"])}


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
    """The cache key of a model file, or of a model folder (OpenVINO's: .xml, .bin, metadata.yaml) by its files."""
    import hashlib

    path = Path(model)
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes())
    else:
        h.update(path.read_bytes())  # a file's key as before, so existing caches stay valid
    return f"{h.hexdigest()[:16]}-c{conf:g}"


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


def gt_key(gt: dict, inst: dict):
    """The identity of a ground-truth instance: its track id, unique within a clip from gt.json version 2 on;
    version 1 numbered ids per class (a pitch's ball and a player could both be 1), so there it is (class, id)."""
    return inst["track_id"] if gt.get("version", 1) >= 2 else (inst["class_id"], inst["track_id"])


def track_clip(gt: dict, dets_seq: list, trackers: dict, frames=None) -> dict:
    """Run every tracker over the clip's detections and score each against the ground truth.

    ``frames`` yields the clip's RGB frames in order (the trackers' appearance cue), or is None.
    """
    fps = float(gt["fps"])
    gt_seq = [[(gt_key(gt, inst), inst["mask"]) for inst in f["instances"]] for f in gt["frames"][: len(dets_seq)]]
    out = {name: [] for name in trackers}
    frames = iter(frames) if frames is not None else None
    for i, dets in enumerate(dets_seq):
        image = next(frames, None) if frames is not None else None
        for name, tracker in trackers.items():
            res = tracker.update(dets[np.arange(len(dets))], i / fps, image)
            out[name].append((res.tracker_id, list(res.data["rles"])))
    return {name: _score(gt_seq, seq) for name, seq in out.items()}


def scenario_for(scene_scenarios: tuple[str, ...], seed: int) -> str | None:
    """The scripted scenario of a rendered clip, from its seed alone, mixed as scripts/make_eval_clips.sh does:
    half the clips (at least four in five with one scenario) are plain, the rest take the scene's scenarios in turn."""
    k = len(scene_scenarios)
    if k == 0:
        return None
    pos = seed % max(2 * k, 5)
    return scene_scenarios[pos // 2] if pos % 2 == 1 and pos // 2 < k else None


def scene_scenarios(scene: str) -> tuple[str, ...]:
    """The scripted scenarios of a scene the generator knows; ValueError (its message) for one it does not."""
    from maskwatch.scenes.dataset import make_scene

    return tuple(make_scene(scene, 0, 64, 64).scenarios)


def render_clips(scenes, seeds: tuple[int, int], cache: str | Path, *, seconds: float = CLIP_SECONDS,
                 size: tuple[int, int] = CLIP_SIZE, log=print) -> tuple[list[Path], dict]:
    """The clips of ``scenes`` x ``seeds`` (inclusive) under ``cache``/clips/, rendering those not there yet.

    Returns the clip folders (scene by scene, seed by seed) and counts ``{"rendered": n, "reused": m}``.
    A clip is rendered into a temporary folder and renamed when complete, so an interrupted run leaves
    nothing half-written behind.
    """
    import os
    import shutil
    import time

    from maskwatch.scenes.clip import write_clip

    root = Path(cache) / "clips" / f"{size[0]}x{size[1]}-{seconds:g}s"
    clips: list[Path] = []
    counts = {"rendered": 0, "reused": 0}
    for scene in scenes:
        scenarios = scene_scenarios(scene)
        for seed in range(seeds[0], seeds[1] + 1):
            scenario = scenario_for(scenarios, seed)
            out = root / (f"{scene}-{seed}" + (f"-{scenario}" if scenario else ""))
            if (out / "gt.json").is_file() and (out / "video.mp4").is_file():
                counts["reused"] += 1
            else:
                tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
                shutil.rmtree(tmp, ignore_errors=True)
                t0 = time.perf_counter()
                write_clip(scene, seed, seconds, tmp, fps=CLIP_FPS, size=size, scenario=scenario, events=False)
                shutil.rmtree(out, ignore_errors=True)
                tmp.rename(out)
                counts["rendered"] += 1
                log(f"eval tracking: rendered {out.name} ({time.perf_counter() - t0:.1f} s)")
            clips.append(out)
    return clips, counts


def _best(scores: dict) -> dict | None:
    """Per metric, the best value among the baselines (each may come from another) and which one gave it."""
    base = {n: s for n, s in scores.items() if n != "maskwatch"}
    if not base:
        return None
    out: dict = {"by": {}}
    for metric, pick in (("HOTA", max), ("IDF1", max), ("MOTA", max), ("IDSW", min)):
        name = pick(base, key=lambda n: base[n][metric])
        out[metric] = base[name][metric]
        out["by"][metric] = name
    return out


def evaluate(model, data=None, *, clips=None, conf=0.35, low_conf=0.1, baselines=BASELINES, baseline=True,
             threads=None, detector="model", cache: str | Path | None = None, params: dict | None = None, log=print,
             backend: str = "auto", precision: str = "auto") -> dict:
    """Score maskwatch's tracker and the baselines on every clip under ``data`` (or the folders ``clips``).

    ``baselines``: roboflow trackers to compare (``baseline=False``: none); ``params`` overrides
    TrackerParams fields; ``cache`` keeps the model's detections per clip (keyed by the clip's gt.json, the
    model file's hash and conf) so a second run only tracks and scores. Each clip's entry has the scores of
    every tracker, ``best_baseline`` and maskwatch's ``margin`` against it; ``scenes`` summarises per scene.
    """
    baselines = tuple(baselines) if baseline else ()
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
               "baselines": list(baselines), "trackers": ["maskwatch", *baseline_names(baselines)], "clips": {}}
    for clip in (clips if clips is not None else find_clips(Path(data))):
        gt = json.loads((clip / "gt.json").read_text())
        dets_seq = clip_detections(clip, gt, detector=detector, seg=seg, model_to_ours=model_to_ours,
                                   cache=Path(cache) if cache else None, key=key)
        scores = track_clip(gt, dets_seq, _trackers(float(gt["fps"]), conf, low_conf, baselines, params),
                            (rgb for _, rgb in _frames(clip, gt)))
        overlap = box_overlap(gt)
        best = _best(scores)
        entry = {"scene": gt["scene"], "seed": gt.get("seed"), "scenario": gt.get("scenario"), "frames": len(dets_seq),
                 "overlap": overlap, "occlusion_heavy": overlap >= OCCLUSION_HEAVY, "scores": scores,
                 "best_baseline": best}
        if best is not None:
            ours = scores["maskwatch"]
            entry["margin"] = {m: ours[m] - best[m] for m in ("HOTA", "IDF1", "MOTA", "IDSW")}
        results["clips"][clip.name] = entry
        line = f"maskwatch HOTA {scores['maskwatch']['HOTA']:.3f} IDF1 {scores['maskwatch']['IDF1']:.3f} " \
               f"IDSW {scores['maskwatch']['IDSW']}"
        if best is not None:
            line += (f"; best baseline HOTA {best['HOTA']:.3f} ({best['by']['HOTA']}) IDF1 {best['IDF1']:.3f} "
                     f"({best['by']['IDF1']}) IDSW {best['IDSW']} ({best['by']['IDSW']})")
        log(f"eval tracking [{detector}]: {clip.name}: {line}")
    results["scenes"] = summary(results)
    return results


def summary(results: dict) -> dict:
    """Per scene and tracker (and ``best baseline``, ``margin``): the mean and the worst clip of HOTA, IDF1, ID switches.

    The worst clip is the lowest HOTA / IDF1 and the most ID switches (for ``margin``, maskwatch minus the best
    baseline per clip: the smallest HOTA / IDF1 margin and the largest ID-switch difference).
    """
    out: dict = {}
    scenes = sorted({r["scene"] for r in results["clips"].values()})
    for scene in scenes:
        clips = {c: r for c, r in results["clips"].items() if r["scene"] == scene}
        cols: dict[str, dict[str, dict]] = {}
        for name in results.get("trackers") or next(iter(clips.values()))["scores"]:
            cols[name] = {c: r["scores"][name] for c, r in clips.items() if name in r["scores"]}
        if all(r.get("best_baseline") for r in clips.values()):
            cols["best baseline"] = {c: r["best_baseline"] for c, r in clips.items()}
            cols["margin"] = {c: r["margin"] for c, r in clips.items()}
        rows = {}
        for name, per in cols.items():
            if not per:
                continue
            row: dict = {"clips": len(per)}
            for metric in ("HOTA", "IDF1", "IDSW"):
                vals = {c: s[metric] for c, s in per.items()}
                worst = (max if metric == "IDSW" else min)(vals, key=vals.get)
                if metric == "IDSW" and name != "margin" and vals[worst] == 0:
                    worst = None  # no clip with a switch: none is the worst
                row[metric] = {"mean": float(np.mean(list(vals.values()))), "worst": vals[worst] if worst else 0,
                               "worst_clip": worst}
            row["IDSW"]["total"] = int(sum(s["IDSW"] for s in per.values()))
            rows[name] = row
        out[scene] = rows
    return out


def _cell(s: dict) -> str:
    return f"{s['HOTA']:.3f} / {s['IDF1']:.3f} / {s['IDSW']}"


def table(results: dict) -> str:
    """One row per clip: HOTA / IDF1 / ID switches of every tracker, the best baseline and maskwatch's IDF1 margin."""
    names = results.get("trackers") or list(next(iter(results["clips"].values()))["scores"])
    has_best = any(r.get("best_baseline") for r in results["clips"].values())
    head = ["clip", "overlap", *names] + (["best baseline", "maskwatch - best (HOTA / IDF1 / IDSW)"] if has_best else [])
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for clip, r in results["clips"].items():
        name = clip + (f", {r['scenario']}" if r.get("scenario") and r["scenario"] not in clip else "")
        kind = " (heavy)" if r["occlusion_heavy"] else ""
        cells = [name, f"{r['overlap']:.0%}{kind}", *(_cell(r["scores"][n]) if n in r["scores"] else "" for n in names)]
        if has_best:
            b, m = r["best_baseline"], r["margin"]
            cells += [_cell(b), f"{m['HOTA'] * 100:+.1f} / {m['IDF1'] * 100:+.1f} / {m['IDSW']:+d}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def scene_table(results: dict) -> str:
    """Per scene: each tracker's mean and worst clip of HOTA, IDF1 and ID switches."""
    parts = []
    for scene, rows in results.get("scenes", summary(results)).items():
        n = next(iter(rows.values()))["clips"]
        parts.append(f"{scene} ({n} clip{'s' if n != 1 else ''}; worst: lowest HOTA / IDF1, most ID switches)\n")
        parts.append("| tracker | HOTA mean | HOTA worst | IDF1 mean | IDF1 worst | ID switches mean (total) | "
                     "ID switches worst |")
        parts.append("|---|---|---|---|---|---|---|")
        for name, row in rows.items():
            h, i, s = row["HOTA"], row["IDF1"], row["IDSW"]
            if name == "margin":
                parts.append(f"| maskwatch - best baseline | {h['mean'] * 100:+.1f} | {h['worst'] * 100:+.1f} "
                             f"({h['worst_clip']}) | {i['mean'] * 100:+.1f} | {i['worst'] * 100:+.1f} ({i['worst_clip']}) | "
                             f"{s['mean']:+.2f} ({s['total']:+d}) | {s['worst']:+d} ({s['worst_clip']}) |")
                continue
            sw = f"{s['worst']} ({s['worst_clip']})" if s["worst_clip"] else "0"
            parts.append(f"| {name} | {h['mean']:.3f} | {h['worst']:.3f} ({h['worst_clip']}) | {i['mean']:.3f} | "
                         f"{i['worst']:.3f} ({i['worst_clip']}) | {s['mean']:.2f} ({s['total']}) | {sw} |")
        parts.append("")
    return "\n".join(parts).rstrip()


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


DETECTOR_TITLES = {"model": "the model's detections", "gt": "noisy ground-truth detections (--detector gt)"}


def report(doc: dict) -> str:
    """The Markdown of a run: per detector, the per-scene summary, the per-clip table and the floor checks."""
    src = doc["source"]
    where = (f"scenes {', '.join(src['scenes'])}, seeds {src['seeds'][0]}..{src['seeds'][1]} ({src['seed_range']}), "
             f"{src['seconds']:g} s at {src['size'][0]}x{src['size'][1]}" if "scenes" in src else f"clips in {src['data']}")
    lines = ["# maskwatch eval tracking", "",
             f"Model {doc['model']}; conf {doc['conf']:g}, second pass from {doc['low_conf']:g}; tracker overrides "
             f"{doc['params'] or 'none'}; baselines {', '.join(doc['baselines']) or 'none'} (roboflow trackers, each "
             f"with its defaults and with matched thresholds); {where}. Cells: HOTA / IDF1 / ID switches; the best "
             "baseline is the best value of each metric among the baselines of that clip.", ""]
    for det, res in doc["detectors"].items():
        lines += [f"## {DETECTOR_TITLES.get(det, det)}", "", "### Per scene: mean and worst clip", "", scene_table(res), "",
                  "### Per clip", "", table(res), ""]
        checks = floors(res)
        if checks:
            lines += ["### Issue 5's floors against ByteTrack's defaults", ""] + [f"- {c}" for c in checks] + [""]
    return "\n".join(lines)


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


def _seed_range_name(seeds: tuple[int, int]) -> str:
    """tuning, held-out, or other (a range overlapping one of the fixed ranges names it)."""
    for name, (a, b) in SEED_RANGES.items():
        if seeds[0] <= b and a <= seeds[1]:
            return "held-out" if name == "heldout" else name
    return "other"


def main(argv: list[str] | None = None) -> int:
    epilog = ("Each clip's overlap is the share of its instance-frames with another object's box over 10 % of theirs "
              f"(ground truth); from {round(OCCLUSION_HEAVY * 100)} % a clip is occlusion-heavy. With the ByteTrack "
              "baseline, issue 5's floor checks against ByteTrack's defaults follow the tables. Seeds: choose every "
              f"setting on the tuning seeds ({TUNING_SEEDS[0]}..{TUNING_SEEDS[1]}); report the held-out seeds "
              f"({HELDOUT_SEEDS[0]}..{HELDOUT_SEEDS[1]}) once, after choosing.")
    parser = argparse.ArgumentParser(prog="maskwatch eval tracking", description=__doc__.split("\n\n")[0], epilog=epilog)
    args = add_arguments(parser).parse_args(argv)

    def fail(msg: str) -> int:
        print(f"maskwatch: error: {msg}", file=sys.stderr)
        return 2

    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    try:
        params = _parse_sets(args.set)
    except ValueError as exc:
        return fail(str(exc))
    baselines = () if args.no_baseline else args.baselines
    detectors = args.detector or (DETECTORS if args.scenes else ("model",))
    cache = args.cache
    source: dict
    clips = None
    if args.scenes is not None:
        if args.seeds is None:
            return fail("--scenes needs --seeds A..B (or tuning / heldout)")
        if args.seconds <= 0:
            return fail(f"--seconds must be > 0, got {args.seconds:g}")
        scenes = list(dict.fromkeys(s.strip() for s in args.scenes.split(",") if s.strip()))
        if not scenes:
            return fail("--scenes: expected a comma-separated list of scenes such as site,pitch")
        for scene in scenes:
            try:
                scene_scenarios(scene)
            except ValueError as exc:
                return fail(f"--scenes: {exc} (the scene generator does not know it yet)")
        cache = Path(cache) if cache else DEFAULT_CACHE
        kind = _seed_range_name(args.seeds)
        if kind == "held-out":
            log("eval tracking: held-out seeds: report these once, after every setting was chosen on the tuning seeds")
        clips, counts = render_clips(scenes, args.seeds, cache, seconds=args.seconds, size=args.size, log=log)
        log(f"eval tracking: {len(clips)} clips under {cache}/clips ({counts['rendered']} rendered, "
            f"{counts['reused']} reused)")
        source = {"scenes": scenes, "seeds": list(args.seeds), "seed_range": kind, "seconds": args.seconds,
                  "size": list(args.size), "cache": str(cache), **counts}
    else:
        if args.seeds is not None:
            return fail("--seeds goes with --scenes (with --data the clips are given)")
        source = {"data": str(args.data)}
    doc = {"model": str(args.model), "conf": args.conf, "low_conf": args.low_conf, "params": params,
           "baselines": list(baselines), "source": source, "detectors": {}}
    try:
        for det in detectors:
            doc["detectors"][det] = evaluate(args.model, args.data, clips=clips, conf=args.conf, low_conf=args.low_conf,
                                             baselines=baselines, threads=args.threads, detector=det, cache=cache,
                                             params=params, backend=args.backend, precision=args.precision, log=log)
    except FileNotFoundError as exc:
        return fail(str(exc))
    for det, res in doc["detectors"].items():
        if len(doc["detectors"]) > 1:
            print(f"\n== {DETECTOR_TITLES[det]} ==\n")
        print(table(res))
        print()
        print(scene_table(res))
        checks = floors(res)
        if checks:
            print("\nFloors against ByteTrack's defaults:")
            print("\n".join(f"  {line}" for line in checks))
    outs = list(args.out) + ([args.json] if args.json else [])
    for out in outs:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json" or out == args.json:
            path.write_text(json.dumps(doc, indent=2))
        else:
            path.write_text(report(doc) + "\n")
        log(f"eval tracking: wrote {path}")
    return 0
