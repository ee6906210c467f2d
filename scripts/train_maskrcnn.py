#!/usr/bin/env python3
"""Train a two-stage model (torchvision Mask R-CNN, small backbone, from scratch) on maskwatch's synthetic scenes and
export it to ONNX the way maskwatch reads it (issue 27's comparison with the YOLO11n-seg demo model).

Run with the training environment (torch, torchvision, onnx; ``pip install -e .`` of this repo)::

    .venv-train/bin/python scripts/train_maskrcnn.py                       # data -> train (time-boxed) -> export
    .venv-train/bin/python scripts/train_maskrcnn.py --resume              # continue runs/maskrcnn/<name>/last.pt
    .venv-train/bin/python scripts/train_maskrcnn.py --resume --time-h 4   # ... with a larger total budget
    .venv-train/bin/python scripts/train_maskrcnn.py --export-only --weights runs/maskrcnn/resnet18/last.pt \\
        --out var/models/maskrcnn-resnet18.onnx
    .venv-train/bin/python scripts/train_maskrcnn.py --init runs/maskrcnn/resnet18/last.pt --name r18-gpu \\
        --device cuda --batch 8 --workers 8 --threads 8 --time-h 0.2    # a new stage from a run's weights

Steps:
  1. data    the YOLO-seg dataset the demo model trains on (``maskwatch.scenes.dataset.export_dataset``: site and
             pitch at 0.6 / 0.4, train seeds from 0, val seeds from VAL_SEED_OFFSET, plus scripted-scenario frames;
             held-out evaluation clips use EVAL_SEED_OFFSET and up, never rendered here). Rendered when
             ``--data-dir`` has no data.yaml; any YOLO-seg folder works (``var/train/ds-farm``: 6 classes with cow);
             class names come from its data.yaml. Polygons are rasterised at frame resolution, area-averaged to
             the training size and thresholded at 0.5 (instance masks); boxes from the masks; labels = class + 1
             (torchvision's label 0 is the background).
  2. train   ``torchvision.models.detection.MaskRCNN``, no pretrained weights (nothing is downloaded):
             --backbone resnet18   ResNet-18 + FPN on layers 1-4 (strides 4-32, and a max-pooled level), all
                                   stages trainable: ``resnet_fpn_backbone`` with --fpn-channels 256, the same
                                   structure with a narrower FPN otherwise
             --backbone mobilenet_v3   MobileNetV3-Large + FPN on the last block of each stride (4, 8, 16, 32;
                                   torchvision's ``mobilenet_backbone`` takes both FPN inputs at stride 32, too
                                   coarse for 5 px balls)
             --fpn-channels: 128 by default. At torchvision's 256 the FPN's and the RPN head's 3x3 convolutions
             at stride 4 weigh most in a CPU step: ResNet-18 at 256 took 1.6x the time per step of 128 (measured
             interleaved on the same batches, 2 shared cores).
             Norm layer (--norm): GroupNorm by default. From scratch every statistic is learnt on our batches of
             2-4 images: BatchNorm's batch statistics are noisy at that size and differ from the running averages
             the exported model uses (training from scratch at small batches needs GN or SyncBN; He et al.,
             "Rethinking ImageNet Pre-training", 2019); GN does not depend on the batch, so a CPU run at batch 2
             and a GPU run at batch 16 train the same model. FrozenBatchNorm2d (torchvision's default for
             pretrained backbones) with random init is an identity: no normalisation at all. --norm bn is
             offered for large GPU batches (at inference it can fold into the convolutions; GN cannot). Measured
             per training step on the CPU: ResNet-18 the same with either, MobileNetV3 about 20 % slower with GN.
             Heads: torchvision's defaults (TwoMLPHead, 4-conv mask head, no norm) with --box-head-dim and
             --mask-head-dim; anchors for small objects (two sizes per FPN level, 8 to 181 px at the training
             scale: a ball is 4-7 px, a worker 8-26 px at 360x640). 720p frames train at 360x640 (--min-size
             384 --max-size 640: the same resize the exported graph does), horizontal flips.
             AdamW (default; Ultralytics also picks AdamW for short runs) or SGD, linear warm-up, cosine decay
             to --final-lr-frac. --time-h is the run's total wall-clock budget (summed over resumes): the decay's
             length is re-estimated from the measured pace at every checkpoint so that it ends on time;
             --epochs caps it. Checkpoint (model, optimizer, schedule, step, data position, RNG) every
             --save-min minutes, on SIGTERM/SIGINT and at the end: --resume continues where it stopped.
  3. export  ``torch.onnx.export`` (TorchScript exporter, opset 17): input ``image`` float [3, H, W] (RGB 0..1,
             dynamic H and W; the graph resizes), outputs ``boxes``, ``labels``, ``scores``, ``masks``;
             ``names`` metadata with ``__background__`` first, ``imgsz`` [720, 1280] (--imgsz: maskwatch's
             letterbox canvas for the model). The graph's own score threshold (--score-thresh, torchvision's 0.05)
             and detection cap (100) apply before maskwatch's ``conf``. Checked against eager torchvision on val
             frames (onnxruntime) and loaded and run by ``maskwatch.engines.load_engine``; then the evaluation
             commands (maskwatch's own: ``eval masks``, ``scripts/eval_alert_clips.sh``, ``bench engine``) are
             printed.

CPU etiquette: --threads (default 2), the process lowers its own priority to --nice (default 10), data loading in
the main process unless --workers; GPU: ``--device cuda --batch 8 --workers 8``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT / "var" / "train" / "ds-site-pitch"
DEFAULT_PROJECT = ROOT / "runs" / "maskrcnn"
BACKBONES = ("resnet18", "mobilenet_v3")
# anchor sizes (pixels at the training scale) per FPN level, strides 4, 8, 16, 32, 64; aspect ratios h/w
ANCHOR_SIZES = ((8, 11), (16, 23), (32, 45), (64, 90), (128, 181))
ASPECT_RATIOS = (0.5, 1.0, 2.0)
OPSET = 17


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------------------- data


def build_data(args) -> Path:
    """The dataset's data.yaml; rendered with the `scenes` package (as scripts/train_demo_model.py does) if absent."""
    data_dir = Path(args.data_dir)
    data_yaml = data_dir / "data.yaml"
    if data_yaml.exists():
        log(f"data: using {data_yaml}")
        return data_yaml
    from maskwatch.scenes.dataset import export_dataset, export_scenario_frames

    t0 = time.time()
    scenes = args.scenes.split(",")
    weights = [0.6, 0.4] if scenes == ["site", "pitch"] else [1.0 / len(scenes)] * len(scenes)
    export_dataset(data_dir, scenes, args.images, seed_base=0, val_fraction=args.val_fraction, frames_per_seed=3,
                   workers=args.render_workers, scene_weights=weights, log=log)
    if args.scenario_images > 0:  # the excavator's arm at full reach, a reversing truck (as the demo model's data)
        scenarios = {"site": ["excavator_swing", "excavator_swing", "truck_reverse"]}
        if "farm" in scenes:
            scenarios["farm"] = ["gate_crowding", "animal_on_track", "cow_down"]
        export_scenario_frames(data_dir, scenarios, args.scenario_images, workers=args.render_workers, log=log)
    log(f"data: rendered in {time.time() - t0:.0f} s")
    return data_yaml


