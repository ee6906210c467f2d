"""The replay pass: one decode and one inference per frame, a tracker and a zone engine per variant.

Nothing is published: no sink is made, the config's outbox and JSONL file are never opened. Every frame of the
file is analysed (files are lossless in the pipeline too). What-if changes (``--set PATH=VALUE``) may touch only
what runs after the model (the zone file's rules and zones, the tracker), so both variants share one pass.
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import yaml

from maskwatch.zones import ConfigError, ZoneEngine, ZoneFile, ZoneFileError, parse_zone_file
from maskwatch.zones.errors import from_validation_error
from maskwatch.zones.matching import compare, ground_truth_rules

FLAP_SHORT_S = 2.0  # an alert shorter than this is flapping ...
FLAP_RESTART_FACTOR = 2.0  # ... and so is one restarting within clear_after_s x this after the same key's end
THUMB_WIDTH = 384  # thumbnails: the model input's content (640 wide for a 640 model), scaled to this width
MAX_THUMBNAILS = 200  # per variant: a long footage with many alerts keeps the report's size bounded
MAX_FILTER_THUMBNAILS = 12  # frames showing what the filters removed, one per reason and class
SET_PATHS = "rules.<rule id>.<field>, zones.<zone id>.<field> or tracker.<field>"


# -- what-if variants ---------------------------------------------------------------------------------------------
@dataclass
class Variant:
    name: str  # "baseline" | "what-if"
    zone_file: ZoneFile
    tracker: object  # pipeline.config.TrackerConfig
    sets: list[str] = field(default_factory=list)


def _set_error(opt: str, message: str) -> ConfigError:
    return ConfigError(None, f"--set {opt}", message)


def apply_sets(sets: list[str], zone_doc: dict, zone_path: Path, tracker_cfg) -> tuple[ZoneFile, object]:
    """The zone file and tracker config with every ``--set PATH=VALUE`` applied (VALUE parsed as YAML), both
    validated again by their own schemas. A bad path or value is a ``ConfigError`` naming the option."""
    from maskwatch.pipeline.config import TrackerConfig
    from pydantic import ValidationError

    doc = copy.deepcopy(zone_doc)
    tracker = tracker_cfg.model_dump()
    touched: dict[tuple[str, str], list[str]] = {}  # ("rules", id) / ("zones", id) / ("tracker", "") -> options
    for opt in sets:
        path, eq, text = opt.partition("=")
        path = path.strip()
        if not eq or not path:
            raise _set_error(opt, f"expected PATH=VALUE, PATH one of {SET_PATHS}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise _set_error(opt, "VALUE is not valid YAML") from None
        parts = path.split(".")
        head = parts[0]
        if head in ("rules", "zones"):
            what = head[:-1]
            if len(parts) != 3 or not parts[1] or not parts[2]:
                raise _set_error(opt, f"expected {head}.<{what} id>.<field>")
            items = doc.get(head) if isinstance(doc.get(head), list) else []
            ids = [x.get("id") for x in items if isinstance(x, dict)]
            if parts[1] not in ids:
                raise _set_error(opt, f"unknown {what} {parts[1]!r}, expected one of {ids}")
            if parts[2] == "id":
                raise _set_error(opt, f"a {what}'s id names it in both variants and cannot change")
            items[ids.index(parts[1])][parts[2]] = value
            touched.setdefault((head, parts[1]), []).append(opt)
        elif head == "tracker":
            if len(parts) != 2 or parts[1] not in TrackerConfig.model_fields:
                raise _set_error(opt, f"expected tracker.<field>, field one of {sorted(TrackerConfig.model_fields)}")
            tracker[parts[1]] = value
            touched.setdefault(("tracker", ""), []).append(opt)
        elif head in ("model", "cameras", "alerts", "pipeline", "web", "cluster"):
            raise _set_error(opt, f"{head}.* cannot change in a what-if (decoding and inference run once for both "
                                  f"variants); expected {SET_PATHS}")
        else:
            raise _set_error(opt, f"unknown PATH {path!r}, expected {SET_PATHS}")
    try:
        zone_file = parse_zone_file(doc, zone_path)
    except ZoneFileError as exc:
        raise _set_error(_culprit(exc.field, doc, touched, sets), f"{exc.field}: {exc.message}") from None
    try:
        tracker_new = TrackerConfig.model_validate(tracker)
    except ValidationError as exc:
        err = from_validation_error(exc, None)
        raise _set_error(" ".join(touched.get(("tracker", ""), sets)), f"tracker.{err.field}: {err.message}") from None
    return zone_file, tracker_new


def _culprit(field_path: str, doc: dict, touched: dict, sets: list[str]) -> str:
    """The option(s) behind a zone-file error at ``field_path`` (``rules[1].max_distance``): those that changed
    that rule or zone, else all of them."""
    for head in ("rules", "zones"):
        if field_path.startswith(f"{head}["):
            try:
                i = int(field_path[len(head) + 1:field_path.index("]")])
                opts = touched.get((head, doc[head][i].get("id")))
            except (ValueError, IndexError, KeyError, AttributeError):
                opts = None
            if opts:
                return " ".join(opts)
    return " ".join(sets)


# -- what one variant saw -------------------------------------------------------------------------------------------
@dataclass
class AlertRecord:
    """One alert's life: from its ``start`` to its ``end`` event."""

    id: str
    rule: str
    rule_type: str
    zone: str | None
    severity: str
    start_frame: int
    start_s: float
    end_frame: int | None = None
    end_s: float | None = None
    objects: dict[int, str] = field(default_factory=dict)  # track id -> class, over the alert's life
    key: tuple = ()  # what the engine keys the alert on: its start objects' track ids (the zone for occupancy)
    open_at_end: bool = False  # still active when the footage ended (ended by the end of the file)
    thumbnail: bytes | None = None  # JPEG of the frame at its start: masks and zones drawn

    @property
    def duration_s(self) -> float:
        return (self.end_s if self.end_s is not None else self.start_s) - self.start_s


