"""The ``maskwatch`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path

from maskwatch import __version__
from maskwatch.zones import ConfigError, load_zone_file

log = logging.getLogger("maskwatch")
EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s [%(threadName)s] %(message)s")


# -- commands -----------------------------------------------------------------------------
def cmd_check(args) -> int:
    from maskwatch.pipeline.config import check_files, load_config
    from maskwatch.pipeline.factory import build_segmenter, check_rule_classes
    from maskwatch.pipeline.redact import redact_url

    cfg = load_config(args.config)
    check_files(cfg, args.config, sources=cfg.cluster is None)
    zone_files = {c.id: load_zone_file(c.zones) for c in cfg.cameras if c.zones}
    seg = build_segmenter(cfg.model, args.config)
    check_rule_classes(cfg, seg.meta.names, args.config)
    h, w = seg.input_hw
    print(f"config ok: {args.config}")
    eng = seg.engine
    print(f"model: {cfg.model.path.name}, input {w}x{h}, classes: {', '.join(seg.meta.names.values())}")
    print(f"inference: {eng.meta.backend}, {eng.precision} on {cfg.model.device} ({getattr(eng, 'choice', '')})")
    for cam in cfg.cameras:
        zf = zone_files.get(cam.id)
        zones = f"{len(zf.zones)} zones, {len(zf.rules)} rules" if zf else "no zones"
        print(f"camera {cam.id}: {redact_url(cam.source)} ({zones})")
    if cfg.cluster is not None:
        from maskwatch.cluster.driver import plan_workers

        plans = plan_workers(cfg)
        print(f"cluster: {cfg.cluster.address}, {len(plans)} worker(s) named {cfg.cluster.name}/w<N>: "
              + "; ".join(f"{p.name} {', '.join(p.cameras)}" + (f" (needs {p.resources})" if p.resources else "")
                          for p in plans))
    web = cfg.web
    if web.enabled:
        from maskwatch.web.server import console_token

        guard = "token required" if console_token(web, args.config) else "loopback, no login"
        print(f"web console: {'https' if web.tls_cert else 'http'}://{web.listen}/ ({guard})")
    else:
        print("web console: off")
    return EXIT_OK


def cmd_run(args) -> int:
    from maskwatch.pipeline.config import check_files, inference_plan, load_config
    from maskwatch.pipeline.factory import build_segmenter, check_rule_classes
    from maskwatch.pipeline.stages import Pipeline

    cfg = load_config(args.config)
    explicit_web = _apply_web_args(cfg, args)
    if args.source:
        if len(cfg.cameras) != 1:
            raise ConfigError(args.config, "cameras", "--source needs a config with exactly one camera")
        cfg.cameras[0].source = args.source if "://" in args.source else str(Path(args.source).resolve())
    if args.jsonl:
        cfg.alerts.jsonl = Path(args.jsonl)
    if args.ray:
        from maskwatch.pipeline.config import ClusterConfig, check_ray_address

        try:
            check_ray_address(args.ray)
        except ValueError as exc:
            raise ConfigError(None, "--ray", str(exc)) from None
        cfg.cluster = cfg.cluster or ClusterConfig()
        cfg.cluster.address = args.ray
    # a cluster's file cameras are checked on their worker's node (here too for a private local cluster)
    check_files(cfg, args.config, sources=cfg.cluster is None or cfg.cluster.address == "local")
    for cam in cfg.cameras:
        if cam.zones:
            load_zone_file(cam.zones)
    if cfg.cluster is not None:
        return _run_cluster(cfg, args, explicit_web)
    seg = build_segmenter(cfg.model, args.config, cfg.tracker, threads=inference_plan(cfg)[1])
    check_rule_classes(cfg, seg.meta.names, args.config)

    pipe = Pipeline(cfg, seg, max_frames=args.max_frames, save_video=Path(args.save_video) if args.save_video else None,
                    loop=args.loop)
    console = None
    if cfg.web.enabled:
        from maskwatch.web.backend import PipelineBackend
        from maskwatch.web.server import start_console

        console = start_console(PipelineBackend(pipe), cfg.web, explicit=explicit_web, file=args.config)
        if console is not None:
            print(f"maskwatch: web console at {console.url}", file=sys.stderr, flush=True)

    def on_signal(signum, _frame):
        log.info("%s: stopping (again to abort)", signal.Signals(signum).name)
        pipe.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    show = sys.stderr.isatty() and not args.no_progress
    t0 = time.monotonic()
    last_draw = [0.0]

    def progress() -> None:
        if not show or time.monotonic() - last_draw[0] < 0.5:
            return
        last_draw[0] = time.monotonic()
        parts = []
        for c in pipe.cameras:
            total = f"/{c.stats.total_frames}" if c.stats.total_frames else ""
            parts.append(f"{c.id} {c.stats.analysed}{total}")
        fps = sum(c.stats.analysed for c in pipe.cameras) / max(1e-6, time.monotonic() - t0)
        sys.stderr.write(f"\r{' | '.join(parts)} frames, {fps:.1f} fps, {pipe.outbox.added} alerts ")
        sys.stderr.flush()

    pipe.start()
    try:
        pipe.wait(progress)
    finally:
        if console is not None:
            console.stop()
    if show:
        sys.stderr.write("\n")
    summary = _write_summary(args, pipe.summary(), t0)
    for cid, s in summary["cameras"].items():
        log.info("camera %s: %d decoded, %d inferred, %d analysed, %d alerts", cid, s["decoded"], s["inferred"],
                 s["analysed"], s["alerts"])
    ob = summary["outbox"]
    log.log(logging.WARNING if ob["pending"] else logging.INFO,
            "alerts: %d stored this run, %d delivered, %d remain in the outbox %s%s", ob["added"], ob["delivered"],
            ob["pending"], cfg.alerts.outbox, " (sent at the next start)" if ob["pending"] else "")
    if pipe.failure is not None:
        print(f"maskwatch: error: {pipe.failure}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _write_summary(args, summary: dict, t0: float) -> dict:
    """The run's summary with its duration, written to --summary when given."""
    summary["seconds"] = round(time.monotonic() - t0, 3)
    if args.summary:
        Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary).write_text(json.dumps(summary, indent=2))
    return summary