def read_names(data_yaml: Path) -> list[str]:
    import yaml

    names = yaml.safe_load(data_yaml.read_text()).get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names, key=int)]
    if not names:
        raise SystemExit(f"{data_yaml}: no class names")
    return [str(n) for n in names]


def train_size(h: int, w: int, min_size: int, max_size: int) -> tuple[int, int]:
    """The size torchvision's GeneralizedRCNNTransform (and so the exported graph) resizes an h x w image to."""
    scale = min(min_size / min(h, w), max_size / max(h, w))
    return int(math.floor(h * scale)), int(math.floor(w * scale))


class SegDataset:
    """A YOLO-seg split (images/<split>/*.jpg, labels/<split>/*.txt: `class x1 y1 x2 y2 ...`, normalised) as
    torchvision detection samples at the training size: (image float [3, h, w] 0..1, target dict).

    Items are (index, flip) pairs, so the trainer decides the order and the flips (reproducible on resume)."""

    def __init__(self, root: Path, split: str, nc: int, min_size: int, max_size: int) -> None:
        self.images = sorted((root / "images" / split).glob("*.jpg"))
        if not self.images:
            raise SystemExit(f"{root / 'images' / split}: no images")
        self.labels = [root / "labels" / split / (p.stem + ".txt") for p in self.images]
        self.nc, self.min_size, self.max_size = nc, min_size, max_size

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
        """RGB uint8 frame and its instances (class id, polygon in frame pixels)."""
        bgr = cv2.imread(str(self.images[i]))
        if bgr is None:
            raise OSError(f"cannot read {self.images[i]}")
        h, w = bgr.shape[:2]
        inst = []
        if self.labels[i].exists():
            for line in self.labels[i].read_text().splitlines():
                v = line.split()
                if len(v) < 7:
                    continue
                c = int(v[0])
                if not 0 <= c < self.nc:
                    raise SystemExit(f"{self.labels[i]}: class {c} but data.yaml names {self.nc} classes")
                inst.append((c, np.asarray(v[1:], np.float64).reshape(-1, 2) * (w, h)))
        return np.ascontiguousarray(bgr[..., ::-1]), inst

    def __getitem__(self, item):
        import torch
        from torchvision.models.detection.transform import _resize_image_and_masks

        i, flip = item
        rgb, inst = self.load(i)
        H, W = rgb.shape[:2]
        image = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255)
        image, _ = _resize_image_and_masks(image, self.min_size, self.max_size)  # exactly the graph's resize
        h, w = image.shape[1:]
        masks, labels = [], []
        for c, poly in inst:
            area = rasterise(poly, (H, W), (h, w))
            if area.max() <= 0:
                continue
            # the threshold as maskwatch applies it; an object thinner than a cell keeps its fullest cells
            m = area >= (0.5 if area.max() >= 0.5 else area.max() * 0.5)
            masks.append(m)
            labels.append(c + 1)
        if masks:
            m = np.stack(masks)
            if flip:
                m = m[:, :, ::-1]
            cols, rows = m.any(1), m.any(2)
            x1, x2 = cols.argmax(1), w - cols[:, ::-1].argmax(1)
            y1, y2 = rows.argmax(1), h - rows[:, ::-1].argmax(1)
            boxes = np.stack([x1, y1, x2, y2], 1).astype(np.float32)
            target = {"boxes": torch.from_numpy(boxes), "labels": torch.as_tensor(labels, dtype=torch.int64),
                      "masks": torch.from_numpy(np.ascontiguousarray(m).astype(np.uint8))}
        else:
            target = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64),
                      "masks": torch.zeros((0, h, w), dtype=torch.uint8)}
        if flip:
            image = image.flip(-1)
        return image.contiguous(), target


def area_weights(lo: int, hi: int, p0: int, p1: int, cell: float) -> np.ndarray:
    """(hi - lo, p1 - p0): how much of output cell c (input interval [c * cell, (c + 1) * cell)) input pixel p covers,
    as a share of the cell: cv2.INTER_AREA's weights, for the cells lo..hi and the pixels p0..p1 only."""
    c = np.arange(lo, hi, dtype=np.float64)[:, None]
    p = np.arange(p0, p1, dtype=np.float64)[None, :]
    return np.clip(np.minimum((c + 1) * cell, p + 1) - np.maximum(c * cell, p), 0, None) / cell


def rasterise(poly: np.ndarray, frame_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """A polygon (frame pixels; label vertices are pixel indices, so filling it gives back the rendered mask's
    pixels) filled at frame resolution and area-averaged to out_hw (what cv2.INTER_AREA gives on the whole frame),
    working on the polygon's bounding box only. Returns the coverage (0..1) at out_hw."""
    (H, W), (h, w) = frame_hw, out_hw
    pts = np.round(poly).astype(np.int32)
    x0, y0 = max(0, int(pts[:, 0].min())), max(0, int(pts[:, 1].min()))
    x1, y1 = min(W, int(pts[:, 0].max()) + 1), min(H, int(pts[:, 1].max()) + 1)
    out = np.zeros((h, w), np.float32)
    if x1 <= x0 or y1 <= y0:
        return out
    patch = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(patch, [pts - (x0, y0)], 1)
    cx, cy = W / w, H / h
    c0, c1 = int(x0 // cx), min(w, int(math.ceil(x1 / cx)))
    r0, r1 = int(y0 // cy), min(h, int(math.ceil(y1 / cy)))
    out[r0:r1, c0:c1] = area_weights(r0, r1, y0, y1, cy) @ patch @ area_weights(c0, c1, x0, x1, cx).T
    return out


def collate(batch):
    return tuple(zip(*batch))


def epoch_order(n: int, seed: int, epoch: int) -> list[tuple[int, bool]]:
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    flips = rng.random(n) < 0.5
    return [(int(i), bool(f)) for i, f in zip(perm, flips)]


# ---------------------------------------------------------------------------------------------------------- model


def norm_factory(kind: str):
    from torch import nn

    if kind == "bn":
        return nn.BatchNorm2d
    if kind == "gn":
        def group_norm(c: int) -> nn.Module:
            g = math.gcd(c, 32)  # 32 groups where the width allows (ResNet), fewer for MobileNet's 24, 40, 72, ...
            while g > 1 and c // g < 2:
                g //= 2
            return nn.GroupNorm(g, c)

        return group_norm
    raise ValueError(f"norm {kind!r}: expected gn or bn")


def build_model(cfg: dict):
    """A torchvision MaskRCNN from ``cfg`` (stored in every checkpoint, so resume and export rebuild the same)."""
    import torch
    from torch import nn
    from torchvision.models import mobilenet_v3_large, resnet18
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN, resnet_fpn_backbone
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    norm = norm_factory(cfg["norm"])
    fpn = cfg.get("fpn_channels", 256)
    if cfg["backbone"] == "resnet18" and fpn == 256:
        backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5, norm_layer=norm)
    elif cfg["backbone"] == "resnet18":  # what resnet_fpn_backbone builds, with a narrower FPN
        body = resnet18(weights=None, norm_layer=norm)
        backbone = BackboneWithFPN(body, {f"layer{k}": str(k - 1) for k in (1, 2, 3, 4)}, [64, 128, 256, 512], fpn,
                                   extra_blocks=LastLevelMaxPool())
    elif cfg["backbone"] == "mobilenet_v3":
        body = mobilenet_v3_large(weights=None, norm_layer=norm).features
        # the last block at each stride (4, 8, 16, 32): blocks marked _is_cn start a new stride
        starts = [i for i, b in enumerate(body) if getattr(b, "_is_cn", False)]
        taps = [s - 1 for s in starts[1:]] + [len(body) - 1]
        with torch.no_grad():
            x, channels = torch.zeros(1, 3, 64, 64), {}
            for i, b in enumerate(body):
                x = b(x)
                channels[i] = x.shape[1]
        backbone = BackboneWithFPN(body, {str(t): str(k) for k, t in enumerate(taps)}, [channels[t] for t in taps],
                                   fpn, extra_blocks=LastLevelMaxPool())
    else:
        raise ValueError(f"backbone {cfg['backbone']!r}: expected one of {BACKBONES}")
    c = backbone.out_channels
    nc = len(cfg["names"]) + 1  # + background
    sizes = tuple(tuple(s) for s in cfg["anchor_sizes"])
    model = MaskRCNN(
        backbone,
        num_classes=None,
        min_size=cfg["min_size"],
        max_size=cfg["max_size"],
        rpn_anchor_generator=AnchorGenerator(sizes, (tuple(cfg["aspect_ratios"]),) * len(sizes)),
        rpn_pre_nms_top_n_train=2000,
        rpn_post_nms_top_n_train=1000,
        rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_test=1000,
        box_head=TwoMLPHead(c * 7 * 7, cfg["box_head_dim"]),
        box_predictor=FastRCNNPredictor(cfg["box_head_dim"], nc),
        box_batch_size_per_image=cfg["box_batch_per_image"],
        box_detections_per_img=cfg["detections_per_img"],
        box_score_thresh=0.05,
        mask_head=MaskRCNNHeads(c, (cfg["mask_head_dim"],) * 4, 1),
        mask_predictor=MaskRCNNPredictor(cfg["mask_head_dim"], cfg["mask_head_dim"], nc),
    )
    # predictors start small (as Detectron2's): kaiming-initialised mask logits start at |logit| ~ 10, a mask loss
    # of ~8 instead of log 2 that the first hundred steps would spend undoing
    heads = model.roi_heads
    with torch.no_grad():
        nn.init.normal_(heads.box_predictor.cls_score.weight, std=0.01)
        nn.init.normal_(heads.box_predictor.bbox_pred.weight, std=0.001)
        nn.init.normal_(heads.mask_predictor.mask_fcn_logits.weight, std=0.001)
        for layer in (heads.box_predictor.cls_score, heads.box_predictor.bbox_pred,
                      heads.mask_predictor.mask_fcn_logits):
            nn.init.zeros_(layer.bias)
    model.transform._skip_resize = True  # training samples come at the training size already (SegDataset)
    return model


def model_config(args, names: list[str]) -> dict:
    return {
        "backbone": args.backbone, "norm": args.norm, "names": names, "min_size": args.min_size,
        "max_size": args.max_size, "fpn_channels": args.fpn_channels, "anchor_sizes": [list(s) for s in ANCHOR_SIZES],
        "aspect_ratios": list(ASPECT_RATIOS), "box_head_dim": args.box_head_dim, "mask_head_dim": args.mask_head_dim,
        "box_batch_per_image": args.box_batch_per_image,
        "detections_per_img": args.detections_per_img if args.detections_per_img is not None else 100,
    }


def param_groups(model, weight_decay: float):
    """Weight decay on conv and linear weights only (not on norm parameters and biases)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Schedule:
    """Linear warm-up from warmup_start * lr, then cosine from lr to final_frac * lr at step ``horizon``.

    ``horizon`` moves when the time budget's pace estimate changes (``set_horizon``); the state is saved whole."""

    def __init__(self, lr: float, warmup: int, horizon: int, final_frac: float, warmup_start: float = 0.001):
        self.lr, self.warmup, self.horizon = lr, warmup, horizon
        self.final_frac, self.warmup_start = final_frac, warmup_start

    def at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (self.warmup_start + (1 - self.warmup_start) * step / self.warmup)
        span = max(1, self.horizon - self.warmup)
        p = min(1.0, (step - self.warmup) / span)
        return self.lr * (self.final_frac + (1 - self.final_frac) * 0.5 * (1 + math.cos(math.pi * p)))

    def apply(self, optimizer, step: int) -> float:
        lr = self.at(step)
        for g in optimizer.param_groups:
            g["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        vars(self).update(state)


# ---------------------------------------------------------------------------------------------------------- train


class Stop:
    """SIGTERM / SIGINT: finish the step, write the checkpoint, exit."""

    def __init__(self) -> None:
        self.signal: int | None = None
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, signum, _frame) -> None:
        if self.signal is not None:  # a second one: stop now
            raise SystemExit(128 + signum)
        self.signal = signum
        log(f"train: signal {signum}: stopping after this step (checkpoint follows)")


def save_checkpoint(path: Path, state: dict) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def rss_gb() -> tuple[float, float]:
    """Current and peak resident memory of this process, GB."""
    with open("/proc/self/statm") as f:
        cur = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return cur / 1e9, peak / 1e9


def train(args) -> Path:
    import torch

    run_dir = Path(args.project) / args.name
    last = run_dir / "last.pt"
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = False  # image sizes vary

    init = None
    if args.resume:
        if not last.exists():
            raise SystemExit(f"--resume: no checkpoint at {last}")
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        cfg, run = ckpt["config"], ckpt["run"]
        run_before = dict(run)
        data_dir = Path(run["data_dir"])
        if args.time_h is not None and args.time_h != run["time_h"]:
            log(f"train: budget {run['time_h']} h -> {args.time_h} h (total over the run)")
            run["time_h"] = args.time_h
        if args.epochs is not None and args.epochs != run["epochs"]:
            log(f"train: epochs {run['epochs']} -> {args.epochs}")
            run["epochs"] = args.epochs
        log(f"train: resuming {last} at step {ckpt['step']} (epoch {ckpt['epoch']}, "
            f"{ckpt['train_seconds'] / 60:.1f} min trained)")
    else:
        if last.exists() and not args.overwrite:
            raise SystemExit(f"{last} exists: --resume to continue it, or --overwrite / another --name")
        data_yaml = build_data(args)
        data_dir = data_yaml.parent
        cfg = model_config(args, read_names(data_yaml))
        if args.init:  # a new stage (own optimizer, schedule, batch) from a checkpoint's weights and architecture
            init = torch.load(args.init, map_location="cpu", weights_only=False)
            if init["config"]["names"] != cfg["names"]:
                raise SystemExit(f"--init {args.init}: classes {init['config']['names']}, the data {cfg['names']}")
            cfg = init["config"]
            log(f"train: a new stage from {args.init} (step {init.get('step')}; its architecture: "
                f"{cfg['backbone']}-FPN{cfg.get('fpn_channels', 256)} {cfg['norm']})")
        run = {"data_dir": str(data_dir.resolve()), "batch": args.batch, "optimizer": args.optimizer,
               "lr": args.lr if args.lr is not None else
               (2e-4 if args.optimizer == "adamw" else 0.02 * args.batch / 16),
               "weight_decay": args.weight_decay if args.weight_decay is not None else
               (0.05 if args.optimizer == "adamw" else 1e-4),
               "warmup_steps": args.warmup_steps, "final_lr_frac": args.final_lr_frac,
               "time_h": args.time_h if args.time_h is not None else 2.0,
               "epochs": args.epochs if args.epochs is not None else 24, "seed": args.seed, "clip_grad": 10.0}
        ckpt = None

    names = cfg["names"]
    ds = SegDataset(data_dir, "train", len(names), cfg["min_size"], cfg["max_size"])
    steps_per_epoch = len(ds) // run["batch"]
    if steps_per_epoch < 1:
        raise SystemExit(f"{len(ds)} training images for batch {run['batch']}")
    cap = run["epochs"] * steps_per_epoch

    torch.manual_seed(run["seed"])
    model = build_model(cfg)
    if ckpt is None and init is not None:
        model.load_state_dict(init["model"])
        del init
    model = model.to(device)
    groups = param_groups(model, run["weight_decay"])
    if run["optimizer"] == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=run["lr"], betas=(0.9, 0.999))
    else:
        optimizer = torch.optim.SGD(groups, lr=run["lr"], momentum=0.9)
    schedule = Schedule(run["lr"], run["warmup_steps"], cap, run["final_lr_frac"])
    step, epoch, pos, train_s, pace = 0, 0, 0, 0.0, 0.0
    budget_changed = False
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        step, epoch, pos, train_s = ckpt["step"], ckpt["epoch"], ckpt["pos"], ckpt["train_seconds"]
        pace = ckpt.get("pace", 0.0)
        budget_changed = ckpt["run"] != run_before
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        del ckpt
    budget_s = run["time_h"] * 3600 if run["time_h"] > 0 else math.inf
    if math.isinf(budget_s):
        schedule.horizon = cap
    run_dir.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"train: {cfg['backbone']}-FPN ({cfg['norm']}), {n_params / 1e6:.1f} M parameters, {len(names)} classes "
        f"{names}; {len(ds)} train images ({data_dir}), batch {run['batch']}, {steps_per_epoch} steps/epoch; "
        f"{run['optimizer']} lr {run['lr']:g} wd {run['weight_decay']:g}, warm-up {run['warmup_steps']} steps; "
        f"budget {run['time_h']} h, at most {run['epochs']} epochs ({cap} steps); {args.threads} threads, "
        f"device {device}")
    (run_dir / "run.json").write_text(json.dumps({"config": cfg, "run": run}, indent=1) + "\n")

    def state() -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "step": step, "epoch": epoch, "pos": pos, "train_seconds": train_s, "pace": pace, "config": cfg,
                "run": run,
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None},
                "torch": torch.__version__}

    def reestimate(sec_per_step: float) -> None:
        """The decay ends when the budget does, at the pace measured since the last estimate."""
        nonlocal pace
        if math.isinf(budget_s) or sec_per_step <= 0:
            return
        pace = sec_per_step
        horizon = min(cap, step + int((budget_s - train_s) / sec_per_step))
        horizon = max(horizon, step + 1)
        if abs(horizon - schedule.horizon) > 0.02 * max(horizon, 1):
            log(f"train: {sec_per_step:.2f} s/step -> cosine decay ends at step {horizon} (was {schedule.horizon})")
            schedule.horizon = horizon

    loader_kw = {"num_workers": args.workers, "collate_fn": collate, "pin_memory": device.type == "cuda"}
    if args.workers > 0:
        loader_kw["persistent_workers"] = False
    stop = Stop()
    csv = open(run_dir / "log.csv", "a" if args.resume else "w")
    if csv.tell() == 0:
        csv.write("step,epoch,train_s,lr,loss,loss_classifier,loss_box_reg,loss_mask,loss_objectness,"
                  "loss_rpn_box_reg,s_per_step,cpu_s_per_step,rss_gb\n")
    if budget_changed:  # a new budget or epoch cap: the decay's end from the pace measured so far
        schedule.horizon = cap if math.isinf(budget_s) or not pace else schedule.horizon
        reestimate(pace)
    model.train()
    t_save = t_prev = time.time()
    t_log, step_log, cpu_log = time.time(), step, time.process_time()
    t_est, step_est, estimated = time.time(), step, False
    sums: dict[str, float] = {}
    done_reason = None
    if train_s >= budget_s:
        done_reason = f"time budget {run['time_h']} h already spent (--time-h for more)"
    elif step >= schedule.horizon:
        done_reason = f"end of the schedule (step {schedule.horizon}; --time-h or --epochs for more)"
    while done_reason is None:
        if epoch >= run["epochs"]:
            done_reason = f"{run['epochs']} epochs"
            break
        order = epoch_order(len(ds), run["seed"], epoch)[pos * run["batch"]: steps_per_epoch * run["batch"]]
        batches = [order[k: k + run["batch"]] for k in range(0, len(order), run["batch"])]
        # its own generator: a loader's iterator draws a seed, which must not come from the RNG the model samples
        # anchors and RoIs with (restored on --resume, so steps after a resume are the same as without one)
        loader = torch.utils.data.DataLoader(ds, batch_sampler=batches, generator=torch.Generator().manual_seed(epoch),
                                             **loader_kw)
        for images, targets in loader:
            images = [im.to(device, non_blocking=True) for im in images]
            targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
            lr = schedule.apply(optimizer, step)
            losses = model(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                parts = {k: round(float(v), 4) for k, v in losses.items()}
                raise SystemExit(f"train: loss is {float(loss)} at step {step} ({parts}); "
                                 f"lower --lr (now {run['lr']:g}) and start again")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), run["clip_grad"])
            optimizer.step()
            step += 1
            pos += 1
            now = time.time()
            train_s += now - t_prev  # data loading included, checkpoint writing not
            t_prev = now
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            sums["loss"] = sums.get("loss", 0.0) + loss.item()
            if not estimated and (step - step_est >= args.estimate_after
                                  or (now - t_est >= 60 and step - step_est >= 3)):
                reestimate((now - t_est) / (step - step_est))
                estimated = True
            if step - step_log >= args.log_every or step == 1:
                n = step - step_log
                sps = n / max(now - t_log, 1e-9)
                cpu = time.process_time()
                cpu_per_step = (cpu - cpu_log) / n  # all threads: less sensitive to other work on the machine
                cur, peak = rss_gb()
                mean = {k: v / n for k, v in sums.items()}
                parts = " ".join(f"{k.removeprefix('loss_')} {mean[k]:.3f}" for k in sorted(mean) if k != "loss")
                log(f"step {step} ep {epoch} ({pos}/{steps_per_epoch}) loss {mean['loss']:.3f} [{parts}] lr {lr:.2e} "
                    f"{sps:.3f} steps/s ({sps * run['batch']:.2f} img/s, {cpu_per_step:.1f} CPU s/step) "
                    f"{train_s / 60:.1f} min; rss {cur:.2f} GB (peak {peak:.2f})")
                csv.write(",".join(str(x) for x in (
                    step, epoch, round(train_s, 1), f"{lr:.3e}", *(round(mean.get(k, float('nan')), 4) for k in (
                        "loss", "loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
                        "loss_rpn_box_reg")), round(1 / sps, 3), round(cpu_per_step, 3), round(cur, 2))) + "\n")
                csv.flush()
                sums, t_log, step_log, cpu_log = {}, now, step, cpu
            if stop.signal is not None:
                done_reason = f"signal {stop.signal}"
            elif train_s >= budget_s:
                done_reason = f"time budget {run['time_h']} h"
            elif step >= schedule.horizon and not math.isinf(budget_s):
                done_reason = f"end of the schedule (step {schedule.horizon})"
            elif now - t_save >= args.save_min * 60:
                if step > step_est:
                    reestimate((now - t_est) / (step - step_est))
                t_est, step_est = now, step
                save_checkpoint(last, state())
                log(f"checkpoint: {last} (step {step})")
                t_save = time.time()
                t_prev += t_save - now  # saving is not training time
                t_est += t_save - now
                t_log += t_save - now
            if done_reason:
                break
        else:
            epoch, pos = epoch + 1, 0
            continue
    save_checkpoint(last, state())
    csv.close()
    cur, peak = rss_gb()
    log(f"train: stopped at step {step} (epoch {epoch}, {pos}/{steps_per_epoch}): {done_reason}; "
        f"{train_s / 60:.1f} min trained; peak rss {peak:.2f} GB; checkpoint {last}")
    return last


