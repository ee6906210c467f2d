"""What the console reads and writes, behind one small interface, for both modes:

- ``PipelineBackend``: a running ``Pipeline`` (``maskwatch run``): live frames with detections, alerts, metrics;
- ``PreviewBackend``: cameras only, no model, no alerts (``maskwatch edit``): set up zones before anything else;
- ``ClusterBackend``: a cluster driver (cameras, alerts and metrics as its workers report them; no live view).

The console never reaches into a stage: it reads references the analytics threads swap in
(``Pipeline.latest``), counters, bounded lists of recent alerts, and the metrics registry; it writes only
zone files, which the analytics threads pick up through their hot reload.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest

from maskwatch.pipeline.config import Config
from maskwatch.pipeline.redact import redact_url
from maskwatch.pipeline.sources import LiveRunner, SourceOptions, VideoSource
from maskwatch.pipeline.stages import Pipeline
from maskwatch.pipeline.types import Frame
from maskwatch.zones import ZoneFileError, load_zone_file

if TYPE_CHECKING:
    from maskwatch.cluster.driver import ClusterDriver

log = logging.getLogger(__name__)
PREVIEW_INPUT_HW = (384, 640)  # edit mode letterboxes to this: a 16:9 frame's content is 640x360


class Backend:
    mode = "run"
    names: dict[int, str] = {}

    def camera_ids(self) -> list[str]:
        raise NotImplementedError

    def camera(self, cid: str) -> dict:
        raise NotImplementedError

    def latest(self, cid: str) -> tuple | None:
        """(frame, detections or None, active zone ids, zone file or None) of the camera's latest frame."""
        raise NotImplementedError

    def zone_path(self, cid: str) -> Path | None:
        raise NotImplementedError

    def alerts(self) -> list[dict]:
        return []

    def snapshot(self, name: str) -> Path | None:
        return None

    def clip(self, name: str) -> Path | None:
        return None

    def verdict(self, alert_id: str) -> str | None:
        """What a person marked the alert (ack, false_positive), if anything."""
        return None

    def feedback(self, alert_id: str, verdict: str) -> None:
        raise NotImplementedError

    def health(self) -> tuple[bool, str]:
        return True, "ok"

    @property
    def registry(self) -> CollectorRegistry:
        raise NotImplementedError

    def metrics_text(self) -> bytes:
        return generate_latest(self.registry)


class PipelineBackend(Backend):
    mode = "run"

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        self.names = dict(pipe.names)
        self._cams = {c.id: c for c in pipe.cameras}

    def camera_ids(self) -> list[str]:
        return list(self._cams)

    def camera(self, cid: str) -> dict:
        c = self._cams[cid]
        p = self.pipe
        latest = p.latest.get(cid)
        q = c.stats.latency_quantiles()
        return {
            "id": cid,
            "source": redact_url(c.source.source),
            "online": bool(p.camera_status.get(cid)),
            "fps": round(c.stats.fps(), 2),
            "decoded": c.stats.decoded, "inferred": c.stats.inferred, "analysed": c.stats.analysed,
            "dropped": c.frames.dropped,
            "latency_ms": {k: None if v is None else round(v * 1000, 1) for k, v in q.items()},
            "reconnects": max(0, c.live.stats.connects - 1) if c.live is not None else 0,
            "alerts": c.stats.alerts,
            "tracks": c.stats.tracks_active,
            "active_alerts": list(p.active_alerts.get(cid, {}).values()),
            "frame_wh": list(latest[0].frame_wh) if latest else None,
            "has_zones": c.zones_path is not None,
        }

    def latest(self, cid: str) -> tuple | None:
        return self.pipe.latest.get(cid)

    def zone_path(self, cid: str) -> Path | None:
        return self._cams[cid].zones_path

    def alerts(self) -> list[dict]:
        return list(self.pipe.recent_alerts)

    def snapshot(self, name: str) -> Path | None:
        """The file of a snapshot *named* in a recent alert: looked up, never joined from the request."""
        for ev in reversed(self.pipe.recent_alerts):
            path = (ev.get("extra") or {}).get("snapshot")
            if path and Path(path).name == name:
                return Path(path)
        return None

    def clip(self, name: str) -> Path | None:
        """The file of an event clip *named* in a recent alert's end: looked up, never joined from the request."""
        for ev in reversed(self.pipe.recent_alerts):
            path = (ev.get("extra") or {}).get("clip")
            if path and Path(path).name == name:
                return Path(path)
        return None

    def verdict(self, alert_id: str) -> str | None:
        return self.pipe.controls.verdicts.get(alert_id)

    def feedback(self, alert_id: str, verdict: str) -> None:
        """Stored beside the outbox (table ``feedback``), for ``maskwatch feedback export``; KeyError for an
        alert this run has not raised."""
        camera = next((ev["camera"] for ev in reversed(self.pipe.recent_alerts) if ev.get("id") == alert_id), None)
        if camera is None:
            raise KeyError(f"no recent alert {alert_id!r}")
        self.pipe.controls.feedback(camera, alert_id, verdict, "api")

    def health(self) -> tuple[bool, str]:
        return self.pipe.health()

    @property
    def registry(self) -> CollectorRegistry:
        return self.pipe.metrics.registry


class _PreviewCamera:
    def __init__(self, cid: str, source: VideoSource, zones: Path | None) -> None:
        self.id = cid
        self.source = source
        self.zones = zones
        self.latest: Frame | None = None
        self.online = False
        self.frames = 0
        self.times: deque[float] = deque(maxlen=64)
        self.error: str | None = None
        self.live: LiveRunner | None = None


