"""Tracker speed: ms per frame for N moving objects in a mask space of S x S.

    .venv/bin/python scripts/bench_tracker.py [--objects 20] [--size 80] [--frames 300] [--repeats 3]

Median, mean and p95 of MaskTracker.update over every frame after the first 20, all repeats, given the frame
as the pipeline gives it (the model input's content, 4x the mask space: the colour term); the same without
the frame, and with duplicate suppression, the ground-contact term and the ambiguity hold each off (their
costs, in the same run).
Target (issue 5): <= 1 ms per frame for 20 objects at 80x80 on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import maskwatch  # noqa: F401  (single-threaded BLAS before numpy work)
from maskwatch.engines.results import Detections, MaskSpace
from maskwatch.pipeline.tracking import MaskTracker


def scene(objects: int, size: int, frames: int, seed: int = 0) -> list[tuple[Detections, np.ndarray]]:
    """Frames of discs moving about: (detections, RGB image at 4x the mask space) each."""
    rng = np.random.default_rng(seed)
    ms = MaskSpace((size, size), (size * 4, size * 4))
    pos = rng.uniform(size * 0.1, size * 0.9, (objects, 2))
    vel = rng.uniform(-0.5, 0.5, (objects, 2))
    colours = rng.integers(0, 256, (objects, 3), dtype=np.uint8)  # drawn last: the same discs as before
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(frames):
        pos += vel
        vel[(pos < 4) | (pos > size - 4)] *= -1
        masks = np.stack([(xx - p[0]) ** 2 + (yy - p[1]) ** 2 <= 16 for p in pos])
        boxes = np.stack([[(p[0] - 4) * 4, (p[1] - 4) * 4, (p[0] + 4) * 4, (p[1] + 4) * 4] for p in pos])
        image = np.full((size, size, 3), (40, 120, 40), np.uint8)
        for m, c in zip(masks, colours):
            image[m] = c
        image = image.repeat(4, axis=0).repeat(4, axis=1)
        out.append((Detections(boxes, np.full(objects, 0.9), np.arange(objects) % 3, masks, ms), image))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", type=int, default=20)
    p.add_argument("--size", type=int, default=80)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    frames = scene(a.objects, a.size, a.frames)
    variants = {"": {}, " (no frame: colour term off)": None, " (duplicate suppression off)": {"duplicate_iou": 0.0, "duplicate_cover": 0.0},
                " (foot_weight 0)": {"foot_weight": 0.0}, " (ambiguity_margin 0)": {"ambiguity_margin": 0.0},
                " (report_conf 0.6, as configs run it)": {"report_conf": 0.6}, " (sole_inherit off)": {"sole_inherit": False}}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(a.repeats):
        for name, kw in variants.items():  # interleaved, so both see the same machine load
            t = MaskTracker(**(kw or {}))
            for k, (d, image) in enumerate(frames):
                t0 = time.perf_counter()
                t.update(d, k / 15, image if kw is not None else None)
                if k >= 20:
                    times[name].append(time.perf_counter() - t0)
    for name, tt in times.items():
        ms = np.array(tt) * 1000
        print(f"MaskTracker{name}, {a.objects} objects, mask space {a.size}x{a.size}: "
              f"median {np.median(ms):.3f} ms, mean {np.mean(ms):.3f} ms, p95 {np.percentile(ms, 95):.3f} ms per frame "
              f"({len(ms)} frames)")


if __name__ == "__main__":
    main()