# --------------------------------------------------------------------------------------------------------- export


def load_for_export(weights: Path):
    import torch

    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    cfg = ckpt["config"]
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    model.transform._skip_resize = False  # the graph resizes any frame itself
    return model, cfg, ckpt


def export(args, weights: Path, out: Path) -> Path:
    import onnx
    import torch

    model, cfg, ckpt = load_for_export(weights)
    model.roi_heads.score_thresh = args.score_thresh
    if args.detections_per_img is not None:
        model.roi_heads.detections_per_img = args.detections_per_img
    cap = model.roi_heads.detections_per_img
    data_dir = Path(args.data_dir) if args.data_dir_given or "run" not in ckpt else Path(ckpt["run"]["data_dir"])
    frames, labels = [], []
    if (data_dir / "images" / "val").is_dir():
        val = SegDataset(data_dir, "val", len(cfg["names"]), cfg["min_size"], cfg["max_size"])
        for i in range(min(len(val), 12)):
            frames.append(val.load(i)[0])
            labels.append(val.images[i].name)
    else:  # the dataset is gone: val-seed frames rendered afresh
        from maskwatch.scenes.dataset import VAL_SEED_OFFSET, make_scene

        log(f"export: no {data_dir / 'images' / 'val'}: rendering val-seed frames to trace and check with")
        for k, scene in enumerate(("site", "pitch", "site", "pitch")):
            bgr, _ = make_scene(scene, VAL_SEED_OFFSET + k, 1280, 720).render(10.0 + 5 * k, frame_index=150 + 75 * k)
            frames.append(np.ascontiguousarray(bgr[..., ::-1]))
            labels.append(f"{scene} seed {VAL_SEED_OFFSET + k}")
    frames = [torch.from_numpy(rgb).permute(2, 0, 1).float().div(255) for rgb in frames]
    with torch.no_grad():
        counts = [len(model([f])[0]["scores"]) for f in frames]
    best = int(np.argmax(counts))
    log(f"export: eager detections on {len(frames)} val frames: {counts}; tracing with {labels[best]}")
    if counts[best] == 0:
        log("export: no detections on any val frame (an untrained model?): the trace sees none, which is fine "
            "(such a trace was checked to give eager torchvision's detections on frames that have some)")
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    torch.onnx.export(
        model, ([frames[best]],), str(out), dynamo=False, opset_version=OPSET,
        input_names=["image"], output_names=["boxes", "labels", "scores", "masks"],
        dynamic_axes={"image": {1: "height", 2: "width"}, "boxes": {0: "n"}, "labels": {0: "n"},
                      "scores": {0: "n"}, "masks": {0: "n", 2: "height", 3: "width"}},
        do_constant_folding=True,
    )
    m = onnx.load(str(out))
    del m.metadata_props[:]
    run = ckpt.get("run", {})
    desc = (f"torchvision MaskRCNN {cfg['backbone']}-FPN ({cfg['norm']}), from scratch on maskwatch synthetic scenes "
            f"(scripts/train_maskrcnn.py): step {ckpt.get('step')}, epoch {ckpt.get('epoch')}, "
            f"{ckpt.get('train_seconds', 0) / 3600:.2f} h, batch {run.get('batch')}, "
            f"min/max size {cfg['min_size']}/{cfg['max_size']}, score > {args.score_thresh}, at most {cap} per image")
    meta = [("names", repr(["__background__", *cfg["names"]])), ("task", "segment"), ("description", desc)]
    if args.imgsz.lower() != "none":  # maskwatch's letterbox canvas for this model (default 1280 x 1280)
        h, w = (int(v) for v in args.imgsz.split(","))
        meta.append(("imgsz", repr([h, w])))
    for key, value in meta:
        m.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(m)
    onnx.save(m, str(out))
    log(f"export: {out} ({out.stat().st_size / 1e6:.1f} MB, opset {OPSET}) in {time.time() - t0:.0f} s")
    verify(args, model, out, frames, counts, best)
    return out


