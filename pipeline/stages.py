"""Stages as threads joined by rings, with one stop event and an ordered shutdown.

    camera:<id>/source   -> FrameRing[id]  ->  inference  -> DetectionRing[id]
    -> camera:<id>/analytics -> Outbox -> publisher -> sinks (JSONL, MQTT)
                             \\-> VideoRing[id] -> camera:<id>/video   (side path, --save-video)
                             \\-> snapshot ring -> snapshots            (side path, alerts.snapshots)
                             \\-> clip ring     -> clips                (side path, alerts.clips)

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
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskwatch.engines import Segmenter
from maskwatch.zones import ZoneEngine
from maskwatch.zones.filters import DetectionFilter

from .clips import ClipWriter
from .config import Config, inference_plan
from .controls import FrameKeeper, SiteControls
from .draw import VideoWriter, annotate
from .metrics import PipelineMetrics
from .mqtt import MqttSink, topic_level
from .outbox import Outbox
from .redact import redact_url
from .ring import Ring, RingClosed
from .sinks import JsonlSink, Publisher, Sink
from .snapshots import SnapshotWriter
from .sources import LiveRunner, SourceError, SourceOptions, VideoSource
from .tracking import MaskTracker
from .types import AlertEvent, Detections, Frame
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
    # seconds from a frame's arrival to its zone decision (bounded: the latest 10k frames)
    latency_s: deque = field(default_factory=lambda: deque(maxlen=10_000))
    analysed_at: deque = field(default_factory=lambda: deque(maxlen=64))  # monotonic times: the analysed fps
    tracks_active: int = 0  # objects tracked in the latest frame
    occupancy: dict = field(default_factory=dict)  # zone -> {class: count} in the latest frame
    alerts_by: Counter = field(default_factory=Counter)  # (rule, event type) -> events stored
    filtered: Counter = field(default_factory=Counter)  # (class, reason) -> detections dropped before the tracker

    def fps(self, window_s: float = 5.0) -> float:
        """Frames analysed per second over the last ``window_s`` (at most the last 64 frames)."""
        times = list(self.analysed_at)
        if len(times) < 2 or time.monotonic() - times[-1] > window_s:
            return 0.0
        recent = [t for t in times if t >= times[-1] - window_s]
        return (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0

    def latency_quantiles(self) -> dict[str, float | None]:
        """Frame-to-alert p50 / p99 in seconds over the latest frames (None before the first)."""
        a = np.fromiter(self.latency_s, float) if self.latency_s else None
        if a is None or not a.size:
            return {"p50": None, "p99": None}
        return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}


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
    live: LiveRunner | None = None  # set while a live camera's source stage runs


class Pipeline:
    """Builds the threads for a config and runs them to the end."""

    def __init__(self, cfg: Config, segmenter, *, max_frames: int | None = None, save_video: Path | None = None,
                 sinks: list[Sink] | None = None, loop: bool = False,
                 on_alert: Callable[[AlertEvent], None] | None = None) -> None:
        self.cfg = cfg
        self.on_alert = on_alert  # told of every alert event once it is stored (a cluster worker's end ledger)
        self.segmenter = segmenter
        self.names: dict[int, str] = dict(segmenter.meta.names)
        self.max_frames = max_frames
        self.save_video = save_video
        self.stop = threading.Event()  # graceful: sources stop, the rest drains
        self.abort = threading.Event()  # error or second signal: everyone leaves now
        self.analytics_done = threading.Event()
        self.failure: StageFailure | None = None
        # read by the web console and /metrics (side paths: analytics only swaps references and appends)
        self.metrics = PipelineMetrics(self)
        self.latest: dict[str, tuple] = {}  # camera -> (frame, detections, active zone ids, zone file) analysed last
        self.recent_alerts: deque[dict] = deque(maxlen=1000)  # alert events as stored, oldest first
        self.active_alerts: dict[str, dict[str, dict]] = {}  # camera -> alert id -> its latest event
        self.run_id = np.base_repr(int(time.time() * 1000), 36).lower()  # keeps alert ids unique across restarts
        self._failure_lock = threading.Lock()
        self._wake = threading.Event()  # a frame is waiting for inference
        # inference workers (set up at start): each its own Segmenter (input buffer) on the one engine;
        # batches are numbered when gathered and handed on in that order
        self._segmenters: list = []
        self._gather_lock = threading.Lock()
        self._turn_cv = threading.Condition()
        self._rr = 0
        self._next_ticket = 0
        self._turn = 0
        self._workers_left = 0
        alerts = cfg.alerts
        if sinks is None:
            sinks = [MqttSink(alerts.mqtt)] if alerts.mqtt is not None else []  # first: a config error opens nothing
            if alerts.jsonl:
                sinks.insert(0, JsonlSink(alerts.jsonl))
        self.sinks = sinks
        self.mqtt: MqttSink | None = next((s for s in sinks if isinstance(s, MqttSink)), None)
        self.outbox = Outbox(alerts.outbox, max_rows=alerts.outbox_max_rows, max_age_s=alerts.outbox_max_age_s)
        self.publisher = Publisher(self.outbox, self.sinks)
        self.snapshots: SnapshotWriter | None = None
        if alerts.snapshots is not None:
            publish = self.mqtt.publish_snapshot if alerts.snapshots.publish and self.mqtt is not None else None
            self.snapshots = SnapshotWriter(alerts.snapshots, self.names, publish)
        # event clips: each camera's analytics keeps a pre-roll (copies of the model input's content) and feeds
        # the clips thread; nothing more is kept on the frames
        self.clips: ClipWriter | None = ClipWriter(alerts.clips, self.names) if alerts.clips is not None else None
        keep_image = save_video is not None or self.snapshots is not None
        self.cameras: list[_Camera] = []
        slots = cfg.pipeline
        for cam in cfg.cameras:
            src = VideoSource(cam.id, cam.source, segmenter.input_hw, cam.max_fps, keep_image=keep_image,
                              options=SourceOptions.from_config(cam), loop=loop)
            src.on_decode_s = lambda seconds, cid=cam.id: self.metrics.observe_stage(cid, "decode", seconds)
            policy = "drop_oldest" if src.live else "block"
            c = _Camera(
                cam.id, src,
                Ring(slots.live_frame_ring_slots if src.live else slots.frame_ring_slots, policy, f"{cam.id}/frames"),
                Ring(min(slots.detection_ring_slots, 2) if src.live else slots.detection_ring_slots, "block",
                     f"{cam.id}/detections"),
                cam.zones,
            )
            if save_video is not None:
                c.video = Ring(16, policy, f"{cam.id}/video")
            self.cameras.append(c)
            self.active_alerts[cam.id] = {}
        self.threads: list[threading.Thread] = []
        self._open_cams = list(self.cameras)
        # camera status: True while frames flow; every change is logged, kept in camera_events and passed to
        # each on_camera_status hook as hook(camera_id, online) (e.g. an MQTT sink's publish_camera_status)
        self.camera_status: dict[str, bool] = {c.id: False for c in self.cameras}
        self.camera_events: deque[tuple[float, str, bool]] = deque(maxlen=1000)  # (epoch s, camera, online)
        self.on_camera_status: list[Callable[[str, bool], None]] = []
        if self.mqtt is not None:  # retained <prefix>/<camera>/status
            self.on_camera_status.append(self.mqtt.publish_camera_status)
        # remote switches and alert feedback, stored beside the outbox's rows (survive a restart)
        self.controls = SiteControls(alerts.outbox, [c.id for c in self.cameras])
        self.frame_keeper = FrameKeeper(cfg.feedback, self.names) if cfg.feedback.keep_frames else None
        if self.mqtt is not None:
            p = self.mqtt.prefix
            self.mqtt.on_command(f"{p}/+/rules/+/set", self.controls.mqtt_switch(p))
            self.mqtt.on_command(f"{p}/+/enabled/set", self.controls.mqtt_switch(p))
            self.mqtt.on_command(f"{p}/+/alerts/+/ack", self.controls.mqtt_feedback(p))
        self.homeassistant = None  # Home Assistant discovery (alerts.mqtt.homeassistant)
        if self.mqtt is not None and self.mqtt.cfg.homeassistant is not None:
            from maskwatch import __version__

            from .homeassistant import HomeAssistant

            self.homeassistant = HomeAssistant(self.mqtt, self.mqtt.cfg.homeassistant, list(self.names.values()),
                                               __version__)
        self._status_known: set[str] = set()
        self._status_lock = threading.Lock()
        n_cams = len(self.cameras)
        # default: one frame per camera for a model with a dynamic batch axis; a static-batch model runs a
        # larger batch as a loop of its own batch size, which is no faster and only makes every frame wait
        meta = segmenter.meta
        self.batch = slots.batch or (max(1, min(n_cams, 64)) if meta.dynamic_batch else max(1, meta.batch))
        self.batch_timeout_s = slots.batch_timeout_ms / 1000.0

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

    def set_camera_status(self, camera: str, online: bool) -> None:
        """Record a camera going online / offline and tell the hooks (only on a change, and the first report)."""
        with self._status_lock:
            if camera in self._status_known and self.camera_status.get(camera) == online:
                return
            self._status_known.add(camera)
            self.camera_status[camera] = online
            self.camera_events.append((time.time(), camera, online))
            hooks = list(self.on_camera_status)
        live = any(c.id == camera and c.source.live for c in self.cameras)  # a file going offline is its end
        log.log(logging.WARNING if live and not online else logging.INFO, "camera %s: %s", camera,
                "online" if online else ("offline" if live else "offline (end of file)"))
        for hook in hooks:
            try:
                hook(camera, online)
            except Exception as exc:  # noqa: BLE001 - a status consumer must not stop a camera
                log.warning("camera %s: status hook %r failed: %s", camera, hook, exc)

    def _put(self, ring: Ring, item) -> bool:
        """Put, re-checking abort; False when the run is aborting."""
        while not self.abort.is_set():
            if ring.put(item, timeout=POLL_S):
                return True
        return False

    # -- stages -------------------------------------------------------------------------
    def _source(self, c: _Camera) -> None:
        if c.source.live:
            return self._live_source(c)
        online = False
        try:
            c.source.open()
            c.stats.total_frames = c.source.total_frames
            if self.max_frames is not None and c.stats.total_frames:
                c.stats.total_frames = min(c.stats.total_frames, self.max_frames)
            for frame in c.source.frames(self.stop):
                if not online:
                    online = True
                    self.set_camera_status(c.id, True)
                if not self._put(c.frames, frame):
                    return
                c.stats.decoded += 1
                self._wake.set()
                if self.max_frames is not None and c.stats.decoded >= self.max_frames:
                    break
                if self.stop.is_set():
                    break
        except SourceError as exc:  # files are not retried: the run fails, naming camera and stage
            raise SourceError(str(exc)) from None
        finally:
            c.source.close()
            c.frames.close()
            self._wake.set()
            self.set_camera_status(c.id, False)

    def _live_source(self, c: _Camera) -> None:
        """A live camera: reconnects forever (backoff, watchdog) until the run stops; never fails the run."""
        done = threading.Event()  # --max-frames reached

        def emit(frame: Frame) -> None:
            if done.is_set():
                return
            try:
                c.frames.put(frame, timeout=0)  # drop_oldest: never blocks, counts drops
            except RingClosed:
                return
            c.stats.decoded += 1
            self._wake.set()
            if self.max_frames is not None and c.stats.decoded >= self.max_frames:
                done.set()

        c.live = LiveRunner(c.source, emit, lambda online: self.set_camera_status(c.id, online),
                            should_stop=lambda: done.is_set() or self.stop.is_set() or self.abort.is_set())
        try:
            c.live.run()
        finally:
            c.frames.close()
            self._wake.set()
            self.set_camera_status(c.id, False)

    def _gather(self, open_cams: list[_Camera], start: int, finished: list[_Camera]) -> list[tuple[_Camera, Frame]]:
        """Up to ``self.batch`` frames, one per camera per pass starting at camera ``start`` (fair: a fast camera
        cannot crowd out the others), waiting up to ``batch_timeout_ms`` after the first frame for more.
        Cameras whose frame ring is closed and drained move from ``open_cams`` to ``finished``."""
        batch: list[tuple[_Camera, Frame]] = []
        deadline: float | None = None
        while open_cams and len(batch) < self.batch and not self.abort.is_set():
            got = False
            n = len(open_cams)
            for k in range(n):
                if len(batch) >= self.batch:
                    break
                c = open_cams[(start + k) % n]
                if len(c.detections) >= c.detections.slots:
                    # its analytics is behind: taking a frame now would block every camera on this one; a
                    # live camera's ring keeps only its newest frame meanwhile, a file's waits
                    continue
                try:
                    frame = c.frames.get_nowait()
                except RingClosed:
                    continue
                if frame is not None:
                    batch.append((c, frame))
                    got = True
            for c in [c for c in open_cams if c.frames.drained]:
                open_cams.remove(c)
                finished.append(c)
            if got:
                if deadline is None:
                    deadline = time.monotonic() + self.batch_timeout_s
                continue  # another pass: frames may be waiting
            if not batch:
                return batch  # nothing at all: the caller waits for a wake-up
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wake.wait(min(left, POLL_S))
            self._wake.clear()
        return batch

    def _inference(self, worker: int = 0) -> None:
        """One inference worker. With several, each gathers its own batch (under a lock, so the camera
        round-robin stays fair) and runs the engine at the same time as the others; results are handed
        on in the order the batches were gathered, so every camera's frames stay in order."""
        segmenter = self._segmenters[worker]
        try:
            while not self.abort.is_set():
                finished: list[_Camera] = []
                with self._gather_lock:
                    if not self._open_cams:
                        return
                    batch = self._gather(self._open_cams, self._rr, finished)
                    self._rr += 1  # round-robin: the next batch starts at the next camera
                    ticket = None
                    if batch or finished:
                        ticket, self._next_ticket = self._next_ticket, self._next_ticket + 1
                if ticket is None:
                    self._wake.wait(POLL_S)
                    self._wake.clear()
                    continue
                results: list = []
                t0 = time.perf_counter()
                if batch and self._split_post:
                    # the engine call only: decoding (NMS, masks) runs on each camera's analytics thread,
                    # off the thread(s) every camera's frames queue for
                    pred, protos = segmenter.engine.infer(segmenter.preprocess([f.input for _, f in batch]))
                    results = [(pred[i], protos[i]) for i in range(len(batch))]
                elif batch:  # device segmenters decode where the tensors are
                    results = segmenter([f.input for _, f in batch], [f.letterbox for _, f in batch])
                if batch:
                    took = time.perf_counter() - t0
                    for c, _ in batch:
                        self.metrics.observe_stage(c.id, "inference", took)
                with self._turn_cv:
                    while self._turn != ticket:
                        if self.abort.is_set():
                            return
                        self._turn_cv.wait(POLL_S)
                    try:
                        for (c, frame), dets in zip(batch, results):
                            c.stats.inferred += 1
                            if not self._put(c.detections, (frame, dets)):
                                return
                        for c in finished:  # after their last frames: analytics drain and end
                            c.detections.close()
                    finally:
                        self._turn += 1
                        self._turn_cv.notify_all()
        finally:
            with self._gather_lock:
                self._workers_left -= 1
                last = self._workers_left == 0
            if last or self.abort.is_set():
                for c in self.cameras:
                    c.detections.close()

    def _analytics(self, c: _Camera) -> None:
        tracker = MaskTracker(self.cfg.tracker.params(self.cfg.model.conf))
        watcher = ZoneFileWatcher(c.zones_path) if c.zones_path else None
        engine: ZoneEngine | None = None
        dfilter: DetectionFilter | None = None
        last: Frame | None = None
        clips = self.clips.camera(c.id, lambda: c.source.fps, c.source.max_fps) \
            if self.clips is not None and c.zones_path else None  # this camera's pre-roll and open clips
        try:
            while not self.abort.is_set():
                try:
                    item = c.detections.get(timeout=POLL_S)
                except RingClosed:
                    break
                if item is None:
                    continue
                self._wake.set()  # a detection slot is free: inference may take this camera's next frame
                t0 = time.perf_counter()
                frame, dets = item
                last = frame
                if isinstance(dets, tuple):  # raw outputs of one frame
                    (dets,) = self.segmenter.postprocess([dets[0][None], dets[1][None]], [frame.letterbox])
                if dets.masks is None:
                    raise ValueError("the segmenter returned no masks")
                if watcher is not None:  # the zone file's filters and ignore regions, before the tracker
                    if dfilter is None or dfilter.zone_file is not watcher.current:
                        dfilter = DetectionFilter(watcher.current, frame.frame_wh, dets.mask_space.mask_wh)
                    if dfilter.active:
                        dets = self._filter(c, dfilter, dets)
                dets = tracker.update(dets, frame.pts_s, frame.content)
                if watcher is not None and engine is None:
                    engine = ZoneEngine(watcher.current, c.id, frame.frame_wh, dets.mask_space.mask_wh, self.run_id)
                    self.controls.restore(c.id, engine)  # switches of earlier runs
                if engine is not None:
                    self.controls.apply(c.id, engine)  # switches that arrived since the last frame
                    events = []
                    reloaded = watcher.poll()
                    if reloaded is not None:
                        events += engine.replace(reloaded, frame.index, frame.pts_s, frame.wall_s)
                        if self.homeassistant is not None:  # entities of removed rules and zones go
                            self.homeassistant.camera(c.id, reloaded, self._active_rules(c.id))
                    names = [self.names.get(int(k), str(k)) for k in dets.class_id]
                    events += engine.update(frame.index, frame.pts_s, frame.wall_s, dets.tracker_id, names,
                                            dets.confidence, dets.xyxy, dets.masks, dets.data.get("stationary_s"))
                    for ev in events:
                        if ev.type == "start" and self.snapshots is not None:
                            ev.extra["snapshot"] = str(self.snapshots.path_for(ev))  # written a moment later
                        if ev.type == "start" and self.frame_keeper is not None:
                            self.frame_keeper.save(frame, dets, ev)
                        if clips is not None:  # a start opens its clip, an end names it (extra.clip)
                            clips.event(ev)
                        self._store(c, ev)
                    if self.mqtt is not None:  # retained per-zone counts; the sink sends only changes
                        for zone_id, counts in engine.occupancy.items():
                            self.mqtt.publish_occupancy(c.id, zone_id, counts)
                        self._publish_armed(c.id, engine)
                    if self.snapshots is not None:  # side path: drawn and saved by the snapshots thread
                        for ev in events:
                            if ev.type == "start":
                                poly = (np.array(engine.zone_file.polygon_px(ev.zone, frame.frame_wh))
                                        if ev.zone is not None else None)
                                self.snapshots.offer(frame, dets, ev, poly)
                c.stats.analysed += 1
                c.stats.analysed_at.append(time.monotonic())
                c.stats.tracks_active = len(dets)
                if engine is not None:
                    c.stats.occupancy = engine.occupancy
                latency = time.time() - frame.wall_s
                c.stats.latency_s.append(latency)
                self.metrics.observe_latency(c.id, latency)
                self.metrics.observe_stage(c.id, "analytics", time.perf_counter() - t0)
                active = set(engine.active_zones) if engine else set()
                # the latest analysed frame, for previews (one reference swap: nothing is copied or drawn here)
                self.latest[c.id] = (frame, dets, active, engine.zone_file if engine else None)
                if clips is not None:  # side path: the pre-roll, and open clips' frames (never waits)
                    clips.frame(frame, dets, active, engine.zone_file if engine else None)
                if c.video is not None:
                    self._put(c.video, (frame, dets, active, engine.zone_file if engine else None))
            if engine is not None and last is not None and not self.abort.is_set():
                for ev in engine.close(last.index, last.pts_s, time.time()):
                    if clips is not None:
                        clips.event(ev)
                    self._store(c, ev)
        finally:
            if clips is not None:  # the end of the stream: open clips end with what they have
                clips.finish()
            if c.video is not None:
                c.video.close()

    def _store(self, c: _Camera, ev: AlertEvent) -> None:
        """An alert event goes to the outbox (durable) first; then the counts and lists the console reads."""
        self.outbox.add(ev)
        if self.on_alert is not None:
            try:
                self.on_alert(ev)
            except Exception:  # noqa: BLE001 - an observer never stops the analytics; the event is stored
                log.exception("camera %s: alert observer failed", c.id)
        c.stats.alerts += 1
        c.stats.alerts_by[(ev.rule, ev.type)] += 1
        d = ev.to_dict()
        self.recent_alerts.append(d)
        if ev.type == "end":
            self.active_alerts[c.id].pop(ev.id, None)
        else:
            self.active_alerts[c.id][ev.id] = d
        if self.homeassistant is not None:
            self.homeassistant.rule_active(c.id, ev.rule, ev.rule in self._active_rules(c.id))

    def _filter(self, c: _Camera, dfilter: DetectionFilter, dets: Detections) -> Detections:
        """Drop what the zone file's filters and ignore regions reject (counted per class and reason)."""
        names = [self.names.get(int(k), str(k)) for k in dets.class_id]
        why = dfilter.reasons(names, dets.confidence, dets.xyxy, dets.masks)
        if not any(why):
            return dets
        for name, reason in zip(names, why):
            if reason:
                c.stats.filtered[(name, reason)] += 1
        return dets[np.array([r is None for r in why], bool)]

    def _publish_armed(self, camera: str, engine: ZoneEngine) -> None:
        """The switches' state topics (retained, sent on change): each rule's and the camera's armed state,
        schedule included."""
        prefix = f"{self.mqtt.prefix}/{topic_level(camera)}"
        self.mqtt.publish_retained(f"{prefix}/enabled", "ON" if engine.armed_camera else "OFF")
        for rule, armed in engine.armed_rules.items():
            self.mqtt.publish_retained(f"{prefix}/rules/{topic_level(rule)}", "ON" if armed else "OFF")

    def _active_rules(self, camera: str) -> set[str]:
        return {d["rule"] for d in list(self.active_alerts.get(camera, {}).values())}

    def health(self) -> tuple[bool, str]:
        """(ok, reason): not ok once a stage has failed (every stage thread records its exception here)."""
        if self.failure is not None:
            return False, str(self.failure)
        return True, "ok"

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
        # after the last alert, keep delivering for up to alerts.drain_timeout_s (rows still waiting then stay in
        # the outbox for the next start); a stopped run (SIGINT) is bounded by shutdown_timeout_s in wait()
        self.publisher.run(done=self.analytics_done.is_set, abort=self.abort,
                           drain_timeout_s=self.cfg.alerts.drain_timeout_s)

    def _snapshots(self) -> None:
        assert self.snapshots is not None
        self.snapshots.run(self.abort, done=self.analytics_done.is_set)

    # -- run ----------------------------------------------------------------------------
    def _end_left_open(self) -> None:
        """Alerts a killed process left active end now (``extra.reason: restarted``), before any new event:
        no consumer waits forever for their ``end``."""
        cams = {c.id: c for c in self.cameras}
        left, self.outbox.left_open = self.outbox.left_open, []
        for ev in left:
            end = ev.ended("restarted", time.time())
            if ev.camera in cams:
                self._store(cams[ev.camera], end)
            else:  # a camera no longer in the config
                self.outbox.add(end)
        if left:
            log.warning("outbox: %d alert(s) left active by an earlier run end now (reason: restarted)", len(left))

    def start(self) -> None:
        multi = len(self.cameras) > 1
        self._end_left_open()
        for c in self.cameras:
            self._thread(f"camera:{c.id}/source", c.id, "source", lambda c=c: self._source(c)).start()
        seg = self.segmenter
        self._split_post = isinstance(seg, Segmenter) and seg.host_decode
        n = inference_plan(self.cfg)[0] if hasattr(seg, "clone") else 1
        self._segmenters = [seg] + [seg.clone() for _ in range(n - 1)]
        self._workers_left = n
        for k in range(n):
            self._thread("inference" if n == 1 else f"inference-{k}", None if multi else self.cameras[0].id,
                         "inference", lambda k=k: self._inference(k)).start()
        self._analytics_threads = []
        for c in self.cameras:
            t = self._thread(f"camera:{c.id}/analytics", c.id, "analytics", lambda c=c: self._analytics(c))
            self._analytics_threads.append(t)
            t.start()
            if c.video is not None:
                path = self.save_video if not multi else self.save_video.with_name(
                    f"{self.save_video.stem}-{c.id}{self.save_video.suffix}")
                self._thread(f"camera:{c.id}/video", c.id, "video", lambda c=c, p=path: self._video(c, p)).start()
        if self.homeassistant is not None:  # entities exist before the first frame
            from maskwatch.zones import load_zone_file

            for c in self.cameras:
                self.homeassistant.camera(c.id, load_zone_file(c.zones_path) if c.zones_path else None)
        for sink in self.sinks:
            sink.start(self.outbox.notify)
        self._publisher_thread = self._thread("publisher", None, "publisher", self._publisher)
        self._publisher_thread.start()
        if self.snapshots is not None:
            self._thread("snapshots", None, "snapshots", self._snapshots).start()
        if self.clips is not None:
            clips = self.clips
            self._thread("clips", None, "clips",
                         lambda: clips.run(self.abort, done=self.analytics_done.is_set)).start()

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
        if self.snapshots is not None:
            self.snapshots.close()
        if self.clips is not None:
            self.clips.close()
        for sink in self.sinks:
            sink.close()
        self.outbox.close()

    def request_stop(self) -> None:
        """First call: graceful stop. Second call, or any call while only the outbox is being drained after
        the sources ended: abort (what waits stays in the outbox for the next start)."""
        if self.stop.is_set() or self.analytics_done.is_set():
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
                    "online": self.camera_status.get(c.id, False),
                    "connects": c.live.stats.connects if c.live else None,
                    "stalls": c.live.stats.stalls if c.live else None,
                    "last_error": c.live.stats.last_error if c.live else None,
                    "corrupt_packets": c.source.corrupt_packets,
                    "hw_decode": c.source.hwaccel,
                    "filtered": {f"{cls}:{reason}": n for (cls, reason), n in sorted(c.stats.filtered.items())},
                } for c in self.cameras
            },
            "outbox": self.outbox.stats(),
            "mqtt": self.mqtt.stats() if self.mqtt is not None else None,
            "snapshots": self.snapshots.stats() if self.snapshots is not None else None,
            "clips": self.clips.stats() if self.clips is not None else None,
            "failure": str(self.failure) if self.failure else None,
        }
