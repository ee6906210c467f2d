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

from maskwatch.zones.matching import compare, match, predicted_intervals, score_line

__all__ = ["add_arguments", "evaluate", "main", "match", "predicted_intervals"]


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("config", help="config YAML with one camera on a synth clip")
    p.add_argument("--gt", required=True, help="events.json written by `maskwatch synth --scenario ...`")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--min-recall", type=float, default=None, help="exit 1 when recall is below this (a gate)")
    return p


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
    res = compare(gt, events)
    log(f"eval alerts: {res['matched']}/{res['gt']} ground-truth activations found, "
        f"{res['predicted']} alerts raised, latency {res['start_latency_s']} s")
    return res


def main(argv: list[str] | None = None) -> int:
    args = add_arguments(argparse.ArgumentParser(prog="maskwatch eval alerts", description=__doc__.split("\n\n")[0])).parse_args(argv)
    res = evaluate(args.config, args.gt, log=lambda m: print(m, file=sys.stderr))
    print(f"{score_line(res)}  one start + one end each: {res['one_start_one_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    if args.min_recall is not None and res["recall"] < args.min_recall:
        print(f"maskwatch: error: recall {res['recall']:.3f} below {args.min_recall}", file=sys.stderr)
        return 1
    return 0
