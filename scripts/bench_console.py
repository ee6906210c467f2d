#!/usr/bin/env python3
"""What a console viewer costs the pipeline: analysed frames/s with one MJPEG viewer against none, same run.

Runs the config's pipeline on its (file) camera again and again, the console up every time; every other run
has a viewer reading the live MJPEG stream at web.preview_fps (default 5). Runs alternate, so both
conditions see the same machine load over time; the figures are medians per condition.

    python scripts/bench_console.py                      # configs/demo.yaml (make its clip with scripts/demo.sh)
    python scripts/bench_console.py --runs 4 --json var/bench-console.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

import maskwatch  # noqa: F401  (single-threaded BLAS before numpy work)
from maskwatch.pipeline.config import load_config
from maskwatch.pipeline.factory import build_segmenter
from maskwatch.pipeline.stages import Pipeline
from maskwatch.web.backend import PipelineBackend
from maskwatch.web.server import start_console


def _viewer(url: str, stop: threading.Event, got: list[int]) -> None:
    try:
        with httpx.stream("GET", url, timeout=30) as r:
            for chunk in r.iter_bytes():
                got[0] += len(re.findall(rb"--frame\r\n", chunk))
                if stop.is_set():
                    return
    except httpx.HTTPError:  # the console stopped at the end of the run: the stream ends with it
        pass


def one_run(config: str, viewer: bool, port: int) -> dict:
    cfg = load_config(config)
    tmp = Path(tempfile.mkdtemp(prefix="bench-console-"))
    cfg.alerts.jsonl, cfg.alerts.outbox, cfg.alerts.snapshots = None, tmp / "outbox.sqlite", None
    cfg.web.listen = f"127.0.0.1:{port}"
    pipe = Pipeline(cfg, build_segmenter(cfg.model, config, cfg.tracker))
    console = start_console(PipelineBackend(pipe), cfg.web, explicit=True)
    stop, parts = threading.Event(), [0]
    t = None
    t0 = time.perf_counter()
    pipe.start()
    if viewer:
        cid = pipe.cameras[0].id
        t = threading.Thread(target=_viewer, args=(f"{console.url}api/cameras/{cid}/stream.mjpg", stop, parts),
                             daemon=True)
        t.start()
    pipe.wait()
    wall = time.perf_counter() - t0
    stop.set()
    if t is not None:
        t.join(5)
    console.stop()
    frames = sum(c.stats.analysed for c in pipe.cameras)
    return {"viewer": viewer, "frames": frames, "seconds": round(wall, 2), "fps": round(frames / wall, 2),
            "mjpeg_parts": parts[0]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--runs", type=int, default=3, help="runs per condition (default 3)")
    p.add_argument("--port", type=int, default=18181)
    p.add_argument("--json", help="write the runs and the summary here")
    args = p.parse_args()
    runs = []
    for i in range(args.runs * 2):
        r = one_run(args.config, viewer=i % 2 == 1, port=args.port)
        runs.append(r)
        print(f"run {i + 1}: viewer={r['viewer']!s:5} {r['frames']} frames in {r['seconds']} s = {r['fps']} fps, "
              f"{r['mjpeg_parts']} MJPEG parts", flush=True)
    none = round(statistics.median(r["fps"] for r in runs if not r["viewer"]), 2)
    one = round(statistics.median(r["fps"] for r in runs if r["viewer"]), 2)
    summary = {"fps_no_viewer": none, "fps_one_viewer": one, "ratio": round(one / none, 4)}
    print(f"median fps: no viewer {none}, one viewer {one}: ratio {summary['ratio']} "
          f"({(one / none - 1) * 100:+.1f} % with the viewer)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
