"""A cluster worker: one Ray actor that runs the single-machine ``Pipeline``, unchanged, for its cameras.

The driver creates it with the run's config (as data), the model file's bytes and each camera's zone file
text, so a worker node needs maskwatch installed and nothing else: no shared file system. Everything the
worker writes lives in ``<cluster.worker_dir>/<name>/<worker>/`` on its node: the zone files, the outbox
(SQLite) and the JSONL file; the model in ``<cluster.worker_dir>/<name>/models/<sha256>/``.

After its process died (SIGKILL, out of memory), Ray starts the actor again with the same arguments, on the
same node when it can: ``__init__`` runs again, reopens the same outbox, delivers what was left in it and
ends the alerts the dead process left active (``extra.reason: restarted``), except those the driver ended
already (``worker_lost``; the driver's ``EndLedger`` decides, so each alert ends once). The driver then
pushes the current zone files (they may have changed since the arguments were made).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import secrets
import threading
import time
from dataclasses import replace
from pathlib import Path

from maskwatch.pipeline.config import check_files, parse_config
from maskwatch.pipeline.factory import build_segmenter
from maskwatch.pipeline.mqtt import MqttSink
from maskwatch.pipeline.sinks import JsonlSink
from maskwatch.pipeline.stages import Pipeline
from maskwatch.zones import ZoneFileError, load_zone_file

log = logging.getLogger(__name__)
RECENT_ALERTS = 50  # alert events each status carries (the driver keeps the console's list)
ENDS_NAMESPACE = "maskwatch-ends"  # Ray namespace of the drivers' EndLedger actors (apart from the workers)


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def worker_status_topic(prefix: str, worker: str) -> str:
    """A worker's MQTT presence (its will says ``offline``); ``<prefix>/status`` belongs to the driver."""
    return f"{prefix}/workers/{worker}/status"


def write_atomic(path: Path, data: bytes) -> None:
    """Readers (the zone file watcher) see the old file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def install_model(folder: Path, files: dict[str, bytes]) -> Path:
    """Write the model's files once per content hash; returns the model path (a file, or an OpenVINO folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        dest = folder / rel
        if not dest.is_file() or dest.stat().st_size != len(data):
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(dest, data)
    first = next(iter(files))
    return folder / Path(first).parts[0] if len(Path(first).parts) > 1 else folder / first


class EndLedger:
    """Each alert ends once, and after its last event. A worker notes every alert event it stores (a call it does
    not wait for). When a worker is lost, the driver claims its alerts: those it last reported active and those
    it noted open since; it ends, with ``worker_lost``, only those nobody ended (not the ones the worker ended
    after its last status), each after the latest event noted (its end's seq follows every ``update``:
    receivers de-duplicate on id + seq). A restarted worker that finds its outbox again (same node, or
    ``worker_dir`` on storage that outlives a node) ends, with ``restarted``, only what the driver did not. Ray
    runs an actor's calls one at a time, so a claim is atomic.

    What it cannot close: an event whose note had not arrived when the driver claimed: stored at the loss, or
    by a worker whose raylet died, before the process noticed and exited (its calls no longer leave). That
    gives a second ``end``, or an end with an update's seq; a receiver keeps the first ``end``.
    One per driver, on the driver's node, named after the deployment in namespace ``maskwatch-ends``; it dies
    with the driver (its owner). Alerts are kept ``keep_s`` after their last note (the driver claims within
    ``worker_timeout_s`` of a loss) and ``max_ids`` at most, oldest out first."""

    def __init__(self, keep_s: float = 3600.0, max_ids: int = 200_000) -> None:
        self.keep_s = keep_s
        self.max_ids = max_ids
        # id -> [who ended it (None: open), last seq, monotonic s, worker that noted it, latest event while open]
        self._alerts: dict[str, list] = {}  # oldest first

    def _take(self, alert_id: str, now: float) -> list:
        """The alert's record, moved to the newest end; when unknown, created after old ones are pruned."""
        rec = self._alerts.pop(alert_id, None)
        if rec is None:
            rec = [None, -1, now, None, None]
            while self._alerts:
                oldest = next(iter(self._alerts))
                if len(self._alerts) < self.max_ids and now - self._alerts[oldest][2] <= self.keep_s:
                    break
                del self._alerts[oldest]
        rec[2] = now
        self._alerts[alert_id] = rec
        return rec

    def note(self, worker: str, event: dict) -> None:
        """``worker`` stored ``event`` (an ``AlertEvent`` as a dict)."""
        rec = self._take(event["id"], time.monotonic())
        rec[3] = worker
        if event["type"] == "end":
            rec[0] = rec[0] or worker
            rec[4] = None
        elif rec[0] is None and event["seq"] >= rec[1]:
            rec[4] = event
        rec[1] = max(rec[1], event["seq"])

    def claim(self, who: str, events: list[dict], worker: str | None = None) -> list[dict]:
        """The alerts ``who`` ends now: of ``events`` (the latest event of each alert ``who`` knows) and, with
        ``worker``, every alert that worker noted open, those nobody ended; each as its latest event known."""
        now = time.monotonic()
        todo = {e["id"]: e for e in events}
        if worker is not None:
            for alert_id, rec in list(self._alerts.items()):
                if rec[3] == worker and rec[0] is None and rec[4] is not None:
                    todo.setdefault(alert_id, rec[4])
        mine = []
        for alert_id, event in todo.items():
            rec = self._take(alert_id, now)
            if rec[0] is not None:
                continue
            if rec[4] is not None and rec[4]["seq"] > event["seq"]:
                event = rec[4]
            event = {**event, "seq": max(rec[1], event["seq"])}
            rec[0], rec[1], rec[4] = who, event["seq"], None
            mine.append(event)
        return mine

    def ended_by(self, alert_id: str) -> str | None:
        rec = self._alerts.get(alert_id)
        return rec[0] if rec else None


