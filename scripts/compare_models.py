#!/usr/bin/env python3
"""Compare segmentation models on maskwatch's own held-out data: one table, every figure from a public command.

    python scripts/compare_models.py yolo11n-seg=models/maskwatch-demo-seg.onnx \\
        maskrcnn-r18=var/models/maskrcnn-resnet18.onnx --out docs/eval/model-comparison.md

For each LABEL=MODEL (ONNX file or OpenVINO folder; YOLO-seg or Mask R-CNN, the layout is read from the graph):
  1. masks   ``maskwatch eval masks MODEL --data DATA --every N --json``: COCO mask and box mAP per scene and class
  2. speed   ``maskwatch bench engine MODEL --batch 1 --runs R --json``: ms per 1280x720 frame, median and p95
             (pre-processing, the engine call, decoding into mask space), on this machine's CPU
  3. alerts  ``bash scripts/eval_alert_clips.sh MODEL``: recall and precision of the whole pipeline (tracker and
             zone engine included) on the held-out scripted site clips (``SCENE=farm`` for a 6-class model:
             ``--alert-scenes site,farm``)

Models run one after the other, never together: the speed figures need a quiet machine (nothing else on the
cores), and their ratios are comparable only within one run. The table names the CPU (``lscpu``), the commands
and the data. Nothing here chooses a setting: DATA must be held-out clips (``scripts/make_eval_clips.sh``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _mw() -> str:
    return os.environ.get("MASKWATCH") or str(ROOT / ".venv" / "bin" / "maskwatch")


def _run(cmd: list[str], env: dict | None = None) -> str:
    print("$ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if p.returncode != 0:
        raise SystemExit(f"compare_models: `{' '.join(cmd[:3])}` failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown CPU"
    name = re.search(r"^Model name:\s*(.+)$", out, re.M)
    flags = re.search(r"^Flags:\s*(.+)$", out, re.M)
    have = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
            if flags and f in flags.group(1).split()]
    return f"{name.group(1).strip() if name else 'unknown CPU'}, {os.cpu_count()} cores ({', '.join(have) or 'no AVX2'})"


def eval_masks(model: str, data: str, every: int, backend: str, tmp: Path) -> dict:
    out = tmp / "masks.json"
    _run([_mw(), "eval", "masks", model, "--data", data, "--every", str(every), "--backend", backend,
          "--json", str(out)])
    return json.loads(out.read_text())


def bench_engine(model: str, runs: int, backend: str, tmp: Path) -> dict:
    out = tmp / "bench.json"
    cmd = [_mw(), "bench", "engine", model, "--batch", "1", "--runs", str(runs), "--warmup", str(max(3, runs // 10)),
           "--json", str(out)]
    if backend != "auto":
        cmd += ["--backend", backend]
    _run(cmd)
    return json.loads(out.read_text())["results"][0]


def eval_alerts(model: str, scene: str, backend: str) -> dict:
    out = _run(["bash", "scripts/eval_alert_clips.sh", model], env={"SCENE": scene, "BACKEND": backend,
                                                                   "MASKWATCH": _mw()})
    m = re.search(r"total: gt (\d+) predicted (\d+) matched (\d+)", out)
    if m is None:
        raise SystemExit(f"compare_models: no totals in eval_alert_clips.sh's output:\n{out}")
    gt, pred, tp = map(int, m.groups())
    return {"gt": gt, "predicted": pred, "matched": tp}


def _pair(d: dict) -> str:
    return f"{d['map50']:.3f} / {d['map50_95']:.3f}"


def table(results: dict[str, dict]) -> str:
    """One markdown column per model; a cell is "-" where that model has no such figure."""
    rows = ["| | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]

    def row(name: str, cell) -> None:  # cell(result) -> text, or None when the model has no such figure
        rows.append(f"| {name} | " + " | ".join(cell(r) or "-" for r in results.values()) + " |")

    def scene_of(r: dict, scene: str) -> dict:
        return r["masks"]["scenes"].get(scene, {})

    for scene in sorted({s for r in results.values() for s in r["masks"]["scenes"]}):
        row(f"{scene}: mask mAP50 / 50-95", lambda r: scene_of(r, scene) and _pair(scene_of(r, scene)["mask"]))
        for c in sorted({c for r in results.values() for c in scene_of(r, scene).get("classes", {})}):
            row(f"&nbsp; {c}", lambda r: (c in scene_of(r, scene).get("classes", {})
                                          and _pair(scene_of(r, scene)["classes"][c]["mask"])))
        row(f"{scene}: box mAP50 / 50-95", lambda r: scene_of(r, scene) and _pair(scene_of(r, scene)["box"]))
    row("CPU ms per 720p frame, median / p95 (batch 1)",
        lambda r: f"{r['bench']['total']['median_ms']:.0f} / {r['bench']['total']['p95_ms']:.0f}")
    row("&nbsp; of which the engine call", lambda r: f"{r['bench']['infer']['median_ms']:.0f}")
    for scene in sorted({s for r in results.values() for s in r["alerts"]}):
        row(f"alerts on the {scene} clips: recall / precision",
            lambda r: (scene in r["alerts"] and "{matched}/{gt} / {matched}/{predicted}".format(**r["alerts"][scene])))
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", metavar="LABEL=MODEL")
    ap.add_argument("--data", default="var/eval", help="held-out synth clips (default var/eval: "
                    "`bash scripts/make_eval_clips.sh eval`)")
    ap.add_argument("--every", type=int, default=3, help="evaluate every N-th frame (default 3)")
    ap.add_argument("--runs", type=int, default=50, help="timed engine runs per model (default 50)")
    ap.add_argument("--backend", default="auto", help="inference runtime for every model (default auto)")
    ap.add_argument("--alert-scenes", default="site", help="alert clip sets, comma-separated (site, farm; "
                    "'' for none)")
    ap.add_argument("--out", type=Path, help="write the table (markdown) here; also OUT with .json")
    args = ap.parse_args(argv)

    models = {}
    for spec in args.models:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            ap.error(f"{spec!r}: expected LABEL=MODEL")
        if not Path(path).exists():
            ap.error(f"{path}: no such model file or folder")
        models[label] = str(Path(path).resolve())
    if not Path(args.data).exists():
        ap.error(f"--data {args.data}: no such folder (make it with `bash scripts/make_eval_clips.sh eval`)")

    results: dict[str, dict] = {}
    t0 = time.time()
    for label, model in models.items():
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            r = {"model": model, "masks": eval_masks(model, args.data, args.every, args.backend, tmp),
                 "bench": bench_engine(model, args.runs, args.backend, tmp), "alerts": {}}
            for scene in [s for s in args.alert_scenes.split(",") if s]:
                r["alerts"][scene] = eval_alerts(model, scene, args.backend)
        results[label] = r
        print(f"{label}: done ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    text = (f"Measured on {cpu_name()}, {time.strftime('%Y-%m-%d')}, with `python scripts/compare_models.py "
            + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
            + f"`: masks on `{args.data}` (every {args.every}th frame), speed by `maskwatch bench engine --batch 1 "
            f"--runs {args.runs}`, alerts by `scripts/eval_alert_clips.sh`.\n\n" + table(results))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
