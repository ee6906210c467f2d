"""`maskwatch bench`: the numbers users compare, measured side by side in one process.

Modes, on the same model and video:
  model      the segmenter on pre-letterboxed frames (the model's ceiling here)
  decode     PyAV decode + letterbox (the other ceiling)
  naive      decode -> segment -> track -> zones in one thread, as a script would
  pipeline   maskwatch's threaded pipeline, 1 camera and N cameras (the video N times)
  ultralytics  Ultralytics' `track(stream=True)` on the same ONNX model (when installed)
Each reports frames/s, CPU seconds per frame, per-stage median / p95 and peak RSS during
the mode; the pipeline also reports frame-to-alert latency (arrival to zone decision).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Meter:
    """Wall time, CPU time and peak RSS (sampled every 50 ms) of one mode."""

    def __enter__(self):
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._sample, daemon=True, name="bench/rss")
        self._t.start()
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def _sample(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_mb())


def _ms(values) -> dict:
    a = np.asarray(values, float) * 1000
    if a.size == 0:
        return {"median": 0.0, "p95": 0.0}
    return {"median": round(float(np.median(a)), 2), "p95": round(float(np.percentile(a, 95)), 2)}


def _result(name: str, frames: int, m: _Meter, stages: dict | None = None, **extra) -> dict:
    return {"mode": name, "frames": frames, "fps": round(frames / m.wall, 2) if m.wall else 0.0,
            "cpu_s_per_frame": round(m.cpu / max(frames, 1), 4), "peak_rss_mb": round(m.peak, 1),
            "stages_ms": stages or {}, **extra}


def _decode_all(video: Path, input_hw, limit: int):
    from maskwatch.pipeline.sources import VideoSource

    src = VideoSource("bench", str(video), input_hw)
    out = []
    for f in src.frames():
        out.append(f)
        if len(out) >= limit:
            break
    src.close()
    return out


def mode_model(seg, frames) -> dict:
    times = []
    with _Meter() as m:
        for f in frames:
            t0 = time.perf_counter()
            seg([f.input], [f.letterbox])
            times.append(time.perf_counter() - t0)
    return _result("model only", len(frames), m, {"segment": _ms(times)})


def mode_model_concurrent(seg, frames, workers: int) -> dict:
    """The engine called by ``workers`` threads at once (each its own input buffer), as the pipeline's
    inference workers call it."""
    import threading

    segs = [seg] + [seg.clone() for _ in range(workers - 1)]
    times: list[float] = []
    lock = threading.Lock()
    it = iter(frames)

    def work(s) -> None:
        while True:
            with lock:
                f = next(it, None)
            if f is None:
                return
            t0 = time.perf_counter()
            s([f.input], [f.letterbox])
            with lock:
                times.append(time.perf_counter() - t0)

    with _Meter() as m:
        threads = [threading.Thread(target=work, args=(s,)) for s in segs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return _result(f"model only, {workers} concurrent calls", len(frames), m, {"segment": _ms(times)})


def ratios(results: list[dict]) -> dict:
    """The issue's comparisons, from one run (the model-only ceiling is the faster of its modes)."""
    fps = {r["mode"]: r["fps"] for r in results if not r.get("variant")}  # the config's engine only
    model = max((v for k, v in fps.items() if k.startswith("model only")), default=0.0)
    one = fps.get("pipeline, 1 camera", 0.0)
    multi = next((v for k, v in fps.items() if k.startswith("pipeline, ") and k != "pipeline, 1 camera"), 0.0)
    out = {}
    ulx = [("pipeline/ultralytics" + k[len("ultralytics track loop"):], v) for k, v in fps.items()
           if k.startswith("ultralytics track loop")]  # one per --ultralytics-model
    for name, base in (("pipeline/naive", fps.get("naive loop", 0.0)), ("pipeline/model-only", model), *ulx,
                       ("multi-camera/1-camera", one)):
        num = multi if name.startswith("multi") else one
        if base and num:
            out[name] = round(num / base, 3)
    return out


def mode_decode(video: Path, input_hw, limit: int) -> dict:
    from maskwatch.pipeline.sources import VideoSource

    times, n = [], 0
    with _Meter() as m:
        src = VideoSource("bench", str(video), input_hw, keep_image=False)
        it = src.frames()
        while n < limit:
            t0 = time.perf_counter()
            try:
                next(it)
            except StopIteration:
                break
            times.append(time.perf_counter() - t0)
            n += 1
        src.close()
    return _result("decode only", n, m, {"decode+letterbox": _ms(times)})


