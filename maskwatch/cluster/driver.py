"""The cluster driver (``maskwatch run`` with a ``cluster:`` section or ``--ray ADDRESS``): places cameras on
worker actors, watches them, and moves nothing itself that Ray can move.

- **Placement**: cameras are grouped by their pins (``cluster.camera_resources``) and cut into workers of
  ``cameras_per_worker``; each worker is a named Ray actor ``<name>/w<N>`` that reserves
  ``worker_resources`` plus its pins. Ray puts it on a node that has them.
- **One processor per camera** (Ray's actor ownership): a camera belongs to exactly one worker, a worker
  is one named actor, and Ray runs at most one instance of an actor: a restart (process or node lost)
  starts only after Ray has seen the old instance dead, and the name stays taken while any instance may
  run. A second driver of the same name cannot create the workers (their names are taken); a restarted
  driver waits until Ray has stopped the previous driver's workers (they share their owner's fate), then
  takes the names over.
- **Failures**: a worker that stops answering is *down*: its cameras are published offline. When its
  node is gone (Ray marks it dead), when Ray gave up restarting it, or after ``worker_timeout_s`` without
  an answer, the driver ends the alerts the worker last reported active, with ``extra.reason:
  worker_lost``, through its own outbox. A worker whose process died on a live node ends them itself when
  Ray restarts it (``restarted``: its outbox on that node's disk remembers them). Both claim an alert from
  the driver's ``EndLedger`` actor before ending it, and workers note every alert event there, so an alert
  ends once, after its last event, even one the worker started after its last status.
- **Zones**: the driver reads every camera's zone file and ships its text; an edit on the driver (by hand
  or in the web console) is validated and pushed to the worker that runs the camera, and again to a
  restarted worker whose copy differs.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from maskwatch.pipeline.config import Config, is_url
from maskwatch.pipeline.mqtt import MqttSink
from maskwatch.pipeline.outbox import Outbox
from maskwatch.pipeline.redact import redact_url
from maskwatch.pipeline.sinks import JsonlSink, Publisher
from maskwatch.pipeline.types import AlertEvent
from maskwatch.pipeline.zonewatch import ZoneFileWatcher

from .worker import ENDS_NAMESPACE, CameraWorker, EndLedger, claim_ends, sha256

log = logging.getLogger(__name__)
NAMESPACE = "maskwatch"  # Ray namespace of every deployment's named worker actors
ENV_REF_NAMES = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def import_ray(local: bool):
    """``ray``, imported only in cluster mode. For a private local cluster every Ray process binds
    127.0.0.1 (the variable must be set before the import; ray 2.60: without it the head advertises the
    machine's address)."""
    if local:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        from maskwatch.zones import ConfigError

        raise ConfigError(None, "cluster", "cluster mode needs Ray: pip install 'maskwatch[cluster]'") from None
    return ray


def connect(address: str, *, quiet: bool = False):
    """Join the Ray cluster at ``address`` (``local``: start a private one on this machine)."""
    ray = import_ray(address == "local")
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"namespace": NAMESPACE, "logging_level": logging.WARNING, "log_to_driver": not quiet}
    if address == "local":  # a new instance even when another runs on this machine
        ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, **kwargs)
    else:
        ray.init(address=address, **kwargs)
    return ray


@dataclass
class WorkerPlan:
    name: str
    cameras: list[str]
    resources: dict[str, float]


def plan_workers(cfg: Config) -> list[WorkerPlan]:
    """Cameras grouped by their pins (config order kept), cut into workers of ``cameras_per_worker``."""
    cl = cfg.cluster
    assert cl is not None
    groups: dict[tuple, list[str]] = {}
    for cam in cfg.cameras:
        groups.setdefault(tuple(sorted(cl.camera_resources.get(cam.id, {}).items())), []).append(cam.id)
    plans: list[WorkerPlan] = []
    for pins, cams in groups.items():
        for i in range(0, len(cams), cl.cameras_per_worker):
            plans.append(WorkerPlan(f"w{len(plans)}", cams[i:i + cl.cameras_per_worker],
                                    {**cl.worker_resources.resources, **dict(pins)}))
    return plans


