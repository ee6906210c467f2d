"""Export synthetic frames as an Ultralytics YOLO-seg dataset.

Layout: images/{train,val}/*.jpg, labels/{train,val}/*.txt (one line per instance:
`class x1 y1 x2 y2 ...`, polygon vertices normalized to 0..1), data.yaml, manifest.json.
Train and val come from disjoint seed ranges, so no scene layout, camera or look seen in
training appears in validation.
"""

from __future__ import annotations

import contextlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from .classes import CLASS_NAMES, names_for
from .render import Instance

#: seeds of the val split start here (train seeds are seed_base + i, far below)
VAL_SEED_OFFSET = 10_000_000
#: held-out clips for evaluation use seeds from here on; never used by the dataset export
EVAL_SEED_OFFSET = 20_000_000
# seeds of the scripted-scenario frames added to a training set (export_scenario_frames)
SCENARIO_SEED_OFFSET = 5_000_000
# seeds of a second batch of scenario frames, inside one scenario's time window (e.g. the herd bunched at the gate)
WINDOW_SEED_OFFSET = 5_500_000


def mask_to_polygon(mask: np.ndarray, offset_xy: tuple[int, int] = (0, 0)) -> np.ndarray | None:
    """One polygon (k, 2) in frame pixels for a possibly multi-part mask.

    Occlusion can split a mask into parts; YOLO-seg labels hold one polygon per instance,
    so the parts are joined by zero-width bridges between their nearest vertices (the way
    Ultralytics' converters merge multi-part COCO segments). Contour vertices are pixel
    indices, so filling the polygon gives back the mask's pixels.
    """
    m = np.ascontiguousarray(mask.astype(np.uint8))
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    segs = [c.reshape(-1, 2).astype(np.float64) for c in contours if len(c) >= 1]
    if not segs:
        return None
    segs.sort(key=lambda s: -cv2.contourArea(s.astype(np.float32)) - len(s) * 1e-3)
    poly = segs[0]
    for seg in segs[1:]:
        d = ((poly[:, None, :] - seg[None, :, :]) ** 2).sum(-1)
        a, b = np.unravel_index(int(np.argmin(d)), d.shape)
        rolled = np.roll(seg, -b, axis=0)
        poly = np.concatenate([poly[: a + 1], rolled, rolled[:1], poly[a:]], 0)
    if len(poly) < 3:
        # a one- or two-pixel sliver: make a tiny triangle so the label stays valid
        p = poly[0]
        poly = np.array([p, p + [1, 0], p + [0, 1]], np.float64)
    return poly + np.asarray(offset_xy, np.float64)


def label_lines(instances: list[Instance], width: int, height: int, min_area: int = 4) -> list[str]:
    lines = []
    for inst in instances:
        if inst.area < min_area:
            continue
        poly = mask_to_polygon(inst.mask, inst.roi)
        if poly is None:
            continue
        xy = poly / np.array([width, height], np.float64)
        xy = np.clip(xy, 0.0, 1.0)
        lines.append(f"{inst.class_id} " + " ".join(f"{v:.5f}" for v in xy.reshape(-1)))
    return lines


def make_scene(name: str, seed: int, width: int, height: int, scenario: str | None = None):
    from .farm import FarmScene
    from .pitch import PitchScene
    from .site import SiteScene

    cls = {"site": SiteScene, "pitch": PitchScene, "farm": FarmScene}.get(name)
    if cls is None:
        raise ValueError(f"unknown scene {name!r}: expected one of site, pitch, farm")
    return cls(seed, width, height, scenario)