def mode_naive(seg, cfg, video: Path, limit: int) -> dict:
    from maskwatch.zones import ZoneEngine, load_zone_file

    from maskwatch.pipeline.sources import VideoSource
    from maskwatch.pipeline.tracking import MaskTracker

    tracker = MaskTracker(cfg.tracker.params(cfg.model.conf))
    zf = load_zone_file(cfg.cameras[0].zones) if cfg.cameras[0].zones else None
    engine = None
    names = seg.meta.names
    t_dec, t_seg, t_trk, t_zone, n = [], [], [], [], 0
    with _Meter() as m:
        src = VideoSource("bench", str(video), seg.input_hw, keep_image=False)
        it = src.frames()
        while n < limit:
            t0 = time.perf_counter()
            try:
                f = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            (dets,) = seg([f.input], [f.letterbox])
            t2 = time.perf_counter()
            dets = tracker.update(dets, f.pts_s, f.content)
            t3 = time.perf_counter()
            if zf is not None:
                engine = engine or ZoneEngine(zf, "bench", f.frame_wh, dets.mask_space.mask_wh)
                engine.update(f.index, f.pts_s, f.wall_s, dets.tracker_id, [names[int(c)] for c in dets.class_id],
                              dets.confidence, dets.xyxy, dets.masks, dets.data.get("stationary_s"))
            t4 = time.perf_counter()
            t_dec.append(t1 - t0), t_seg.append(t2 - t1), t_trk.append(t3 - t2), t_zone.append(t4 - t3)
            n += 1
        src.close()
    return _result("naive loop", n, m, {"decode": _ms(t_dec), "segment": _ms(t_seg), "track": _ms(t_trk),
                                        "zones": _ms(t_zone)})


def mode_pipeline(seg, cfg, video: Path, cameras: int, limit: int) -> dict:
    from maskwatch.pipeline.stages import Pipeline

    cfg = cfg.model_copy(deep=True)
    base = cfg.cameras[0]
    cfg.cameras = [base.model_copy(update={"id": f"cam{i + 1}", "source": str(video)}) for i in range(cameras)]
    with tempfile.TemporaryDirectory(prefix="maskwatch-bench-") as tmp:
        cfg.alerts.jsonl = None
        cfg.alerts.outbox = Path(tmp) / "outbox.sqlite"
        pipe = Pipeline(cfg, seg, max_frames=limit)
        with _Meter() as m:
            pipe.start()
            pipe.wait()
        if pipe.failure is not None:
            raise RuntimeError(str(pipe.failure))
    n = sum(c.stats.analysed for c in pipe.cameras)
    lat = [x for c in pipe.cameras for x in c.stats.latency_s]
    per_cam = {c.id: c.stats.analysed for c in pipe.cameras}
    return _result(f"pipeline, {cameras} camera{'s' if cameras > 1 else ''}", n, m,
                   {"frame-to-alert": _ms(lat)}, latency_ms={"p50": round(float(np.percentile(lat, 50)) * 1000, 1) if lat else 0.0,
                                                             "p99": round(float(np.percentile(lat, 99)) * 1000, 1) if lat else 0.0},
                   per_camera_frames=per_cam)


def parse_variants(text: str) -> list[tuple[str, str, Path | None]]:
    """``backend:precision[=MODEL],...`` -> [(backend, precision, model or None: the config's)]."""
    out = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        spec, _, model = item.partition("=")
        backend, _, precision = spec.partition(":")
        if not backend or not precision:
            raise SystemExit(f"maskwatch bench: --variants: expected backend:precision[=MODEL], got {item!r}")
        out.append((backend, precision, Path(model).resolve() if model else None))
    return out


def default_variants(cfg) -> list[tuple[str, str, Path | None]]:
    """What `backend: auto` chooses between on this machine, for the config's model on the CPU."""
    from maskwatch.engines.cpu import has_bf16

    if cfg.model.device != "cpu" or Path(cfg.model.path).suffix.lower() != ".onnx":
        return []
    out = [("onnxruntime", "fp32", None)]
    try:
        import openvino  # noqa: F401
    except ImportError:
        return out
    out.append(("openvino", "fp32", None))
    if has_bf16():
        out.append(("openvino", "bf16", None))
    return out


def mode_variants(cfg, config_file, video: Path, limit: int, variants, frames) -> list[dict]:
    """Every backend x precision asked for, on the same frames and video: the engine alone (as the pipeline's
    inference workers call it) and the pipeline with one camera. Variants run one after another, each fully."""
    from maskwatch.pipeline.config import inference_plan
    from maskwatch.pipeline.factory import build_segmenter

    out = []
    for backend, precision, model in variants:
        vcfg = cfg.model_copy(deep=True)
        vcfg.model.backend, vcfg.model.precision = backend, precision
        if model is not None:
            vcfg.model.path = model
        workers, threads = inference_plan(vcfg)
        try:
            seg = build_segmenter(vcfg.model, config_file, vcfg.tracker, threads=threads)
        except Exception as exc:  # a variant this machine cannot run: say so, measure the others
            print(f"maskwatch bench: variant {backend}:{precision} skipped: {exc}", file=sys.stderr)
            continue
        tag = f"[{backend} {seg.engine.precision}{' ' + model.name if model is not None else ''}]"
        for f in frames[:3]:
            seg([f.input], [f.letterbox])
        r = mode_model_concurrent(seg, frames, workers) if workers > 1 else mode_model(seg, frames)
        r["mode"] = f"model only {tag}"
        r.update(variant={"backend": backend, "precision": seg.engine.precision, "model": vcfg.model.path.name})
        out.append(r)
        r = mode_pipeline(seg, vcfg, video, 1, limit)
        r["mode"] = f"pipeline, 1 camera {tag}"
        r.update(variant={"backend": backend, "precision": seg.engine.precision, "model": vcfg.model.path.name})
        out.append(r)
    return out


