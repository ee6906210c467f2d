"""Cluster mode on a real Ray cluster (loopback): placement by resources, the same alerts as one machine,
a worker killed, a node lost, the driver killed and restarted, and nothing left running at the end.

Cameras: four real H.264 files (``--loop`` where a run must outlive a kill); the random-weight test model
with a zone over the whole frame, so alerts start and end all the time; a real mosquitto for delivery.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import ray
import yaml

from maskwatch.cluster.worker import CameraWorker
from maskwatch.pipeline.config import load_config
from maskwatch.pipeline.factory import build_segmenter
from maskwatch.pipeline.stages import Pipeline
from tests.conftest import write_clip, write_config
from tests.pipeline.conftest import Subscriber, broker  # noqa: F401 - the broker fixture
from tests.pipeline.conftest import broker_factory, wait_for  # noqa: F401

NAMESPACE = "maskwatch"
CAMS = ("cam1", "cam2", "cam3", "cam4")
PINS = {"cam1": {"site_a": 1}, "cam2": {"site_a": 1}, "cam3": {"site_b": 1}, "cam4": {"site_b": 1}}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cluster-clips")
    # seeds whose clips make the random test model alert on every camera
    return {cid: write_clip(d / f"{cid}.mp4", frames=40, seed=seed) for cid, seed in zip(CAMS, (10, 11, 15, 17))}


def cluster_config(tmp_path: Path, model_path, names, clips, name: str, broker=None, **cluster) -> Path:
    extra = {"cluster": {"name": name, "cameras_per_worker": 2, "worker_resources": {"num_cpus": 1},
                         "camera_resources": PINS, "worker_dir": str(tmp_path / "workers"),
                         "status_interval_s": 0.25, **cluster},
             "web": {"enabled": False}}
    cfg = write_config(tmp_path, model_path, None, names,
                       cameras=[{"id": cid, "source": str(p), "zones": "zones.yaml"} for cid, p in clips.items()],
                       extra=extra)
    data = yaml.safe_load(cfg.read_text())
    data["model"]["threads"] = 1  # the same arithmetic on one machine and on the workers
    if broker is not None:
        data["alerts"]["mqtt"] = broker.mqtt_config(topic_prefix=f"t-{name}")
    cfg.write_text(yaml.safe_dump(data))
    return cfg


def actor(name: str):
    return ray.get_actor(name, namespace=NAMESPACE)


def status(name: str, timeout: float = 5.0) -> dict | None:
    """A worker's status, or None while it does not answer."""
    try:
        return ray.get(actor(name).status.remote(), timeout=timeout)
    except (ray.exceptions.RayError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def wait_value(fn, timeout: float, what: str, interval: float = 0.1):
    """``fn()`` once it is truthy; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := fn()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return value


def jsonl_events(root: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(root.rglob("alerts.jsonl")) for line in p.read_text().splitlines()]


def starts_by_camera(events: list[dict]) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for e in events:
        if e["type"] == "start":
            out.setdefault(e["camera"], []).append((e["rule"], e["frame_index"]))
    return {k: sorted(v) for k, v in out.items()}


def every_start_ended(events: list[dict]) -> tuple[set, set]:
    started = {e["id"] for e in events if e["type"] == "start"}
    ended = {e["id"] for e in events if e["type"] == "end"}
    return started, ended


def test_placement_alerts_and_clean_end(ray_cluster, tmp_path, model_path, model_names, clips, broker, drivers):
    """Cameras land where their pins say; the workers raise exactly the alerts one machine raises on the same
    clips, on MQTT and in their JSONL; the run ends by itself and leaves no worker process; every address
    Ray reports is loopback."""
    sub = Subscriber(broker, topic="t-place/#").start()
    cfg = cluster_config(tmp_path, model_path, model_names, clips, "place", broker)
    drv = drivers(cfg, ray_cluster.address)
    assert drv.wait(180) == 0, drv.log()
    summary = json.loads(drv.summary.read_text())
    placed = {cid: ray_cluster.node_name(c["node_id"]) for cid, c in summary["cameras"].items()}
    assert placed["cam1"] == placed["cam2"] == "a", placed
    assert placed["cam3"] in ("b1", "b2") and placed["cam4"] == placed["cam3"], placed
    assert {c["worker"] for c in summary["cameras"].values()} == {"w0", "w1"}
    assert all(c["analysed"] == 40 for c in summary["cameras"].values()), summary["cameras"]

    # the same clips on one machine, the same config without the cluster
    single = load_config(cfg)
    single.cluster = None
    single.alerts.mqtt = None
    single.alerts.jsonl = tmp_path / "single.jsonl"
    single.alerts.outbox = tmp_path / "single.sqlite"
    pipe = Pipeline(single, build_segmenter(single.model, None, single.tracker, threads=1))
    pipe.start()
    pipe.wait()
    want = starts_by_camera([json.loads(x) for x in single.alerts.jsonl.read_text().splitlines()])
    got = jsonl_events(tmp_path / "workers")
    assert set(want) == set(CAMS)
    assert starts_by_camera(got) == want
    wait_for(lambda: len(sub.alerts()) >= len(got), 10, what="every alert on MQTT")
    assert {(e["id"], e["seq"]) for e in sub.alerts()} == {(e["id"], e["seq"]) for e in got}
    assert sub.last("t-place/status").payload == b"offline"  # the driver's presence, retained
    assert all(sub.last(f"t-place/{cid}/status").payload == b"offline" for cid in CAMS)

    pids = [h["pid"] for w in summary["workers"].values() for h in w["history"]]
    assert len(pids) == 2
    wait_for(lambda: not any(alive(p) for p in pids), 15, what="worker processes to end")
    addresses = {n["NodeManagerAddress"] for n in ray.nodes()}
    assert addresses == {"127.0.0.1"}, addresses
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")


def test_worker_killed_then_node_lost(ray_cluster, tmp_path, model_path, model_names, clips, broker, drivers):
    """SIGKILL a worker: Ray restarts it on its node, its cameras resume and the alerts it left active end
    (reason restarted). Remove the node of the other worker: it runs again on the other site_b node within
    15 s, and the driver ends the alerts it had active (reason worker_lost). A second actor of a worker's name
    is refused, and a restarted worker only runs once the old process is gone. Every stored alert arrives."""
    sub = Subscriber(broker, topic="t-fail/#").start()
    cfg = cluster_config(tmp_path, model_path, model_names, clips, "fail", broker)
    drv = drivers(cfg, ray_cluster.address, "--loop")

    def running(name: str, min_frames: int = 5, alerts: bool = False, other_than: str | None = None):
        st = status(name)
        if st is None or (other_than is not None and st["incarnation"] == other_than):
            return None
        cams = st["cameras"].values()
        if not all(c["analysed"] >= min_frames for c in cams) or (alerts and not any(c["active_alerts"] for c in cams)):
            return None
        return st

    wait_value(lambda: running("fail/w0", alerts=True) and running("fail/w1"), 90, "both workers running", 0.2)
    with pytest.raises(ValueError):  # Ray's actor ownership: one live actor per name, so one processor per camera
        ray.remote(CameraWorker).options(name="fail/w0", namespace=NAMESPACE).remote({}, {})

    # 1. a worker process killed
    st0 = running("fail/w0", alerts=True)
    os.kill(st0["pid"], signal.SIGKILL)
    t0 = time.monotonic()
    back = wait_value(lambda: running("fail/w0", 1, other_than=st0["incarnation"]), 60,
                      "the killed worker to come back and analyse")
    back_s = time.monotonic() - t0
    assert not alive(st0["pid"])
    assert ray_cluster.node_name(back["node_id"]) == "a"  # still pinned to its site

    # 2. a node lost for good
    st1 = wait_value(lambda: running("fail/w1", alerts=True), 30, "worker w1 with an active alert")
    lost_node = ray_cluster.node_name(st1["node_id"])
    ray_cluster.cluster.remove_node(ray_cluster.nodes.pop(lost_node), allow_graceful=False)
    t1 = time.monotonic()
    moved = wait_value(lambda: running("fail/w1", 1, other_than=st1["incarnation"]), 30,
                       "worker w1 to run on another node")
    moved_s = time.monotonic() - t1
    assert moved_s < 15, f"cameras re-assigned after {moved_s:.1f} s"
    assert ray_cluster.node_name(moved["node_id"]) not in (lost_node, None)
    assert not alive(st1["pid"])
    ray_cluster.add(lost_node, site_b=10)  # capacity back for the next tests

    drv.proc.send_signal(signal.SIGINT)
    assert drv.wait(60) == 0, drv.log()
    summary = json.loads(drv.summary.read_text())
    assert summary["workers"]["w0"]["restarts"] == 1 and summary["workers"]["w1"]["restarts"] == 1
    assert summary["cluster"]["lost_alerts_ended"] >= 1

    time.sleep(1.0)
    events = sub.alerts()
    started, ended = every_start_ended(events)
    assert started and started <= ended, f"{len(started - ended)} alerts never ended on MQTT"
    reasons = {(e["camera"], e.get("extra", {}).get("reason")) for e in events if e["type"] == "end"}
    assert {("cam1", "restarted"), ("cam2", "restarted")} & reasons, reasons
    assert {("cam3", "worker_lost"), ("cam4", "worker_lost")} & reasons, reasons
    stored = {(e["id"], e["seq"]) for e in jsonl_events(tmp_path / "workers")}
    assert stored <= {(e["id"], e["seq"]) for e in events}, "alerts stored by a worker never reached MQTT"
    assert {e["camera"] for e in events if e["type"] == "start"} == set(CAMS)
    pids = [h["pid"] for w in summary["workers"].values() for h in w["history"]]
    assert len(pids) == 4
    wait_for(lambda: not any(alive(p) for p in pids), 15, what="worker processes to end")
    print(f"worker back after SIGKILL in {back_s:.1f} s; cameras of a lost node running again after {moved_s:.1f} s")


def test_driver_killed_then_restarted(ray_cluster, tmp_path, model_path, model_names, clips, drivers):
    """The driver's workers share its fate: killed, Ray stops them (no orphan processing); a new driver of
    the same name takes the cameras over and, stopped, leaves nothing running."""
    cfg = cluster_config(tmp_path, model_path, model_names, clips, "takeover")
    first = drivers(cfg, ray_cluster.address, "--loop")
    wait_for(lambda: all((s := status(f"takeover/{w}")) and s["cameras"] and
                         all(c["analysed"] > 3 for c in s["cameras"].values()) for w in ("w0", "w1")),
             90, 0.2, "both workers running")
    old = [status(f"takeover/{w}")["pid"] for w in ("w0", "w1")]
    first.kill()
    t0 = time.monotonic()
    wait_for(lambda: not any(alive(p) for p in old), 30, 0.1, "the dead driver's workers to stop")
    orphan_s = time.monotonic() - t0

    second = drivers(cfg, ray_cluster.address, "--loop")
    wait_for(lambda: all((s := status(f"takeover/{w}")) and s["pid"] not in old and
                         all(c["analysed"] > 3 for c in s["cameras"].values()) for w in ("w0", "w1")),
             90, 0.2, "the new driver's workers running")
    new = [status(f"takeover/{w}")["pid"] for w in ("w0", "w1")]
    second.proc.send_signal(signal.SIGINT)
    assert second.wait(60) == 0, second.log()
    wait_for(lambda: not any(alive(p) for p in new), 15, what="worker processes to end")
    assert not ray.util.list_named_actors(all_namespaces=True) or all(
        not a["name"].startswith("takeover/") for a in ray.util.list_named_actors(all_namespaces=True))
    print(f"workers of a killed driver gone after {orphan_s:.1f} s")
