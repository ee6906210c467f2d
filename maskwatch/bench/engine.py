"""Engine benchmark: per-image latency of pre-processing, inference and post-processing.

    maskwatch bench engine MODEL [--runs 200] [--warmup 20] [--batch 1 4] [--frame-size 1280x720] [--json OUT]

 Pre = letterbox + batch assembly, infer = the engine's
``infer``, post = decoding, NMS and mask-space masks; all per image (a batch's time / its size),
median and p95 over ``--runs`` timed runs after ``--warmup`` untimed ones. The frame is a fixed
synthetic drawing; ``--conf`` tunes how many detections post-processing sees (reported).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from maskwatch.engines.base import load_engine
from maskwatch.engines.preprocess import letterbox
from maskwatch.engines.segmenter import Segmenter


def synthetic_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic RGB frame with sky, ground and a few dozen machine- and person-like shapes."""
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.uint8)
    horizon = height * 2 // 5
    img[:horizon] = (135, 190, 230)
    img[horizon:] = (150, 120, 80)
    noise = rng.integers(-12, 13, (height, width, 1), dtype=np.int16)
    img[:] = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    s = height / 720
    for _ in range(8):
        x, y = int(rng.uniform(0, width)), int(rng.uniform(horizon, height))
        w, h = int(rng.uniform(80, 300) * s), int(rng.uniform(50, 150) * s)
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.rectangle(img, (x - w // 2, y - h), (x + w // 2, y), color, -1)
        cv2.line(img, (x + w // 2, y - h), (x + w, y - 2 * h), color, max(2, int(8 * s)))
    for _ in range(20):
        x, y = int(rng.uniform(0, width)), int(rng.uniform(horizon, height))
        hh = int(rng.uniform(25, 90) * s)
        cv2.ellipse(img, (x, y - hh // 2), (max(2, hh // 6), hh // 2), 0, 0, 360, (255, 160, 0), -1)
        cv2.circle(img, (x, y - hh), max(2, hh // 8), (230, 190, 160), -1)
    return img


def _stats(values_ms: list[float]) -> dict[str, float]:
    a = np.asarray(values_ms)
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)), "mean_ms": float(a.mean())}


def bench_batch(seg: Segmenter, frame: np.ndarray, batch: int, runs: int, warmup: int, full_masks: bool) -> dict:
    frames = [frame] * batch
    pre_ms, infer_ms, post_ms, total_ms, dets = [], [], [], [], []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        boxed = [letterbox(f, seg.input_hw) for f in frames]
        x = seg.preprocess([b[0] for b in boxed])
        t1 = time.perf_counter()
        outputs = seg.engine.infer(x)
        t2 = time.perf_counter()
        results = seg.postprocess(outputs, [b[1] for b in boxed], full_masks=full_masks)
        t3 = time.perf_counter()
        if i >= warmup:
            pre_ms.append((t1 - t0) * 1e3 / batch)
            infer_ms.append((t2 - t1) * 1e3 / batch)
            post_ms.append((t3 - t2) * 1e3 / batch)
            total_ms.append((t3 - t0) * 1e3 / batch)
            dets.append(float(np.mean([len(r) for r in results])))
    out = {
        "batch": batch,
        "runs": runs,
        "detections_per_image": float(np.mean(dets)),
        "pre": _stats(pre_ms),
        "infer": _stats(infer_ms),
        "post": _stats(post_ms),
        "pre_post": _stats([a + b for a, b in zip(pre_ms, post_ms, strict=True)]),
        "total": _stats(total_ms),
    }
    out["pre_post_over_infer"] = out["pre_post"]["median_ms"] / out["infer"]["median_ms"]
    return out


def _frame_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"frame size must be positive, got {text!r}")
    return w, h


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="maskwatch bench engine", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="model file (.onnx)")
    p.add_argument("--runs", type=_positive, default=200, help="timed runs per batch size (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="untimed runs first (default 20)")
    p.add_argument("--batch", type=_positive, nargs="+", default=[1, 4], help="batch sizes (default 1 4)")
    p.add_argument("--frame-size", type=_frame_size, default=(1280, 720), help="WIDTHxHEIGHT (default 1280x720)")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold (default 0.25)")
    p.add_argument("--iou", type=float, default=0.7)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: runtime's)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--device", default="cpu")
    p.add_argument("--names", nargs="+", help="class names, for a model without metadata")
    p.add_argument("--full-masks", action="store_true", help="also make frame-resolution masks in post")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON here")
    args = p.parse_args(argv)

    try:
        engine = load_engine(args.model, backend=args.backend, device=args.device, names=args.names,
                             threads=args.threads)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with engine:
        seg = Segmenter(engine, conf=args.conf, iou=args.iou)
        meta = engine.meta
        w, h = args.frame_size
        frame = synthetic_frame(w, h)
        print(f"model {Path(args.model).name}: input {meta.input_hw[0]}x{meta.input_hw[1]} (h x w), "
              f"batch {meta.batch}{' dynamic' if meta.dynamic_batch else ''}, {meta.nc} classes, "
              f"{meta.backend} {getattr(engine, 'providers', [''])[0]}, threads {args.threads or 'default'}")
        blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
        print(f"frame {w}x{h}, conf {args.conf}, {args.runs} runs after {args.warmup} warm-up, "
              f"BLAS threads {blas}; ms per image")
        stages = " | ".join(f"{k:>13}" for k in ("pre", "infer", "post", "pre+post", "total"))
        print(f"{'batch':>5} {'dets':>5} | {stages} | pp/inf")
        print(f"{'':>5} {'':>5} | {'median   p95':>13} | {'median   p95':>13} | {'median   p95':>13} | "
              f"{'median   p95':>13} | {'median   p95':>13} |")
        results = []
        for b in args.batch:
            r = bench_batch(seg, frame, b, args.runs, args.warmup, args.full_masks)
            results.append(r)
            cells = " | ".join(f"{r[k]['median_ms']:6.2f} {r[k]['p95_ms']:6.2f}"
                               for k in ("pre", "infer", "post", "pre_post", "total"))
            print(f"{b:>5} {r['detections_per_image']:>5.1f} | {cells} | {r['pre_post_over_infer'] * 100:5.1f}%")
    if args.json:
        report = {
            "model": str(args.model),
            "input_hw": list(meta.input_hw),
            "frame_wh": [w, h],
            "conf": args.conf,
            "threads": args.threads,
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "device": args.device,
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "results": results,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