def verify(args, model, out: Path, frames: list, counts: list[int], best: int) -> None:
    """onnxruntime against eager torchvision, then the file through maskwatch's own engine and segmenter."""
    import torch

    from maskwatch.engines import TwoStageSegmenter, load_engine

    picks = [best] + [i for i in np.argsort(counts)[::-1] if i != best][:1]
    picks.append(len(frames) - 1 if len(frames) - 1 not in picks else 0)  # a frame with few detections too
    engine = load_engine(out, backend="onnxruntime", threads=args.threads)
    log(f"verify: maskwatch loaded {out.name}: layout {engine.meta.layout}, names {engine.meta.names}")
    worst_box, worst_score = 0.0, 0.0
    for i in dict.fromkeys(picks):
        x = frames[i]
        with torch.no_grad():
            ref = model([x])[0]
        boxes, labels, scores, masks = engine.infer_image(x.numpy())
        if len(boxes) != len(ref["boxes"]) or not np.array_equal(labels, ref["labels"].numpy()):
            log(f"verify: frame {i}: onnxruntime {len(boxes)} detections {labels.tolist()[:10]}, eager "
                f"{len(ref['boxes'])} {ref['labels'].tolist()[:10]} (near-equal scores may swap at the cap)")
            continue
        if len(boxes):
            worst_box = max(worst_box, float(np.abs(boxes - ref["boxes"].numpy()).max()))
            worst_score = max(worst_score, float(np.abs(scores - ref["scores"].numpy()).max()))
    log(f"verify: onnxruntime vs eager on {len(set(picks))} val frames: max box error {worst_box:.3g} px, "
        f"max score error {worst_score:.3g}")
    seg = TwoStageSegmenter(engine, conf=0.01)  # `maskwatch eval masks`' threshold; `maskwatch run` uses 0.25
    rgb = (frames[best].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    seg.segment_frames([rgb])  # warm-up
    t0 = time.perf_counter()
    dets = seg.segment_frames([rgb], full_masks=True)[0]
    ms = (time.perf_counter() - t0) * 1e3
    names = seg.meta.names
    sure = dets.confidence > 0.25
    found = sorted({names[int(c)] for c in dets.class_id[sure]})
    log(f"verify: maskwatch TwoStageSegmenter on a {rgb.shape[1]}x{rgb.shape[0]} val frame: {len(dets)} detections "
        f"with non-empty masks at conf 0.01, {int(sure.sum())} at 0.25 ({', '.join(found) or 'none'}); "
        f"{ms:.0f} ms incl. full-resolution masks ({args.threads} threads)")


def print_eval_hint(out: Path) -> None:
    out = out.resolve()
    rel = str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out)
    log("\nEvaluate with maskwatch's own tools (from the repo root, maskwatch's runtime environment):\n"
        f"  .venv/bin/maskwatch eval masks {rel} --data var/eval --every 3 "
        f"--json {Path(rel).with_suffix('.masks.json')}\n"
        f"  bash scripts/eval_alert_clips.sh {rel}\n"
        f"  .venv/bin/maskwatch bench engine {rel} --batch 1 --threads 2\n"
        "(var/eval: `bash scripts/make_eval_clips.sh eval`; held-out seeds 20,000,021..28, never trained on)")


