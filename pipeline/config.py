"""The run config: one YAML file, validated strictly.

Relative paths resolve against the config file's folder. Every error becomes one
``ConfigError`` naming file, field path and expectation (the CLI exits with code 2).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zones.errors import ConfigError, from_validation_error

URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(source: str) -> bool:
    return bool(URL_RE.match(source))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    path: Path = Field(description="Model file (.onnx; .engine / .torchscript with the GPU extra).")
    backend: Literal["auto", "onnxruntime", "tensorrt", "torchscript"] = Field(
        "auto", description="Inference runtime; auto picks by file type and hardware.")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu, cuda or cuda:N.")
    conf: float = Field(0.35, gt=0, lt=1, description="Confidence threshold.")
    iou: float = Field(0.6, gt=0, le=1, description="NMS IoU threshold.")
    max_det: int = Field(100, ge=1, le=1000, description="Most detections kept per frame.")
    agnostic_nms: bool = Field(False, description="NMS across classes instead of per class.")
    classes: list[str] | None = Field(None, min_length=1, description="Keep only these classes.")
    names: list[str] | None = Field(None, min_length=1, description="Class names for models without metadata.")
    threads: int = Field(0, ge=0, le=256, description="Inference threads (0 = runtime default).")


class CameraConfig(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                    description="Camera id: letters, digits, '-' and '_' (used in topics and file names).")
    source: str = Field(min_length=1, description="Video file path or rtsp:// / http(s):// URL.")
    zones: Path | None = Field(None, description="Zone file (YAML) for this camera.")
    max_fps: float | None = Field(None, gt=0, le=240, description="Analyse at most this many frames/s (skips evenly by pts).")


class TrackerConfig(_Strict):
    type: Literal["mask"] = Field("mask", description="Tracker implementation: mask (association by mask IoU + motion).")
    low_conf: float = Field(0.1, gt=0, lt=1, description="Second-pass detections: between this and model.conf.")
    new_track_conf: float | None = Field(None, gt=0, lt=1, description="Least confidence to start a track (default model.conf).")
    min_hits: int = Field(2, ge=1, le=100, description="Matches before a track is reported.")
    max_lost_s: float = Field(1.0, ge=0, le=3600, description="Keep a lost track this long (stream seconds).")
    min_similarity: float = Field(0.2, gt=0, lt=1, description="Least similarity to continue a track (first pass).")
    mask_weight: float = Field(0.6, ge=0, le=1, description="Weight of mask IoU against predicted-box IoU.")

    def params(self, model_conf: float):
        from .tracking import TrackerParams

        return TrackerParams(high_conf=model_conf, low_conf=min(self.low_conf, model_conf),
                             new_track_conf=self.new_track_conf or model_conf, min_hits=self.min_hits,
                             max_lost_s=self.max_lost_s, min_similarity=self.min_similarity,
                             mask_weight=self.mask_weight)


class AlertsConfig(_Strict):
    jsonl: Path | None = Field(None, description="Append delivered alerts to this JSON Lines file.")
    outbox: Path = Field(Path("var/outbox.sqlite"), description="Durable outbox (SQLite) alerts pass through.")


class PipelineConfig(_Strict):
    frame_ring_slots: int = Field(4, ge=1, le=1024, description="Slots of each camera's frame ring.")
    detection_ring_slots: int = Field(8, ge=1, le=1024, description="Slots of each camera's detection ring.")
    shutdown_timeout_s: float = Field(5.0, gt=0, le=300, description="Bound on joining threads at shutdown.")


class Config(_Strict):
    model: ModelConfig
    cameras: list[CameraConfig] = Field(min_length=1, description="At least one camera.")
    tracker: TrackerConfig = TrackerConfig()
    alerts: AlertsConfig = AlertsConfig()
    pipeline: PipelineConfig = PipelineConfig()

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, cams: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for cam in cams:
            if cam.id in seen:
                raise ValueError(f"duplicate camera id {cam.id!r}")
            seen.add(cam.id)
        return cams

    @model_validator(mode="after")
    def _classes_need_names(self) -> "Config":
        if self.model.classes and self.model.names and set(self.model.classes) - set(self.model.names):
            bad = sorted(set(self.model.classes) - set(self.model.names))
            raise ValueError(f"model.classes: unknown class {bad[0]!r}, expected one of {self.model.names}")
        return self

    def resolve_paths(self, base: Path) -> "Config":
        """Make relative paths absolute against ``base`` (the config file's folder)."""
        def r(p: Path | None) -> Path | None:
            return None if p is None or p.is_absolute() else (base / p)

        self.model.path = r(self.model.path) or self.model.path
        for cam in self.cameras:
            if not is_url(cam.source) and not Path(cam.source).is_absolute():
                cam.source = str(base / cam.source)
            cam.zones = r(cam.zones) or cam.zones
        self.alerts.jsonl = r(self.alerts.jsonl) or self.alerts.jsonl
        self.alerts.outbox = r(self.alerts.outbox) or self.alerts.outbox
        return self


def parse_config(data: object, file: str | Path | None = None, base: Path | None = None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(file, "", f"expected a mapping with model and cameras, got {type(data).__name__}")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        err = from_validation_error(exc, file)
        if not err.field and ": " in err.message:
            field, _, msg = err.message.partition(": ")
            raise ConfigError(file, field, msg) from None
        raise err from None
    return cfg.resolve_paths(base if base is not None else Path(file).parent if file else Path.cwd())


def load_config(path: str | Path) -> Config:
    """Read, validate and resolve a config file; raises ConfigError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read config file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(path, "", f"not valid YAML{where}") from None
    return parse_config(data, path, path.resolve().parent)


def check_files(cfg: Config, file: str | Path | None = None) -> None:
    """Files the config names must exist (run and check call this before starting)."""
    if not cfg.model.path.is_file():
        raise ConfigError(file, "model.path", f"model file not found: {cfg.model.path}")
    for i, cam in enumerate(cfg.cameras):
        if not is_url(cam.source) and not Path(cam.source).is_file():
            raise ConfigError(file, f"cameras[{i}].source", f"video file not found: {cam.source}")
        if cam.zones is not None and not cam.zones.is_file():
            raise ConfigError(file, f"cameras[{i}].zones", f"zone file not found: {cam.zones}")