@dataclass
class VariantResult:
    variant: Variant
    events: list = field(default_factory=list)  # AlertEvents in order
    alerts: list[AlertRecord] = field(default_factory=list)
    # zone -> class -> objects of that class in the zone (half of the mask or more), one count per frame
    occupancy: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    tracked_per_class: Counter = field(default_factory=Counter)  # detections on reported tracks
    tracks_per_class: dict[str, set] = field(default_factory=dict)  # reported track ids
    # detections the zone file's filters and ignore regions dropped before the tracker: (class, reason) -> count,
    # and a few frames showing them (reason, class, JPEG)
    filtered: Counter = field(default_factory=Counter)
    filtered_thumbs: list = field(default_factory=list)
    tracker_s: float = 0.0
    zones_s: float = 0.0
    draw_s: float = 0.0
    gt: dict | None = None  # rule -> compare() result (and "*": all rules with ground truth)

    def stats(self, rule) -> dict:
        return rule_stats([a for a in self.alerts if a.rule == rule.id], rule.clear_after_s)


def rule_stats(alerts: list[AlertRecord], clear_after_s: float) -> dict:
    """A rule's figures: alerts, active time (at least one alert active), shortest and longest alert, and the
    flapping ones: shorter than 2 s (not counting one cut short by the end of the footage), or starting again
    within ``clear_after_s`` x 2 after an alert of the same key (objects, or zone for occupancy) ended."""
    alerts = sorted(alerts, key=lambda a: a.start_s)
    durations = [a.duration_s for a in alerts]
    active = 0.0
    cur0 = cur1 = None
    for a in alerts:  # union of [start, end]
        end = a.end_s if a.end_s is not None else a.start_s
        if cur1 is None or a.start_s > cur1:
            if cur1 is not None:
                active += cur1 - cur0
            cur0, cur1 = a.start_s, end
        else:
            cur1 = max(cur1, end)
    if cur1 is not None:
        active += cur1 - cur0
    flapping: dict[str, str] = {}
    window = FLAP_RESTART_FACTOR * clear_after_s
    for i, a in enumerate(alerts):
        if a.duration_s < FLAP_SHORT_S and not a.open_at_end:
            flapping[a.id] = f"shorter than {FLAP_SHORT_S:g} s"
        for b in alerts[:i]:
            if b.key == a.key and b.end_s is not None and 0 <= a.start_s - b.end_s <= window + 1e-6:
                flapping[a.id] = f"restarted {a.start_s - b.end_s:.2f} s after the last end (within {window:g} s)"
    return {
        "alerts": len(alerts), "active_s": active,
        "shortest_s": min(durations) if durations else None, "longest_s": max(durations) if durations else None,
        "flapping": len(flapping), "flapping_ids": flapping,
    }


@dataclass
class ReplayResult:
    camera: str
    source: str
    config: str
    zones: str
    model: dict  # name, backend, precision, input, conf, iou
    names: dict[int, str]
    gt_path: str | None = None
    gt_doc: dict | None = None
    frames: int = 0
    pts: list[float] = field(default_factory=list)
    video_fps: float | None = None
    frame_wh: tuple[int, int] | None = None
    decode_s: float = 0.0
    infer_s: float = 0.0
    wall_s: float = 0.0
    detections_per_class: Counter = field(default_factory=Counter)  # the model's, at model.conf or above
    variants: list[VariantResult] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """Seconds of footage: first frame to one frame period after the last."""
        if not self.pts:
            return 0.0
        period = 1.0 / self.video_fps if self.video_fps else 0.0
        return self.pts[-1] - self.pts[0] + period

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