class PreviewBackend(Backend):
    """Cameras decoded for the editor only: files loop at their own pace, live cameras reconnect."""

    mode = "edit"

    def __init__(self, cfg: Config, names: dict[int, str] | None = None) -> None:
        self.cfg = cfg
        self.names = dict(names or {})
        self._registry = CollectorRegistry(auto_describe=False)
        self.stop = threading.Event()
        self._cams: dict[str, _PreviewCamera] = {}
        for cam in cfg.cameras:
            src = VideoSource(cam.id, cam.source, PREVIEW_INPUT_HW, cam.max_fps, keep_image=False,
                              options=SourceOptions.from_config(cam), loop=True)
            self._cams[cam.id] = _PreviewCamera(cam.id, src, cam.zones)
        self._threads: list[threading.Thread] = []
        self._zones_cache: dict[str, tuple] = {}

    def start(self) -> None:
        for c in self._cams.values():
            t = threading.Thread(target=self._run, args=(c,), name=f"camera:{c.id}/preview", daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def _emit(self, c: _PreviewCamera, frame: Frame) -> None:
        c.latest = frame
        c.frames += 1
        c.times.append(time.monotonic())

    def _run(self, c: _PreviewCamera) -> None:
        src = c.source
        try:
            if src.live:
                def status(online: bool) -> None:
                    c.online = online

                c.live = LiveRunner(src, lambda f: self._emit(c, f), status, should_stop=self.stop.is_set)
                c.live.run()
                return
            start_wall = time.monotonic()
            c.online = True
            for frame in src.frames(self.stop):  # a file: at its own frame rate, again and again
                wait = frame.pts_s - (time.monotonic() - start_wall)
                if wait > 0 and self.stop.wait(wait):
                    break
                self._emit(c, frame)
        except Exception as exc:  # a broken file: shown as offline with its error, the editor goes on
            c.error = redact_url(str(exc))
            log.error("camera %s: preview stopped: %s", c.id, c.error)
        finally:
            c.online = False
            src.close()

    def camera_ids(self) -> list[str]:
        return list(self._cams)

    def camera(self, cid: str) -> dict:
        c = self._cams[cid]
        times = list(c.times)
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        return {
            "id": cid, "source": redact_url(c.source.source), "online": c.online, "fps": round(fps, 2),
            "decoded": c.frames, "inferred": 0, "analysed": 0, "dropped": 0,
            "latency_ms": {"p50": None, "p99": None},
            "reconnects": max(0, c.live.stats.connects - 1) if c.live is not None else 0,
            "alerts": 0, "tracks": 0, "active_alerts": [],
            "frame_wh": list(c.latest.frame_wh) if c.latest is not None else None,
            "has_zones": c.zones is not None, "error": c.error,
        }

    def latest(self, cid: str) -> tuple | None:
        c = self._cams[cid]
        if c.latest is None:
            return None
        return c.latest, None, set(), self._zone_file(c)

    def _zone_file(self, c: _PreviewCamera):
        """The camera's zone file, read again only when it changed on disk (None when missing or invalid)."""
        if c.zones is None:
            return None
        try:
            st = c.zones.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return None
        cached = self._zones_cache.get(c.id)
        if cached is None or cached[0] != stamp:
            try:
                zf = load_zone_file(c.zones)
            except ZoneFileError:  # an invalid file on disk: no zones drawn; a save says what is wrong
                zf = None
            cached = self._zones_cache[c.id] = (stamp, zf)
        return cached[1]

    def zone_path(self, cid: str) -> Path | None:
        return self._cams[cid].zones

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry


class ClusterBackend(Backend):
    """A cluster driver (``maskwatch run`` on Ray): cameras, alerts and metrics as the workers report them;
    zone files are the driver's (an edit reaches the camera's worker); a live view fetches the camera's latest
    frame from its worker, only while someone watches."""

    mode = "cluster"

    def __init__(self, driver: ClusterDriver) -> None:
        from maskwatch.cluster.metrics import cluster_registry

        self.driver = driver
        self.names = dict(getattr(driver, "names", {}) or {})
        self._zones = {c.id: c.zones for c in driver.cfg.cameras}
        self._registry = cluster_registry(driver)

    def camera_ids(self) -> list[str]:
        return list(self._zones)

    def camera(self, cid: str) -> dict:
        r = next(r for r in self.driver.camera_rows() if r["camera"] == cid)
        return {"id": cid, "source": r["source"], "online": r["online"], "fps": r.get("fps") or 0.0,
                "decoded": r.get("decoded", 0), "inferred": r.get("inferred", 0), "analysed": r.get("analysed", 0),
                "dropped": r.get("dropped", 0), "latency_ms": r.get("latency_ms") or {"p50": None, "p99": None},
                "reconnects": r.get("reconnects", 0), "alerts": r.get("alerts", 0), "tracks": r.get("tracks", 0),
                "active_alerts": r.get("active_alerts", []),
                "frame_wh": list(latest[0].frame_wh) if (latest := self.driver.latest_frames.get(cid)) else None,
                "has_zones": self._zones[cid] is not None, "worker": r["worker"], "node": r["node"]}

    def latest(self, cid: str) -> tuple | None:
        return self.driver.latest_frame(cid)

    def zone_path(self, cid: str) -> Path | None:
        return self._zones[cid]

    def alerts(self) -> list[dict]:
        return list(self.driver.recent_alerts)

    def health(self) -> tuple[bool, str]:
        return self.driver.health()

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry
