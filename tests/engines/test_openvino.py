"""The OpenVINO backend and reduced precisions (bf16, INT8) on the real demo model, against ONNX Runtime fp32.

Reduced precision changes scores and mask edges a little, so detections are compared as sets: matched one to
one by class and box IoU >= 0.5, then F1 of the match, mask IoU and box error of the pairs, with the thresholds
below (measured on an AMD EPYC with AVX512_BF16 and VNNI: bf16 F1 1.000, mask IoU median 1.000, min 0.947, box
error median 0.17 px; INT8 QDQ F1 0.98-0.99, mask IoU median 1.000, box error median 0.7 px; INT8 NNCF, calibrated
on 24 frames: F1 0.995, mask IoU median 1.000, min 0.857, box error median 0.40 px).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from maskwatch.engines import Segmenter, letterbox, load_engine
from maskwatch.engines.cpu import has_bf16
from maskwatch.scenes import make_scene

from .helpers import BOX_PX, MIN_MASK_IOU, SCORE, box_iou_matrix, mask_iou, match_detections

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "models" / "maskwatch-demo-seg.onnx"
CONF, IOU = 0.35, 0.6
# reduced precision against fp32: (min F1, min median mask IoU, min mask IoU, max median box error px)
BF16 = (0.97, 0.99, 0.85, 1.0)
INT8 = (0.95, 0.97, 0.3, 2.0)
NNCF = (0.97, 0.98, 0.5, 1.0)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """RGB frames of held-out scenes (site and pitch; seeds no training or tuning used)."""
    out = []
    for scene, seed in (("site", 21_000_001), ("site", 21_000_002), ("pitch", 21_000_003), ("pitch", 21_000_004)):
        sc = make_scene(scene, seed, 1280, 720)
        for t in (1.0, 3.0, 5.0):
            bgr, _ = sc.render(t)
            out.append(np.ascontiguousarray(bgr[..., ::-1]))
    return out


def detect(engine, frames):
    seg = Segmenter(engine, conf=CONF, iou=IOU)
    out = []
    for f in frames:
        img, box = letterbox(f, seg.input_hw)
        out.append(seg([img], [box])[0])
    return out


@pytest.fixture(scope="module")
def reference(frames):
    return detect(load_engine(DEMO, "onnxruntime", threads=2), frames)


def agreement(ref, got) -> dict:
    tp = fp = fn = 0
    ious, box_err = [], []
    for r, g in zip(ref, got, strict=True):
        iou = box_iou_matrix(r.xyxy, g.xyxy) * (r.class_id[:, None] == g.class_id[None])
        ri, gi = linear_sum_assignment(-iou) if iou.size else (np.zeros(0, int),) * 2
        keep = iou[ri, gi] >= 0.5
        ri, gi = ri[keep], gi[keep]
        tp, fp, fn = tp + len(ri), fp + len(g) - len(ri), fn + len(r) - len(ri)
        if len(ri):
            ious += list(mask_iou(r.masks[ri], g.masks[gi]))
            box_err += list(np.abs(r.xyxy[ri] - g.xyxy[gi]).max(axis=1))
    return {"f1": 2 * tp / max(1, 2 * tp + fp + fn), "pairs": tp, "iou_median": float(np.median(ious)),
            "iou_min": float(np.min(ious)), "box_median": float(np.median(box_err))}


def assert_close(ref, got, floors) -> dict:
    a = agreement(ref, got)
    f1, iou_median, iou_min, box_median = floors
    assert a["pairs"] >= 60, a  # the frames have plenty of objects to compare
    assert a["f1"] >= f1 and a["iou_median"] >= iou_median and a["iou_min"] >= iou_min, a
    assert a["box_median"] <= box_median, a
    return a


def test_fp32_matches_onnxruntime(frames, reference):
    eng = load_engine(DEMO, "openvino", threads=2, precision="fp32")
    assert eng.meta.backend == "openvino" and eng.precision == "fp32"
    assert eng.meta.names == load_engine(DEMO, "onnxruntime", threads=1).meta.names  # from the ONNX metadata
    for r, g in zip(reference, detect(eng, frames), strict=True):
        ri, gi = match_detections(g.xyxy, g.confidence, g.class_id, r.xyxy, r.confidence, r.class_id, conf=CONF,
                                  box_px=BOX_PX, score=SCORE)
        if len(ri):
            assert mask_iou(g.masks[gi], r.masks[ri]).min() >= MIN_MASK_IOU


def test_bf16_close_to_fp32(frames, reference):
    eng = load_engine(DEMO, "openvino", threads=2, precision="bf16")
    assert eng.precision == "bf16"
    assert_close(reference, detect(eng, frames), BF16)


def calibration_rgb() -> list[np.ndarray]:
    """24 RGB frames of held-out seeds that the parity frames do not use."""
    out = []
    for scene, seed in (("site", 21_000_011), ("pitch", 21_000_012), ("site", 21_000_013)):
        sc = make_scene(scene, seed, 1280, 720)
        for k in range(8):
            bgr, _ = sc.render(0.5 + k)
            out.append(np.ascontiguousarray(bgr[..., ::-1]))
    return out


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory, frames) -> Path:
    """The demo model quantized here (not committed): calibrated on 24 frames of other held-out seeds."""
    from maskwatch.engines.quantize import quantize_onnx

    calib = [letterbox(f, (384, 640))[0] for f in calibration_rgb()]
    out = tmp_path_factory.mktemp("int8") / "demo-int8.onnx"
    summary = quantize_onnx(DEMO, calib, out)
    assert summary["frames"] == 24 and summary["kept_float"] > 0
    assert summary["bytes_out"] < 0.5 * summary["bytes_in"]
    return out


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_int8_close_to_fp32(frames, reference, int8_model, backend):
    eng = load_engine(int8_model, backend, threads=2, precision="int8")
    assert eng.precision == "int8"
    assert eng.meta.names == load_engine(DEMO, "onnxruntime", threads=1).meta.names  # metadata kept
    assert_close(reference, detect(eng, frames), INT8)
    auto = load_engine(int8_model, backend, threads=1)  # auto knows a quantized model
    assert auto.precision == "int8"


def test_ultralytics_openvino_export_folder(tmp_path, frames):
    """Ultralytics' `format=openvino` layout: <name>_openvino_model/ with the IR and metadata.yaml."""
    import openvino as ov
    import yaml

    folder = tmp_path / "demo_openvino_model"
    folder.mkdir()
    model = ov.Core().read_model(str(DEMO))
    ov.save_model(model, str(folder / "demo.xml"), compress_to_fp16=False)
    names = {0: "worker", 1: "excavator", 2: "dump_truck", 3: "player", 4: "ball"}
    (folder / "metadata.yaml").write_text(yaml.safe_dump({"task": "segment", "stride": 32, "batch": 1,
                                                          "imgsz": [384, 640], "names": names}))
    eng = load_engine(folder, threads=2, precision="fp32")  # auto: the folder is OpenVINO's
    assert eng.meta.backend == "openvino" and eng.meta.names == names and eng.meta.input_hw == (384, 640)
    ref = detect(load_engine(DEMO, "openvino", threads=2, precision="fp32"), frames[:3])
    got = detect(eng, frames[:3])
    for r, g in zip(ref, got, strict=True):
        match_detections(g.xyxy, g.confidence, g.class_id, r.xyxy, r.confidence, r.class_id, conf=CONF)


