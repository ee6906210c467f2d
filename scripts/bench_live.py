"""Live-camera benchmark: N real RTSP cameras (GStreamer test servers on loopback) through the pipeline.

    .venv/bin/python scripts/bench_live.py --cameras 4 --fps 15 --seconds 600 [--model M] [--out FILE.json]

Reports per camera: analysed fps, drop rate (frames dropped by the drop-oldest ring / decoded),
latency from frame arrival to inference done and to the alert being durable in the outbox
(p50 / p99), the process RSS at start and end, and each minute's RSS and frame-to-analysed latency
(p50 / p99, all cameras) to show growth between minute 1 and the last. Needs the Debian packages of scripts/setup.sh
(the servers run under /usr/bin/python3 with python3-gi). Not a test: no pass/fail.
"""

from __future__ import annotations

import argparse
import json
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maskwatch.pipeline.factory import build_segmenter  # noqa: E402
from maskwatch.pipeline.config import inference_plan, load_config  # noqa: E402
from maskwatch.pipeline.stages import Pipeline  # noqa: E402
from tests.conftest import write_config  # noqa: E402
from tests.pipeline.conftest import free_port  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def start_server(port: int, fps: int, w: int, h: int, pattern: str) -> subprocess.Popen:
    proc = subprocess.Popen(["/usr/bin/python3", str(ROOT / "tests/pipeline/rtsp_server.py"), "--port", str(port),
                             "--fps", str(fps), "--width", str(w), "--height", str(h), "--pattern", pattern],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    if not ready or not proc.stdout.readline().startswith(b"READY"):
        proc.kill()
        raise SystemExit(f"RTSP server on port {port} did not start")
    return proc


def pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)) * 1000, 1) if xs else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--size", default="1280x720", help="camera frame size WxH")
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--model", type=Path, default=ROOT / "models" / "maskwatch-demo-seg.onnx",
                   help="ONNX model (default: the bundled demo model)")
    p.add_argument("--conf", type=float, default=0.05, help="low, so that the whole-frame zone alerts")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--backend", default="auto", help="model.backend (default auto: OpenVINO on the CPU)")
    p.add_argument("--precision", default="auto", help="model.precision (default auto)")
    p.add_argument("--workers", type=int, default=0, help="pipeline.inference_workers (default 0: auto)")
    p.add_argument("--threads", type=int, default=0, help="model.threads per inference call (default 0: auto)")
    p.add_argument("--batch-timeout-ms", type=float, default=0)
    p.add_argument("--out", type=Path, help="also write the report here (JSON)")
    args = p.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    model = args.model
    patterns = ["ball", "smpte", "snow", "pinwheel", "spokes", "gradient", "circular", "zone-plate"]
    servers: list[subprocess.Popen] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    try:
        ports = [free_port() for _ in range(args.cameras)]
        for i, port in enumerate(ports):
            servers.append(start_server(port, args.fps, w, h, patterns[i % len(patterns)]))
        from maskwatch.engines import load_engine

        eng = load_engine(model)
        names = list(eng.meta.names.values())
        eng.close()
        cams = [{"id": f"cam{i}", "source": f"rtsp://127.0.0.1:{port}/cam", "zones": "zones.yaml"}
                for i, port in enumerate(ports)]
        pipeline_cfg: dict = {"batch_timeout_ms": args.batch_timeout_ms, "inference_workers": args.workers}
        if args.batch:
            pipeline_cfg["batch"] = args.batch
        cfg = load_config(write_config(tmp, model, "unused", names, conf=args.conf, cameras=cams,
                                       extra={"pipeline": pipeline_cfg, "web": {"enabled": False}}))
        cfg.model.backend, cfg.model.precision, cfg.model.threads = args.backend, args.precision, args.threads
        workers, threads = inference_plan(cfg)
        seg = build_segmenter(cfg.model, None, cfg.tracker, threads=threads)
        # the engine alone on one frame of the cameras' size, one call at a time: the yardstick for latency
        from maskwatch.engines import letterbox

        probe_img, probe_box = letterbox(np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8), seg.input_hw)
        model_ms = []
        for _ in range(30):
            t = time.perf_counter()
            seg([probe_img], [probe_box])
            model_ms.append((time.perf_counter() - t) * 1000)
        model_ms = model_ms[5:]
        pipe = Pipeline(cfg, seg)
        infer_lag: dict[str, list[float]] = {c.id: [] for c in pipe.cameras}
        alert_lag: dict[str, list[float]] = {c.id: [] for c in pipe.cameras}
        real_put, real_add = pipe._put, pipe.outbox.add

        def put(ring, item):
            if ring.name.endswith("/detections"):
                infer_lag[item[0].camera_id].append(time.time() - item[0].wall_s)
            return real_put(ring, item)

        def add(ev):
            alert_lag[ev.camera].append(time.time() - ev.wall_time)
            return real_add(ev)

        pipe._put, pipe.outbox.add = put, add
        rss0 = rss_mb()
        pipe.start()
        t0 = time.monotonic()
        warm = {c.id: (0, 0) for c in pipe.cameras}
        t_warm = t0
        minutes: list[dict] = []  # per minute: RSS and frame-to-analysed latency of every camera together
        lat_seen = {c.id: 0 for c in pipe.cameras}
        next_mark = t0 + 60
        while time.monotonic() - t0 < args.seconds and pipe.failure is None:
            time.sleep(1)
            if time.monotonic() - t0 < 10:  # count from 10 s on: connection and model warm-up excluded
                warm = {c.id: (c.stats.analysed, c.frames.dropped) for c in pipe.cameras}
                t_warm = time.monotonic()
            if time.monotonic() >= next_mark:
                next_mark += 60
                lat = []
                for c in pipe.cameras:
                    xs = list(c.stats.latency_s)  # a bounded deque: take what arrived since the last mark
                    new = c.stats.analysed - lat_seen[c.id]
                    lat += xs[-new:] if 0 < new <= len(xs) else xs
                    lat_seen[c.id] = c.stats.analysed
                minutes.append({"minute": len(minutes) + 1, "rss_mb": round(rss_mb(), 1),
                                "latency_ms_p50": pct(lat, 50), "latency_ms_p99": pct(lat, 99),
                                "analysed": sum(c.stats.analysed for c in pipe.cameras)})
                print(json.dumps(minutes[-1]), flush=True)
        elapsed = time.monotonic() - t_warm
        rss1 = rss_mb()
        pipe.request_stop()
        pipe.wait()
        report = {"cameras": args.cameras, "fps": args.fps, "size": args.size, "seconds": round(elapsed, 1),
                  "batch": pipe.batch, "model": model.name, "backend": seg.engine.meta.backend,
                  "precision": seg.engine.precision, "inference_workers": workers, "threads_per_call": threads,
                  "model_only_ms_median": round(float(np.median(model_ms)), 1), "rss_mb_start": round(rss0), "rss_mb_end": round(rss1),
                  "failure": str(pipe.failure) if pipe.failure else None, "minutes": minutes, "per_camera": {}}
        if len(minutes) >= 2:
            first, last = minutes[0], minutes[-1]
            report["rss_growth_first_to_last_minute"] = round(last["rss_mb"] / first["rss_mb"] - 1, 4)
            if first["latency_ms_p99"] and last["latency_ms_p99"]:
                report["latency_p99_first_to_last_minute_ms"] = [first["latency_ms_p99"], last["latency_ms_p99"]]
        for c in pipe.cameras:
            a0, d0 = warm[c.id]
            analysed, dropped = c.stats.analysed - a0, c.frames.dropped - d0
            report["per_camera"][c.id] = {
                "analysed_fps": round(analysed / elapsed, 2),
                "drop_rate": round(dropped / max(1, dropped + analysed), 3),
                "infer_latency_ms_p50": pct(infer_lag[c.id], 50), "infer_latency_ms_p99": pct(infer_lag[c.id], 99),
                "alert_latency_ms_p50": pct(alert_lag[c.id], 50), "alert_latency_ms_p99": pct(alert_lag[c.id], 99),
                "alerts": len(alert_lag[c.id]), "connects": c.live.stats.connects if c.live else None,
                "decision_latency_ms_p50": pct(list(c.stats.latency_s), 50),
                "decision_latency_ms_p99": pct(list(c.stats.latency_s), 99),
            }
            model = report["model_only_ms_median"]
            p99 = report["per_camera"][c.id]["alert_latency_ms_p99"]
            report["per_camera"][c.id]["alert_p99_over_model_only"] = round(p99 / model, 2) if p99 and model else None
        text = json.dumps(report, indent=2)
        print(text)
        if args.out:
            args.out.write_text(text)
        return 0 if pipe.failure is None else 1
    finally:
        for s in servers:
            s.terminate()
        for s in servers:
            try:
                s.wait(5)
            except subprocess.TimeoutExpired:
                s.kill()


if __name__ == "__main__":
    sys.exit(main())
