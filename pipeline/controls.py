"""Site controls that arrive while a run goes on: remote switches (arm / disarm a rule or a whole camera) and
alert feedback (acknowledged, false positive).

- Switches come over MQTT (``<prefix>/<camera>/rules/<rule>/set`` and ``<prefix>/<camera>/enabled/set``,
  payload ``ON``, ``OFF`` or ``AUTO``: back to the schedule) or from the API (``set_switch``). Each is stored
  in the outbox's database (table ``switches``), so it survives a restart, and handed to the camera's
  analytics thread, which applies it to its zone engine at the next frame (``apply``). The effective state
  (armed or not, schedule included) is echoed, retained, on the same topics without ``/set``.
- Feedback comes from the web console (``POST /api/alerts/{id}/ack`` and ``/false_positive``) or MQTT
  (``<prefix>/<camera>/alerts/<id>/ack``, payload ``ack`` or ``false_positive``); it is stored in the table
  ``feedback`` beside the alert rows (the last verdict wins) and counted.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS switches (
    camera TEXT NOT NULL,
    target TEXT NOT NULL,          -- a rule id, or '' for the whole camera
    state INTEGER NOT NULL,        -- 1 on, 0 off
    expires_s REAL,                -- wall seconds when it hands back to the schedule; NULL: until switched
    set_s REAL NOT NULL,
    PRIMARY KEY (camera, target)
);
CREATE TABLE IF NOT EXISTS feedback (
    alert_id TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    verdict TEXT NOT NULL,         -- ack | false_positive
    source TEXT NOT NULL,          -- api | mqtt
    at_s REAL NOT NULL
);
"""
VERDICTS = ("ack", "false_positive")
SWITCH_PAYLOADS = {"ON": True, "OFF": False, "AUTO": None}


class SiteControls:
    """Shared by a pipeline's threads: MQTT's network thread and the console write, analytics apply."""

    def __init__(self, db_path: str | Path, cameras: list[str]) -> None:
        self.db_path = Path(db_path)
        self.cameras = set(cameras)
        self._lock = threading.Lock()
        self._pending: dict[str, list[tuple[str | None, bool | None, float]]] = {c: [] for c in cameras}
        with self._db() as db:
            db.executescript(SCHEMA)
            self.verdicts: dict[str, str] = dict(db.execute("SELECT alert_id, verdict FROM feedback"))
        self.feedback_counts: Counter = Counter()  # (camera, verdict) -> count this run

    @contextlib.contextmanager
    def _db(self):
        """A connection per use: switches and marks are rare, and the console may mark alerts after the run."""
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    # -- switches ---------------------------------------------------------------------------
    def stored_switches(self, camera: str) -> list[tuple[str | None, bool, float | None, float]]:
        """(rule id or None for the camera, on, expires, set at) of the camera's switches from earlier runs."""
        with self._lock, self._db() as db:
            rows = db.execute("SELECT target, state, expires_s, set_s FROM switches WHERE camera = ?",
                              (camera,)).fetchall()
        return [(t or None, bool(s), e, at) for t, s, e, at in rows]

    def set_switch(self, camera: str, rule: str | None, on: bool | None, source: str = "api") -> None:
        """Queue a switch for the camera's analytics thread (applied at its next frame, then stored)."""
        if camera not in self.cameras:
            raise KeyError(f"unknown camera {camera!r}")
        with self._lock:
            self._pending[camera].append((rule, on, time.time()))
        log.info("camera %s: %s switched %s (%s)", camera, f"rule {rule}" if rule else "the camera",
                 {True: "ON", False: "OFF", None: "AUTO (schedule)"}[on], source)

    def restore(self, camera: str, engine) -> None:
        """A new zone engine takes the camera's stored switches (those not yet expired)."""
        now = time.time()
        for rule, on, expires, set_s in self.stored_switches(camera):
            if expires is None or expires > now:
                engine.switches[rule] = (on, expires, set_s)

    def apply(self, camera: str, engine) -> None:
        """Analytics thread, each frame: hand queued switches to the engine and store them."""
        if not self._pending.get(camera):
            return
        with self._lock:
            todo, self._pending[camera] = self._pending[camera], []
        for rule, on, at in todo:
            expires = engine.set_switch(rule, on, at)
            with self._lock, self._db() as db:
                if on is None:
                    db.execute("DELETE FROM switches WHERE camera = ? AND target = ?", (camera, rule or ""))
                else:
                    db.execute("INSERT OR REPLACE INTO switches VALUES (?, ?, ?, ?, ?)",
                               (camera, rule or "", int(on), expires, at))

    def mqtt_switch(self, prefix: str):
        """An MQTT command handler for ``<prefix>/<camera>/rules/<rule>/set`` and ``<prefix>/<camera>/enabled/set``."""
        def handle(topic: str, payload: bytes) -> None:
            parts = topic[len(prefix) + 1:].split("/")
            if parts[0] not in self.cameras:
                return  # another process's camera (cluster workers share the broker)
            value = payload.decode(errors="replace").strip().upper()
            if value not in SWITCH_PAYLOADS:
                raise ValueError(f"payload {value!r}: expected ON, OFF or AUTO")
            if len(parts) == 4 and parts[1] == "rules":
                self.set_switch(parts[0], parts[2], SWITCH_PAYLOADS[value], "mqtt")
            elif len(parts) == 3 and parts[1] == "enabled":
                self.set_switch(parts[0], None, SWITCH_PAYLOADS[value], "mqtt")
        return handle

    # -- feedback ---------------------------------------------------------------------------
    def feedback(self, camera: str, alert_id: str, verdict: str, source: str = "api") -> None:
        if verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r}: expected one of {', '.join(VERDICTS)}")
        if camera not in self.cameras:
            raise KeyError(f"unknown camera {camera!r}")
        with self._lock, self._db() as db:
            db.execute("INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?, ?)",
                       (alert_id, camera, verdict, source, time.time()))
            self.verdicts[alert_id] = verdict
            self.feedback_counts[(camera, verdict)] += 1
        log.info("camera %s: alert %s marked %s (%s)", camera, alert_id, verdict, source)

    def mqtt_feedback(self, prefix: str):
        """An MQTT command handler for ``<prefix>/<camera>/alerts/<id>/ack`` (payload ack or false_positive)."""
        def handle(topic: str, payload: bytes) -> None:
            parts = topic[len(prefix) + 1:].split("/")
            if parts[0] not in self.cameras:
                return
            if len(parts) == 4 and parts[1] == "alerts" and parts[3] == "ack":
                self.feedback(parts[0], parts[2], payload.decode(errors="replace").strip().lower(), "mqtt")
        return handle



