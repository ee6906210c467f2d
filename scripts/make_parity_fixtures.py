"""Regenerate the engine parity fixtures with Ultralytics itself.

Run with a Python that has torch + ultralytics (the ``[train]`` environment), never from
maskwatch's runtime::

    /work/venvs/train/bin/python scripts/make_parity_fixtures.py            # random-weight YOLO11n-seg
    /work/venvs/train/bin/python scripts/make_parity_fixtures.py --model models/demo.pt --imgsz 384 640

Writes:

* ``tests/fixtures/models/<name>.onnx``: the model exported with static batch 1 (the parity model),
  and, unless ``--no-dynamic``, a tiny YOLO11-seg exported with a dynamic batch axis (batch tests).
* ``tests/fixtures/parity/frames/*.png``: procedurally drawn test frames (BGR files, as cv2 writes them).
* ``tests/fixtures/parity/<model stem>/<frame stem>.npz``: Ultralytics' predictions for each frame, with
  the default mask path (``*_input``; masks at input resolution, padding included), with
  ``retina_masks=True`` (``*_retina``; masks at frame resolution), and its raw NMS output with masks at
  prototype resolution (``*_nms``, ``masks_proto``; ``ops.process_mask(upsample=False)``). Masks are
  stored with ``np.packbits`` along the last axis and their shape in ``masks_*_shape``.
* ``tests/fixtures/parity/<model stem>/manifest.json``: what produced the fixtures (versions, thresholds).

``--torchscript-only`` touches none of the above: it rebuilds the tiny dynamic model (same seed, same
calibration frames, same arguments), checks that the rebuild's ONNX export reproduces the committed
``yolo11-tiny-seg-random-dynamic.onnx`` (raw outputs within 1e-4 on the fixture frames; measured:
bit-identical), exports the same weights with ``format="torchscript"`` next to it (``.torchscript``,
Ultralytics' metadata in ``config.txt``) and checks its raw outputs against the committed ONNX too
(relative 1e-3: PyTorch and ONNX Runtime round differently, see ``export_torchscript_fixture``). When the weights cannot be
reproduced it writes nothing and says so (then export a new .onnx + .torchscript pair instead)::

    /work/venvs/train/bin/python scripts/make_parity_fixtures.py --torchscript-only

With random weights the class scores are tiny, so the head's class biases are raised (seeded, see
``--cls-bias``) and a low confidence threshold is used so that every frame has detections.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "tests" / "fixtures" / "models"
PARITY_DIR = ROOT / "tests" / "fixtures" / "parity"
NAMES = {0: "worker", 1: "excavator", 2: "dump_truck"}

# (stem, width, height): 16:9, odd, portrait, exact fit for 384x640, tiny (scaled up)
FRAMES = [
    ("site_1280x720", 1280, 720),
    ("odd_1000x563", 1000, 563),
    ("portrait_540x960", 540, 960),
    ("exact_640x384", 640, 384),
    ("tiny_97x61", 97, 61),
]


def draw_frame(width: int, height: int, seed: int) -> np.ndarray:
    """A deterministic 'site' drawing (BGR uint8): sky and ground gradients, machines, people, poles."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    horizon = int(height * rng.uniform(0.3, 0.5))
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    sky = np.array([235, 206, 135], np.float32) * (1 - 0.4 * ys) + np.array([40, 40, 40], np.float32) * ys
    ground = np.array([60, 110, 150], np.float32) * (0.7 + 0.3 * ys)
    img[:] = np.where(np.arange(height)[:, None, None] < horizon, sky[:, None, :], ground[:, None, :]).astype(np.uint8)
    s = min(width, height) / 720.0
    for _ in range(int(rng.integers(4, 9))):  # machines: body, cab, arm
        cx, cy = int(rng.uniform(0.05, 0.95) * width), int(rng.uniform(horizon, height))
        w, h = int(rng.uniform(80, 300) * s) + 2, int(rng.uniform(50, 160) * s) + 2
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.rectangle(img, (cx - w // 2, cy - h), (cx + w // 2, cy), color, -1)
        cv2.rectangle(img, (cx - w // 4, cy - h - h // 2), (cx + w // 8, cy - h), tuple(c // 2 for c in color), -1)
        arm = np.array([[cx + w // 2, cy - h], [cx + w, cy - 2 * h], [cx + w + w // 3, cy - h // 2]], np.int32)
        cv2.polylines(img, [arm], False, color, max(2, int(10 * s)))
        for dx in (-w // 3, w // 3):
            cv2.circle(img, (cx + dx, cy), max(2, h // 4), (30, 30, 30), -1)
    for _ in range(int(rng.integers(5, 15))):  # people: head, body
        cx, cy = int(rng.uniform(0.02, 0.98) * width), int(rng.uniform(horizon, height))
        hh = int(rng.uniform(20, 90) * s) + 4
        vest = (0, int(rng.integers(120, 256)), 255)
        cv2.ellipse(img, (cx, cy - hh // 2), (max(1, hh // 6), hh // 2), 0, 0, 360, vest, -1)
        cv2.circle(img, (cx, cy - hh - max(1, hh // 8)), max(1, hh // 8), (160, 190, 230), -1)
    for _ in range(int(rng.integers(1, 4))):  # poles and fences
        x = int(rng.uniform(0, width))
        cv2.line(img, (x, horizon - int(100 * s)), (x, height), (90, 90, 90), max(1, int(6 * s)))
    return img


def calibrate_batchnorm(model, images: list[np.ndarray], imgsz: list[int]) -> None:
    """Set every BatchNorm's running statistics from the given images (BGR).

    A freshly initialised network has identity BatchNorms, and its activations fade layer by layer until
    every anchor predicts the same box and score (ties make NMS order arbitrary). Normalising each layer
    on real inputs keeps the outputs input-dependent and diverse.
    """
    import torch
    from ultralytics.data.augment import LetterBox

    net = model.model
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    batch = np.stack([LetterBox(tuple(imgsz), auto=False)(image=im)[..., ::-1] for im in images])
    x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).float() / 255
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()


def build_random_model(
    scale: tuple[float, float, int],
    nc: int,
    seed: int,
    cls_bias: float,
    workdir: Path,
    calib: list[np.ndarray],
    imgsz: list[int],
):
    import torch
    import yaml
    from ultralytics import YOLO
    from ultralytics.nn.modules.head import Segment
    from ultralytics.utils.checks import check_yaml

    cfg = yaml.safe_load(Path(check_yaml("yolo11-seg.yaml")).read_text())
    cfg["nc"] = nc
    cfg["scales"] = {"n": list(scale)}
    path = workdir / "yolo11n-seg.yaml"  # 'n' in the name selects the (only) scale
    path.write_text(yaml.safe_dump(cfg))
    torch.manual_seed(seed)
    model = YOLO(str(path))
    calibrate_batchnorm(model, calib, imgsz)
    head = model.model.model[-1]
    assert isinstance(head, Segment), type(head)
    g = torch.Generator().manual_seed(seed)
    for seq in head.cv3:  # class branch: raise the bias so random weights give scores in 0.01..0.9
        last = seq[-1]
        last.bias.data[:] = cls_bias + 0.5 * torch.randn(last.bias.shape, generator=g)
    model.model.names = dict(NAMES) if nc == len(NAMES) else {i: f"class{i}" for i in range(nc)}
    return model


def export(model, imgsz: list[int], dynamic: bool, opset: int, out: Path) -> Path:
    f = model.export(format="onnx", imgsz=imgsz, dynamic=dynamic, simplify=True, opset=opset, batch=1, device="cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(f), out)
    return out


TINY_SCALE = (0.33, 0.0625, 1024)  # depth, width, max channels of the tiny dynamic model
TINY_IMGSZ = [320, 320]
TINY_STEM = "yolo11-tiny-seg-random-dynamic"


def build_tiny(args, tmp: Path, frames: dict):
    """The tiny dynamic-batch model; the same call the full run makes, so the weights are the same."""
    return build_random_model(TINY_SCALE, 3, args.seed + 1, args.cls_bias, tmp, list(frames.values()), TINY_IMGSZ)


def _ort_outputs(onnx_path: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x})
    return [next(o for o in out if o.ndim == 3), next(o for o in out if o.ndim == 4)]


def _check_frames(frames: dict, imgsz: list[int]) -> list[np.ndarray]:
    """Letterboxed RGB float32 (1, 3, H, W) inputs of the fixture frames (Ultralytics' preprocessing)."""
    from ultralytics.data.augment import LetterBox

    out = []
    for bgr in frames.values():
        im = LetterBox(tuple(imgsz), auto=False)(image=bgr)[..., ::-1]
        out.append((np.ascontiguousarray(im.transpose(2, 0, 1))[None] / np.float32(255)).astype(np.float32))
    return out


def export_torchscript_fixture(args, frames: dict, weights_atol: float = 1e-4, rtol: float = 1e-3) -> int:
    """Rebuild the tiny model, prove it is the committed ONNX's, and export it to TorchScript beside it.

    Two checks. Same weights: the rebuild's own ONNX export must reproduce the committed file's raw
    outputs within ``weights_atol`` (ONNX Runtime on both sides; measured: bit-identical). Same model in
    the other runtime: PyTorch's CPU kernels sum in another order than ONNX Runtime's fused ones, so
    the TorchScript outputs differ by float rounding that grows through the layers (measured on the
    five fixture frames: boxes up to ~0.01 px of 320, scores ~4e-5, coefficients ~1.5e-4, prototypes
    ~3e-4; the eager PyTorch model differs as much), so that check is relative:
    ``|ts - onnx| <= rtol * (1 + |onnx|)``.
    """
    import torch

    committed = MODELS_DIR / f"{TINY_STEM}.onnx"
    if not committed.is_file():
        print(f"missing {committed}; run without --torchscript-only first", file=sys.stderr)
        return 1
    inputs = _check_frames(frames, TINY_IMGSZ)
    reference = [_ort_outputs(committed, x) for x in inputs]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny = build_tiny(args, tmp, frames)
        rebuilt = export(tiny, TINY_IMGSZ, True, args.opset, tmp / f"{TINY_STEM}.onnx")
        worst = 0.0
        for x, ref in zip(inputs, reference, strict=True):
            for a, b in zip(ref, _ort_outputs(rebuilt, x), strict=True):
                worst = max(worst, float(np.abs(a - b).max()))
        print(f"rebuilt ONNX vs committed {committed.name}: max abs diff {worst:.3g}")
        if worst > weights_atol:
            print(
                f"the rebuild does not reproduce {committed.name} (max abs diff {worst:.3g} > {weights_atol}); "
                "nothing written. Export a new .onnx + .torchscript pair under a new name from one build instead.",
                file=sys.stderr,
            )
            return 1
        f = tiny.export(format="torchscript", imgsz=TINY_IMGSZ, batch=1, device="cpu")
        dest = MODELS_DIR / f"{TINY_STEM}.torchscript"
        shutil.move(str(f), dest)
    ts = torch.jit.load(str(dest), map_location="cpu")
    abs_err = {"boxes": 0.0, "scores": 0.0, "coefficients": 0.0, "prototypes": 0.0}
    rel_err = 0.0
    with torch.no_grad():
        for x, (pred_ref, proto_ref) in zip(inputs, reference, strict=True):
            out = ts(torch.from_numpy(x))
            flat = [t for o in out for t in (o if isinstance(o, (list, tuple)) else [o])]
            pred = next(t for t in flat if t.ndim == 3).numpy()
            proto = next(t for t in flat if t.ndim == 4).numpy()
            nc = len(NAMES)
            d = np.abs(pred - pred_ref)
            for key, part in (("boxes", d[:, :4]), ("scores", d[:, 4 : 4 + nc]), ("coefficients", d[:, 4 + nc :])):
                abs_err[key] = max(abs_err[key], float(part.max()))
            abs_err["prototypes"] = max(abs_err["prototypes"], float(np.abs(proto - proto_ref).max()))
            for a, b in ((pred, pred_ref), (proto, proto_ref)):
                rel_err = max(rel_err, float((np.abs(a - b) / (1 + np.abs(b))).max()))
    summary = ", ".join(f"{k} {v:.2g}" for k, v in abs_err.items())
    print(f"{dest.name} vs committed {committed.name}: max abs diff {summary}; max |diff| / (1 + |onnx|) "
          f"{rel_err:.2g} ({dest.stat().st_size / 1e6:.2f} MB)")
    if rel_err > rtol:
        dest.unlink()
        print(f"TorchScript export differs from the ONNX by {rel_err:.3g} > {rtol} (relative); removed it",
              file=sys.stderr)
        return 1
    return 0


def pack(masks: np.ndarray) -> np.ndarray:
    return np.packbits(masks.astype(bool), axis=-1)


def proto_masks(onnx_path: Path, bgr: np.ndarray, imgsz: list[int], conf: float, iou: float, nc: int) -> dict:
    """Ultralytics' NMS output and its masks at prototype resolution (``process_mask``, upsample=False).

    These are what maskwatch's mask space is cut from (before the letterbox padding is cropped and
    before empty masks are dropped): ``*_nms`` rows are in model-input pixels.
    """
    import onnxruntime as ort
    import torch
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils import nms, ops

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    im = LetterBox(tuple(imgsz), auto=False)(image=bgr)
    x = torch.from_numpy(np.ascontiguousarray(im[..., ::-1].transpose(2, 0, 1)[None])).float() / 255
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    pred = next(o for o in out if o.ndim == 3)
    proto = next(o for o in out if o.ndim == 4)
    (p,) = nms.non_max_suppression(torch.from_numpy(pred), conf, iou, nc=nc, max_det=300)
    m = ops.process_mask(torch.from_numpy(proto[0]), p[:, 6:], p[:, :4], tuple(imgsz), upsample=False).numpy() > 0
    return {
        "xyxy_nms": p[:, :4].numpy().astype(np.float32),
        "conf_nms": p[:, 4].numpy().astype(np.float32),
        "cls_nms": p[:, 5].numpy().astype(np.int32),
        "masks_proto": pack(m),
        "masks_proto_shape": np.array(m.shape, np.int64),
    }


def predict_fixtures(onnx_path: Path, imgsz: list[int], conf: float, iou: float, frames: dict, rect: bool) -> dict:
    import ultralytics
    from ultralytics import YOLO

    model = YOLO(str(onnx_path), task="segment")
    out_dir = PARITY_DIR / onnx_path.stem
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    counts = {}
    for stem, bgr in frames.items():
        kw = dict(imgsz=imgsz, conf=conf, iou=iou, device="cpu", verbose=False, rect=rect)
        (r_def,) = model.predict(bgr, **kw)
        (r_ret,) = model.predict(bgr, retina_masks=True, **kw)
        arrays = {}
        for tag, r in (("input", r_def), ("retina", r_ret)):
            b = r.boxes
            arrays[f"xyxy_{tag}"] = b.xyxy.numpy().astype(np.float32)
            arrays[f"conf_{tag}"] = b.conf.numpy().astype(np.float32)
            arrays[f"cls_{tag}"] = b.cls.numpy().astype(np.int32)
            m = r.masks.data.numpy() > 0.5 if r.masks is not None else np.zeros((0, 1, 1), bool)
            arrays[f"masks_{tag}"] = pack(m)
            arrays[f"masks_{tag}_shape"] = np.array(m.shape, np.int64)
        arrays.update(proto_masks(onnx_path, bgr, imgsz, conf, iou, len(model.names)))
        np.savez_compressed(out_dir / f"{stem}.npz", **arrays)
        counts[stem] = {"input": int(len(r_def.boxes)), "retina": int(len(r_ret.boxes))}
        print(f"{onnx_path.name} {stem}: {counts[stem]}")
    manifest = {
        "model": onnx_path.name,
        "imgsz": imgsz,
        "conf": conf,
        "iou": iou,
        "rect": rect,
        "ultralytics": ultralytics.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "counts": counts,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    global MODELS_DIR, PARITY_DIR
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="trained .pt to export (or an .onnx to use as is); default: random YOLO11n-seg")
    p.add_argument("--imgsz", type=int, nargs=2, default=[384, 640], metavar=("H", "W"), help="static input size")
    p.add_argument("--conf", type=float, default=0.1, help="confidence threshold for the fixtures")
    p.add_argument("--iou", type=float, default=0.7)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cls-bias", type=float, default=-4.0, help="class bias for random weights (logit)")
    p.add_argument("--no-dynamic", action="store_true", help="skip the tiny dynamic-batch model")
    p.add_argument(
        "--torchscript-only",
        action="store_true",
        help="only rebuild the tiny dynamic model and export it to TorchScript next to its committed ONNX",
    )
    p.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where the ONNX files go")
    p.add_argument("--parity-dir", type=Path, default=PARITY_DIR, help="where frames and predictions go")
    args = p.parse_args(argv)
    MODELS_DIR, PARITY_DIR = args.models_dir.resolve(), args.parity_dir.resolve()

    import torch

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

    if args.torchscript_only:  # frames drawn in memory (PNG is lossless: what the full run calibrated on)
        frames = {stem: draw_frame(w, h, seed=1000 + i) for i, (stem, w, h) in enumerate(FRAMES)}
        return export_torchscript_fixture(args, frames)

    frames_dir = PARITY_DIR / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    frames = {}
    for i, (stem, w, h) in enumerate(FRAMES):
        bgr = draw_frame(w, h, seed=1000 + i)
        cv2.imwrite(str(frames_dir / f"{stem}.png"), bgr)
        frames[stem] = cv2.imread(str(frames_dir / f"{stem}.png"))  # exactly what the tests will read
        assert np.array_equal(frames[stem], bgr)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model and args.model.endswith(".onnx"):  # used as is; copied next to the other test models
            static = MODELS_DIR / Path(args.model).name
            MODELS_DIR.mkdir(parents=True, exist_ok=True)
            if Path(args.model).resolve() != static.resolve():
                shutil.copyfile(args.model, static)
        else:
            h, w = args.imgsz
            if args.model:
                from ultralytics import YOLO

                model = YOLO(args.model)
                stem = f"{Path(args.model).stem}-{h}x{w}"
            else:
                model = build_random_model(
                    (0.50, 0.25, 1024), 3, args.seed, args.cls_bias, tmp, list(frames.values()), args.imgsz
                )
                stem = f"yolo11n-seg-random-{h}x{w}"
            static = export(model, args.imgsz, False, args.opset, MODELS_DIR / f"{stem}.onnx")
        predict_fixtures(static, args.imgsz, args.conf, args.iou, frames, rect=True)

        if not args.no_dynamic:
            tiny = build_tiny(args, tmp, frames)
            dyn = export(tiny, TINY_IMGSZ, True, args.opset, MODELS_DIR / f"{TINY_STEM}.onnx")
            # rect=False: Ultralytics letterboxes a dynamic model to the minimum rectangle when rect=True;
            # maskwatch always letterboxes to the full input size.
            predict_fixtures(dyn, TINY_IMGSZ, args.conf, args.iou, frames, rect=False)
    for f in sorted(MODELS_DIR.glob("*.onnx")):
        print(f"{f}: {f.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