def _run_cluster(cfg, args, explicit_web: bool) -> int:
    """The driver of a Ray cluster run: the workers run the pipelines, this process places and watches them."""
    from maskwatch.cluster.driver import ClusterDriver
    from maskwatch.pipeline.factory import check_rule_classes

    if cfg.model.names:
        names = dict(enumerate(cfg.model.names))
    else:
        names = _model_names(cfg.model.path)
    if names:
        check_rule_classes(cfg, names, args.config)
    driver = ClusterDriver(cfg, args.config, loop=args.loop, max_frames=args.max_frames, log_level=args.log_level.upper())
    driver.names = names

    def on_signal(signum, _frame):
        log.info("%s: stopping the cluster run (again to abort)", signal.Signals(signum).name)
        driver.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    console = None
    try:
        driver.start()
        if cfg.web.enabled:
            from maskwatch.web.backend import ClusterBackend
            from maskwatch.web.server import start_console

            console = start_console(ClusterBackend(driver), cfg.web, explicit=explicit_web, file=args.config)
            if console is not None:
                print(f"maskwatch: web console at {console.url}", file=sys.stderr, flush=True)
        show = sys.stderr.isatty() and not args.no_progress
        last_draw = [0.0]

        def progress() -> None:
            if not show or time.monotonic() - last_draw[0] < 0.5:
                return
            last_draw[0] = time.monotonic()
            rows = driver.camera_rows()
            sys.stderr.write("\r" + " | ".join(f"{r['camera']}@{r['worker']} {r.get('analysed', 0)}" for r in rows)
                             + f" frames, {sum(r.get('fps') or 0 for r in rows):.1f} fps ")
            sys.stderr.flush()

        driver.run(progress)
    finally:
        if console is not None:
            console.stop()
    summary = _write_summary(args, driver.summary(), t0)
    for cid, s in summary["cameras"].items():
        log.info("camera %s: worker %s on %s, %s analysed, %s alerts, %d restart(s)", cid, s["worker"], s["node"],
                 s.get("analysed"), s.get("alerts"), s["restarts"])
    if driver.failure is not None:
        print(f"maskwatch: error: {driver.failure}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_feedback(args) -> int:
    """Alerts marked false positive (and, with --confirmed, acknowledged) -> an Ultralytics YOLO-seg dataset."""
    from maskwatch.feedback import export
    from maskwatch.pipeline.config import load_config

    cfg = load_config(args.config)
    if not cfg.alerts.outbox.is_file():
        raise ConfigError(args.config, "alerts.outbox", f"no outbox at {cfg.alerts.outbox}: nothing was marked yet")
    got = export(cfg, Path(args.out), confirmed=args.confirmed)
    print(f"wrote {args.out}: {got['images']} images, {got['labels']} labels ({got['removed_objects']} objects "
          f"marked wrong left out); {got['missing_frames']} marked alert(s) without a kept frame "
          f"(feedback.keep_frames was off, or the frame was deleted)")
    return EXIT_OK if got["images"] else EXIT_FAILURE


def cmd_cluster(args) -> int:
    from maskwatch.cluster.driver import cluster_status
    from maskwatch.pipeline.config import check_ray_address

    try:
        check_ray_address(args.address)
    except ValueError as exc:
        raise ConfigError(None, "ADDRESS", str(exc)) from None
    rows = cluster_status(args.address, args.name, timeout_s=args.timeout)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print(f"no maskwatch workers on {args.address}" + (f" named {args.name}/*" if args.name else ""))
        return EXIT_FAILURE
    cols = ["worker", "camera", "node", "pid", "state", "online", "fps", "analysed", "dropped", "active_alerts"]
    table = [[("" if r[k] is None else str(r[k])) for k in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)))
    return EXIT_OK


