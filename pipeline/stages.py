"""Stages as threads joined by rings, with one stop event and an ordered shutdown.

    camera:<id>/source   -> FrameRing[id]  ->  inference  -> DetectionRing[id]
    -> camera:<id>/analytics -> Outbox -> publisher -> sinks
                             \\-> VideoRing[id] -> camera:<id>/video   (side path, --save-video)

Shutdown (end of all sources, SIGINT, SIGTERM): sources stop and close their rings;
each later stage ends when its input ring is closed and drained, so analytics drain,
open alerts are ended, and the publisher flushes the outbox before the run returns.
An exception in any stage sets ``abort``: every loop exits at its next check and the
run ends with exit code 1 and one line naming camera and stage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zones import ZoneEngine

from .config import Config
from .draw import VideoWriter, annotate
from .outbox import Outbox
from .redact import redact_url
from .ring import Ring, RingClosed
from .sinks import JsonlSink, Sink
from .sources import SourceError, VideoSource
from .tracking import MaskTracker
from .types import Detections, Frame
from .zonewatch import ZoneFileWatcher

log = logging.getLogger(__name__)
POLL_S = 0.1  # every blocking call re-checks the stop events this often


@dataclass
class CameraStats:
    decoded: int = 0
    inferred: int = 0
    analysed: int = 0
    alerts: int = 0
    video_frames: int = 0
    total_frames: int | None = None


@dataclass
class StageFailure:
    camera: str | None
    stage: str
    error: BaseException

    def __str__(self) -> str:
        where = f"camera {self.camera}, stage {self.stage}" if self.camera else f"stage {self.stage}"
        return f"{where}: {type(self.error).__name__}: {self.error}"


@dataclass
class _Camera:
    id: str
    source: VideoSource
    frames: Ring[Frame]
    detections: Ring[tuple[Frame, Detections]]
    zones_path: Path | None
    video: Ring | None = None
    stats: CameraStats = field(default_factory=CameraStats)


class Pipeline:
    """Builds the threads for a config and runs them to the end."""

    def __init__(self, cfg: Config, segmenter, *, max_frames: int | None = None, save_video: Path | None = None,
                 sinks: list[Sink] | None = None) -> None:
        self.cfg = cfg
        self.segmenter = segmenter
        self.names: dict[int, str] = dict(segmenter.meta.names)
        self.max_frames = max_frames
        self.save_video = save_video
        self.stop = threading.Event()  # graceful: sources stop, the rest drains
        self.abort = threading.Event()  # error or second signal: everyone leaves now
        self.analytics_done = threading.Event()
        self.failure: StageFailure | None = None
        self._failure_lock = threading.Lock()
        self._wake = threading.Event()  # a frame is waiting for inference
        self.outbox = Outbox(cfg.alerts.outbox)
        if sinks is None:
            sinks = [JsonlSink(cfg.alerts.jsonl)] if cfg.alerts.jsonl else []
        self.sinks = sinks
        self.cameras: list[_Camera] = []
        slots = cfg.pipeline
        for cam in cfg.cameras:
            src = VideoSource(cam.id, cam.source, segmenter.input_hw, cam.max_fps, keep_image=save_video is not None)
            policy = "drop_oldest" if src.live else "block"
            c = _Camera(
                cam.id, src,
                Ring(slots.frame_ring_slots, policy, f"{cam.id}/frames"),
                Ring(slots.detection_ring_slots, "block", f"{cam.id}/detections"),
                cam.zones,
            )
            if save_video is not None:
                c.video = Ring(16, policy, f"{cam.id}/video")
            self.cameras.append(c)
        self.threads: list[threading.Thread] = []

    # -- helpers ------------------------------------------------------------------------
    def _fail(self, camera: str | None, stage: str, exc: BaseException) -> None:
        with self._failure_lock:
            if self.failure is None:
                self.failure = StageFailure(camera, stage, exc)
                log.error("%s", self.failure, exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)
        self.abort.set()
        self.stop.set()
        self._wake.set()
        for c in self.cameras:
            for ring in (c.frames, c.detections, c.video):
                if ring is not None:
                    ring.close()

    def _thread(self, name: str, camera: str | None, stage: str, target: Callable[[], None]) -> threading.Thread:
        def body() -> None:
            try:
                target()
            except RingClosed:
                if not self.abort.is_set():
                    self._fail(camera, stage, RuntimeError("ring closed unexpectedly"))
            except BaseException as exc:  # noqa: BLE001 - any stage error ends the run
                self._fail(camera, stage, exc)

        t = threading.Thread(target=body, name=name, daemon=True)
        self.threads.append(t)
        return t

    def _put(self, ring: Ring, item) -> bool:
        """Put, re-checking abort; False when the run is aborting."""
        while not self.abort.is_set():
            if ring.put(item, timeout=POLL_S):
                return True
        return False

    # -- stages -------------------------------------------------------------------------
    def _source(self, c: _Camera) -> None:
        try:
            c.source.open()
            c.stats.total_frames = c.source.total_frames
            if self.max_frames is not None and c.stats.total_frames:
                c.stats.total_frames = min(c.stats.total_frames, self.max_frames)
            for frame in c.source.frames(self.stop):
                if not self._put(c.frames, frame):
                    return
                c.stats.decoded += 1
                self._wake.set()
                if self.max_frames is not None and c.stats.decoded >= self.max_frames:
                    break
                if self.stop.is_set():
                    break
        except SourceError as exc:
            raise SourceError(str(exc)) from None
        finally:
            c.source.close()
            c.frames.close()
            self._wake.set()

    def _inference(self) -> None:
        open_cams = list(self.cameras)
        start = 0
        try:
            while open_cams and not self.abort.is_set():
                batch: list[tuple[_Camera, Frame]] = []
                # one frame per camera per round, starting where the last round stopped: fair across cameras
                n = len(open_cams)
                for k in range(n):
                    c = open_cams[(start + k) % n]
                    try:
                        frame = c.frames.get_nowait()
                    except RingClosed:
                        c.detections.close()
                        open_cams.remove(c)
                        break  # the list changed; start the round again
                    if frame is not None:
                        batch.append((c, frame))
                start += 1
                if not batch:
                    self._wake.wait(POLL_S)
                    self._wake.clear()
                    continue
                results = self.segmenter([f.input for _, f in batch], [f.letterbox for _, f in batch])
                for (c, frame), dets in zip(batch, results):
                    c.stats.inferred += 1
                    if not self._put(c.detections, (frame, dets)):
                        return
        finally:
            for c in self.cameras:
                c.detections.close()

    def _analytics(self, c: _Camera) -> None:
        tracker = MaskTracker(self.cfg.tracker.params(self.cfg.model.conf))
        watcher = ZoneFileWatcher(c.zones_path) if c.zones_path else None
        engine: ZoneEngine | None = None
        last: Frame | None = None
        try:
            while not self.abort.is_set():
                try:
                    item = c.detections.get(timeout=POLL_S)
                except RingClosed:
                    break
                if item is None:
                    continue
                frame, dets = item
                last = frame
                if dets.masks is None:
                    raise ValueError("the segmenter returned no masks")
                dets = tracker.update(dets, frame.pts_s)
                if watcher is not None and engine is None:
                    engine = ZoneEngine(watcher.current, c.id, frame.frame_wh, dets.mask_space.mask_wh)
                if engine is not None:
                    events = []
                    reloaded = watcher.poll()
                    if reloaded is not None:
                        events += engine.replace(reloaded, frame.index, frame.pts_s, frame.wall_s)
                    names = [self.names.get(int(k), str(k)) for k in dets.class_id]
                    events += engine.update(frame.index, frame.pts_s, frame.wall_s, dets.tracker_id, names,
                                            dets.confidence, dets.xyxy, dets.masks, dets.data.get("stationary_s"))
                    for ev in events:
                        self.outbox.add(ev)  # durable before anything else sees it
                    c.stats.alerts += len(events)
                c.stats.analysed += 1
                if c.video is not None:
                    active = set(engine.active_zones) if engine else set()
                    self._put(c.video, (frame, dets, active, engine.zone_file if engine else None))
            if engine is not None and last is not None and not self.abort.is_set():
                for ev in engine.close(last.index, last.pts_s, time.time()):
                    self.outbox.add(ev)
                    c.stats.alerts += 1
        finally:
            if c.video is not None:
                c.video.close()

    def _video(self, c: _Camera, path: Path) -> None:
        writer: VideoWriter | None = None
        polys: dict[str, np.ndarray] = {}
        drawn_zones = None
        try:
            while not self.abort.is_set():
                try:
                    item = c.video.get(timeout=POLL_S)
                except RingClosed:
                    break
                if item is None:
                    continue
                frame, dets, active, zone_file = item
                if writer is None:
                    writer = VideoWriter(path, c.source.fps or 15.0, frame.frame_wh)
                if zone_file is not drawn_zones:  # first frame, or the zone file was reloaded
                    drawn_zones = zone_file
                    polys = {z.id: np.array(zone_file.polygon_px(z.id, frame.frame_wh))
                             for z in zone_file.zones} if zone_file else {}
                writer.write(annotate(frame.image, dets, self.names, polys, active))
                c.stats.video_frames += 1
        finally:
            if writer is not None:
                writer.close()

    def _publisher(self) -> None:
        while True:
            rows = self.outbox.pending(256)
            if rows:
                acked = set(r for r, _ in rows)
                for sink in self.sinks:
                    acked &= set(sink.send(rows))
                self.outbox.ack(sorted(acked))
                if len(acked) < len(rows):
                    time.sleep(POLL_S)  # a sink is behind; rows stay in the outbox
                continue
            if self.analytics_done.is_set() or self.abort.is_set():
                return
            self.outbox.wait(POLL_S)

    # -- run ----------------------------------------------------------------------------
    def start(self) -> None:
        multi = len(self.cameras) > 1
        for c in self.cameras:
            self._thread(f"camera:{c.id}/source", c.id, "source", lambda c=c: self._source(c)).start()
        self._thread("inference", None if multi else self.cameras[0].id, "inference", self._inference).start()
        self._analytics_threads = []
        for c in self.cameras:
            t = self._thread(f"camera:{c.id}/analytics", c.id, "analytics", lambda c=c: self._analytics(c))
            self._analytics_threads.append(t)
            t.start()
            if c.video is not None:
                path = self.save_video if not multi else self.save_video.with_name(
                    f"{self.save_video.stem}-{c.id}{self.save_video.suffix}")
                self._thread(f"camera:{c.id}/video", c.id, "video", lambda c=c, p=path: self._video(c, p)).start()
        self._publisher_thread = self._thread("publisher", None, "publisher", self._publisher)
        self._publisher_thread.start()

    def wait(self, poll: Callable[[], None] | None = None) -> None:
        """Block until every stage has ended (or the shutdown bound passed after a stop)."""
        stop_seen_at: float | None = None
        bound = self.cfg.pipeline.shutdown_timeout_s
        while True:
            if all(not t.is_alive() for t in self._analytics_threads):
                self.analytics_done.set()
            alive = [t for t in self.threads if t.is_alive()]
            if not alive:
                break
            if self.stop.is_set() and stop_seen_at is None:
                stop_seen_at = time.monotonic()
            if stop_seen_at is not None and time.monotonic() - stop_seen_at > bound:
                if not self.abort.is_set():
                    log.warning("shutdown: stages still running after %.1f s, aborting: %s",
                                bound, ", ".join(t.name for t in alive))
                    self.abort.set()
                    self._wake.set()
                    stop_seen_at = time.monotonic()
                else:
                    log.error("shutdown: threads did not end: %s", ", ".join(t.name for t in alive))
                    break
            alive[0].join(0.2)
            if poll is not None:
                poll()
        for sink in self.sinks:
            sink.close()
        self.outbox.close()

    def request_stop(self) -> None:
        """First call: graceful stop. Second call: abort."""
        if self.stop.is_set():
            self.abort.set()
        self.stop.set()
        self._wake.set()

    def summary(self) -> dict:
        return {
            "cameras": {
                c.id: {
                    "source": redact_url(c.source.source),
                    "decoded": c.stats.decoded, "inferred": c.stats.inferred, "analysed": c.stats.analysed,
                    "alerts": c.stats.alerts, "video_frames": c.stats.video_frames,
                    "frames_dropped": c.frames.dropped,
                } for c in self.cameras
            },
            "outbox": {"added": self.outbox.added, "delivered": self.outbox.delivered},
            "failure": str(self.failure) if self.failure else None,
        }