def model_files(path: Path) -> dict[str, bytes]:
    """The bytes a worker needs to load the model: the file, an IR's .xml + .bin, or an export folder."""
    if path.is_dir():
        return {str(Path(path.name) / p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
                if p.is_file()}
    files = {path.name: path.read_bytes()}
    if path.suffix.lower() == ".xml" and path.with_suffix(".bin").is_file():
        files[path.with_suffix(".bin").name] = path.with_suffix(".bin").read_bytes()
    return files


def worker_config(cfg: Config, raw: dict) -> tuple[dict, dict[str, str]]:
    """The config as data for the workers, and the environment variables it names (forwarded to them).

    Live sources keep their ``${NAME}`` references (a password is expanded on the worker from the
    forwarded variable, never written into the config data); file sources are the driver's absolute paths."""
    data = cfg.model_dump(mode="json")
    data.pop("cluster", None)
    env: dict[str, str] = {}
    raw_cams = {c.get("id"): c for c in raw.get("cameras", []) if isinstance(c, dict)}
    for cam in data["cameras"]:
        src = str(raw_cams.get(cam["id"], {}).get("source", ""))
        if is_url(cam["source"]) and "${" in src:
            cam["source"] = src
            env.update({n: os.environ[n] for n in ENV_REF_NAMES.findall(src) if n in os.environ})
    mqtt = cfg.alerts.mqtt
    if mqtt is not None and mqtt.password_env and mqtt.password_env in os.environ:
        env[mqtt.password_env] = os.environ[mqtt.password_env]
    return data, env


@dataclass
class WorkerState:
    plan: WorkerPlan
    handle: Any
    created_s: float
    pending: Any = None  # the status call in flight
    status: dict | None = None  # its last answer
    last_ok: float = 0.0  # monotonic time of the last answer
    incarnation: str | None = None
    restarts: int = 0
    down_since: float | None = None
    lost_ended: bool = False  # the driver ended this incarnation's alerts
    done: bool = False  # its pipeline ended (file cameras at their end)
    zone_pushes: dict = field(default_factory=dict)  # camera -> (sha, ref) in flight
    history: list = field(default_factory=list)  # one dict per incarnation: pid, node, first/last answer
    events: list = field(default_factory=list)  # (epoch s, what) for the summary: down, lost, back
    summary: dict | None = None  # its pipeline's summary, from its graceful stop


class ClusterDriver:
    """Runs a config's cameras on a Ray cluster; ``run()`` blocks until the cameras end or ``request_stop()``."""

    def __init__(self, cfg: Config, file: str | Path | None = None, *, loop: bool = False,
                 max_frames: int | None = None, log_level: str = "INFO") -> None:
        assert cfg.cluster is not None
        self.cfg = cfg
        self.file = file
        self.loop = loop
        self.max_frames = max_frames
        self.log_level = log_level
        self.name = cfg.cluster.name
        self.plans = plan_workers(cfg)
        self.stop = threading.Event()
        self.workers: dict[str, WorkerState] = {}
        self.camera_worker = {cid: p.name for p in self.plans for cid in p.cameras}
        self.recent_alerts: deque[dict] = deque(maxlen=1000)
        self._seen: deque[tuple[str, int]] = deque(maxlen=5000)
        self.failure: str | None = None
        self.ray = None
        self.ledger = None  # the EndLedger actor (start)
        # zone files stay on the driver: watched here, shipped as text
        self.zone_watch = {c.id: ZoneFileWatcher(c.zones) for c in cfg.cameras if c.zones}
        self.zone_text = {cid: w.path.read_text() for cid, w in self.zone_watch.items()}
        # the driver's own outbox and sinks: presence (<prefix>/status), camera status while a worker is down,
        # and the ends of alerts of lost workers
        alerts = cfg.alerts
        self.sinks: list = []
        if alerts.jsonl:
            self.sinks.append(JsonlSink(alerts.jsonl))
        self.mqtt = MqttSink(alerts.mqtt) if alerts.mqtt is not None else None
        if self.mqtt is not None:
            self.sinks.append(self.mqtt)
        self.outbox = Outbox(alerts.outbox, max_rows=alerts.outbox_max_rows, max_age_s=alerts.outbox_max_age_s)
        self.publisher = Publisher(self.outbox, self.sinks)
        self._publisher_done = threading.Event()
        self._abort = threading.Event()
        self._publisher_thread: threading.Thread | None = None
        self.lost_alerts_ended = 0
        self.names: dict[int, str] = {}  # the model's class names (the console offers them)
        self.latest_frames: dict[str, tuple] = {}  # camera -> the latest frame fetched for the console

    # -- start ------------------------------------------------------------------------------
    def start(self) -> None:
        cl = self.cfg.cluster
        self.ray = ray = connect(cl.address)
        for sink in self.sinks:
            sink.start(self.outbox.notify)
        self._publisher_thread = threading.Thread(
            target=self.publisher.run, name="publisher", daemon=True,
            kwargs={"done": self._publisher_done.is_set, "abort": self._abort,
                    "drain_timeout_s": 0.8 * self.cfg.pipeline.shutdown_timeout_s})
        self._publisher_thread.start()
        raw = yaml.safe_load(Path(self.file).read_text()) if self.file and Path(self.file).is_file() else {}
        data, env = worker_config(self.cfg, raw if isinstance(raw, dict) else {})
        files = model_files(self.cfg.model.path)
        model_sha = sha256(b"".join(sha256(k).encode() + sha256(v).encode() for k, v in sorted(files.items())))
        # the driver holds the reference for the whole run: Ray re-reads the constructor arguments for every
        # restart, and an object nobody references is deleted (the restart would fail)
        self._model_ref = model_ref = ray.put(files)
        deadline = time.monotonic() + cl.takeover_timeout_s
        # on the driver's node: it lives and dies with the driver (elsewhere a lost node would take it along);
        # anywhere when Ray cannot say which node that is
        try:
            where = {"scheduling_strategy": ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=False)}
        except Exception:  # noqa: BLE001 - placement is a preference
            where = {}
        self.ledger = self._create(f"{self.name} (end ledger)", lambda: ray.remote(EndLedger).options(
            name=self.name, namespace=ENDS_NAMESPACE, num_cpus=0, max_restarts=0, **where).remote(), deadline)
        wr = cl.worker_resources
        threads = self.cfg.model.threads or max(1, round(wr.num_cpus))
        actor_cls = ray.remote(CameraWorker)
        for plan in self.plans:
            spec = {"instance": self.name, "worker": plan.name, "cameras": plan.cameras, "config": data,
                    "zones": {cid: self.zone_text[cid] for cid in plan.cameras if cid in self.zone_text},
                    "model_sha": model_sha, "worker_dir": cl.worker_dir, "threads": threads, "loop": self.loop,
                    "max_frames": self.max_frames, "log_level": self.log_level, "ledger": self.name}
            opts: dict[str, Any] = {"name": f"{self.name}/{plan.name}", "namespace": NAMESPACE,
                                    "max_restarts": cl.max_restarts, "max_task_retries": 0, "max_concurrency": 4,
                                    "num_cpus": wr.num_cpus, "num_gpus": wr.num_gpus}
            if plan.resources:
                opts["resources"] = plan.resources
            if env:
                opts["runtime_env"] = {"env_vars": env}
            handle = self._create(f"{self.name}/{plan.name}", lambda o=opts, s=spec: actor_cls.options(**o).remote(
                s, model_ref), deadline)
            self.workers[plan.name] = WorkerState(plan, handle, time.time(), last_ok=time.monotonic())
            log.info("worker %s/%s: cameras %s (needs %s)", self.name, plan.name, ", ".join(plan.cameras),
                     {"CPU": wr.num_cpus, **({"GPU": wr.num_gpus} if wr.num_gpus else {}), **plan.resources})

    def _create(self, what: str, make, deadline: float):
        """``make()``: create a named actor; while the name is taken (a previous driver's actor, which Ray is
        stopping because its driver died), wait up to ``takeover_timeout_s``."""
        waited = False
        while True:
            try:
                return make()
            except ValueError as exc:
                if "already" not in str(exc) and "taken" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"cluster: actor name {what} is taken: another driver of {self.name!r} "
                                       f"runs (set cluster.name to run a second deployment)") from None
                if not waited:
                    log.warning("cluster: %s still belongs to a previous driver; waiting for Ray to stop it", what)
                    waited = True
                time.sleep(0.5)

    # -- watching ---------------------------------------------------------------------------
    def run(self, poll=None) -> None:
        """Watch the workers until every camera ended (files) or ``request_stop()``; then stop them all."""
        cl = self.cfg.cluster
        try:
            while not self.stop.is_set():
                self._tick(cl.status_interval_s)
                if self.workers and all(w.done for w in self.workers.values()):
                    break
                if poll is not None:
                    poll()
        finally:
            self._shutdown()

    def _tick(self, interval: float) -> None:
        ray = self.ray
        for w in self.workers.values():
            if w.pending is None:
                w.pending = w.handle.status.remote()
        refs = [w.pending for w in self.workers.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=interval)
        ready_set = set(ready)
        now = time.monotonic()
        for w in self.workers.values():
            if w.pending not in ready_set:
                if now - w.last_ok > self.cfg.cluster.worker_timeout_s:
                    self._down(w, TimeoutError(f"no answer for {now - w.last_ok:.1f} s"))
                continue
            ref, w.pending = w.pending, None
            try:
                st = ray.get(ref)
            except ray.exceptions.RayError as exc:
                self._down(w, exc)
            else:
                self._up(w, st)
        if ready and len(ready) == len(refs):
            time.sleep(max(0.0, interval - (time.monotonic() - now)))
        self._sync_zones()

    def _up(self, w: WorkerState, st: dict) -> None:
        now = time.monotonic()
        if st["incarnation"] != w.incarnation:
            if w.incarnation is not None:
                w.restarts += 1
                took = f" after {now - w.down_since:.1f} s" if w.down_since is not None else ""
                log.warning("worker %s is back%s: pid %d on node %s (restart %d)", w.plan.name, took, st["pid"],
                            st["node_ip"], w.restarts)
                w.events.append((time.time(), "back", st["node_id"]))
            w.incarnation = st["incarnation"]
            w.lost_ended = False
            w.history.append({"incarnation": st["incarnation"], "pid": st["pid"], "node_id": st["node_id"],
                              "node_ip": st["node_ip"], "first_answer_s": time.time()})
        w.history[-1]["last_answer_s"] = time.time()
        w.status, w.last_ok, w.down_since = st, now, None
        w.done = not st["running"]
        if st.get("failure") and self.failure is None:
            self.failure = f"worker {w.plan.name}: {st['failure']}"
        for ev in st.get("recent_alerts", ()):
            key = (ev["id"], ev["seq"])
            if key not in self._seen:
                self._seen.append(key)
                self.recent_alerts.append(ev)

    def _down(self, w: WorkerState, exc: BaseException) -> None:
        """No answer: cameras offline at once; the alerts it had active end once it is lost for good."""
        ray = self.ray
        if w.down_since is None:
            w.down_since = time.monotonic()
            w.events.append((time.time(), "down", type(exc).__name__))
            log.warning("worker %s is down (%s: %s); its cameras are offline", w.plan.name, type(exc).__name__,
                        str(exc).splitlines()[0][:200] if str(exc) else "")
            if self.mqtt is not None:
                for cid in w.plan.cameras:
                    self.mqtt.publish_camera_status(cid, False)
        if isinstance(exc, ray.exceptions.ActorDiedError) and (w.status is None or "creation task" in str(exc)):
            # it never started (a camera file missing on its node, a model it cannot load): Ray does not retry
            w.done = True
            if self.failure is None:
                self.failure = f"worker {w.plan.name} could not start: {_first_error_line(exc)}"
                log.error("%s", self.failure)
        if w.lost_ended or w.status is None:
            return
        node = w.status["node_id"]
        node_dead = not any(n["NodeID"] == node and n["Alive"] for n in ray.nodes())
        gave_up = isinstance(exc, ray.exceptions.ActorDiedError)
        silent = time.monotonic() - w.last_ok > self.cfg.cluster.worker_timeout_s
        if not (node_dead or gave_up or silent):
            return  # its process died on a live node: Ray restarts it there and it ends them itself
        why = "its node is gone" if node_dead else "Ray gave up restarting it" if gave_up else "it stopped answering"
        w.lost_ended = True
        w.events.append((time.time(), "lost", why))
        active = [d for cam in w.status["cameras"].values() for d in cam.get("active_alerts", ())]
        # also those it started since its last status; not those it ended since, nor those a restarted
        # worker that found its outbox ended already (reason restarted)
        mine = claim_ends(self.ledger, "driver", active, worker=w.plan.name)
        for d in mine:
            self.outbox.add(AlertEvent.from_dict(d).ended("worker_lost", time.time()))
        ended = len(mine)
        for cam in w.status["cameras"].values():
            cam["active_alerts"] = []
        self.lost_alerts_ended += ended
        log.warning("worker %s is lost (%s): %d active alert(s) ended (reason worker_lost); Ray starts it again "
                    "where its resources are free", w.plan.name, why, ended)

    def _sync_zones(self) -> None:
        for cid, watcher in self.zone_watch.items():
            if watcher.poll() is not None:
                self.zone_text[cid] = watcher.path.read_text()
                log.info("camera %s: zone file changed; sending it to worker %s", cid, self.camera_worker[cid])
        for w in self.workers.values():
            if w.status is None or w.down_since is not None:
                continue
            for cid, cam in w.status["cameras"].items():
                want = sha256(self.zone_text[cid]) if cid in self.zone_text else None
                push = w.zone_pushes.get(cid)
                if push is not None:
                    ready, _ = self.ray.wait([push[1]], timeout=0)
                    if not ready:
                        continue
                    del w.zone_pushes[cid]
                    try:
                        self.ray.get(push[1])
                    except Exception as exc:  # noqa: BLE001 - logged; the next status decides again
                        log.error("camera %s: zone file not applied on worker %s: %s", cid, w.plan.name, exc)
                        continue
                if want is not None and cam.get("zones_sha") != want and push is None:
                    w.zone_pushes[cid] = (want, w.handle.set_zones.remote(cid, self.zone_text[cid]))

    # -- stopping ---------------------------------------------------------------------------
    def request_stop(self) -> None:
        """First call: workers stop gracefully. Second: the driver stops waiting for them."""
        if self.stop.is_set():
            self._abort.set()
        self.stop.set()

    def _shutdown(self) -> None:
        ray = self.ray
        bound = self.cfg.pipeline.shutdown_timeout_s
        if ray is not None and self.workers:
            refs = {w.plan.name: w.handle.stop.remote(bound) for w in self.workers.values()}
            ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=bound + 5)
            for name, ref in refs.items():
                if ref in ready:
                    try:
                        self.workers[name].summary = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        log.warning("worker %s: no summary (%s)", name, type(exc).__name__)
            for w in self.workers.values():
                ray.kill(w.handle, no_restart=True)
        if ray is not None and self.ledger is not None:
            ray.kill(self.ledger, no_restart=True)
        self._publisher_done.set()
        if self._publisher_thread is not None:
            self._publisher_thread.join(bound + 1)
        for sink in self.sinks:
            sink.close()
        self.outbox.close()
        if ray is not None:
            ray.shutdown()

    # -- reading ----------------------------------------------------------------------------
    def camera_rows(self) -> list[dict]:
        """The placement table: per camera its worker, node, process and figures as last reported."""
        rows = []
        for cam in self.cfg.cameras:
            w = self.workers.get(self.camera_worker[cam.id])
            st = w.status if w is not None else None
            c = (st or {}).get("cameras", {}).get(cam.id, {})
            up = w is not None and w.down_since is None and st is not None
            rows.append({"camera": cam.id, "source": redact_url(cam.source), "worker": self.camera_worker[cam.id],
                         "node": st["node_ip"] if st else None, "node_id": st["node_id"] if st else None,
                         "pid": st["pid"] if st else None, "worker_up": up, "restarts": w.restarts if w else 0,
                         "online": bool(c.get("online")) and up, **{k: v for k, v in c.items() if k != "online"}})
        return rows

    def latest_frame(self, cid: str, timeout_s: float = 2.0) -> tuple | None:
        """The camera's latest analysed frame from its worker (for the console's live view, only while someone
        watches); the same tuple again while the worker has no newer frame. None while the worker is down."""
        w = self.workers.get(self.camera_worker.get(cid, ""))
        if w is None or w.down_since is not None or self.ray is None:
            return None
        prev = self.latest_frames.get(cid)
        try:
            got = self.ray.get(w.handle.latest.remote(cid, prev[0].index if prev else None), timeout=timeout_s)
        except (self.ray.exceptions.RayError, TimeoutError):
            return None
        if got == "same":
            return prev
        if got is not None:
            self.latest_frames[cid] = got
        return got

    def summary(self) -> dict:
        return {
            "cluster": {"name": self.name, "address": self.cfg.cluster.address,
                        "lost_alerts_ended": self.lost_alerts_ended},
            "cameras": {r["camera"]: {k: v for k, v in r.items() if k not in ("camera", "active_alerts")}
                        for r in self.camera_rows()},
            "workers": {w.plan.name: {"cameras": w.plan.cameras, "resources": w.plan.resources,
                                      "restarts": w.restarts, "history": w.history,
                                      "events": [list(e) for e in w.events],
                                      "summary": getattr(w, "summary", None)}
                        for w in self.workers.values()},
            "outbox": self.outbox.stats(),
            "failure": self.failure,
        }

    def health(self) -> tuple[bool, str]:
        if self.failure is not None:
            return False, self.failure
        down = [w.plan.name for w in self.workers.values() if w.down_since is not None]
        return (False, f"workers down: {', '.join(down)}") if down else (True, "ok")


