#!/usr/bin/env python3
"""Train maskwatch's bundled demo model: YOLO11n-seg from its yaml, on synthetic scenes.

Steps (each skipped when its output exists, so the script can be re-run and resumed):
  1. data    render an Ultralytics YOLO-seg dataset with the `scenes` package
             (train and val seeds are disjoint; held-out eval clips use a third range)
  2. train   YOLO("yolo11n-seg.yaml"), pretrained=False, on the CPU, rect batches at
             imgsz 640 (720p frames become 384x640), checkpoints every epoch
  3. export  best.pt -> static ONNX at 384x640 with metadata (names, imgsz) -> models/

Needs the `[train]` extra (torch, ultralytics). Nothing is downloaded: no pretrained
weights, AMP check off (CPU), plots off, font download disabled.

  python scripts/train_demo_model.py                 # everything
  python scripts/train_demo_model.py --resume        # continue from runs/demo/train/weights/last.pt
  python scripts/train_demo_model.py --init runs/demo/train/weights/best.pt --name stage2 --time-h 1.5
                                                     # a further stage of training from our own weights
  python scripts/train_demo_model.py --init models/checkpoints/demo-stage9.pt --name stage10g --device 0 \
      --mosaic --batch 64 --workers 14 --threads 8 --images 6000 --scenario-images 450 --time-h 0.095 --no-export
                                                     # a stage on a GPU machine: shuffled mosaics, bf16
                                                     # (stage 9's recipe: models/README.md)
  python scripts/train_demo_model.py --export-only   # export best.pt again (then evaluate)
  python scripts/train_demo_model.py --eval-only     # mAP of models/maskwatch-demo-seg.onnx on held-out clips
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")


def _no_downloads() -> None:
    """Ultralytics fetches a font when it checks a dataset; keep it offline."""
    import ultralytics.data.utils as du
    import ultralytics.utils.checks as uc
    from ultralytics import settings

    settings.update({"sync": False})
    uc.check_font = lambda *a, **k: None
    du.check_font = lambda *a, **k: None


def _results_without_polars() -> None:
    """Ultralytics reads results.csv with polars; a GPU machine with Ultralytics carried in as one wheel lacks it."""
    try:
        import polars  # noqa: F401
    except ImportError:
        import csv

        from ultralytics.engine.trainer import BaseTrainer

        def read_results_csv(self):
            try:
                rows = list(csv.DictReader(self.csv.read_text().splitlines()))
            except OSError:
                return {}
            return {k.strip(): [float(r[k]) for r in rows] for k in (rows[0] if rows else {})}

        BaseTrainer.read_results_csv = read_results_csv


def build_data(args) -> Path:
    data_yaml = Path(args.data_dir) / "data.yaml"
    if data_yaml.exists() and not args.rebuild_data:
        print(f"data: using {data_yaml}", flush=True)
        _add_scenarios(args)
        _add_window_frames(args)
        return data_yaml
    from maskwatch.scenes.dataset import export_dataset

    t0 = time.time()
    scenes = args.scenes.split(",")
    weights = [float(w) for w in args.scene_weights.split(",")] if args.scene_weights else \
        ([0.6, 0.4] if scenes == ["site", "pitch"] else [1.0 / len(scenes)] * len(scenes))
    if len(weights) != len(scenes):
        sys.exit(f"--scene-weights: {len(weights)} weights for {len(scenes)} scenes")
    data_yaml = export_dataset(
        args.data_dir,
        scenes,
        args.images,
        seed_base=args.seed_base,
        val_fraction=args.val_fraction,
        frames_per_seed=3,
        workers=args.workers,
        scene_weights=weights,
        log=lambda m: print(m, flush=True),
    )
    print(f"data: {args.images} images in {time.time() - t0:.0f} s", flush=True)
    _add_scenarios(args)
    _add_window_frames(args)
    return data_yaml


def _add_scenarios(args) -> None:
    """Scripted-scenario frames (the excavator's arm at full reach, a reversing truck) added to
    the train split once (--scenario-images; 0 for the dataset of stages 1-5)."""
    scenarios = {"site": ["excavator_swing", "excavator_swing", "truck_reverse"]}
    if "farm" in args.scenes.split(","):  # the herd's hard cases: bunched at the gate, a cow lying down
        scenarios["farm"] = ["gate_crowding", "animal_on_track", "cow_down"]
    _add_frames(args, "scenario", scenarios, args.scenario_images)


def _add_window_frames(args) -> None:
    """--crowd-images: farm gate_crowding frames drawn only from --crowd-seconds, the window in which the
    herd stands bunched at the gate (stage 10j: the model counted 3-4 of 5-6 bunched cows). Added once,
    beside the scenario frames, with their own seeds."""
    from maskwatch.scenes.dataset import WINDOW_SEED_OFFSET

    lo, hi = (float(x) for x in args.crowd_seconds.split(","))
    _add_frames(args, "crowd", {"farm": ["gate_crowding"]}, args.crowd_images, seconds=(lo, hi),
                seed_offset=WINDOW_SEED_OFFSET)


def _add_frames(args, kind: str, scenarios: dict, images: int, **kw) -> None:
    """Add `images` frames of `scenarios` to the train split once, recorded in the manifest under
    "<kind>_records" (a re-run with as many or fewer adds nothing)."""
    import json

    from maskwatch.scenes.dataset import export_scenario_frames

    manifest = json.loads((Path(args.data_dir) / "manifest.json").read_text())
    have = len(manifest.get(f"{kind}_records", []))
    if images <= have:
        if have:
            print(f"data: {have} {kind} frames already in the dataset", flush=True)
        return
    t0 = time.time()
    export_scenario_frames(args.data_dir, scenarios, images, record_key=f"{kind}_records", workers=args.workers,
                           log=lambda m: print(m, flush=True), **kw)
    for cache in Path(args.data_dir).glob("labels/*.cache"):
        cache.unlink()  # Ultralytics' label cache would hide the new frames
    print(f"data: {kind} frames in {time.time() - t0:.0f} s", flush=True)


def train(args, data_yaml: Path) -> Path:
    import torch
    import ultralytics.utils.torch_utils as ul_torch_utils
    from ultralytics import YOLO

    gpu = args.device != "cpu"
    torch.set_num_threads(args.threads)
    # Ultralytics' select_device() resets torch's threads to min(8, cores - 1): one thread on a
    # 2-core machine, half of it idle. Keep ours.
    ul_torch_utils.NUM_THREADS = args.threads
    run_dir = Path(args.project) / args.name
    last = run_dir / "weights" / "last.pt"
    if args.resume:
        if not last.exists():
            sys.exit(f"--resume: no checkpoint at {last}")
        YOLO(str(last)).train(resume=True)
    else:
        # --init: a further stage that starts from our own checkpoint (still nothing downloaded)
        model = YOLO(str(args.init)) if args.init else YOLO("yolo11n-seg.yaml")
        model.train(
            data=str(data_yaml),
            # from scratch; with --init, load our own checkpoint's weights (pretrained=False would discard them)
            pretrained=str(args.init) if args.init else False,
            epochs=args.epochs,
            time=args.time_h or None,
            imgsz=args.imgsz,
            # CPU: rect batches of 384x640 (40% fewer pixels than squares), in a fixed order.
            # --mosaic (GPU): shuffled 640x640 mosaics, Ultralytics' own recipe, plain frames at the end.
            rect=not args.mosaic,
            batch=args.batch,
            nbs=args.batch,  # one optimizer step per batch: few steps fit a CPU budget
            workers=args.workers,
            device=args.device,
            amp="bf16" if gpu else False,  # bf16 needs no AMP check (which would download a model)
            plots=False,
            cache="ram",
            project=str(Path(args.project).resolve()),
            name=args.name,
            exist_ok=True,
            save_period=-1 if gpu else 1,  # last.pt is written every epoch either way
            patience=100,
            warmup_epochs=0.0 if args.init else 1.0,  # a further stage starts from trained weights
            # --lr0: the optimizer Ultralytics' `auto` picks for these runs (MuSGD), from a lower rate
            # (a further stage that refines rather than restarts); `auto` would ignore lr0
            **({"optimizer": "MuSGD", "lr0": args.lr0} if args.lr0 else {}),
            close_mosaic=args.close_mosaic if args.mosaic else 0,
            scale=0.3,
            translate=0.1,
            degrees=0.0,
            fliplr=0.5,
            seed=0,
            verbose=True,
        )
    return run_dir / "weights" / "best.pt"


def export(args, weights: Path) -> Path:
    from ultralytics import YOLO

    h, w = (int(v) for v in args.export_imgsz.split(","))
    model = YOLO(str(weights))
    onnx = Path(model.export(format="onnx", imgsz=[h, w], dynamic=False, simplify=True, half=False, batch=1))
    dest = ROOT / "models" / args.model_name
    dest.parent.mkdir(exist_ok=True)
    shutil.copyfile(onnx, dest)
    size_mb = dest.stat().st_size / 1e6
    print(f"export: {dest} ({size_mb:.1f} MB)", flush=True)
    if size_mb > 15:
        sys.exit(f"export: {dest} is {size_mb:.1f} MB, over the 15 MB budget")
    return dest


def heldout_eval(args, model: Path) -> int:
    """mAP on held-out clips (seeds from EVAL_SEED_OFFSET, never trained or validated on),
    run through `engines` like maskwatch itself (`maskwatch eval masks` does the same)."""
    import json

    from maskwatch.scenes.clip import write_clip
    from maskwatch.scenes.dataset import EVAL_SEED_OFFSET
    from maskwatch.evaluation.masks import evaluate, format_table

    try:
        import av  # noqa: F401

        video = True
    except ImportError:  # the eval re-renders frames from gt.json instead of decoding H.264
        video = False
    d = Path(args.project) / "heldout"
    for scene in ("site", "pitch"):
        for k in (1, 2, 3):
            out = d / f"{scene}_{EVAL_SEED_OFFSET + k}"
            if not (out / "gt.json").exists():
                write_clip(scene, EVAL_SEED_OFFSET + k, 12.0, out, fps=5, video=video)
    res = evaluate(model, d, threads=args.threads, log=lambda m: print(m, flush=True))
    print(format_table(res), flush=True)
    (d / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"eval: results in {d / 'results.json'}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(ROOT / "runs" / "demo" / "dataset"))
    p.add_argument("--images", type=int, default=2400, help="train + val images to render")
    p.add_argument("--scenes", default="site,pitch",
                   help="scenes of the dataset (site,pitch,farm: the 6-class model with `cow`)")
    p.add_argument("--scene-weights", default=None, metavar="W,W,..",
                   help="share of images per scene (default 0.6,0.4 for site,pitch; equal otherwise)")
    p.add_argument("--scenario-images", type=int, default=0,
                   help="scripted-scenario train frames to add (stage 6: 300)")
    p.add_argument("--crowd-images", type=int, default=0,
                   help="farm gate_crowding train frames from --crowd-seconds, the herd bunched at the gate (stage 10j: 210)")
    p.add_argument("--crowd-seconds", default="5,15", metavar="A,B",
                   help="clip time window of the --crowd-images frames")
    p.add_argument("--val-fraction", type=float, default=0.08)
    p.add_argument("--seed-base", type=int, default=0)
    p.add_argument("--rebuild-data", action="store_true")
    p.add_argument("--project", default=str(ROOT / "runs" / "demo"))
    p.add_argument("--name", default="train")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--time-h", type=float, default=1.3, help="wall-clock budget in hours (0: use --epochs)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--lr0", type=float, default=None,
                   help="starting learning rate with MuSGD (default: Ultralytics' auto choice, MuSGD at 0.01)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, or 0 for the first CUDA GPU")
    p.add_argument("--mosaic", action="store_true",
                   help="train on shuffled 640x640 mosaics instead of rect 384x640 batches (the GPU recipe)")
    p.add_argument("--close-mosaic", type=int, default=2, help="with --mosaic: last epochs on plain frames")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init", default=None, help="start a new run (use a new --name) from this checkpoint")
    p.add_argument("--export-only", action="store_true")
    p.add_argument("--weights", default=None, help="checkpoint to export (default: the run's best.pt)")
    p.add_argument("--export-imgsz", default="384,640", help="ONNX input h,w")
    p.add_argument("--model-name", default="maskwatch-demo-seg.onnx")
    p.add_argument("--eval-only", action="store_true", help="only evaluate models/<model-name> on held-out clips")
    p.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation after export")
    p.add_argument("--no-export", action="store_true",
                   help="stop after training (a GPU machine without onnx tools: export here afterwards)")
    args = p.parse_args(argv)

    if args.eval_only:
        return heldout_eval(args, ROOT / "models" / args.model_name)

    _no_downloads()
    _results_without_polars()
    if args.export_only:
        weights = Path(args.weights) if args.weights else Path(args.project) / args.name / "weights" / "best.pt"
    else:
        data_yaml = build_data(args)
        t0 = time.time()
        weights = train(args, data_yaml)
        print(f"train: {(time.time() - t0) / 60:.1f} min", flush=True)
        if args.no_export:
            return 0
    dest = export(args, weights)
    if not args.no_eval:
        heldout_eval(args, dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