def _job(args) -> list[dict]:
    split, scene, scenario, seed, times, width, height, out, quality = args
    sc = make_scene(scene, seed, width, height, scenario)
    recs = []
    for k, t in enumerate(times):
        frame, inst = sc.render(float(t), frame_index=int(t * 15))
        stem = f"{scene}-{scenario}_{seed}_{k}" if scenario else f"{scene}_{seed}_{k}"
        cv2.imwrite(str(Path(out) / "images" / split / f"{stem}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
        lines = label_lines(inst, width, height)
        (Path(out) / "labels" / split / f"{stem}.txt").write_text("".join(ln + "\n" for ln in lines))
        recs.append({"split": split, "scene": scene, "scenario": scenario, "seed": seed, "t": round(float(t), 3),
                     "file": f"{stem}.jpg", "instances": len(lines)})
    return recs


def _run_jobs(jobs: list[tuple], workers: int, total: int, log) -> list[dict]:
    """Render the jobs (in worker processes when workers > 1); their records in job order."""
    records: list[dict] = []
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as ex:
        results = ex.map(_job, jobs, chunksize=4) if ex is not None else map(_job, jobs)
        for i, recs in enumerate(results):
            records += recs
            if i % 100 == 0:
                log(f"dataset: {len(records)}/{total} images")
    return records


def export_dataset(
    out: str | os.PathLike,
    scenes: list[str],
    images: int,
    *,
    seed_base: int = 0,
    val_fraction: float = 0.1,
    frames_per_seed: int = 3,
    width: int = 1280,
    height: int = 720,
    workers: int = 1,
    quality: int = 92,
    scene_weights: list[float] | None = None,
    all_classes: bool = False,
    log=print,
) -> Path:
    """Render `images` frames (train + val) and write the dataset; returns the data.yaml path.

    data.yaml declares the class names up to the highest id the scenes use (`classes.names_for`: site and
    pitch keep the bundled model's five names, the farm adds `cow`); `all_classes`: every name."""
    out = Path(out)
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    n_val = max(1, int(round(images * val_fraction))) if images > 1 else 0
    n_train = images - n_val
    w = np.asarray(scene_weights if scene_weights else [1.0] * len(scenes), float)
    w = w / w.sum()
    jobs = []
    for split, n, base in (("train", n_train, seed_base), ("val", n_val, seed_base + VAL_SEED_OFFSET)):
        i = 0
        made = 0
        while made < n:
            seed = base + i
            rng = np.random.default_rng([seed, 7])  # picks scene and times; independent of the scene's own stream
            scene = scenes[int(rng.choice(len(scenes), p=w))]
            k = min(frames_per_seed, n - made)
            times = np.sort(rng.uniform(0.0, 40.0, size=k))
            jobs.append((split, scene, None, seed, times, width, height, str(out), quality))
            made += k
            i += 1
    records = _run_jobs(jobs, workers, images, log)
    data_yaml = write_data_yaml(out, CLASS_NAMES if all_classes else names_for(scenes))
    (out / "manifest.json").write_text(json.dumps({"scenes": scenes, "seed_base": seed_base, "width": width, "height": height,
                                                     "frames_per_seed": frames_per_seed, "records": records}, indent=1))
    log(f"dataset: wrote {len(records)} images to {out}")
    return data_yaml


def write_data_yaml(out: Path, names) -> Path:
    data_yaml = out / "data.yaml"
    lines = [f"path: {out.resolve()}", "train: images/train", "val: images/val", "names:"]
    lines += [f"  {i}: {n}" for i, n in enumerate(names)]
    data_yaml.write_text("\n".join(lines) + "\n")
    return data_yaml


def export_scenario_frames(
    out: str | os.PathLike,
    scenarios: dict[str, list[str]],
    images: int,
    *,
    seconds: tuple[float, float] = (2.0, 20.0),
    frames_per_seed: int = 3,
    width: int = 1280,
    height: int = 720,
    workers: int = 1,
    quality: int = 92,
    seed_offset: int = SCENARIO_SEED_OFFSET,
    record_key: str = "scenario_records",
    log=print,
) -> int:
    """Add `images` training frames of scripted scenarios (e.g. site's excavator_swing: the arm
    at full reach, which random scenes rarely show) to an exported dataset's train split.

    Seeds start at `seed_offset` (SCENARIO_SEED_OFFSET or WINDOW_SEED_OFFSET: disjoint from train,
    val and held-out seeds); the scenarios take turns; frame times are drawn from `seconds`.
    Recorded in the dataset's manifest under `record_key` (a second batch uses its own key and
    seeds, so it adds to the first). Returns the number of frames written."""
    out = Path(out)
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path}: export the dataset first")
    pairs = [(scene, sc) for scene, names in scenarios.items() for sc in names]
    jobs = []
    made = 0
    i = 0
    while made < images:
        scene, scenario = pairs[i % len(pairs)]
        seed = seed_offset + i
        rng = np.random.default_rng([seed, 11])
        k = min(frames_per_seed, images - made)
        times = np.sort(rng.uniform(seconds[0], seconds[1], size=k))
        jobs.append(("train", scene, scenario, seed, times, width, height, str(out), quality))
        made += k
        i += 1
    records = _run_jobs(jobs, workers, images, log)
    data_yaml = out / "data.yaml"
    if data_yaml.is_file():  # scenario frames of a scene with higher class ids (the farm): declare its names too
        import yaml

        declared = yaml.safe_load(data_yaml.read_text()).get("names") or {}
        need = names_for(list(scenarios))
        if len(declared) < len(need):
            write_data_yaml(out, need)
    manifest = json.loads(manifest_path.read_text())
    manifest[record_key] = records
    manifest_path.write_text(json.dumps(manifest, indent=1))
    log(f"dataset: added {len(records)} scenario frames ({', '.join(f'{a}/{b}' for a, b in pairs)}) to {out}")
    return len(records)