def _apply_web_args(cfg, args) -> bool:
    """--web / --no-web over the config's web section; True when the address was asked for explicitly."""
    from maskwatch.pipeline.config import split_listen
    from maskwatch.web.server import console_token

    if getattr(args, "no_web", False):
        cfg.web.enabled = False
        return False
    if getattr(args, "web", None):
        try:
            split_listen(args.web)
        except ValueError as exc:
            raise ConfigError(None, "--web", str(exc)) from None
        cfg.web.listen = args.web
        cfg.web.enabled = True
    if cfg.web.enabled:
        console_token(cfg.web, args.config)  # a missing token is an error before anything starts
    return bool(getattr(args, "web", None)) or "listen" in cfg.web.model_fields_set


def cmd_edit(args) -> int:
    """Cameras and the zone editor only: no model, no alerts (set up a site before anything else exists)."""
    from maskwatch.pipeline.config import is_url, load_config
    from maskwatch.web.backend import PreviewBackend
    from maskwatch.web.server import start_console

    cfg = load_config(args.config)
    args.no_web = False
    cfg.web.enabled = True  # the console is what this command is for
    _apply_web_args(cfg, args)
    for i, cam in enumerate(cfg.cameras):
        if not is_url(cam.source) and not Path(cam.source).is_file():
            raise ConfigError(args.config, f"cameras[{i}].source", f"video file not found: {cam.source}")
    names = dict(enumerate(cfg.model.names)) if cfg.model.names else _model_names(cfg.model.path)
    backend = PreviewBackend(cfg, names)
    console = start_console(backend, cfg.web, explicit=True, file=args.config)  # a taken port is an error
    stop = {"now": False}

    def on_signal(signum, _frame):
        log.info("%s: stopping", signal.Signals(signum).name)
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    backend.start()
    print(f"maskwatch: zone editor at {console.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        console.stop()
        backend.close()
    return EXIT_OK


def _model_names(path: Path) -> dict[int, str]:
    """Class names from the model file's metadata when it exists (the editor offers them); else none."""
    if not path.is_file():
        return {}
    try:
        from maskwatch.engines import load_engine

        return dict(load_engine(path, threads=1).meta.names)
    except Exception as exc:  # the editor works without class names
        log.warning("model %s: class names unavailable (%s); rules accept any class name", path, exc)
        return {}


def cmd_predict(args) -> int:
    from maskwatch.pipeline.predict import predict

    return predict(args)


def cmd_bench(args) -> int:
    if args.rest[:1] == ["engine"]:
        from maskwatch.bench.engine import main as bench_engine

        return bench_engine(args.rest[1:])
    from maskwatch.bench.system import main as bench_system

    return bench_system(args.rest)


def cmd_eval(args) -> int:
    if args.what == "masks":
        from maskwatch.evaluation.masks import main as eval_masks

        return eval_masks(args.rest)
    if args.what == "tracking":
        from maskwatch.evaluation.tracking import main as eval_tracking

        return eval_tracking(args.rest)
    if args.what == "alerts":
        from maskwatch.evaluation.alerts import main as eval_alerts

        return eval_alerts(args.rest)
    raise SystemExit(f"unknown eval {args.what!r}")


def cmd_replay(args) -> int:
    """A camera's zone rules on a recorded file (and a what-if variant): what would have fired, as an HTML report."""
    from maskwatch.replay.command import main as replay_main

    return replay_main(args)


# `engine quantize --method`: the quantizer (and, for ONNX Runtime's QDQ, how activation ranges are calibrated).
# minmax / percentile / entropy are the older spellings of qdq / qdq-percentile / qdq-entropy.
QUANTIZE_METHODS = {"nncf": ("nncf", None), "qdq": ("qdq", "minmax"), "qdq-percentile": ("qdq", "percentile"),
                    "qdq-entropy": ("qdq", "entropy"), "minmax": ("qdq", "minmax"),
                    "percentile": ("qdq", "percentile"), "entropy": ("qdq", "entropy")}


def cmd_quantize(args) -> int:
    """INT8 copy of an ONNX model, calibrated on the user's footage (or, for the demo, generated clips): an NNCF
    OpenVINO model folder (the default where nncf is installed) or an ONNX Runtime QDQ ONNX file."""
    import itertools
    import tempfile

    from maskwatch.engines import load_engine
    from maskwatch.engines.quantize import CalibrationError, quantize_onnx
    from maskwatch.engines.quantize_nncf import default_out, nncf_available, quantize_openvino
    from maskwatch.pipeline.calibration import calibration_frames

    from maskwatch.pipeline.config import is_url

    model = Path(args.model)
    if not model.is_file() or model.suffix.lower() != ".onnx":
        raise ConfigError(None, "MODEL", f"expected an .onnx model file, got {args.model}")
    if args.method == "auto":  # NNCF measured better (README, CPU inference); an .onnx --out asks for QDQ
        if args.out and Path(args.out).suffix.lower() == ".onnx":
            method, calibrate, why = *QUANTIZE_METHODS["qdq"], "auto: --out is an .onnx file"
        elif nncf_available():
            method, calibrate, why = *QUANTIZE_METHODS["nncf"], "auto: nncf is installed"
        else:
            method, calibrate, why = *QUANTIZE_METHODS["qdq"], "auto: nncf is not installed"
    elif args.method in QUANTIZE_METHODS:
        method, calibrate = QUANTIZE_METHODS[args.method]
        why = "--method"
    else:
        raise ConfigError(None, "--method", f"{args.method!r}: expected auto, nncf, qdq, qdq-percentile or "
                                            "qdq-entropy")
    if method == "nncf" and not nncf_available():
        raise ConfigError(None, "--method", "nncf needs the nncf package (pip install 'maskwatch[quantize]'), or "
                                            "use --method qdq")
    if args.calib != "synth" and not is_url(args.calib) and not Path(args.calib).exists():
        raise ConfigError(None, "--calib", f"{args.calib}: not a video file, an image folder or a camera URL")
    if args.frames < 1:
        raise ConfigError(None, "--frames", f"must be >= 1, got {args.frames}")
    if method == "nncf":
        out = Path(args.out) if args.out else default_out(model)
        if not out.name.endswith("_openvino_model"):
            raise ConfigError(None, "--out", f"{out}: --method nncf writes an OpenVINO model folder; name it "
                                             f"*_openvino_model (default {default_out(model).name})")
    else:
        out = Path(args.out) if args.out else model.with_name(model.stem + "-int8.onnx")
        if out.suffix.lower() != ".onnx":
            raise ConfigError(None, "--out", f"{out}: --method qdq writes an .onnx file")
    input_hw = load_engine(model, "onnxruntime", threads=1).meta.input_hw
    with tempfile.TemporaryDirectory(prefix="maskwatch-calib-") as tmp:
        try:
            if args.calib == "synth":  # the demo: generated site and pitch clips, seeds no evaluation uses
                from maskwatch.scenes.clip import write_clip

                sources = []
                for k, scene in enumerate(("site", "pitch", "site", "pitch")):
                    write_clip(scene, 9_000_000 + k, 10.0, Path(tmp) / f"{scene}{k}", events=False)
                    sources.append(Path(tmp) / f"{scene}{k}" / "video.mp4")
                per = -(-args.frames // len(sources))
                frames = itertools.chain.from_iterable(calibration_frames(s, input_hw, per) for s in sources)
                frames = itertools.islice(frames, args.frames)
            else:
                frames = calibration_frames(args.calib, input_hw, args.frames)
            if method == "nncf":
                summary = quantize_openvino(model, frames, out, keep_float=args.keep_float)
                what = "NNCF int8, OpenVINO model folder"
            else:
                summary = quantize_onnx(model, frames, out, keep_float=args.keep_float, method=calibrate)
                what = f"ONNX Runtime QDQ int8, {calibrate} ranges"
        except CalibrationError as exc:
            raise ConfigError(None, "--calib", str(exc)) from None
        except (ValueError, ImportError) as exc:  # the model cannot be quantized, or the [quantize] extra is missing
            raise ConfigError(None, "MODEL", str(exc)) from None
    print(f"wrote {out} (method {method} [{why}]: {what}; {summary['frames']} calibration frames, "
          f"{summary['kept_float']} {'operations' if method == 'nncf' else 'nodes'} kept in float, "
          f"{summary['bytes_in'] / 2**20:.1f} -> {summary['bytes_out'] / 2**20:.1f} MiB)")
    return EXIT_OK


def cmd_engine(args) -> int:
    from maskwatch.engines.tensorrt import build_engine

    try:
        out = build_engine(args.model, args.out, fp16=args.fp16, batch=args.batch, dynamic=args.dynamic or None,
                           workspace_gib=args.workspace, verbose=args.log_level == "debug")
    except ValueError as exc:  # missing TensorRT, a bad option or model: one line, exit 2
        raise ConfigError(None, "", f"engine build: {exc}") from None
    except RuntimeError as exc:  # TensorRT failed to build
        print(f"maskwatch: error: engine build: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"wrote {out}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="maskwatch",
        description="Segment every object in camera streams, track it by its mask, alert when zone rules fire.",
    )
    p.add_argument("--version", action="version", version=f"maskwatch {__version__}")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    r = sub.add_parser("run", help="run the pipeline on the cameras of a config",
                       description="Run until file sources end or SIGINT/SIGTERM. Exit 0 on a clean end, "
                                   "1 when a stage fails, 2 on a config error.")
    r.add_argument("config", help="config YAML")
    r.add_argument("--max-frames", type=int, metavar="N", help="stop each camera after N frames")
    r.add_argument("--source", metavar="S", help="override the source of a one-camera config")
    r.add_argument("--jsonl", metavar="PATH", help="also write alerts to this JSON Lines file (overrides alerts.jsonl)")
    r.add_argument("--save-video", metavar="PATH", help="write an annotated H.264 video (per camera when several)")
    r.add_argument("--summary", metavar="PATH", help="write per-camera frame and alert counts as JSON at the end")
    r.add_argument("--no-progress", action="store_true", help="no progress line on a terminal")
    r.add_argument("--loop", action="store_true",
                   help="play file sources again and again, stream time running on (until Ctrl-C)")
    r.add_argument("--web", metavar="HOST:PORT", help="serve the web console here (overrides web.listen; "
                                                      "not loopback: needs web.token_env)")
    r.add_argument("--no-web", action="store_true", help="no web console")
    r.add_argument("--ray", metavar="ADDRESS", help="run the cameras on a Ray cluster (auto, local, ray://HOST:PORT "
                                                    "or the head's HOST:PORT; overrides cluster.address)")
    r.set_defaults(func=cmd_run)

    fb = sub.add_parser("feedback", help="`feedback export CONFIG --out DIR`: false positives as training data")
    fb_sub = fb.add_subparsers(dest="feedback_command", metavar="ACTION", required=True)
    fe = fb_sub.add_parser("export", help="alerts marked false positive -> an Ultralytics YOLO-seg dataset",
                           description="The frames kept at alert time (feedback.keep_frames) of alerts marked "
                                       "false positive, labelled with the model's own masks minus the objects "
                                       "the alert was about. Exit 1 when there is nothing to export.")
    fe.add_argument("config", help="config YAML (its outbox holds the marks, feedback.dir the frames)")
    fe.add_argument("--out", required=True, metavar="DIR", help="dataset folder (images/, labels/, data.yaml)")
    fe.add_argument("--confirmed", action="store_true", help="also acknowledged alerts, with every object kept")
    fe.set_defaults(func=cmd_feedback)

    cl = sub.add_parser("cluster", help="`cluster status ADDRESS`: where each camera runs on a Ray cluster")
    cl_sub = cl.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    cs = cl_sub.add_parser("status", help="the placement table: camera, worker, node, pid, fps, drops",
                           description="Asks every maskwatch worker on the cluster for its status (no driver "
                                       "needed). Exit 1 when there is none.")
    cs.add_argument("address", help="auto, ray://HOST:PORT or the head's HOST:PORT")
    cs.add_argument("--name", help="only this deployment (cluster.name)")
    cs.add_argument("--json", action="store_true", help="rows as JSON")
    cs.add_argument("--timeout", type=float, default=5.0, metavar="S", help="wait this long for answers")
    cs.set_defaults(func=cmd_cluster)

    ed = sub.add_parser("edit", help="cameras and the zone editor only (no model, no alerts): set up zones",
                        description="Serve the web console with live views of the config's cameras and the zone "
                                    "editor; nothing is analysed. Files loop at their own frame rate. Ctrl-C stops.")
    ed.add_argument("config", help="config YAML")
    ed.add_argument("--web", metavar="HOST:PORT", help="listen here (overrides web.listen)")
    ed.set_defaults(func=cmd_edit)

    c = sub.add_parser("check", help="validate a config, its zone files and model; print a summary")
    c.add_argument("config", help="config YAML")
    c.set_defaults(func=cmd_check)

    pr = sub.add_parser("predict", help="per-frame detections of a video as COCO results JSON (--track: the "
                                        "tracks the pipeline reports, with track_id)")
    pr.add_argument("model", help="model file (.onnx)")
    pr.add_argument("source", help="video file or URL")
    pr.add_argument("--out", required=True, metavar="FILE.json", help="output (COCO result list)")
    pr.add_argument("--conf", type=float, default=None,
                    help="confidence threshold (default 0.25; with --track: model.conf, default the config's)")
    pr.add_argument("--iou", type=float, default=None,
                    help="NMS IoU threshold (default 0.7; with --track: model.iou, default the config's)")
    pr.add_argument("--max-det", type=int, default=None,
                    help="most detections per frame (default 300; with --track: model.max_det, default the config's)")
    pr.add_argument("--track", action="store_true",
                    help="only the tracks the pipeline reports, with track_id: segmenter thresholds and tracker as "
                         "`maskwatch run` builds them from --config")
    pr.add_argument("--config", metavar="CONFIG",
                    help="with --track: the config whose tracker and model settings to use (default: the "
                         "pipeline's defaults); MODEL replaces its model.path")
    pr.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    pr.add_argument("--names", metavar="A,B,..", help="class names for a model without metadata")
    pr.add_argument("--backend", default=None, choices=["auto", "onnxruntime", "openvino", "tensorrt", "torchscript"],
                    help="inference runtime (default: by the model file's type; with --track: the config's)")
    pr.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16", "fp16", "int8"],
                    help="arithmetic precision (default: the backend's choice; with --track: the config's)")
    pr.set_defaults(func=cmd_predict)

    from maskwatch.scenes.cli import register as register_synth  # `synth`: the scene generator's own options

    register_synth(sub)

    e = sub.add_parser("eval", help="accuracy on synth clips (masks: COCO mAP; tracking: HOTA/IDF1 vs ByteTrack; "
                                    "alerts: recall/precision/latency against scripted events)")
    e.add_argument("what", choices=["masks", "tracking", "alerts"], help="what to evaluate")
    e.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of the evaluation (see `maskwatch eval masks -h`)")
    e.set_defaults(func=cmd_eval)

    rp = sub.add_parser("replay", help="try a camera's zone rules on recorded footage: an HTML report of what "
                                       "would have fired (and a what-if with --set), nothing published",
                        description="Run the model, tracker and zone rules of a config's camera on a video file, "
                                    "publishing nothing (no MQTT, no JSONL, the outbox untouched), and write a "
                                    "self-contained HTML report: alert timelines per rule with thumbnails, zone "
                                    "occupancy, rule figures (flapping included), model and tracker figures. Exit 2 "
                                    "on a config error or a bad --set.")
    rp.add_argument("config", help="config YAML (its model, tracker and the camera's zone file)")
    rp.add_argument("--source", metavar="FILE", help="video file to replay (default: the camera's source, a file)")
    rp.add_argument("--camera", metavar="ID", help="the camera whose zones and rules apply (default: the only one)")
    rp.add_argument("--zones", metavar="FILE", help="zone file to use instead of the camera's")
    rp.add_argument("--report", required=True, metavar="OUT.html", help="write the HTML report here")
    rp.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                    help="what-if: change rules.<rule id>.<field>, zones.<zone id>.<field> or tracker.<field> "
                         "(VALUE as YAML); repeatable, all together make one variant, run in the same pass and "
                         "shown beside the rules as they are")
    rp.add_argument("--gt", metavar="events.json", help="scripted ground truth (`maskwatch synth --scenario`): "
                                                        "adds its intervals and recall, precision, start latency")
    rp.add_argument("--no-progress", action="store_true", help="no progress line on a terminal")
    rp.set_defaults(func=cmd_replay)

    b = sub.add_parser("bench", help="benchmarks: model, decode, naive loop, pipeline (1 and N cameras), Ultralytics; "
                                     "`bench engine MODEL`: pre/infer/post latency", add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER,
                   help="`maskwatch bench --help` or `maskwatch bench engine --help` for the options")
    b.set_defaults(func=cmd_bench)

    en = sub.add_parser("engine", help="model files: `engine build` (TensorRT, NVIDIA GPU), `engine quantize` (INT8)")
    en_sub = en.add_subparsers(dest="engine_command", metavar="ACTION", required=True)
    eb = en_sub.add_parser("build", help="build a TensorRT engine from an ONNX model",
                           description="Build a TensorRT 10/11 engine with Ultralytics' metadata header "
                                       "(Ultralytics loads it too). Exit 2 on a bad option or model, or without TensorRT.")
    eb.add_argument("model", metavar="MODEL.onnx", help="ONNX model (Ultralytics export)")
    eb.add_argument("--fp16", action="store_true",
                    help="fp16 engine (TensorRT 10: builder flag; TensorRT 11: built from an fp16 ONNX, fp32 I/O)")
    eb.add_argument("--batch", type=int, metavar="B",
                    help="batch size (default: the ONNX's; other values need an ONNX with a dynamic batch axis)")
    eb.add_argument("--dynamic", action="store_true", help="accept any batch from 1 to B (optimization profile 1/B/B)")
    eb.add_argument("--workspace", type=float, metavar="GiB", help="builder workspace limit in GiB (default: TensorRT's)")
    eb.add_argument("--out", metavar="MODEL.engine", help="output file (default: MODEL with the suffix .engine)")
    eb.set_defaults(func=cmd_engine)
    eq = en_sub.add_parser("quantize", help="INT8 copy of an ONNX model, calibrated on your own footage",
                           description="Static INT8 quantization, calibrated on frames of your cameras: with NNCF "
                                       "into an OpenVINO model folder (--method nncf, the default when the nncf "
                                       "package is installed; backend openvino), or with ONNX Runtime into a QDQ "
                                       "ONNX file (--method qdq; backend onnxruntime or openvino). Run it with "
                                       "precision int8 (or auto). Check its accuracy with `maskwatch eval masks "
                                       "--precision int8` before deploying it. Exit 2 on a bad option, model or "
                                       "calibration source.")
    eq.add_argument("model", metavar="MODEL.onnx", help="ONNX model (Ultralytics export, fixed input size)")
    eq.add_argument("--calib", required=True, metavar="SOURCE",
                    help="video file, folder of images, or camera URL to sample; `synth`: generated demo clips")
    eq.add_argument("--frames", type=int, default=300, metavar="N", help="calibration frames (default 300)")
    eq.add_argument("--out", metavar="OUT",
                    help="output: nncf, a folder named *_openvino_model (default MODEL_int8_openvino_model/); "
                         "qdq, an .onnx file (default MODEL-int8.onnx)")
    eq.add_argument("--keep-float", choices=["head", "none"], default="head",
                    help="head (default): the head's output decoding stays float (qdq: also its output "
                         "convolutions); none: quantize everything")
    eq.add_argument("--method", default="auto", metavar="METHOD",
                    help="nncf: NNCF post-training quantization (preset mixed) to an OpenVINO model folder; qdq: "
                         "ONNX Runtime QDQ, per-channel weights, minmax activation ranges (qdq-percentile, "
                         "qdq-entropy: other range calibrations; minmax, percentile, entropy: older spellings); "
                         "auto (default): qdq for an --out ending in .onnx, else nncf when the nncf package is "
                         "installed, else qdq")
    eq.set_defaults(func=cmd_quantize)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if getattr(args, "rest", None) is None:  # only bench and eval pass options through
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.rest = unknown + list(args.rest)
    _setup_logging(args.log_level)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"maskwatch: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
