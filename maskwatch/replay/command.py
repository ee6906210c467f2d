"""``maskwatch replay CONFIG --report OUT.html [--source FILE] [--camera ID] [--zones FILE] [--set PATH=VALUE ...]
[--gt events.json]``: checks the options, runs the replay pass, writes the report and prints a summary."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from maskwatch.zones import ConfigError, ZoneFileError, parse_zone_file
from maskwatch.zones.errors import read_yaml
from maskwatch.zones.matching import ground_truth_rules, score_line

from .report import write_report
from .run import ReplayResult, Variant, apply_sets, replay


def _pick_camera(cfg, camera_id: str | None, file):
    ids = [c.id for c in cfg.cameras]
    if camera_id is None:
        if len(ids) != 1:
            raise ConfigError(file, "--camera", f"the config has {len(ids)} cameras: name the one whose zones apply "
                                                f"with --camera ID, ID one of {ids}")
        return cfg.cameras[0]
    if camera_id not in ids:
        raise ConfigError(file, "--camera", f"unknown camera {camera_id!r}, expected one of {ids}")
    return cfg.cameras[ids.index(camera_id)]


def prepare(args):
    """Config, camera, source, zone file and variants from the command line; every check that needs no model."""
    from maskwatch.pipeline.config import is_url, load_config

    cfg = load_config(args.config)
    cam = _pick_camera(cfg, args.camera, args.config)
    source = args.source or cam.source
    if is_url(source) and not source.startswith("file:"):
        raise ConfigError(None, "--source", "replay runs on a recorded file, got a live camera URL; "
                                            "give --source FILE")
    if not Path(source).is_file():
        raise ConfigError(None, "--source", f"video file not found: {source}")
    zone_path = Path(args.zones) if args.zones else cam.zones
    if zone_path is None:
        raise ConfigError(args.config, "--zones", f"camera {cam.id} has no zone file: give --zones FILE")
    if not zone_path.is_file():
        raise ConfigError(None, "--zones", f"zone file not found: {zone_path}")
    doc = read_yaml(zone_path, "zone file", ZoneFileError)
    base = Variant("baseline", parse_zone_file(doc, zone_path), cfg.tracker)
    variants = [base]
    if args.set:
        zf, tracker = apply_sets(args.set, doc, zone_path, cfg.tracker)
        variants.append(Variant("what-if", zf, tracker, list(args.set)))
    if args.gt is not None and not Path(args.gt).is_file():
        raise ConfigError(None, "--gt", f"file not found: {args.gt}")
    return cfg, cam, source, zone_path, variants


def summary_lines(res: ReplayResult, report: Path) -> list[str]:
    """What the command prints: alerts per rule per variant; with ground truth, eval alerts' figures per rule."""
    lines = [f"replay: camera {res.camera}, {res.source}: {res.frames} frames ({res.duration_s:.1f} s of footage) "
             f"in {res.wall_s:.1f} s, {res.fps:.1f} frames/s; nothing published"]
    for vr in res.variants[1:]:
        lines.append(f"what-if: {' '.join('--set ' + s for s in vr.variant.sets)}")
    rules = _rule_ids(res)
    width = max([len(r) for r in rules] + [len("alerts per rule") - 2])
    lines.append(f"alerts per rule{'':<{width - 13}}" + "".join(f"  {vr.variant.name:>9}" for vr in res.variants))
    for rid in rules:
        lines.append(f"  {rid:<{width}}" + "".join(f"  {sum(a.rule == rid for a in vr.alerts):>9}"
                                                   for vr in res.variants))
    for vr in res.variants:
        if vr.filtered:
            lines.append(f"removed before the tracker ({vr.variant.name}): " + ", ".join(
                f"{cls} {reason} {n}" for (cls, reason), n in sorted(vr.filtered.items())))
    if res.gt_doc is not None:
        lines.append(f"ground truth ({res.gt_path}):")
        gt_rules = sorted(ground_truth_rules(res.gt_doc))
        for rid in [*gt_rules, "*"] if len(gt_rules) > 1 else gt_rules:
            for vr in res.variants:
                label = "all rules" if rid == "*" else rid
                lines.append(f"  {label} {vr.variant.name}: {score_line(vr.gt[rid])}")
    lines.append(f"report: {report}")
    return lines


def _rule_ids(res: ReplayResult) -> list[str]:
    out: list[str] = []
    for vr in res.variants:
        for r in vr.variant.zone_file.rules:
            if r.id not in out:
                out.append(r.id)
    return out


def main(args) -> int:
    """``maskwatch replay``: the command line's entry (the arguments of ``cli.build_parser``'s replay parser)."""
    cfg, cam, source, zone_path, variants = prepare(args)
    report = Path(args.report)
    show = sys.stderr.isatty() and not getattr(args, "no_progress", False)
    last = [0.0]

    def progress(done: int, total: int | None) -> None:
        if show and time.monotonic() - last[0] >= 0.5:
            last[0] = time.monotonic()
            sys.stderr.write(f"\rreplay: {done}{f'/{total}' if total else ''} frames ")
            sys.stderr.flush()

    res = replay(cfg, args.config, cam, source, zone_path, variants, args.gt, progress)
    if show:
        sys.stderr.write("\n")
    write_report(res, report)
    print("\n".join(summary_lines(res, report.resolve())))
    return 0
