"""Benchmark: alerts per second through outbox + MQTT, and the latency the outbox adds.

    .venv/bin/python scripts/bench_outbox.py                 # starts its own mosquitto on a free port
    .venv/bin/python scripts/bench_outbox.py --host H --port P --alerts 5000 --rate 100

Three measurements against one broker, a subscriber in this process (loopback):

1. throughput: one thread adds N alerts to the outbox as fast as it can (SQLite WAL,
   synchronous=FULL: one fsync per alert, as analytics does); the publisher thread sends
   them with the MQTT sink (QoS 1, delete on PUBACK). Alerts/s until the subscriber has all
   and the outbox is empty.
2. latency through the outbox: alerts paced at ``--rate``/s; time from ``Outbox.add`` being
   called to the alert arriving at the subscriber.
3. direct latency: the same alerts published straight with paho (QoS 1), no outbox.

The extra latency of the outbox is (2) - (3) at each percentile (target: p99 < 20 ms on
loopback); the time ``Outbox.add`` itself takes (the fsync on the analytics thread) is
reported too. Results are printed and, with ``--json``, written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maskwatch.pipeline.config import MqttConfig  # noqa: E402
from maskwatch.pipeline.mqtt import MqttSink  # noqa: E402
from maskwatch.pipeline.outbox import Outbox  # noqa: E402
from maskwatch.pipeline.sinks import Publisher  # noqa: E402
from maskwatch.zones import AlertEvent, AlertObject  # noqa: E402


def _event(n: int, camera: str) -> AlertEvent:
    now = time.time()
    return AlertEvent(id=f"{camera}:bench:{n}", type="start", camera=camera, rule="bench", rule_type="intrusion",
                      zone="all", severity="warning",
                      objects=[AlertObject(n, "worker", 0.9, [10.0, 20.0, 110.0, 220.0], 0.42)],
                      frame_index=n, pts_s=n / 15, wall_time=now, started_at=now, started_pts_s=n / 15)


class _Mosquitto:
    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.access(exe, os.X_OK):
            raise SystemExit("bench_outbox: mosquitto is not installed (scripts/setup.sh installs it), "
                             "or pass --host/--port of a broker")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = workdir / "mosquitto.conf"
        import getpass
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
                        "max_queued_messages 1000000\nlog_dest none\n")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise SystemExit("bench_outbox: mosquitto did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class _Receiver:
    """Subscriber: arrival time (perf_counter) of each alert, keyed by (camera, frame_index)."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.arrived: dict[tuple[str, int], float] = {}
        self._cond = threading.Condition()
        ready = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}", protocol=mqtt.MQTTv5)
        c.on_connect = lambda cl, *a: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *a: ready.set()
        c.on_message = self._on_message
        c.connect(host, port)
        c.loop_start()
        if not ready.wait(10):
            raise SystemExit("bench_outbox: subscriber could not subscribe")
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        t = time.perf_counter()
        d = json.loads(msg.payload)
        with self._cond:
            self.arrived.setdefault((d["camera"], d["frame_index"]), t)
            self._cond.notify_all()

    def wait_count(self, camera: str, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for k in self.arrived if k[0] == camera) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _pcts(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p90": round(float(np.percentile(a, 90)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "max": round(float(a.max()), 3), "n": int(a.size)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_outbox", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", help="broker host (default: start mosquitto on a free loopback port)")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--alerts", type=int, default=3000, help="alerts for the throughput run (default 3000)")
    p.add_argument("--latency-alerts", type=int, default=500, help="alerts for each latency run (default 500)")
    p.add_argument("--rate", type=float, default=50.0, help="alerts/s in the latency runs (default 50)")
    p.add_argument("--qos", type=int, choices=[0, 1, 2], default=1)
    p.add_argument("--dir", type=Path, default=ROOT / "var" / "bench-outbox",
                   help="folder for the outbox file (default var/bench-outbox: the real disk, fsync and all)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)

    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=args.dir))
    broker = None if args.host else _Mosquitto(work)
    host, port = (args.host, args.port) if args.host else ("127.0.0.1", broker.port)
    prefix = f"bench{os.getpid()}"
    rx = _Receiver(host, port, f"{prefix}/+/alerts")
    results: dict = {"broker": f"{host}:{port}", "qos": args.qos, "outbox_dir": str(args.dir)}
    try:
        outbox = Outbox(work / "outbox.sqlite", max_rows=1_000_000)
        sink = MqttSink(MqttConfig(host=host, port=port, topic_prefix=prefix, qos=args.qos, max_inflight=256))
        pub = Publisher(outbox, [sink])
        sink.start(outbox.notify)
        if not sink.wait_connected(10):
            raise SystemExit(f"bench_outbox: cannot connect to {host}:{port}")
        done, abort = threading.Event(), threading.Event()
        th = threading.Thread(target=pub.run, args=(done.is_set, abort, 30.0), name="publisher", daemon=True)
        th.start()

        # 1. throughput
        add_ms: list[float] = []
        t0 = time.perf_counter()
        for i in range(args.alerts):
            a = time.perf_counter()
            outbox.add(_event(i, "tput"))
            add_ms.append((time.perf_counter() - a) * 1e3)
        t_added = time.perf_counter()
        ok = rx.wait_count("tput", args.alerts, 120)
        while outbox.count() and time.perf_counter() - t0 < 180:
            time.sleep(0.001)
        t_done = time.perf_counter()
        results["throughput"] = {
            "alerts": args.alerts, "all_arrived": ok, "outbox_empty": outbox.count() == 0,
            "alerts_per_s": round(args.alerts / (t_done - t0), 1),
            "add_only_alerts_per_s": round(args.alerts / (t_added - t0), 1),
            "add_ms": _pcts(add_ms),
        }

        # 2. latency through the outbox, paced
        period = 1.0 / args.rate
        sent_at: dict[int, float] = {}
        add_ms = []
        nxt = time.perf_counter()
        for i in range(args.latency_alerts):
            nxt += period
            time.sleep(max(0.0, nxt - time.perf_counter()))
            ev = _event(i, "outbox")
            sent_at[i] = a = time.perf_counter()
            outbox.add(ev)
            add_ms.append((time.perf_counter() - a) * 1e3)
        rx.wait_count("outbox", args.latency_alerts, 60)
        via = [(rx.arrived[("outbox", i)] - t) * 1e3 for i, t in sent_at.items() if ("outbox", i) in rx.arrived]
        done.set()
        th.join(30)
        sink.close()
        outbox.close()

        # 3. direct paho publish, same pacing
        direct = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-direct-{os.getpid()}",
                             protocol=mqtt.MQTTv5)
        direct.connect(host, port)
        direct.loop_start()
        sent_at = {}
        nxt = time.perf_counter()
        for i in range(args.latency_alerts):
            nxt += period
            time.sleep(max(0.0, nxt - time.perf_counter()))
            payload = _event(i, "direct").to_json()
            sent_at[i] = time.perf_counter()
            direct.publish(f"{prefix}/direct/alerts", payload, qos=args.qos)
        rx.wait_count("direct", args.latency_alerts, 60)
        plain = [(rx.arrived[("direct", i)] - t) * 1e3 for i, t in sent_at.items() if ("direct", i) in rx.arrived]
        direct.disconnect()
        direct.loop_stop()

        lat_via, lat_direct = _pcts(via), _pcts(plain)
        results["latency_ms"] = {
            "rate_per_s": args.rate, "through_outbox": lat_via, "direct": lat_direct, "outbox_add": _pcts(add_ms),
            "extra_from_outbox": {k: round(lat_via[k] - lat_direct[k], 3) for k in ("p50", "p90", "p99")},
        }
    finally:
        rx.close()
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    t, lat = results["throughput"], results["latency_ms"]
    print(f"throughput: {t['alerts_per_s']} alerts/s end to end through outbox + MQTT QoS {args.qos} "
          f"({t['alerts']} alerts, all arrived: {t['all_arrived']}, outbox empty: {t['outbox_empty']}); "
          f"Outbox.add alone {t['add_only_alerts_per_s']}/s, add p50 {t['add_ms']['p50']} ms, p99 {t['add_ms']['p99']} ms")
    print(f"latency at {args.rate:g} alerts/s (ms): through outbox p50 {lat['through_outbox']['p50']} "
          f"p99 {lat['through_outbox']['p99']} | direct p50 {lat['direct']['p50']} p99 {lat['direct']['p99']} | "
          f"extra from the outbox p50 {lat['extra_from_outbox']['p50']} p99 {lat['extra_from_outbox']['p99']} "
          f"(target p99 < 20) | Outbox.add p99 {lat['outbox_add']['p99']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if t["all_arrived"] and t["outbox_empty"] and lat["through_outbox"]["n"] == args.latency_alerts else 1


if __name__ == "__main__":
    sys.exit(main())