class FrameKeeper:
    """``feedback.keep_frames``: at each alert start, the frame (the model input's content, JPEG) and the model's
    masks (mask space, packed), classes and track ids (``.npz``), so a false positive marked later becomes a
    training sample. Written on the analytics thread at alert starts only (a few ms each); the oldest files
    go beyond ``max_gb`` (counted, logged)."""

    def __init__(self, cfg, names: dict[int, str]) -> None:
        self.dir = Path(cfg.dir)
        self.max_bytes = int(cfg.max_gb * 1e9)
        self.names = names
        self.kept = 0
        self.deleted = 0
        self._bytes: int | None = None

    @staticmethod
    def stem(alert_id: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", alert_id)

    def save(self, frame, dets, event) -> None:
        import cv2
        import numpy as np

        folder = self.dir / event.camera
        folder.mkdir(parents=True, exist_ok=True)
        stem = self.stem(event.id)
        image = np.ascontiguousarray(frame.content)
        ok, jpg = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:  # pragma: no cover - OpenCV cannot fail on a uint8 image
            return
        masks = dets.masks if dets.masks is not None else np.zeros((0, 1, 1), bool)
        tids = dets.tracker_id if dets.tracker_id is not None else np.full(len(dets), -1)
        (folder / f"{stem}.jpg").write_bytes(jpg.tobytes())
        np.savez_compressed(folder / f"{stem}.npz", masks=np.packbits(masks, axis=-1), mask_hw=np.array(masks.shape[1:]),
                            class_names=np.array([self.names.get(int(k), str(k)) for k in dets.class_id]),
                            track_ids=np.asarray(tids, np.int64),
                            alert_tracks=np.array([o.track_id for o in event.objects], np.int64),
                            names=np.array([self.names[k] for k in sorted(self.names)]))
        self.kept += 1
        self._quota(folder / f"{stem}.jpg", folder / f"{stem}.npz")

    def _quota(self, *new: Path) -> None:
        files = sorted((p for p in self.dir.rglob("*") if p.suffix in (".jpg", ".npz")), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        gone = 0
        for p in files:
            if total <= self.max_bytes:
                break
            if p in new:
                continue
            total -= p.stat().st_size
            p.unlink(missing_ok=True)
            gone += 1
        if gone:
            self.deleted += gone
            log.warning("feedback: deleted the %d oldest kept frame file(s) (feedback.max_gb %.3g)", gone,
                        self.max_bytes / 1e9)
