"""A real Ray cluster on loopback for the cluster tests: a head (no CPUs: workers never land there) and
three worker nodes with custom resources (site_a on one, site_b on two), all on 127.0.0.1.

``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` before ray is imported keeps every Ray process on 127.0.0.1 (ray
2.60: the head advertises the machine's address otherwise); the driver subprocesses inherit it. The head's
health checks are fast, so a removed node is declared dead in about 2-3 s instead of about 16 s.
Ray missing fails the tests (never skips): scripts/setup.sh installs the [cluster] extra.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away loopback cluster
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402 - after the variables above
from ray.cluster_utils import Cluster  # noqa: E402

FAST_HEALTH = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
               "health_check_initial_delay_ms": 0, "health_check_timeout_ms": 500}
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RayCluster:
    cluster: Cluster
    nodes: dict  # name -> ray._private.node.Node

    @property
    def address(self) -> str:
        return self.cluster.address

    def add(self, name: str, **resources: float):
        self.nodes[name] = self.cluster.add_node(num_cpus=2, resources=resources)
        self.cluster.wait_for_nodes()
        return self.nodes[name]

    def node_name(self, node_id: str) -> str | None:
        return next((n for n, node in self.nodes.items() if node.node_id == node_id), None)


def _pids_of(session_dir: str) -> list[int]:
    """Processes whose command line names this cluster's session folder (left by a killed test run)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if session_dir.encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


@pytest.fixture(scope="package")
def ray_cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                            "_system_config": FAST_HEALTH})
    rc = RayCluster(cluster, {})
    session_dir = cluster.head_node.get_session_dir_path()
    try:
        rc.add("a", site_a=10)
        rc.add("b1", site_b=10)
        rc.add("b2", site_b=10)
        ray.init(address=cluster.address, namespace="maskwatch-tests", logging_level="WARNING",
                 log_to_driver=False)
        yield rc
    finally:
        ray.shutdown()
        cluster.shutdown()
        for pid in _pids_of(session_dir):  # nothing of this cluster outlives the tests
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Driver:
    """``maskwatch run CONFIG --ray ADDRESS`` as a subprocess (its own process: the tests kill it)."""

    def __init__(self, config: Path, address: str, *extra: str) -> None:
        self.log_path = config.parent / f"driver-{int(time.time() * 1000)}.log"
        self.summary = config.parent / "summary.json"
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "maskwatch", "run", str(config), "--ray", address,
                                      *([] if "--web" in extra else ["--no-web"]), "--no-progress",
                                      "--summary", str(self.summary), *extra],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=config.parent)
        log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"driver did not end within {timeout} s:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def drivers():
    made: list[Driver] = []

    def start(config: Path, address: str, *extra: str) -> Driver:
        d = Driver(config, address, *extra)
        made.append(d)
        return d

    yield start
    for d in made:
        d.kill()
