"""Cluster-layer overhead: the same cameras on one machine (``Pipeline``) and on a local Ray cluster with 1, 2
and 3 worker actors, in one run, on this machine.

    .venv/bin/python scripts/bench_cluster.py [--cameras 6] [--seconds 20] [--warmup 10] [--workers 1,2,3]
                                              [--model M] [--out FILE.json]

Every camera plays the same generated 720p site clip in a loop (files: every frame analysed, so the run is
CPU-bound). After ``--warmup`` seconds (Ray started, workers loaded, rings full) it counts the frames analysed
over ``--seconds`` and the CPU time the whole machine spent meanwhile (/proc/stat: every Ray process, the
driver and the pipeline included), and reports frames per wall second and per CPU-second. The cluster
overhead is 1 - (cluster frames per CPU-second / single-machine frames per CPU-second). Also the driver's
load: status answers per second, the bytes each carries and the driver's CPU time per answer. Not a test: no pass/fail.

    .venv/bin/python scripts/bench_cluster.py --failover [--repeat 4] [--cameras 4] [--model M] [--out FILE.json]

``--failover``: how long cameras are dark after a failure, on a loopback cluster of a head (no CPUs, health
checks every 0.5 s, 3 misses) and three nodes of 2 CPUs (``site_a`` on one, ``site_b`` on two); half the cameras
pinned to each site, two per worker, every frame analysed (the machine is busy, as a loaded node is). Each
round SIGKILLs worker w0's process (Ray restarts it on its node) and then removes w1's node for good (Ray starts
it on the other site_b node; the node comes back for the next round). A time runs from the kill or the
removal until the worker's new process answers with every camera analysing. The times are what a shared
machine gave at that moment; the tests check that failover happens, not how fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only (before ray is imported)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from maskwatch.pipeline.config import load_config  # noqa: E402
from maskwatch.pipeline.factory import build_segmenter  # noqa: E402
from maskwatch.pipeline.stages import Pipeline  # noqa: E402
from maskwatch.scenes.clip import write_clip  # noqa: E402
from tests.conftest import write_config  # noqa: E402


def busy_cpu_s() -> float:
    """CPU seconds the whole machine spent busy so far (user + nice + system + irq + softirq + steal)."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = parts[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def measure(counter, warmup: float, seconds: float) -> dict:
    time.sleep(warmup)
    f0, c0, t0 = counter(), busy_cpu_s(), time.monotonic()
    time.sleep(seconds)
    f1, c1, t1 = counter(), busy_cpu_s(), time.monotonic()
    frames, cpu, wall = f1 - f0, c1 - c0, t1 - t0
    return {"frames": frames, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "fps": round(frames / wall, 2),
            "frames_per_cpu_s": round(frames / cpu, 2) if cpu > 0 else None}


def single(cfg_path: Path, args) -> dict:
    cfg = load_config(cfg_path)
    cfg.cluster = None
    from maskwatch.pipeline.config import inference_plan

    pipe = Pipeline(cfg, build_segmenter(cfg.model, None, cfg.tracker, threads=inference_plan(cfg)[1]), loop=True)
    pipe.start()
    try:
        return measure(lambda: sum(c.stats.analysed for c in pipe.cameras), args.warmup, args.seconds)
    finally:
        pipe.request_stop()
        pipe.wait()