def variant_ratios(results: list[dict]) -> dict:
    """Per variant: pipeline fps against the first variant's pipeline, and pipeline / model-only (same run)."""
    pipes = [r for r in results if r.get("variant") and r["mode"].startswith("pipeline")]
    models = {r["mode"].split("[", 1)[1]: r for r in results if r.get("variant") and r["mode"].startswith("model")}
    if not pipes:
        return {}
    base = pipes[0]["fps"]
    out = {}
    for r in pipes:
        key = r["mode"].split("[", 1)[1].rstrip("]")
        m = models.get(r["mode"].split("[", 1)[1])
        out[key] = {"pipeline_vs_first": round(r["fps"] / base, 3) if base else None,
                    "pipeline_vs_model_only": round(r["fps"] / m["fps"], 3) if m and m["fps"] else None}
    return out


def mode_ultralytics(model: Path, video: Path, conf: float, iou: float, imgsz, limit: int,
                     label: str = "") -> dict | None:
    try:
        from ultralytics import YOLO  # the [train] extra; never imported by the runtime
    except ImportError:
        return None
    yolo = YOLO(str(model), task="segment")
    n = 0
    with _Meter() as m:
        for _ in yolo.track(source=str(video), stream=True, conf=conf, iou=iou, imgsz=list(imgsz), verbose=False,
                            device="cpu", persist=True):
            n += 1
            if n >= limit:
                break
    return _result("ultralytics track loop" + (f" [{label}]" if label else ""), n, m,
                   ultralytics_model=Path(model).name)


def _ulx_label(model: Path, models: list[Path]) -> str:
    """A short distinct name for one of several Ultralytics models: the folder's name, or its path where two
    share a name (``fp16/demo_openvino_model`` beside ``demo_openvino_model``)."""
    name = Path(model).name
    if sum(Path(m).name == name for m in models) > 1:
        return str(Path(Path(model).parent.name) / name)
    return name


def _synth_video(seconds: float) -> Path:
    cache = Path(os.environ.get("MASKWATCH_CACHE", Path.cwd() / "var" / "bench"))
    out = cache / f"site-seed3-{int(seconds)}s"
    if not (out / "video.mp4").is_file():
        from maskwatch.scenes.clip import write_clip

        write_clip("site", 3, seconds, out)
    return out / "video.mp4"


