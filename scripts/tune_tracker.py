"""Try tracker settings on the tuning clips of `maskwatch eval tracking`, fast: only maskwatch's tracker runs,
on the model detections that eval run cached, and each variant is compared with the baselines' scores it wrote.

    maskwatch eval tracking MODEL --scenes site,pitch,farm --seeds tuning --detector model --out var/track/t.json
    python scripts/tune_tracker.py var/track/t.json --vary "" "mask_weight=0.5" "max_lost_s=3;min_hits=1"

Each ``--vary`` item is one variant (``FIELD=VALUE`` pairs joined by ``;``, empty: the defaults). Per scene it prints
maskwatch's mean HOTA / IDF1, ID switches, the mean IDF1 margin to the best baseline per clip, and where identity
is lost (IDFN, IDFP: instance-frames missed or extra). Tuning clips only: the held-out seeds are scored once, with
`maskwatch eval tracking --seeds heldout`, after the settings are chosen.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_variant(text: str) -> dict:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        k, _, v = part.partition("=")
        out[k.strip()] = _value(v.strip())
    return out


def _clip_scores(args: tuple) -> tuple[str, list[dict]]:
    clip, key, cache, conf, low_conf, variants = args
    from maskwatch.evaluation.tracking import _clip_key, _frames, _load_detections, _score, gt_key
    from maskwatch.pipeline.config import TrackerConfig
    from maskwatch.pipeline.tracking import MaskTracker

    clip = Path(clip)
    gt = json.loads((clip / "gt.json").read_text())
    dets_seq = _load_detections(Path(cache) / f"{clip.name}-{_clip_key(clip)}-{key}.npz")
    base = TrackerConfig(low_conf=low_conf).params(conf)
    trackers = [MaskTracker(dataclasses.replace(base, **v)) for v in variants]
    fps = float(gt["fps"])
    gt_seq = [[(gt_key(gt, inst), inst["mask"]) for inst in f["instances"]] for f in gt["frames"][: len(dets_seq)]]
    outs: list[list] = [[] for _ in trackers]
    frames = (rgb for _, rgb in _frames(clip, gt))
    for i, dets in enumerate(dets_seq):
        image = next(frames, None)
        for t, out in zip(trackers, outs):
            res = t.update(dets[np.arange(len(dets))], i / fps, image)
            out.append((res.tracker_id, list(res.data["rles"])))
    return clip.name, [_score(gt_seq, o) for o in outs]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", help="the JSON of a `maskwatch eval tracking --scenes ... --detector model` run")
    p.add_argument("--vary", nargs="+", default=[""], help="variants: FIELD=VALUE;FIELD=VALUE (empty: defaults)")
    p.add_argument("--scenes", default="", help="only these scenes (comma-separated)")
    p.add_argument("--cache", default=None, help="the run's cache folder (default: the one it names)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--clips", action="store_true", help="also print each clip's IDF1 per variant")
    args = p.parse_args(argv)

    from maskwatch.evaluation.tracking import _model_key

    res = json.loads(Path(args.results).read_text())
    run = res["detectors"]["model"]
    cache = Path(args.cache or res["source"].get("cache") or "var/cache/eval-tracking")
    key = _model_key(run["model"], min(run["conf"], run["low_conf"]))
    clips_root = next(cache.glob("clips/*"))
    scenes = set(filter(None, args.scenes.split(",")))
    names = [c for c, r in run["clips"].items() if not scenes or r["scene"] in scenes]
    variants = [parse_variant(v) for v in args.vary]
    jobs = [(str(clips_root / c), key, str(cache), run["conf"], run["low_conf"], variants) for c in names]
    with ProcessPoolExecutor(args.workers) as ex:
        scored = dict(ex.map(_clip_scores, jobs))
    for k, text in enumerate(args.vary):
        print(f"variant {k}: {text or '(defaults)'}")
        for scene in sorted({run["clips"][c]["scene"] for c in names}):
            cs = [c for c in names if run["clips"][c]["scene"] == scene]
            s = [scored[c][k] for c in cs]
            best = [run["clips"][c]["best_baseline"] for c in cs]
            margin = np.mean([a["IDF1"] - b["IDF1"] for a, b in zip(s, best)])
            print(f"  {scene:6s} HOTA {np.mean([x['HOTA'] for x in s]):.4f} IDF1 {np.mean([x['IDF1'] for x in s]):.4f} "
                  f"(best baseline {np.mean([b['IDF1'] for b in best]):.4f}, margin {margin * 100:+.2f}) "
                  f"IDSW {sum(x['IDSW'] for x in s)} (best {sum(b['IDSW'] for b in best)}) "
                  f"IDFN {sum(x['IDFN'] for x in s)} IDFP {sum(x['IDFP'] for x in s)} FN {sum(x['FN'] for x in s)} "
                  f"FP {sum(x['FP'] for x in s)}")
            if args.clips:
                for c, x, b in zip(cs, s, best):
                    print(f"    {c:36s} IDF1 {x['IDF1']:.3f} best {b['IDF1']:.3f} ({b['by']['IDF1']}) IDSW {x['IDSW']} "
                          f"IDFN {x['IDFN']} IDFP {x['IDFP']} FN {x['FN']} FP {x['FP']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
