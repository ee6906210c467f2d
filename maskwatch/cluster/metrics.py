"""Cluster-wide Prometheus figures, served by the driver at the console's ``/metrics``: read from the workers'
last reported status at scrape time, per camera and per worker, labelled by worker and node (the node's
address)."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from .driver import ClusterDriver


def cluster_registry(driver: ClusterDriver) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ClusterCollector(driver))
    return registry


class _ClusterCollector:
    def __init__(self, driver: ClusterDriver) -> None:
        self.driver = driver

    def collect(self):
        from maskwatch import __version__

        d = self.driver
        info = GaugeMetricFamily("maskwatch_build_info", "maskwatch version and Python version (always 1)",
                                 labels=["version", "python"])
        info.add_metric([__version__, platform.python_version()], 1)
        yield info
        cam_labels = ["camera", "worker", "node"]
        frames = CounterMetricFamily("maskwatch_frames", "Frames that passed a stage (as the camera's worker last "
                                     "reported; a restarted worker counts from 0)", labels=[*cam_labels, "stage"])
        dropped = CounterMetricFamily("maskwatch_frames_dropped", "Frames a live camera's ring dropped",
                                      labels=cam_labels)
        online = GaugeMetricFamily("maskwatch_camera_online", "1 while the camera delivers frames and its worker "
                                   "answers", labels=cam_labels)
        fps = GaugeMetricFamily("maskwatch_camera_fps", "Frames analysed per second (last 5 s)", labels=cam_labels)
        alerts = CounterMetricFamily("maskwatch_alerts", "Alert events the camera's worker stored",
                                     labels=cam_labels)
        for r in d.camera_rows():
            labels = [r["camera"], r["worker"], r["node"] or ""]
            for stage, key in (("decode", "decoded"), ("inference", "inferred"), ("analytics", "analysed")):
                frames.add_metric([*labels, stage], r.get(key) or 0)
            dropped.add_metric(labels, r.get("dropped") or 0)
            online.add_metric(labels, 1.0 if r["online"] else 0.0)
            fps.add_metric(labels, (r.get("fps") or 0.0) if r["worker_up"] else 0.0)
            alerts.add_metric(labels, r.get("alerts") or 0)
        yield from (frames, dropped, online, fps, alerts)
        up = GaugeMetricFamily("maskwatch_worker_up", "1 while the worker answers the driver", labels=["worker", "node"])
        restarts = CounterMetricFamily("maskwatch_worker_restarts", "Times the worker came back in a new process",
                                       labels=["worker"])
        pending = GaugeMetricFamily("maskwatch_outbox_pending", "Alert events in a worker's outbox not yet "
                                    "delivered to every sink", labels=["worker", "node"])
        for w in d.workers.values():
            node = (w.status or {}).get("node_ip") or ""
            up.add_metric([w.plan.name, node], 1.0 if w.status is not None and w.down_since is None else 0.0)
            restarts.add_metric([w.plan.name], w.restarts)
            if w.status is not None:
                pending.add_metric([w.plan.name, node], w.status["outbox"]["pending"])
        ended = CounterMetricFamily("maskwatch_alerts_ended_worker_lost", "Active alerts the driver ended because "
                                    "their worker was lost")
        ended.add_metric([], d.lost_alerts_ended)
        yield from (up, restarts, pending, ended)
