"""`maskwatch synth`: synthetic clips with ground truth, and YOLO-seg dataset export.

    maskwatch synth site --seed 3 --seconds 20 --out var/clips/site3
    maskwatch synth site --seed 3 --seconds 20 --scenario excavator_swing --out var/clips/swing
    maskwatch synth farm --seed 5 --seconds 20 --scenario gate_crowding --out var/clips/gate
    maskwatch synth dataset --scenes site,pitch --images 2000 --out var/dataset

Heavy imports stay inside the handlers so `maskwatch --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

SCENES = ("site", "pitch", "farm")
SCENARIOS = {"excavator_swing": "site", "truck_reverse": "site", "truck_speed": "site", "box_entry": "pitch",
             "gate_crowding": "farm", "animal_on_track": "farm", "cow_down": "farm"}


def parse_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` (even, at least 64x64) for argparse."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, got {text!r}") from None
    if w < 64 or h < 64 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"size must be even and at least 64x64, got {text!r}")
    return w, h


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `synth` sub-command to an argparse sub-parser set."""
    p = subparsers.add_parser(
        "synth",
        help="render synthetic scenes with ground truth, or export a training dataset",
        description="Render a synthetic clip (SCENE = site | pitch | farm) with gt.json, or export an "
        "Ultralytics YOLO-seg dataset (SCENE = dataset).",
    )
    p.add_argument("scene", choices=[*SCENES, "dataset"], metavar="SCENE", help="site, pitch, farm, or dataset")
    p.add_argument("--out", required=True, help="output directory")
    clip = p.add_argument_group("clips (SCENE = site | pitch | farm)")
    clip.add_argument("--seed", type=int, default=0)
    clip.add_argument("--seconds", type=float, default=10.0)
    clip.add_argument("--fps", type=float, default=15.0)
    clip.add_argument("--size", type=parse_size, default=(1280, 720), help="WIDTHxHEIGHT (default 1280x720)")
    clip.add_argument("--scenario", choices=sorted(SCENARIOS), default=None, help="scripted scenario with zone events")
    clip.add_argument("--no-video", action="store_true", help="write gt.json (and events) only")
    ds = p.add_argument_group("dataset (SCENE = dataset)")
    ds.add_argument("--scenes", default="site,pitch", help="comma-separated scenes: site, pitch, farm (default site,pitch; "
                    "data.yaml names the classes up to the highest id they use: with farm, six)")
    ds.add_argument("--images", type=int, default=None, help="number of images, train + val")
    ds.add_argument("--seed-base", type=int, default=0, help="first train seed; val seeds are disjoint")
    ds.add_argument("--val-fraction", type=float, default=0.1)
    ds.add_argument("--frames-per-seed", type=int, default=3)
    ds.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    if args.scene == "dataset":
        return run_dataset(args)
    return run_clip(args)


def _fail(msg: str) -> int:
    print(f"maskwatch synth: {msg}", file=sys.stderr)
    return 2


def run_clip(args) -> int:
    if args.seconds <= 0 or args.fps <= 0:
        return _fail(f"--seconds and --fps must be > 0, got {args.seconds} and {args.fps}")
    if args.scenario and SCENARIOS[args.scenario] != args.scene:
        return _fail(f"scenario {args.scenario!r} belongs to scene {SCENARIOS[args.scenario]!r}, not {args.scene!r}")
    from .clip import write_clip

    s = write_clip(args.scene, args.seed, args.seconds, args.out, fps=args.fps, size=args.size,
                   scenario=args.scenario, video=not args.no_video)
    extra = f", {s['intervals']} ground-truth alert intervals" if "intervals" in s else ""
    print(f"synth: {s['frames']} frames, {s['instances']} instances{extra} -> {s['dir']}")
    return 0


def run_dataset(args) -> int:
    scenes = [s.strip() for s in args.scenes.split(",") if s.strip()]
    bad = [s for s in scenes if s not in SCENES]
    if not scenes or bad:
        return _fail(f"--scenes: expected a comma-separated subset of {', '.join(SCENES)}, got {args.scenes!r}")
    if args.images is None or args.images < 2:
        return _fail("dataset: --images N (N >= 2) is required")
    if not 0.0 < args.val_fraction < 1.0:
        return _fail(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    from .dataset import export_dataset

    export_dataset(args.out, scenes, args.images, seed_base=args.seed_base, val_fraction=args.val_fraction,
                   frames_per_seed=args.frames_per_seed, width=args.size[0], height=args.size[1], workers=args.workers)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m maskwatch.scenes.cli synth ...`)."""
    parser = argparse.ArgumentParser(prog="maskwatch")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
