"""``maskwatch feedback export``: alerts people marked as false positives (and, with ``--confirmed``,
acknowledged ones) become an Ultralytics YOLO-seg dataset, from the frames kept at alert time
(``feedback.keep_frames``) with the model's own masks as labels, minus the objects a false positive was about.

Fine-tune on it together with the synthetic data (``scripts/train_demo_model.py --init``): the model learns
that a cone is not a worker on this site without anyone drawing a polygon.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np

from maskwatch.pipeline.config import Config
from maskwatch.pipeline.controls import FrameKeeper
from maskwatch.scenes.dataset import mask_to_polygon


def load_kept(npz: Path) -> dict:
    data = np.load(npz)
    h, w = (int(v) for v in data["mask_hw"])
    masks = np.unpackbits(data["masks"], axis=-1, count=w).astype(bool).reshape(-1, h, w)
    return {"masks": masks, "class_names": [str(c) for c in data["class_names"]],
            "track_ids": [int(t) for t in data["track_ids"]], "alert_tracks": {int(t) for t in data["alert_tracks"]},
            "names": [str(n) for n in data["names"]]}


def export(cfg: Config, out: Path, confirmed: bool = False) -> dict:
    """Write the dataset; returns counts (images, labels, removed objects, alerts without a kept frame)."""
    db = sqlite3.connect(cfg.alerts.outbox)
    try:
        has = db.execute("SELECT name FROM sqlite_master WHERE name = 'feedback'").fetchone()
        rows = db.execute("SELECT alert_id, camera, verdict FROM feedback ORDER BY at_s").fetchall() if has else []
    finally:
        db.close()
    verdicts = ("false_positive", "ack") if confirmed else ("false_positive",)
    images, labels = out / "images" / "train", out / "labels" / "train"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    names: list[str] | None = None
    records, missing, removed, n_labels = [], [], 0, 0
    for alert_id, camera, verdict in rows:
        if verdict not in verdicts:
            continue
        stem = FrameKeeper.stem(alert_id)
        src = Path(cfg.feedback.dir) / camera / stem
        if not (src.with_suffix(".npz").is_file() and src.with_suffix(".jpg").is_file()):
            missing.append(alert_id)
            continue
        kept = load_kept(src.with_suffix(".npz"))
        names = names or kept["names"]
        wrong = kept["alert_tracks"] if verdict == "false_positive" else set()
        lines = []
        h, w = kept["masks"].shape[1:] if len(kept["masks"]) else (1, 1)
        for mask, cls, tid in zip(kept["masks"], kept["class_names"], kept["track_ids"]):
            if tid in wrong:
                removed += 1
                continue
            poly = mask_to_polygon(mask) if mask.any() else None
            if poly is None or cls not in names:
                continue
            xy = np.clip(poly / [w, h], 0.0, 1.0)
            lines.append(" ".join([str(names.index(cls))] + [f"{v:.6f}" for v in xy.reshape(-1)]))
        name = f"{camera}_{stem}"
        shutil.copyfile(src.with_suffix(".jpg"), images / f"{name}.jpg")
        (labels / f"{name}.txt").write_text("".join(ln + "\n" for ln in lines))
        n_labels += len(lines)
        records.append({"file": f"{name}.jpg", "alert_id": alert_id, "camera": camera, "verdict": verdict,
                        "removed_tracks": sorted(wrong), "labels": len(lines)})
    names = names or []
    data = [f"path: {out.resolve()}", "train: images/train", "val: images/train", "names:"]
    data += [f"  {i}: {n}" for i, n in enumerate(names)]
    (out / "data.yaml").write_text("\n".join(data) + "\n")
    (out / "manifest.json").write_text(json.dumps({"records": records, "missing_frames": missing}, indent=1) + "\n")
    return {"images": len(records), "labels": n_labels, "removed_objects": removed, "missing_frames": len(missing)}