def _first_error_line(exc: BaseException) -> str:
    """The cause of a worker's failed start, without Ray's wrapping (the innermost error's own line)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    causes = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln) and not ln.startswith("ray.")]
    cause = causes[-1] if causes else lines[-1] if lines else type(exc).__name__
    return re.sub(r"^([A-Za-z_]+\.)+", "", cause)[:500]  # maskwatch.zones.errors.ConfigError -> ConfigError


def cluster_status(address: str, name: str | None = None, timeout_s: float = 5.0) -> list[dict]:
    """Every worker of deployment ``name`` (all deployments: None) on the cluster at ``address`` and its
    status, for ``maskwatch cluster status`` (reads the workers; needs no driver)."""
    ray = connect(address, quiet=True)
    try:
        rows = []
        actors = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                        if a["namespace"] == NAMESPACE and (name is None or a["name"].startswith(f"{name}/")))
        handles = {n: ray.get_actor(n, namespace=NAMESPACE) for n in actors}
        refs = {n: h.status.remote() for n, h in handles.items()}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s) if refs else ([], [])
        for n, ref in refs.items():
            st = None
            if ref in ready:
                try:
                    st = ray.get(ref)
                except ray.exceptions.RayError:
                    st = None
            if st is None:
                rows.append({"worker": n, "camera": None, "node": None, "pid": None, "online": False,
                             "fps": None, "analysed": None, "dropped": None, "active_alerts": None,
                             "state": "not answering"})
                continue
            for cid, c in st["cameras"].items():
                rows.append({"worker": n, "camera": cid, "node": st["node_ip"], "pid": st["pid"],
                             "online": c["online"], "fps": c["fps"], "analysed": c["analysed"],
                             "dropped": c["dropped"], "active_alerts": len(c["active_alerts"]),
                             "state": "running" if st["running"] else "ended"})
        return rows
    finally:
        ray.shutdown()
