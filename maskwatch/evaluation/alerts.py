"""`maskwatch eval alerts CONFIG --gt events.json`: alert recall, precision and latency.

Runs the real pipeline (model, tracker, zone engine) on the config's camera — a synth
clip with scripted zone events — and compares the alerts it raises with the ground-truth
activation intervals that `maskwatch synth` computed from the true masks with the same
zone engine. A predicted alert matches a ground-truth interval of the same rule when
their frame intervals overlap; each is matched at most once (largest overlap first).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("config", help="config YAML with one camera on a synth clip")
    p.add_argument("--gt", required=True, help="events.json written by `maskwatch synth --scenario ...`")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--min-recall", type=float, default=None, help="exit 1 when recall is below this (a gate)")
    return p


def predicted_intervals(events: list[dict]) -> list[dict]:
    by_id: dict[str, dict] = {}
    for e in events:
        iv = by_id.setdefault(e["id"], {"id": e["id"], "rule": e["rule"], "start_frame": None, "end_frame": None,
                                        "start_pts_s": None, "starts": 0, "ends": 0})
        if e["type"] == "start":
            iv["starts"] += 1
            iv["start_frame"], iv["start_pts_s"] = e["frame_index"], e["pts_s"]
        elif e["type"] == "end":
            iv["ends"] += 1
            iv["end_frame"] = e["frame_index"]
    return list(by_id.values())


def match(gt: list[dict], pred: list[dict], fps: float) -> dict:
    """Greedy one-to-one matching on frame-interval overlap, per rule."""
    pairs = []
    for gi, g in enumerate(gt):
        for pi, p in enumerate(pred):
            if p["rule"] != g["rule"] or p["start_frame"] is None:
                continue
            p_end = p["end_frame"] if p["end_frame"] is not None else p["start_frame"]
            overlap = min(g["end_frame"], p_end) - max(g["start_frame"], p["start_frame"]) + 1
            if overlap > 0:
                pairs.append((overlap, gi, pi))
    used_g, used_p, matches = set(), set(), []
    for overlap, gi, pi in sorted(pairs, reverse=True):
        if gi in used_g or pi in used_p:
            continue
        used_g.add(gi)
        used_p.add(pi)
        matches.append((gi, pi))
    latency = [(pred[pi]["start_frame"] - gt[gi]["start_frame"]) / fps for gi, pi in matches]
    return {
        "gt": len(gt), "predicted": len(pred), "matched": len(matches),
        "recall": len(matches) / len(gt) if gt else 1.0,
        "precision": len(matches) / len(pred) if pred else 1.0,
        "start_latency_s": sorted(round(x, 3) for x in latency),
        "unmatched_gt": [gt[gi]["id"] for gi in range(len(gt)) if gi not in used_g],
        "unmatched_predicted": [pred[pi]["id"] for pi in range(len(pred)) if pi not in used_p],
    }


def evaluate(config: str | Path, gt_path: str | Path, log=print) -> dict:
    from maskwatch.pipeline.factory import build_segmenter
    from maskwatch.pipeline.config import check_files, inference_plan, load_config
    from maskwatch.pipeline.stages import Pipeline

    gt = json.loads(Path(gt_path).read_text())
    cfg = load_config(config)
    if len(cfg.cameras) != 1:
        raise ValueError("eval alerts needs a config with exactly one camera")
    check_files(cfg, config)
    with tempfile.TemporaryDirectory(prefix="maskwatch-eval-") as tmp:
        cfg.alerts.jsonl = Path(tmp) / "alerts.jsonl"
        cfg.alerts.outbox = Path(tmp) / "outbox.sqlite"
        pipe = Pipeline(cfg, build_segmenter(cfg.model, config, cfg.tracker, threads=inference_plan(cfg)[1]))
        pipe.start()
        pipe.wait()
        if pipe.failure is not None:
            raise RuntimeError(str(pipe.failure))
        events = [json.loads(x) for x in cfg.alerts.jsonl.read_text().splitlines()] if cfg.alerts.jsonl.exists() else []
    gt_rules = {iv["rule"] for iv in gt["intervals"]} | {e["rule"] for e in gt.get("events", [])}
    pred = [p for p in predicted_intervals(events) if p["rule"] in gt_rules]
    res = match(gt["intervals"], pred, float(gt["fps"]))
    res["rules"] = sorted(gt_rules)
    res["other_rules_alerts"] = len({e["id"] for e in events if e["rule"] not in gt_rules})
    res["one_start_one_end"] = all(p["starts"] == 1 and p["ends"] == 1 for p in pred)
    log(f"eval alerts: {res['matched']}/{res['gt']} ground-truth activations found, "
        f"{res['predicted']} alerts raised, latency {res['start_latency_s']} s")
    return res


def main(argv: list[str] | None = None) -> int:
    args = add_arguments(argparse.ArgumentParser(prog="maskwatch eval alerts", description=__doc__.split("\n\n")[0])).parse_args(argv)
    res = evaluate(args.config, args.gt, log=lambda m: print(m, file=sys.stderr))
    print(f"recall {res['recall']:.3f}  precision {res['precision']:.3f}  "
          f"({res['matched']} of {res['gt']} ground truth, {res['predicted']} predicted)  "
          f"start latency s {res['start_latency_s']}  one start + one end each: {res['one_start_one_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    if args.min_recall is not None and res["recall"] < args.min_recall:
        print(f"maskwatch: error: recall {res['recall']:.3f} below {args.min_recall}", file=sys.stderr)
        return 1
    return 0