def cluster(cfg_path: Path, workers: int, args) -> dict:
    from maskwatch.cluster.driver import ClusterDriver

    cfg = load_config(cfg_path)
    n = len(cfg.cameras)
    cfg.cluster.cameras_per_worker = math.ceil(n / workers)
    assert math.ceil(n / cfg.cluster.cameras_per_worker) == workers, f"{n} cameras do not make {workers} workers"
    cores = os.cpu_count() or 1
    cfg.cluster.worker_resources.num_cpus = round(cores / workers, 2)
    cfg.model.threads = max(1, cores // workers)
    driver = ClusterDriver(cfg, cfg_path, loop=True, log_level="WARNING")
    calls = {"n": 0, "bytes": 0}
    up = driver._up

    def counted(w, st):  # the driver's load: status answers per second and their size
        calls["n"] += 1
        calls["bytes"] += len(json.dumps(st))
        up(w, st)

    driver._up = counted
    driver.start()
    t = threading.Thread(target=driver.run, daemon=True)
    t.start()
    try:
        time.sleep(args.warmup)
        n0, cpu0 = calls["n"], time.process_time()
        out = measure(lambda: sum(r.get("analysed") or 0 for r in driver.camera_rows()), 0.0, args.seconds)
        answers, driver_cpu = calls["n"] - n0, time.process_time() - cpu0
    finally:
        driver.request_stop()
        t.join(60)
    out["workers"] = workers
    out["threads_per_worker"] = cfg.model.threads
    out["status_bytes_per_answer"] = round(calls["bytes"] / max(1, calls["n"]))
    out["status_answers_per_s"] = round(answers / args.seconds, 1)
    # this process is the driver (and the bench's sampling, which is negligible)
    out["driver_cpu_ms_per_answer"] = round(1000 * driver_cpu / max(1, answers), 2)
    out["driver_cpu_fraction"] = round(driver_cpu / args.seconds, 4)
    return out


def failover(cfg_path: Path, args) -> dict:
    """Kill a worker's process and lose a node, ``args.repeat`` times each; seconds until analysing again."""
    import signal
    import statistics

    import ray
    from ray.cluster_utils import Cluster

    from maskwatch.cluster.driver import NAMESPACE, ClusterDriver
    from tests.cluster.conftest import FAST_HEALTH  # the cluster tests' head settings

    head = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                         "_system_config": FAST_HEALTH})
    nodes = {"a": head.add_node(num_cpus=2, resources={"site_a": 10})}
    for name in ("b1", "b2"):
        nodes[name] = head.add_node(num_cpus=2, resources={"site_b": 10})
    head.wait_for_nodes()
    cfg = load_config(cfg_path)
    cams = [c.id for c in cfg.cameras]
    half = len(cams) // 2
    cfg.cluster.address = head.address
    cfg.cluster.cameras_per_worker = half
    cfg.cluster.worker_resources.num_cpus = 1
    cfg.cluster.camera_resources = {c: {"site_a" if i < half else "site_b": 1} for i, c in enumerate(cams)}
    cfg.cluster.worker_timeout_s = 600  # the driver waits for Ray however long it takes
    cfg.model.threads = 1
    driver = ClusterDriver(cfg, None, loop=True, log_level="WARNING")
    driver.start()
    t = threading.Thread(target=driver.run, daemon=True)
    t.start()

    def status(worker: str) -> dict | None:
        try:
            return ray.get(ray.get_actor(f"{cfg.cluster.name}/{worker}", namespace=NAMESPACE).status.remote(),
                           timeout=0.25)  # short: a call to a restarting worker waits until it answers
        except (ray.exceptions.RayError, ValueError):
            return None

    def analysing(worker: str, other_than: str | None = None, timeout: float = 600.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = status(worker)
            if st and st["incarnation"] != other_than and st["cameras"] and all(
                    c["analysed"] >= 1 for c in st["cameras"].values()):
                return st
            time.sleep(0.05)
        raise TimeoutError(f"worker {worker} not analysing after {timeout:.0f} s")

    killed, lost = [], []
    try:
        analysing("w0", timeout=600)
        analysing("w1", timeout=600)
        for _ in range(args.repeat):
            time.sleep(args.settle)
            st = analysing("w0")
            os.kill(st["pid"], signal.SIGKILL)
            t0 = time.monotonic()
            analysing("w0", other_than=st["incarnation"])
            killed.append(round(time.monotonic() - t0, 2))
            time.sleep(args.settle)
            st = analysing("w1")
            gone = next(n for n, node in nodes.items() if node.node_id == st["node_id"])
            head.remove_node(nodes.pop(gone), allow_graceful=False)
            t0 = time.monotonic()
            back = analysing("w1", other_than=st["incarnation"])
            lost.append(round(time.monotonic() - t0, 2))
            assert back["node_id"] != st["node_id"]
            nodes[gone] = head.add_node(num_cpus=2, resources={"site_b": 10})
            head.wait_for_nodes()
            print(json.dumps({"worker_killed_s": killed[-1], "node_lost_s": lost[-1]}), flush=True)
    finally:
        driver.request_stop()
        t.join(120)
        head.shutdown()

    def spread(xs: list[float]) -> dict:
        return {"runs": xs, "min": min(xs), "median": statistics.median(xs), "max": max(xs)}

    return {"mode": "failover", "cameras": len(cams), "worker_killed_s": spread(killed),
            "node_lost_s": spread(lost), "lost_alerts_ended": driver.lost_alerts_ended}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=6, help="cameras (6: 1, 2 and 3 workers get equal shares)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--workers", default="1,2,3")
    ap.add_argument("--model", default=str(ROOT / "models" / "maskwatch-demo-seg.onnx"))
    ap.add_argument("--out")
    ap.add_argument("--failover", action="store_true", help="time a killed worker and a lost node instead")
    ap.add_argument("--repeat", type=int, default=4, help="--failover: rounds (one kill and one node loss each)")
    ap.add_argument("--settle", type=float, default=5.0, help="--failover: seconds of normal running between events")
    args = ap.parse_args()
    if args.failover and args.cameras == 6:
        args.cameras = 4  # two workers of two cameras
    tmp = Path(tempfile.mkdtemp(prefix="maskwatch-bench-cluster-"))
    write_clip("site", 9_100_000, 10.0, tmp / "clip", events=False)
    video = tmp / "clip" / "video.mp4"
    cams = [{"id": f"cam{i}", "source": str(video)} for i in range(args.cameras)]
    from maskwatch.engines import load_engine

    names = list(load_engine(Path(args.model), threads=1).meta.names.values())
    cfg_path = write_config(tmp, Path(args.model), None, names, conf=0.35, cameras=cams, extra={
        "cluster": {"address": "local", "worker_dir": str(tmp / "workers")}, "web": {"enabled": False}})
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")), "?")
    report = {"cpu": model_name, "cores": os.cpu_count(), "python": platform.python_version(),
              "cameras": args.cameras, "video": "720p site clip, 15 fps, looped", "model": Path(args.model).name,
              "runs": []}
    if args.failover:
        r = failover(cfg_path, args)
        report["runs"].append(r)
        print(json.dumps(r), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=2))
        return 0
    r = single(cfg_path, args)
    r["mode"] = "single machine"
    report["runs"].append(r)
    print(json.dumps(r), flush=True)
    for k in [int(x) for x in args.workers.split(",")]:
        r = cluster(cfg_path, k, args)
        r["mode"] = f"cluster, {k} worker(s)"
        r["overhead"] = round(1 - r["frames_per_cpu_s"] / report["runs"][0]["frames_per_cpu_s"], 3)
        report["runs"].append(r)
        print(json.dumps(r), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
