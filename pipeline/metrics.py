"""Prometheus metrics of one Pipeline, in a registry of its own (no global state: two pipelines in one process,
as in the tests, never share a counter).

Two kinds of figures:

- histograms observed on the hot path (a dict lookup and prometheus-client's ``observe``, a few microseconds):
  ``maskwatch_stage_seconds{camera,stage}`` (decode, inference, analytics) and
  ``maskwatch_frame_to_alert_seconds{camera}`` (a frame's arrival to its zone decision);
- everything else is read from the pipeline's own counters when /metrics is scraped (``_StateCollector``), so
  counting costs nothing more than it did.

Names follow Prometheus' conventions: a ``maskwatch_`` prefix, base units in the name, counters end in
``_total``, labels only for bounded values (camera, stage, ring, rule, zone, class, sink), never track or alert ids.
"""

from __future__ import annotations

import platform
import threading
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from .stages import Pipeline

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# per-stage latency: 1 ms .. 5 s; frame to alert: 10 ms .. 30 s
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGES = ("decode", "inference", "analytics")


class PipelineMetrics:
    def __init__(self, pipe: Pipeline) -> None:
        from maskwatch import __version__

        self.registry = CollectorRegistry(auto_describe=False)
        self._stage = Histogram("maskwatch_stage_seconds", "Time a stage spent on one frame (inference: on the "
                                "frame's batch), seconds", ["camera", "stage"], buckets=STAGE_BUCKETS,
                                registry=self.registry)
        self._latency = Histogram("maskwatch_frame_to_alert_seconds", "From a frame's arrival to its zone decision "
                                  "(alerts start here), seconds", ["camera"], buckets=LATENCY_BUCKETS,
                                  registry=self.registry)
        self._children: dict[tuple, object] = {}
        self._lock = threading.Lock()
        self.registry.register(_StateCollector(pipe, __version__))

    def _child(self, metric: Histogram, *labels: str):
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.setdefault(key, metric.labels(*labels))
        return child

    def observe_stage(self, camera: str, stage: str, seconds: float) -> None:
        self._child(self._stage, camera, stage).observe(seconds)

    def observe_latency(self, camera: str, seconds: float) -> None:
        self._child(self._latency, camera).observe(seconds)

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _StateCollector:
    """Counters and gauges read from the pipeline's state at scrape time."""

    def __init__(self, pipe: Pipeline, version: str) -> None:
        self.pipe = pipe
        self.version = version

    def collect(self):
        p = self.pipe
        info = GaugeMetricFamily("maskwatch_build_info", "maskwatch version and Python version (always 1)",
                                 labels=["version", "python"])
        info.add_metric([self.version, platform.python_version()], 1)
        yield info

        frames = CounterMetricFamily("maskwatch_frames", "Frames that passed a stage", labels=["camera", "stage"])
        dropped = CounterMetricFamily("maskwatch_frames_dropped", "Frames dropped by a ring (live cameras keep "
                                      "the newest; a side path drops rather than wait)", labels=["camera", "ring"])
        online = GaugeMetricFamily("maskwatch_camera_online", "1 while the camera delivers frames", labels=["camera"])
        reconnects = CounterMetricFamily("maskwatch_camera_reconnects", "Connections of a live camera after its "
                                         "first", labels=["camera"])
        tracks = GaugeMetricFamily("maskwatch_tracks_active", "Objects tracked in the camera's latest frame",
                                   labels=["camera"])
        occupancy = GaugeMetricFamily("maskwatch_zone_occupancy", "Objects inside a zone in the latest frame",
                                      labels=["camera", "zone", "class"])
        alerts = CounterMetricFamily("maskwatch_alerts", "Alert events stored in the outbox",
                                     labels=["camera", "rule", "type"])
        for c in p.cameras:
            s = c.stats
            for stage, n in (("decode", s.decoded), ("inference", s.inferred), ("analytics", s.analysed)):
                frames.add_metric([c.id, stage], n)
            dropped.add_metric([c.id, "frames"], c.frames.dropped)
            if c.video is not None:
                dropped.add_metric([c.id, "video"], c.video.dropped)
            online.add_metric([c.id], 1.0 if p.camera_status.get(c.id) else 0.0)
            connects = c.live.stats.connects if c.live is not None else 0
            reconnects.add_metric([c.id], max(0, connects - 1))
            tracks.add_metric([c.id], s.tracks_active)
            for zone, counts in dict(s.occupancy).items():
                for cls, n in dict(counts).items():
                    occupancy.add_metric([c.id, zone, cls], n)
            for (rule, kind), n in dict(s.alerts_by).items():
                alerts.add_metric([c.id, rule, kind], n)
        filtered = CounterMetricFamily("maskwatch_detections_filtered", "Detections the zone file's filters or ignore "
                                       "regions dropped before the tracker", labels=["camera", "class", "reason"])
        feedback = CounterMetricFamily("maskwatch_alert_feedback", "Alerts marked by people (ack, false_positive) "
                                       "this run", labels=["camera", "verdict"])
        for c in p.cameras:
            for (cls, reason), n in dict(c.stats.filtered).items():
                filtered.add_metric([c.id, cls, reason], n)
        for (cam, verdict), n in dict(p.controls.feedback_counts).items():
            feedback.add_metric([cam, verdict], n)
        yield from (frames, dropped, online, reconnects, tracks, occupancy, alerts, filtered, feedback)
        if p.snapshots is not None:
            snaps = CounterMetricFamily("maskwatch_snapshots_dropped", "Alert snapshots not drawn because the "
                                        "snapshot ring was full")
            snaps.add_metric([], p.snapshots.stats().get("dropped", 0))
            yield snaps

        pending = GaugeMetricFamily("maskwatch_outbox_pending", "Alert events in the outbox a sink has not "
                                    "acknowledged yet", labels=["sink"])
        for sink in p.sinks:
            pending.add_metric([sink.name], p.outbox.pending_count(sink.name))
        yield pending
        if p.mqtt is not None:
            connected = GaugeMetricFamily("maskwatch_mqtt_connected", "1 while the MQTT broker connection is up")
            connected.add_metric([], 1.0 if p.mqtt.connected else 0.0)
            yield connected