def claim_ends(ledger, who: str, events: list[dict], worker: str | None = None,
               timeout_s: float = 30.0) -> list[dict]:
    """``EndLedger.claim`` (``ledger``: its handle, or None). Without an answer: ``events``, with a warning (a
    second ``end`` of an alert beats none)."""
    if ledger is None or (not events and worker is None):
        return list(events)
    import ray

    try:
        return ray.get(ledger.claim.remote(who, events, worker), timeout=timeout_s)
    except (ray.exceptions.RayError, TimeoutError) as exc:
        log.warning("%s: the end ledger did not answer (%s); ending %d alert(s) without it", who,
                    type(exc).__name__, len(events))
        return list(events)


class CameraWorker:
    """Ray actor body (the driver wraps it with ``ray.remote``): a Pipeline for the cameras in ``spec``."""

    def __init__(self, spec: dict, model_files: dict[str, bytes]) -> None:
        import ray

        logging.basicConfig(level=getattr(logging, spec.get("log_level", "INFO")),
                            format="%(asctime)s %(levelname)s [%(threadName)s] %(message)s")
        self.name = spec["worker"]
        self.incarnation = secrets.token_hex(4)
        self.pid = os.getpid()
        self.started_s = time.time()
        ctx = ray.get_runtime_context()
        self.node_id = ctx.get_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        root = Path(os.path.expanduser(spec["worker_dir"])) / spec["instance"]
        self.dir = root / self.name
        zones_dir = self.dir / "zones"
        zones_dir.mkdir(parents=True, exist_ok=True)
        model = install_model(root / "models" / spec["model_sha"], model_files)

        data = copy.deepcopy(spec["config"])
        data.pop("cluster", None)
        data["web"] = {"enabled": False}
        data["model"]["path"] = str(model)
        alerts = data.setdefault("alerts", {})
        alerts["outbox"] = str(self.dir / "outbox.sqlite")
        if alerts.get("jsonl"):
            alerts["jsonl"] = str(self.dir / "alerts.jsonl")
        if alerts.get("snapshots"):
            alerts["snapshots"]["dir"] = str(self.dir / "snapshots")
        if alerts.get("mqtt") and alerts["mqtt"].get("client_id"):
            alerts["mqtt"]["client_id"] = f"{alerts['mqtt']['client_id']}-{self.name}"  # one session per worker
        self.zone_paths: dict[str, Path] = {}
        self.zone_sha: dict[str, str] = {}
        cams = []
        for cam in data["cameras"]:
            if cam["id"] not in spec["cameras"]:
                continue
            text = spec["zones"].get(cam["id"])
            if text is None:
                cam["zones"] = None
            else:
                path = zones_dir / f"{cam['id']}.yaml"
                write_atomic(path, text.encode())
                cam["zones"] = str(path)
                self.zone_paths[cam["id"]] = path
                self.zone_sha[cam["id"]] = sha256(text)
            cams.append(cam)
        data["cameras"] = cams
        where = f"worker {self.name} on {self.node_ip}"
        cfg = parse_config(data, where, self.dir)
        check_files(cfg, where)  # a file camera must exist on this node too
        seg = build_segmenter(cfg.model, where, cfg.tracker, threads=spec.get("threads"))
        sinks: list = []
        if cfg.alerts.mqtt is not None:
            sinks.append(MqttSink(cfg.alerts.mqtt, status_topic=worker_status_topic(cfg.alerts.mqtt.topic_prefix,
                                                                                      self.name)))
        if cfg.alerts.jsonl:
            sinks.insert(0, JsonlSink(cfg.alerts.jsonl))
        self.ledger = self._find_ledger(spec.get("ledger"))
        self.pipe = Pipeline(cfg, seg, sinks=sinks, loop=spec.get("loop", False), max_frames=spec.get("max_frames"),
                             on_alert=self._noted if self.ledger is not None else None)
        self._claim_left_open()
        self.first_frame_s: dict[str, float | None] = {c.id: None for c in self.pipe.cameras}
        self.pipe.start()
        self._waiter = threading.Thread(target=self.pipe.wait, name="worker-wait", daemon=True)
        self._waiter.start()
        log.info("worker %s (incarnation %s, pid %d) runs %s on node %s", self.name, self.incarnation, self.pid,
                 ", ".join(spec["cameras"]), self.node_ip)

    def _find_ledger(self, name: str | None):
        if not name:
            return None
        import ray

        try:
            return ray.get_actor(name, namespace=ENDS_NAMESPACE)
        except ValueError:
            log.warning("worker %s: no end ledger %r: a lost worker's alerts may end twice", self.name, name)
            return None

    def _noted(self, ev) -> None:
        """Every alert event this worker stores is noted at once (not waited for): should this worker be lost
        before its next status, the driver does not end an alert it ended, nor reuse a seq it sent."""
        self.ledger.note.remote(self.name, ev.to_dict())

    def _claim_left_open(self) -> None:
        """Of the alerts the dead process left active, the pipeline ends (``restarted``) those the driver has not
        ended already; the others leave the outbox's open list without a second ``end``."""
        outbox = self.pipe.outbox
        if not outbox.left_open or self.ledger is None:
            return
        mine = {e["id"] for e in claim_ends(self.ledger, self.name, [e.to_dict() for e in outbox.left_open])}
        ended = [e.id for e in outbox.left_open if e.id not in mine]
        if ended:
            outbox.forget_open(ended)
            outbox.left_open = [e for e in outbox.left_open if e.id in mine]
            log.info("outbox: %d alert(s) left active were already ended by the driver (worker_lost)", len(ended))

    def status(self) -> dict:
        """What the driver shows and decides on; cheap (counters and references, nothing drawn)."""
        p = self.pipe
        cams = {}
        for c in p.cameras:
            s = c.stats
            last = s.analysed_at[-1] if s.analysed_at else None
            if last is not None and self.first_frame_s[c.id] is None:
                self.first_frame_s[c.id] = time.time()
            q = s.latency_quantiles()
            cams[c.id] = {
                "online": bool(p.camera_status.get(c.id)), "fps": round(s.fps(), 2),
                "decoded": s.decoded, "inferred": s.inferred, "analysed": s.analysed,
                "dropped": c.frames.dropped, "alerts": s.alerts, "tracks": s.tracks_active,
                "reconnects": max(0, c.live.stats.connects - 1) if c.live is not None else 0,
                "latency_ms": {k: None if v is None else round(v * 1000, 1) for k, v in q.items()},
                "active_alerts": list(p.active_alerts.get(c.id, {}).values()),
                "zones_sha": self.zone_sha.get(c.id), "first_frame_s": self.first_frame_s[c.id],
            }
        return {
            "worker": self.name, "incarnation": self.incarnation, "pid": self.pid, "node_id": self.node_id,
            "node_ip": self.node_ip, "started_s": self.started_s, "running": self._waiter.is_alive(),
            "failure": str(p.failure) if p.failure else None, "cameras": cams,
            "recent_alerts": list(p.recent_alerts)[-RECENT_ALERTS:],
            "outbox": p.outbox.stats(), "mqtt_connected": p.mqtt.connected if p.mqtt is not None else None,
        }

    def latest(self, camera: str, known_index: int | None = None):
        """The camera's latest analysed (frame, detections, active zones, zone file) for the driver's live view,
        without the full-size image (the model input is what is drawn); ``"same"`` when the driver already has
        frame ``known_index``; None before the first frame."""
        got = self.pipe.latest.get(camera)
        if got is None:
            return None
        frame, dets, active, zone_file = got
        if known_index is not None and frame.index == known_index:
            return "same"
        return replace(frame, image=None), dets, set(active), zone_file

    def set_zones(self, camera: str, text: str) -> str:
        """A zone file edited on the driver: validated, written atomically; the camera's analytics thread
        picks it up through its hot reload at the next check (about a second). Returns the new hash."""
        path = self.zone_paths.get(camera)
        if path is None:
            raise KeyError(f"worker {self.name} has no zone file for camera {camera!r}")
        probe = path.with_name(f".{path.name}.check.yaml")
        probe.write_text(text)
        try:
            load_zone_file(probe)
        except ZoneFileError as exc:
            raise ValueError(f"camera {camera}: zone file rejected: {exc}") from None
        finally:
            probe.unlink(missing_ok=True)
        write_atomic(path, text.encode())
        self.zone_sha[camera] = sha256(text)
        log.info("camera %s: zone file updated by the driver", camera)
        return self.zone_sha[camera]

    def stop(self, timeout_s: float = 30.0) -> dict:
        """Graceful: sources stop, analytics drain, open alerts end, the outbox is flushed (bounded)."""
        self.pipe.request_stop()
        self._waiter.join(timeout_s)
        return self.pipe.summary()