# -- the pass ---------------------------------------------------------------------------------------------------------
class _Runner:
    """A variant's own tracker and zone engine, fed the shared detections."""

    def __init__(self, variant: Variant, model_conf: float, camera: str, names: dict[int, str]) -> None:
        from maskwatch.pipeline.tracking import MaskTracker

        self.res = VariantResult(variant)
        self.tracker = MaskTracker(variant.tracker.params(model_conf))
        self.camera = camera
        self.names = names
        self.engine: ZoneEngine | None = None
        self.open: dict[str, AlertRecord] = {}
        self.polys: dict[str, np.ndarray] = {}
        self.frames = 0  # frames analysed (the length of every occupancy series)
        self.thumbnails = 0
        self.filter = None  # the variant's DetectionFilter (built at the first frame)

    def step(self, frame, dets) -> None:
        res = self.res
        t0 = time.perf_counter()
        dets = self._filter(frame, dets)
        tracked = self.tracker.update(dets, frame.pts_s, frame.content)
        t1 = time.perf_counter()
        res.tracker_s += t1 - t0
        if self.engine is None:
            zf = res.variant.zone_file
            self.engine = ZoneEngine(zf, self.camera, frame.frame_wh, tracked.mask_space.mask_wh,
                                     run_id=res.variant.name)
            self.polys = {z.id: np.array(zf.polygon_px(z.id, frame.frame_wh)) for z in zf.zones}
        names = [self.names.get(int(k), str(k)) for k in tracked.class_id]
        events = self.engine.update(frame.index, frame.pts_s, frame.wall_s, tracked.tracker_id, names,
                                    tracked.confidence, tracked.xyxy, tracked.masks, tracked.data.get("stationary_s"))
        res.zones_s += time.perf_counter() - t1
        for name, tid in zip(names, tracked.tracker_id):
            res.tracked_per_class[name] += 1
            res.tracks_per_class.setdefault(name, set()).add(int(tid))
        self._occupancy(self.engine.occupancy)
        self._events(events, frame, tracked)

    def _filter(self, frame, dets):
        """The zone file's filters and ignore regions, as the pipeline applies them (counted, a few shown)."""
        from maskwatch.zones.filters import DetectionFilter

        if self.filter is None:
            self.filter = DetectionFilter(self.res.variant.zone_file, frame.frame_wh, dets.mask_space.mask_wh)
        if not self.filter.active or not len(dets):
            return dets
        names = [self.names.get(int(k), str(k)) for k in dets.class_id]
        why = self.filter.reasons(names, dets.confidence, dets.xyxy, dets.masks)
        if not any(why):
            return dets
        dropped = np.array([r is not None for r in why], bool)
        for name, reason in zip(names, why):
            if reason:
                self.res.filtered[(name, reason)] += 1
                shown = {(r, c) for r, c, _ in self.res.filtered_thumbs}
                if (reason, name) not in shown and len(self.res.filtered_thumbs) < MAX_FILTER_THUMBNAILS:
                    self.res.filtered_thumbs.append((reason, name, self._thumbnail(frame, dets[dropped], set())))
        return dets[~dropped]

    def _occupancy(self, occ: dict[str, dict[str, int]]) -> None:
        for zid, counts in occ.items():
            zone = self.res.occupancy.setdefault(zid, {})
            for cls in counts:
                if cls not in zone:  # first seen now: none before
                    zone[cls] = [0] * self.frames
            for cls, series in zone.items():
                series.append(int(counts.get(cls, 0)))
        self.frames += 1

    def _events(self, events, frame, tracked, at_end: bool = False) -> None:
        res = self.res
        for ev in events:
            res.events.append(ev)
            if ev.type == "start":
                objs = ev.objects
                key = (ev.zone,) if ev.rule_type == "occupancy" else tuple(sorted(o.track_id for o in objs))
                rec = AlertRecord(ev.id, ev.rule, ev.rule_type, ev.zone, ev.severity, ev.frame_index, ev.pts_s,
                                  key=key)
                self.open[ev.id] = rec
                res.alerts.append(rec)
                if frame is not None and self.thumbnails < MAX_THUMBNAILS:
                    self.thumbnails += 1
                    t0 = time.perf_counter()
                    rec.thumbnail = self._thumbnail(frame, tracked)
                    res.draw_s += time.perf_counter() - t0
            rec = self.open.get(ev.id)
            if rec is None:
                continue
            for o in ev.objects:
                rec.objects.setdefault(o.track_id, o.class_name)
            if ev.type == "end":
                rec.end_frame, rec.end_s, rec.open_at_end = ev.frame_index, ev.pts_s, at_end
                del self.open[ev.id]

    def _thumbnail(self, frame, tracked, active: set | None = None) -> bytes:
        import cv2

        from maskwatch.pipeline.draw import annotate

        active = set(self.engine.active_zones) if active is None else active
        image = annotate(np.ascontiguousarray(frame.content), tracked, self.names, self.polys, active,
                         frame_wh=frame.frame_wh)
        h, w = image.shape[:2]
        if w > THUMB_WIDTH:
            image = cv2.resize(image, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
        return buf.tobytes() if ok else b""

    def close(self, last) -> None:
        if self.engine is not None and last is not None:
            self._events(self.engine.close(last.index, last.pts_s, last.wall_s), None, None, at_end=True)


def replay(cfg, config_path: str | Path, camera, source: str, zone_path: Path, variants: list[Variant],
           gt_path: str | Path | None = None, progress=None) -> ReplayResult:
    """Decode ``source`` (every frame), run the config's model once per frame and every variant's tracker and
    zone engine on its detections; the alerts, occupancy and figures of each variant."""
    from maskwatch.pipeline.factory import build_segmenter
    from maskwatch.pipeline.sources import SourceError, VideoSource

    gt_doc = _load_gt(gt_path) if gt_path is not None else None  # a wrong file fails before the model loads
    # the tracker's second pass needs detections down to the lowest low_conf of the variants
    low = SimpleNamespace(low_conf=min(v.tracker.low_conf for v in variants))
    seg = build_segmenter(cfg.model, config_path, low)
    names = dict(seg.meta.names)
    _check_classes(variants, names, zone_path)
    res = ReplayResult(
        camera=camera.id, source=str(source), config=str(config_path), zones=str(zone_path),
        model={"name": Path(cfg.model.path).name, "backend": seg.engine.meta.backend,
               "precision": getattr(seg.engine, "precision", ""), "input": f"{seg.input_hw[1]}x{seg.input_hw[0]}",
               "conf": cfg.model.conf, "iou": cfg.model.iou},
        names=names)
    if gt_doc is not None:
        res.gt_path, res.gt_doc = str(gt_path), gt_doc
    runners = [_Runner(v, cfg.model.conf, camera.id, names) for v in variants]
    src = VideoSource(camera.id, str(source), seg.input_hw, None, keep_image=False)

    def decoded(seconds: float) -> None:
        res.decode_s += seconds

    src.on_decode_s = decoded
    t_start = time.perf_counter()
    last = None
    try:
        src.open()
        res.video_fps = src.fps
        total = src.total_frames
        for frame in src.frames():
            t0 = time.perf_counter()
            (dets,) = seg([frame.input], [frame.letterbox])
            res.infer_s += time.perf_counter() - t0
            if dets.masks is None:
                raise ValueError("the segmenter returned no masks")
            keep = dets.confidence >= cfg.model.conf
            res.detections_per_class.update(names.get(int(k), str(k)) for k in dets.class_id[keep])
            for r in runners:
                r.step(frame, dets)
            res.frames += 1
            res.pts.append(frame.pts_s)
            res.frame_wh = frame.frame_wh
            last = frame
            if progress is not None:
                progress(res.frames, total)
    except SourceError as exc:
        raise ConfigError(None, "--source", str(exc)) from None
    finally:
        src.close()
    for r in runners:
        r.close(last)
    res.wall_s = time.perf_counter() - t_start
    res.variants = [r.res for r in runners]
    if res.gt_doc is not None:
        for vr in res.variants:
            vr.gt = score_variant(res.gt_doc, vr)
    return res


def score_variant(gt_doc: dict, vr: VariantResult) -> dict:
    """Per rule with ground truth, and ``"*"`` for all of them: ``zones.matching.compare``'s figures."""
    events = [e.to_dict() for e in vr.events]
    out = {rule: compare(gt_doc, events, {rule}) for rule in sorted(ground_truth_rules(gt_doc))}
    out["*"] = compare(gt_doc, events)
    return out


def _load_gt(path: str | Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(None, "--gt", f"cannot read {path} ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("intervals"), list) or "fps" not in doc:
        raise ConfigError(None, "--gt", f"{path}: expected the events.json of `maskwatch synth --scenario` "
                                        "(fps and intervals)")
    return doc


def _check_classes(variants: list[Variant], names: dict[int, str], zone_path: Path) -> None:
    known = set(names.values())
    for v in variants:
        for j, rule in enumerate(v.zone_file.rules):
            for fld in ("classes", "near"):
                for cls in getattr(rule, fld, None) or []:
                    if cls not in known:
                        where = f"--set {' '.join(v.sets)}" if v.sets else f"rules[{j}].{fld}"
                        raise ConfigError(None if v.sets else zone_path, where,
                                          f"class {cls!r} is not a model class, expected one of {sorted(known)}")
