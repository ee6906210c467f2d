"""Regenerate the two-stage (Mask R-CNN) test fixtures with torchvision itself.

Run with a Python that has torch, torchvision and onnx (the training environment), never from maskwatch's
runtime; nothing is downloaded (no pretrained weights)::

    .venv-train/bin/python scripts/make_maskrcnn_fixtures.py

Writes ``tests/fixtures/maskrcnn/``:

* ``maskrcnn-tiny-random.onnx``: a torchvision ``MaskRCNN`` with fixed random weights (``torch.manual_seed``) and a
  small body (MobileNetV3-Small at width 0.5, an FPN of 32 channels, a 64-wide ``TwoMLPHead``, a 3-layer
  32-channel mask head), exported with ``torch.onnx.export`` (TorchScript exporter, opset 17): one input
  ``image`` float [3, H, W] (0..1, any H and W), outputs ``boxes`` [N, 4], ``labels`` [N] (int64, 1-based),
  ``scores`` [N], ``masks`` [N, 1, H, W]. Its ``metadata_props`` carry ``names`` (a list literal starting with
  ``__background__``, as torchvision's category lists do).
* the frames are the engine parity frames (``tests/fixtures/parity/frames``, procedural site drawings): landscape
  1280x720, portrait 540x960, and an odd 517x333 cut from ``odd_1000x563`` (``FRAMES``; the manifest says where).
* ``<frame>.npz``: torchvision's eager output on each frame (RGB, float 0..1, at the frame's own size):
  ``boxes``, ``labels``, ``scores`` and the pasted masks thresholded at 0.5 (``masks``: ``np.packbits`` along the
  last axis, shape in ``masks_shape``), with ``masks_uncertain``: pixels whose probability lies within 0.02 of
  0.5 (packed the same way, ``masks_uncertain_shape``), where another runtime may round to the other side.
* ``manifest.json``: what produced them (versions, seed, thresholds, detections per frame), and the parity of
  ONNX Runtime against eager measured here.

With random weights every activation fades and all proposals get the same score, so after building the model
the script (seeded, deterministic) sets the body's BatchNorm statistics from the frames, flattens the mask head's
kernels (smooth masks, as a trained model's, instead of pixel noise) and rescales the box head, the class scores
and the mask logits on the frames (LSUV-style: each layer's output to a target spread), so that each frame has
24 detections (``box_detections_per_img``; ``box_score_thresh`` 0.05) of all three classes with distinct scores
(about 0.55 to 0.97) and masks of a few hundred to a few ten thousand pixels. The manifest records the score gap
below the 24th detection (how far the 25th stays from the cap), so the cap cannot reorder on another runtime.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "maskrcnn"
MODEL_NAME = "maskrcnn-tiny-random.onnx"
NAMES = ["__background__", "worker", "excavator", "dump_truck"]  # torchvision style: label 0 is the background
SEED = 27
FRAMES_DIR = ROOT / "tests" / "fixtures" / "parity" / "frames"
# stem -> (file in FRAMES_DIR, crop x, y, width, height): landscape, portrait, and an odd size cut from a frame
FRAMES = {
    "landscape_1280x720": ("site_1280x720.png", (0, 0, 1280, 720)),
    "portrait_540x960": ("portrait_540x960.png", (0, 0, 540, 960)),
    "odd_517x333": ("odd_1000x563.png", (301, 117, 517, 333)),
}
MASK_THRESHOLD = 0.5
UNCERTAIN = 0.02  # |p - 0.5| below this is recorded as "may flip on another runtime"
FPN_CHANNELS = 32
DETECTIONS_PER_IMAGE = 24


def load_frames() -> dict[str, np.ndarray]:
    """The fixture frames (BGR), cut from the engine parity frames (already committed, so they cost nothing)."""
    out = {}
    for stem, (file, (x, y, w, h)) in FRAMES.items():
        bgr = cv2.imread(str(FRAMES_DIR / file))
        assert bgr is not None, f"missing {FRAMES_DIR / file}"
        crop = np.ascontiguousarray(bgr[y : y + h, x : x + w])
        assert crop.shape == (h, w, 3), (stem, crop.shape)
        out[stem] = crop
    return out


def to_tensor(bgr: np.ndarray):
    import torch

    rgb = np.ascontiguousarray(bgr[..., ::-1])
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255  # what the runtime feeds: RGB, 0..1, CHW


def build_model(calibration: list):
    """A small torchvision MaskRCNN with seeded random weights, made to give varied detections on ``calibration``."""
    import torch
    from torch import nn
    from torchvision.models import mobilenet_v3_small
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    torch.manual_seed(SEED)
    c = FPN_CHANNELS
    nc = len(NAMES)  # background included, as torchvision counts classes
    body = mobilenet_v3_small(weights=None, width_mult=0.5).features  # strides 8, 16, 32 at layers 3, 8, 12
    backbone = BackboneWithFPN(body, {"3": "0", "8": "1", "12": "2"}, [16, 24, 288], c)
    levels = ["0", "1", "2"]
    model = MaskRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=AnchorGenerator(((128,), (192,), (256,), (384,)), ((0.5, 1.0, 2.0),) * 4),
        box_roi_pool=MultiScaleRoIAlign(levels, 7, 2),
        box_head=TwoMLPHead(c * 7 * 7, 64),
        box_predictor=FastRCNNPredictor(64, nc),
        mask_roi_pool=MultiScaleRoIAlign(levels, 14, 2),
        mask_head=MaskRCNNHeads(c, (32, 32, 32), 1),
        mask_predictor=MaskRCNNPredictor(32, 32, nc),
        box_score_thresh=0.05,
        box_detections_per_img=DETECTIONS_PER_IMAGE,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=200,
    )
    model.eval()
    # 1. BatchNorm statistics of the body from the frames (identity BatchNorms let activations fade to nothing)
    for m in body.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    body.train()
    with torch.no_grad():
        for x in calibration:
            model([x])
    body.eval()
    # 2. the mask head's kernels made spatially flat (one value per 3x3 kernel; the transposed convolution a
    #    nearest-neighbour 2x upsampling): masks become smooth blobs a few mask-space cells across instead of
    #    pixel noise, as a trained model's are, so mask space can agree with frame resolution
    heads = model.roi_heads
    with torch.no_grad():
        for m in heads.mask_head.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(m.weight[:, :, 1:2, 1:2].expand_as(m.weight) / 3)
        up = heads.mask_predictor.conv5_mask
        up.weight.copy_(up.weight[:, :, :1, :1].expand_as(up.weight))
    # 3. each head layer's output to a target mean and spread on the frames (class logits: distinct, unsaturated
    #    scores; mask logits: crisp masks covering about 60 % of their box)
    for layer, mean, std in ((heads.box_head.fc6, None, 1.0), (heads.box_head.fc7, None, 1.0),
                             (heads.box_predictor.cls_score, None, 1.0),
                             (heads.mask_predictor.mask_fcn_logits, 2.0, 6.0)):
        seen: list = []
        hook = layer.register_forward_hook(lambda _m, _i, o, seen=seen: seen.append(o.detach().flatten()))
        with torch.no_grad():
            for x in calibration:
                model([x])
        hook.remove()
        values = torch.cat(seen)
        gain = std / float(values.std())
        with torch.no_grad():
            layer.weight.mul_(gain)
            layer.bias.mul_(gain)
            if mean is not None:
                layer.bias.add_(mean - float(values.mean()) * gain)
    with torch.no_grad():
        heads.box_predictor.cls_score.bias.zero_()
        heads.box_predictor.cls_score.bias[2:] = torch.tensor([0.5, 0.3])  # every class shows up
        heads.box_predictor.bbox_pred.weight.mul_(0.1)  # boxes near their proposals: objects of some size
    return model


def export(model, example, path: Path) -> None:
    import onnx
    import torch

    torch.onnx.export(
        model,
        ([example],),
        str(path),
        dynamo=False,  # the TorchScript exporter: torchvision's detection models trace with dynamic H/W
        opset_version=17,
        input_names=["image"],
        output_names=["boxes", "labels", "scores", "masks"],
        dynamic_axes={"image": {1: "height", 2: "width"}, "boxes": {0: "n"}, "labels": {0: "n"},
                      "scores": {0: "n"}, "masks": {0: "n", 2: "height", 3: "width"}},
        do_constant_folding=True,
    )
    m = onnx.load(str(path))
    del m.metadata_props[:]
    for key, value in (("names", repr(NAMES)), ("task", "segment"),
                       ("description", "torchvision MaskRCNN, random weights (maskwatch test fixture)")):
        m.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def pack(masks: np.ndarray) -> np.ndarray:
    return np.packbits(masks, axis=-1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    import torch
    import torchvision

    torch.set_num_threads(2)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    frames = load_frames()
    tensors = {stem: to_tensor(bgr) for stem, bgr in frames.items()}
    model = build_model(list(tensors.values()))
    model_path = out / MODEL_NAME
    export(model, tensors["landscape_1280x720"], model_path)

    counts: dict[str, int] = {}
    reference: dict[str, dict] = {}
    for stem in frames:
        with torch.no_grad():
            res = model([tensors[stem]])[0]
        probs = res["masks"][:, 0].numpy()
        ref = {
            "boxes": res["boxes"].numpy().astype(np.float32),
            "labels": res["labels"].numpy().astype(np.int64),
            "scores": res["scores"].numpy().astype(np.float32),
            "masks": pack(probs > MASK_THRESHOLD),
            "masks_uncertain": pack(np.abs(probs - MASK_THRESHOLD) < UNCERTAIN),
            "masks_shape": np.array(probs.shape, np.int64),
            "masks_uncertain_shape": np.array(probs.shape, np.int64),
        }
        np.savez_compressed(out / f"{stem}.npz", **ref)
        reference[stem] = {**ref, "probs": probs}
        counts[stem] = len(ref["scores"])
        print(f"{stem}: {counts[stem]} detections, scores {ref['scores'].min():.3f}..{ref['scores'].max():.3f}, "
              f"labels {sorted(set(ref['labels'].tolist()))}, mask px {(probs > 0.5).sum((1, 2)).min()}.."
              f"{(probs > 0.5).sum((1, 2)).max()}")

    # how far below the last kept detection the next one scores: a runtime's rounding cannot swap them
    model.roi_heads.detections_per_img = DETECTIONS_PER_IMAGE + 1
    gaps = {}
    with torch.no_grad():
        for stem in frames:
            s = model([tensors[stem]])[0]["scores"].numpy()
            gaps[stem] = float(s[DETECTIONS_PER_IMAGE - 1] - s[DETECTIONS_PER_IMAGE]) if len(s) > DETECTIONS_PER_IMAGE \
                else None
    model.roi_heads.detections_per_img = DETECTIONS_PER_IMAGE
    print(f"score gap between the last kept and the first dropped detection: {gaps}")
    parity = check_onnxruntime(model_path, frames, reference)
    import onnx

    manifest = {
        "model": MODEL_NAME,
        "names": NAMES,
        "seed": SEED,
        "box_score_thresh": 0.05,
        "box_detections_per_img": DETECTIONS_PER_IMAGE,
        "mask_threshold": MASK_THRESHOLD,
        "frames": {stem: {"file": f"parity/frames/{file}", "crop_xywh": list(crop)}
                   for stem, (file, crop) in FRAMES.items()},
        "counts": counts,
        "score_gap_at_cap": gaps,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnx": onnx.__version__,
        "opset": 17,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "onnxruntime_parity": parity,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 1e6:.2f} MB; model {model_path.stat().st_size / 1e6:.2f} MB)")
    return 0


def check_onnxruntime(model_path: Path, frames: dict, reference: dict) -> dict | None:
    """The exported file run by ONNX Runtime against the eager reference (same order expected here)."""
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime is not installed here: parity not checked (the tests check it)")
        return None
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    worst = {"box_px": 0.0, "score": 0.0, "mask_iou": 1.0}
    for stem, bgr in frames.items():
        x = to_tensor(bgr).numpy()
        boxes, labels, scores, masks = sess.run(["boxes", "labels", "scores", "masks"], {"image": x})
        ref = reference[stem]
        if len(boxes) != len(ref["boxes"]) or not np.array_equal(labels, ref["labels"]):
            raise SystemExit(f"{stem}: onnxruntime gave {len(boxes)} detections ({labels.tolist()}), "
                             f"eager {len(ref['boxes'])} ({ref['labels'].tolist()})")
        worst["box_px"] = max(worst["box_px"], float(np.abs(boxes - ref["boxes"]).max(initial=0)))
        worst["score"] = max(worst["score"], float(np.abs(scores - ref["scores"]).max(initial=0)))
        a, b = masks[:, 0] > MASK_THRESHOLD, ref["probs"] > MASK_THRESHOLD
        inter, union = (a & b).sum((1, 2)), (a | b).sum((1, 2))
        iou = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
        worst["mask_iou"] = min(worst["mask_iou"], float(iou.min(initial=1.0)))
    print(f"onnxruntime vs eager: max box error {worst['box_px']:.2e} px, max score error {worst['score']:.2e}, "
          f"min mask IoU {worst['mask_iou']:.5f}")
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
