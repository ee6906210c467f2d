"""Alert snapshots: a JPEG of the frame at each alert ``start``, off the hot path.

Analytics hands (frame, detections, event, zone polygon) to a small ``drop_oldest`` ring
and goes on; the ``snapshots`` thread draws the offending masks and the zone
(``draw.annotate``), writes ``<dir>/<camera>/<alert id>.jpg`` (atomically: a reader never
sees half a file) and, with ``publish``, sends it to ``<prefix>/<camera>/alerts/<id>/snapshot``.
The path is in the start event (``extra["snapshot"]``); the file appears a moment after the
event is stored. A snapshot that is dropped (ring full) or fails is counted and logged.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .config import SnapshotsConfig
from .draw import annotate
from .ring import Ring, RingClosed
from .types import AlertEvent, Detections, Frame

log = logging.getLogger(__name__)
POLL_S = 0.1
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

PublishFn = Callable[[str, str, bytes], bool]  # (camera, alert id, jpeg) -> published


def snapshot_name(alert_id: str) -> str:
    return _UNSAFE.sub("_", alert_id) + ".jpg"


class SnapshotWriter:
    def __init__(self, cfg: SnapshotsConfig, names: dict[int, str], publish: PublishFn | None = None) -> None:
        self.dir = Path(cfg.dir)
        self.quality = cfg.jpeg_quality
        self.names = names
        self.publish = publish
        self.ring: Ring[tuple[Frame, Detections, AlertEvent, np.ndarray | None]] = Ring(
            cfg.ring_slots, "drop_oldest", "snapshots")
        self.written = 0
        self.published = 0
        self.failed = 0
        self._dropped_logged = 0
        self._lock = threading.Lock()

    def path_for(self, event: AlertEvent) -> Path:
        return self.dir / event.camera / snapshot_name(event.id)

    def offer(self, frame: Frame, dets: Detections, event: AlertEvent, zone_polygon: np.ndarray | None) -> None:
        """Called by analytics: never blocks (the oldest waiting snapshot is dropped when full)."""
        try:
            self.ring.put((frame, dets, event, zone_polygon))
        except RingClosed:
            return
        if self.ring.dropped > self._dropped_logged:
            log.warning("snapshots: ring full, %d snapshot(s) dropped so far (the oldest go first)", self.ring.dropped)
            self._dropped_logged = self.ring.dropped

    def run(self, abort: threading.Event, done: Callable[[], bool]) -> None:
        """Thread body: until ``abort``, or ``done()`` and nothing left."""
        while not abort.is_set():
            try:
                item = self.ring.get(timeout=POLL_S)
            except RingClosed:
                return
            if item is None:
                if done():
                    return
                continue
            self._write(*item)

    def _write(self, frame: Frame, dets: Detections, event: AlertEvent, zone_polygon: np.ndarray | None) -> None:
        path = self.path_for(event)
        try:
            if frame.image is None:
                raise ValueError("the frame carries no image")
            if dets.tracker_id is not None and len(dets):
                dets = dets[np.isin(dets.tracker_id, [o.track_id for o in event.objects])]
            zones = {event.zone: zone_polygon} if event.zone is not None and zone_polygon is not None else {}
            rgb = annotate(frame.image, dets, self.names, zones, set(zones))
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                raise ValueError("JPEG encoding failed")
            jpeg = buf.tobytes()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(jpeg)
            os.replace(tmp, path)
            self.written += 1
        except (OSError, ValueError, cv2.error) as exc:
            self.failed += 1
            log.error("snapshots: cannot write %s for alert %s: %s", path, event.id, exc)
            return
        if self.publish is not None and self.publish(event.camera, event.id, jpeg):
            self.published += 1

    def close(self) -> None:
        self.ring.close()

    def stats(self) -> dict:
        return {"written": self.written, "published": self.published, "failed": self.failed,
                "dropped": self.ring.dropped}