def test_concurrent_calls_give_the_serial_results(frames):
    """Several inference workers share one compiled model, each thread with its own infer request."""
    eng = load_engine(DEMO, "openvino", threads=1, precision="fp32")
    batch = [letterbox(f, (384, 640))[0].transpose(2, 0, 1)[None].astype(np.float32) / 255 for f in frames[:4]]
    serial = [eng.infer(x)[0] for x in batch]
    got: dict[int, np.ndarray] = {}

    def work(i):
        for _ in range(3):
            got[i] = eng.infer(batch[i])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        np.testing.assert_allclose(got[i], serial[i], rtol=0, atol=1e-4)


@pytest.mark.parametrize("backend, precision, model, message", [
    ("onnxruntime", "bf16", "demo", "the onnxruntime backend runs ['fp32', 'int8']"),
    ("onnxruntime", "int8", "demo", "needs a quantized model"),
    ("openvino", "int8", "demo", "needs a quantized model"),
    ("onnxruntime", "fp32", "int8", "this model is quantized"),
    ("openvino", "bf16", "int8", "this model is quantized"),
])
def test_precision_errors(int8_model, backend, precision, model, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_engine(DEMO if model == "demo" else int8_model, backend, threads=1, precision=precision)


def test_auto_picks_openvino_and_bf16_where_it_pays(tmp_path):
    from maskwatch.pipeline.config import parse_config
    from maskwatch.pipeline.factory import build_segmenter

    cfg = parse_config({"model": {"path": str(DEMO)}, "cameras": [{"id": "c", "source": "x.mp4"}]}, base=tmp_path)
    seg = build_segmenter(cfg.model)
    want = ("openvino", "bf16") if has_bf16() else ("onnxruntime", "fp32")
    assert (seg.engine.meta.backend, seg.engine.precision) == want, seg.engine.choice
    assert "auto" in seg.engine.choice
    cfg.model.precision = "bf16"  # asked for: OpenVINO runs it (ONNX Runtime has no CPU bf16)
    assert build_segmenter(cfg.model).engine.meta.backend == "openvino"


def test_quantize_command(tmp_path):
    images = tmp_path / "calib"
    images.mkdir()
    sc = make_scene("site", 21_000_021, 1280, 720)
    for k in range(6):
        cv2.imwrite(str(images / f"{k}.png"), sc.render(0.5 * k)[0])
    out = tmp_path / "q.onnx"
    proc = subprocess.run([sys.executable, "-m", "maskwatch", "engine", "quantize", str(DEMO), "--calib", str(images),
                           "--frames", "6", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "6 calibration frames" in proc.stdout and out.is_file()
    assert "method qdq [auto: --out is an .onnx file]" in proc.stdout  # an .onnx --out: ONNX Runtime's QDQ
    assert load_engine(out, "onnxruntime", threads=1).precision == "int8"
    bad = subprocess.run([sys.executable, "-m", "maskwatch", "engine", "quantize", str(DEMO), "--calib",
                          str(tmp_path / "nothing-here"), "--out", str(tmp_path / "x.onnx")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a video file, an image folder or a camera URL" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.onnx").exists()


# -- NNCF: `maskwatch engine quantize --method nncf` -> an OpenVINO model folder ---------------------------------
def quantize_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskwatch", "engine", "quantize", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def nncf_model(tmp_path_factory) -> Path:
    """The demo model quantized by the command with NNCF (not committed), calibrated on a folder of the same 24
    frames the QDQ fixture uses."""
    tmp = tmp_path_factory.mktemp("nncf")
    images = tmp / "calib"
    images.mkdir()
    for k, rgb in enumerate(calibration_rgb()):
        cv2.imwrite(str(images / f"{k:02d}.png"), rgb[..., ::-1])
    out = tmp / "demo_int8_openvino_model"
    proc = quantize_cli(DEMO, "--calib", images, "--frames", 24, "--method", "nncf", "--out", out)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith(f"wrote {out} (method nncf [--method]") and "24 calibration frames" in line, line
    return out


def test_nncf_model_folder(nncf_model):
    """Ultralytics' layout, with the ONNX model's metadata in metadata.yaml; the weights are int8."""
    import yaml

    assert sorted(p.name for p in nncf_model.iterdir()) == ["metadata.yaml", "model.bin", "model.xml"]
    meta = yaml.safe_load((nncf_model / "metadata.yaml").read_text())
    assert meta["names"] == {0: "worker", 1: "excavator", 2: "dump_truck", 3: "player", 4: "ball"}
    assert meta["imgsz"] == [384, 640] and meta["stride"] == 32 and meta["batch"] == 1 and meta["task"] == "segment"
    assert meta["precision"] == "int8" and meta["quantization"].startswith("NNCF ")
    assert (nncf_model / "model.bin").stat().st_size < 0.4 * DEMO.stat().st_size


@pytest.mark.parametrize("backend", ["openvino", "auto"])
def test_nncf_int8_close_to_fp32(frames, reference, nncf_model, backend):
    eng = load_engine(nncf_model, backend, threads=2, precision="int8")
    assert eng.meta.backend == "openvino" and eng.precision == "int8"
    assert eng.meta.names == load_engine(DEMO, "onnxruntime", threads=1).meta.names  # metadata kept
    assert eng.meta.input_hw == (384, 640)
    assert_close(reference, detect(eng, frames), NNCF)
    assert load_engine(nncf_model, backend, threads=1).precision == "int8"  # auto knows a quantized model


def test_nncf_head_decoding_stays_float(nncf_model):
    """The head's own operations (box decoding, class sigmoid, output concatenation) and its DFL are float: no
    FakeQuantize feeds them; the head's convolutions are quantized."""
    import openvino as ov

    from maskwatch.engines.quantize_nncf import head_scope

    model = ov.Core().read_model(str(nncf_model / "model.xml"))
    assert head_scope(model) == "/model.23"
    fed_by_fq = {t.get_node().get_friendly_name() for op in model.get_ops() if op.get_type_name() == "FakeQuantize"
                 for out in op.outputs() for t in out.get_target_inputs()}
    decode = [n for n in fed_by_fq if n.startswith("/model.23/") and (n.count("/") == 2 or "/dfl/" in n)]
    assert not decode, decode
    assert any(n.startswith("/model.23/cv") for n in fed_by_fq)  # the branch convolutions run int8


def test_runtime_does_not_import_nncf(nncf_model):
    code = ("import sys, numpy as np; from maskwatch.engines import load_engine; "
            f"e = load_engine({str(nncf_model)!r}, threads=1); e.infer(np.zeros((1, 3, 384, 640), np.float32)); "
            "assert e.precision == 'int8'; print('nncf' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


@pytest.mark.parametrize("model, extra, message", [
    ("demo", ["--method", "bogus"], "--method: 'bogus': expected auto, nncf, qdq, qdq-percentile or qdq-entropy"),
    ("xml", ["--method", "nncf"], "expected an .onnx model file"),
    ("demo", ["--method", "nncf", "--out", "{tmp}/x.onnx"], "--method nncf writes an OpenVINO model folder"),
    ("demo", ["--method", "qdq", "--out", "{tmp}/x_openvino_model"], "--method qdq writes an .onnx file"),
])
def test_quantize_command_errors(tmp_path, nncf_model, model, extra, message):
    """Exit 2 with one line on stderr, before any calibration, and nothing written."""
    path = DEMO if model == "demo" else nncf_model / "model.xml"
    proc = quantize_cli(path, "--calib", "synth", *[a.format(tmp=tmp_path) for a in extra], timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())
