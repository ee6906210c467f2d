"""Write a synthetic clip: video.mp4, gt.json and, for scripted scenarios, zones.yaml and events.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from .classes import CLASS_NAMES
from .dataset import make_scene
from .rle import encode

#: gt.json's format. 2: track ids are unique within a clip across classes (1 numbered them per class: a
#: pitch's ball and a player could both be 1); every instance keeps its class beside its id.
GT_VERSION = 2


def instance_record(inst, height: int, width: int) -> dict:
    return {
        "track_id": int(inst.track_id),
        "class_id": int(inst.class_id),
        "class": CLASS_NAMES[inst.class_id],
        "box_xyxy": [int(v) for v in inst.xyxy],
        "area": inst.area,
        "mask": encode(inst.mask, inst.roi, height, width),
    }


def gt_events(zone_path: Path, frames: list[tuple[int, float, list]], width: int, height: int) -> dict:
    """Run the zone engine itself on the ground-truth masks (frame resolution)."""
    from maskwatch.zones import ZoneEngine, load_zone_file

    zf = load_zone_file(zone_path)
    eng = ZoneEngine(zf, camera_id="synth", frame_wh=(width, height), mask_wh=(width, height))
    wanted = {c for r in zf.rules for c in r.classes}
    events = []
    last_i, last_pts = 0, 0.0
    for i, pts, insts in frames:
        sel = [x for x in insts if CLASS_NAMES[x.class_id] in wanted]
        n = len(sel)
        masks = np.zeros((n, height, width), bool)
        for k, x in enumerate(sel):
            x0, y0 = x.roi
            masks[k, y0 : y0 + x.mask.shape[0], x0 : x0 + x.mask.shape[1]] = x.mask
        events += eng.update(
            i, pts, pts,
            np.array([x.track_id for x in sel], np.int64),
            [CLASS_NAMES[x.class_id] for x in sel],
            np.ones(n, np.float32),
            np.array([x.xyxy for x in sel], np.float32).reshape(n, 4),
            masks,
        )
        last_i, last_pts = i, pts
    events += eng.close(last_i, last_pts, last_pts)
    intervals = {}
    for e in events:
        iv = intervals.setdefault(e.id, {"id": e.id, "rule": e.rule, "zone": e.zone, "track_ids": [],
                                         "start_frame": None, "start_pts_s": None, "end_frame": None, "end_pts_s": None})
        for o in e.objects:
            if o.track_id not in iv["track_ids"]:
                iv["track_ids"].append(o.track_id)
        if e.type == "start":
            iv["start_frame"], iv["start_pts_s"] = e.frame_index, round(e.pts_s, 4)
        elif e.type == "end":
            iv["end_frame"], iv["end_pts_s"] = e.frame_index, round(e.pts_s, 4)
    return {"intervals": list(intervals.values()), "events": [e.to_dict() for e in events]}


def write_clip(
    scene: str,
    seed: int,
    seconds: float,
    out: str | Path,
    *,
    fps: float = 15.0,
    size: tuple[int, int] = (1280, 720),
    scenario: str | None = None,
    video: bool = True,
    events: bool = True,
    crf: int = 20,
) -> dict:
    """Render `seconds` of a scene and write its files into `out`. Returns a small summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    width, height = size
    sc = make_scene(scene, seed, width, height, scenario)
    n_frames = int(round(seconds * fps))
    container = stream = None
    if video:
        import av

        container = av.open(str(out / "video.mp4"), mode="w")
        from fractions import Fraction

        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": str(crf)}
    lines = []
    kept: list[tuple[int, float, list]] = []
    zone_doc = sc.zone_file()
    n_inst = 0
    try:
        for i in range(n_frames):
            t = i / fps
            frame, insts = sc.render(t, i)
            n_inst += len(insts)
            rec = {"index": i, "pts_s": round(t, 6), "instances": [instance_record(x, height, width) for x in insts]}
            lines.append(json.dumps(rec, separators=(",", ":")))
            if zone_doc is not None and events:
                kept.append((i, t, insts))
            if container is not None:
                import av

                vf = av.VideoFrame.from_ndarray(frame, format="bgr24")
                vf.pts = i
                for p in stream.encode(vf):
                    container.mux(p)
        if container is not None:
            for p in stream.encode():
                container.mux(p)
    finally:
        if container is not None:
            container.close()
    cam = sc.camera
    header = {
        "version": GT_VERSION, "scene": scene, "seed": int(seed), "scenario": scenario, "fps": fps,
        "width": width, "height": height, "num_frames": n_frames, "classes": list(CLASS_NAMES),
        "camera": {"focal_px": round(cam.focal_px, 4), "position_m": [round(v, 4) for v in cam.position_m],
                   "pitch_deg": round(cam.pitch_deg, 4), "yaw_deg": round(cam.yaw_deg, 4)},
    }
    head = json.dumps(header, separators=(",", ":"))[:-1]
    (out / "gt.json").write_text(head + ',"frames":[\n' + ",\n".join(lines) + "\n]}\n")
    summary = {"frames": n_frames, "instances": n_inst, "dir": str(out)}
    if zone_doc is not None:
        zpath = out / "zones.yaml"
        zpath.write_text(yaml.safe_dump(zone_doc, sort_keys=False, default_flow_style=None))
        if events:
            ev = gt_events(zpath, kept, width, height)
            ev = {"scene": scene, "seed": int(seed), "scenario": scenario, "fps": fps, **ev}
            (out / "events.json").write_text(json.dumps(ev, indent=1) + "\n")
            summary["intervals"] = len(ev["intervals"])
    return summary


def load_gt(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