def table(results: list[dict]) -> str:
    rows = ["| mode | frames | frames/s | CPU s/frame | stage ms (median / p95) | latency p50 / p99 ms | peak RSS MB |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        stages = "; ".join(f"{k} {v['median']:.1f} / {v['p95']:.1f}" for k, v in r["stages_ms"].items())
        lat = f"{r['latency_ms']['p50']:.0f} / {r['latency_ms']['p99']:.0f}" if "latency_ms" in r else ""
        rows.append(f"| {r['mode']} | {r['frames']} | {r['fps']:.1f} | {r['cpu_s_per_frame']:.3f} | {stages} | {lat} | "
                    f"{r['peak_rss_mb']:.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="maskwatch bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/demo.yaml", help="config for model, tracker and zones (default configs/demo.yaml)")
    p.add_argument("--model", help="model file (default: the config's)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--video", help="video file (default: a generated site clip)")
    src.add_argument("--synth", choices=["site"], default="site", help="generate the clip (default)")
    p.add_argument("--cameras", type=int, default=4, help="cameras in the multi-camera run (default 4)")
    p.add_argument("--seconds", type=float, default=20, help="video length used per mode, seconds (default 20)")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: runtime's)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16", "int8"], default=None,
                   help="engine precision (default: the config's)")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "openvino", "tensorrt", "torchscript"], default=None,
                   help="engine backend (default: the config's); tensorrt/torchscript run pre/post-processing in torch")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the config's)")
    p.add_argument("--variants", default="auto", metavar="B:P[=M],...",
                   help="also measure these backend:precision pairs (model only and pipeline, 1 camera), e.g. "
                        "onnxruntime:fp32,openvino:bf16,onnxruntime:int8=var/models/demo-int8.onnx; default auto: "
                        "every one this machine runs for the config's .onnx (fp32 on both, bf16 where the CPU has "
                        "it); none: skip")
    p.add_argument("--ultralytics-model", metavar="M", action="append",
                   help="the model Ultralytics' loop runs (default: the config's), e.g. its own OpenVINO export "
                        "folder *_openvino_model/ to compare on the same format; repeatable (its fp32, half and "
                        "int8 exports), each a mode named after its folder")
    p.add_argument("--skip", default="", help="comma-separated modes to skip: model,decode,naive,pipeline,ultralytics")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    from maskwatch.pipeline.factory import build_segmenter
    from maskwatch.pipeline.config import inference_plan, load_config

    cfg = load_config(args.config)
    if args.model:
        cfg.model.path = Path(args.model).resolve()
    if args.threads is not None:
        cfg.model.threads = args.threads
    if args.backend:
        cfg.model.backend = args.backend
    if args.device:
        cfg.model.device = args.device
    if args.precision:
        cfg.model.precision = args.precision
    video = Path(args.video).resolve() if args.video else _synth_video(args.seconds)
    seg = build_segmenter(cfg.model, args.config, cfg.tracker)
    # the pipeline's own engine set-up (inference workers, threads per call), as `maskwatch run` makes it
    workers, threads = inference_plan(cfg)
    seg_pipe = seg if workers == 1 and threads is None else build_segmenter(cfg.model, args.config, cfg.tracker,
                                                                             threads=threads)
    skip = set(filter(None, args.skip.split(",")))
    import av

    with av.open(str(video)) as c:
        fps = float(c.streams.video[0].average_rate or 15)
    limit = max(1, int(round(args.seconds * fps)))
    frames = _decode_all(video, seg.input_hw, limit) if "model" not in skip else []
    # warm-up: first inferences allocate
    for f in frames[:3]:
        seg([f.input], [f.letterbox])
    results = []
    if "model" not in skip:
        results.append(mode_model(seg, frames))
        if workers > 1:
            for f in frames[:3]:
                seg_pipe([f.input], [f.letterbox])
            results.append(mode_model_concurrent(seg_pipe, frames, workers))
    del frames  # memory for the pipeline modes
    if "decode" not in skip:
        results.append(mode_decode(video, seg.input_hw, limit))
    if "naive" not in skip:
        results.append(mode_naive(seg, cfg, video, limit))
    if "pipeline" not in skip:
        results.append(mode_pipeline(seg_pipe, cfg, video, 1, limit))
        if args.cameras > 1:
            results.append(mode_pipeline(seg_pipe, cfg, video, args.cameras, limit))
    variants = default_variants(cfg) if args.variants == "auto" else parse_variants(args.variants) \
        if args.variants not in ("", "none") else []
    if variants:  # every backend x precision this machine runs, the engine alone and in the pipeline
        vframes = _decode_all(video, seg.input_hw, limit)
        results += mode_variants(cfg, args.config, video, limit, variants, vframes)
        del vframes
    if "ultralytics" not in skip:
        models = [Path(m) for m in args.ultralytics_model or [cfg.model.path]]
        for um in models:
            label = _ulx_label(um, models) if len(models) > 1 else ""
            try:
                r = mode_ultralytics(um, video, cfg.model.conf, cfg.model.iou, seg.input_hw, limit, label)
            except Exception as exc:  # a broken optional install must not lose the other figures
                print(f"maskwatch bench: ultralytics mode failed on {um}: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
                r = None
            if r is not None:
                results.append(r)
    h, w = seg.input_hw
    env = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
           "model": Path(cfg.model.path).name, "input": f"{w}x{h}", "video": str(video), "frames_per_mode": limit}
    print(f"maskwatch bench: {env['model']} at {env['input']} on {video.name}, {env['cpus']} CPUs, {limit} frames per mode")
    env["inference_workers"], env["threads_per_call"] = workers, threads
    env["backend"], env["precision"] = seg.engine.meta.backend, seg.engine.precision
    from maskwatch.engines.cpu import cpu_info

    env["cpu"] = cpu_info()
    print(f"CPU: {env['cpu']['model']}, {env['cpu']['cores']} cores, flags {' '.join(env['cpu']['flags'])}; "
          f"config's engine: {env['backend']} {env['precision']}")
    print(table(results))
    rat = ratios(results)
    if rat:
        print("ratios (same run): " + ", ".join(f"{k} {v:.2f}x" for k, v in rat.items()))
    vrat = variant_ratios(results)
    for key, v in vrat.items():
        print(f"variant {key}: pipeline {v['pipeline_vs_first']}x the first variant's, pipeline / model-only "
              f"{v['pipeline_vs_model_only']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "results": results, "ratios": rat,
                                               "variant_ratios": vrat}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