# ----------------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--data-dir", default=None, help=f"YOLO-seg dataset (default {os.path.relpath(DEFAULT_DATA, ROOT)};"
                   " rendered there when it has no data.yaml)")
    d.add_argument("--images", type=int, default=2400, help="when rendering: train + val images (default 2400)")
    d.add_argument("--scenario-images", type=int, default=300, help="when rendering: scripted-scenario train frames")
    d.add_argument("--scenes", default="site,pitch", help="when rendering: scenes (site,pitch,farm)")
    d.add_argument("--val-fraction", type=float, default=0.08)
    d.add_argument("--render-workers", type=int, default=2)
    m = p.add_argument_group("model (a new run; --resume and --export-only take the checkpoint's)")
    m.add_argument("--backbone", choices=BACKBONES, default="resnet18")
    m.add_argument("--norm", choices=("gn", "bn"), default="gn", help="backbone norm layer (default gn: see above)")
    m.add_argument("--min-size", type=int, default=384)
    m.add_argument("--max-size", type=int, default=640)
    m.add_argument("--fpn-channels", type=int, default=128,
                   help="FPN width (default 128; torchvision's 256 costs 1.6x the CPU time per step)")
    m.add_argument("--box-head-dim", type=int, default=1024, help="TwoMLPHead width (torchvision: 1024)")
    m.add_argument("--mask-head-dim", type=int, default=256, help="mask head conv width (torchvision: 256)")
    m.add_argument("--box-batch-per-image", type=int, default=256, help="RoIs sampled per image (torchvision: 512)")
    m.add_argument("--detections-per-img", type=int, default=None,
                   help="detections per image (default 100; at export: overrides the checkpoint's)")
    t = p.add_argument_group("training")
    t.add_argument("--project", default=str(DEFAULT_PROJECT))
    t.add_argument("--name", default=None, help="run name (default: the backbone)")
    t.add_argument("--resume", action="store_true", help="continue <project>/<name>/last.pt")
    t.add_argument("--overwrite", action="store_true", help="start again over an existing run")
    t.add_argument("--init", default=None, metavar="CKPT",
                   help="a new run (new --name) from this checkpoint's weights: e.g. a GPU stage with a larger "
                        "--batch after a CPU run (--resume keeps the run's batch and schedule)")
    t.add_argument("--time-h", type=float, default=None,
                   help="wall-clock training budget in hours, total over resumes (default 2; 0: --epochs only)")
    t.add_argument("--epochs", type=int, default=None, help="at most this many epochs (default 24)")
    t.add_argument("--batch", type=int, default=2)
    t.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    t.add_argument("--lr", type=float, default=None, help="peak lr (default adamw 2e-4; sgd 0.02 * batch / 16)")
    t.add_argument("--weight-decay", type=float, default=None, help="default adamw 0.05, sgd 1e-4")
    t.add_argument("--warmup-steps", type=int, default=300)
    t.add_argument("--final-lr-frac", type=float, default=0.05)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    t.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    t.add_argument("--workers", type=int, default=0, help="data loader processes (0: in the training process)")
    t.add_argument("--nice", type=int, default=10, help="lower this process' priority to at least this niceness")
    t.add_argument("--save-min", type=float, default=10.0, help="checkpoint every N minutes")
    t.add_argument("--log-every", type=int, default=10, help="log the mean losses every K steps")
    t.add_argument("--estimate-after", type=int, default=20,
                   help="first pace estimate after this many steps (or a minute) of this process")
    e = p.add_argument_group("export")
    e.add_argument("--export-only", action="store_true", help="export --weights to --out and verify it")
    e.add_argument("--weights", default=None, help="checkpoint to export (default: the run's last.pt)")
    e.add_argument("--out", default=None, help="ONNX file (default var/models/maskrcnn-<name>.onnx)")
    e.add_argument("--no-export", action="store_true", help="stop after training")
    e.add_argument("--imgsz", default="720,1280", metavar="H,W|none",
                   help="`imgsz` metadata: the canvas maskwatch's sources letterbox frames into (default 720,1280: a "
                        "720p frame goes in whole, and `maskwatch bench engine` times what `maskwatch run` runs; "
                        "none: maskwatch's 1280 x 1280 default, which bench engine feeds whole, padding included)")
    e.add_argument("--score-thresh", type=float, default=0.05,
                   help="the graph's own score threshold (torchvision's box_score_thresh; maskwatch's conf applies "
                        "after it)")
    args = p.parse_args(argv)

    args.data_dir_given = args.data_dir is not None
    args.data_dir = args.data_dir or str(DEFAULT_DATA)
    args.name = args.name or args.backbone
    if os.nice(0) < args.nice:
        os.nice(args.nice - os.nice(0))
    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    cv2.setNumThreads(1)
    out = Path(args.out) if args.out else ROOT / "var" / "models" / f"maskrcnn-{args.name}.onnx"
    if args.export_only:
        weights = Path(args.weights) if args.weights else Path(args.project) / args.name / "last.pt"
    else:
        weights = train(args)
        if args.no_export:
            return 0
    export(args, weights, out)
    print_eval_hint(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
