"""The run config: one YAML file, validated strictly.

Relative paths resolve against the config file's folder. Every error becomes one
``ConfigError`` naming file, field path and expectation (the CLI exits with code 2).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from maskwatch.zones.errors import ConfigError, from_validation_error, read_yaml

URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def is_url(source: str) -> bool:
    return bool(URL_RE.match(source))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    path: Path = Field(description="Model file (.onnx; an OpenVINO .xml or *_openvino_model folder; .engine / "
                                   ".torchscript with the GPU extra).")
    backend: Literal["auto", "onnxruntime", "openvino", "tensorrt", "torchscript"] = Field(
        "auto", description="Inference runtime; auto for an .onnx on the CPU: OpenVINO bf16 where the CPU has "
                            "bf16 hardware, else ONNX Runtime (what measured fastest), otherwise by file type.")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|gpu|npu|auto)$",
                        description="cpu, cuda or cuda:N; with openvino also gpu (Intel graphics), npu or auto.")
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = Field(
        "auto", description="Arithmetic precision; auto: bf16 with OpenVINO on a CPU with AVX512_BF16 or AMX, int8 "
                            "for a quantized model, else fp32. int8 needs a model made by `maskwatch engine quantize`.")
    conf: float = Field(0.35, gt=0, lt=1, description="Confidence threshold.")
    iou: float = Field(0.6, gt=0, le=1, description="NMS IoU threshold.")
    max_det: int = Field(100, ge=1, le=1000, description="Most detections kept per frame.")
    agnostic_nms: bool = Field(False, description="NMS across classes instead of per class.")
    classes: list[str] | None = Field(None, min_length=1, description="Keep only these classes.")
    names: list[str] | None = Field(None, min_length=1, description="Class names for models without metadata.")
    threads: int = Field(0, ge=0, le=256, description="Inference threads (0 = runtime default).")

    @model_validator(mode="after")
    def _device_fits_backend(self) -> "ModelConfig":
        if self.device in ("gpu", "npu", "auto") and self.backend != "openvino":
            raise ValueError(f"device: {self.device} is an OpenVINO device; set backend: openvino "
                             f"(cpu or cuda[:N] for the other backends)")
        return self


class CameraConfig(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                    description="Camera id: letters, digits, '-' and '_' (used in topics and file names).")
    source: str = Field(min_length=1, description="Video file path, or rtsp:// / http(s):// URL of a live camera; "
                                                  "${NAME} is the environment variable NAME (for passwords).")
    zones: Path | None = Field(None, description="Zone file (YAML) for this camera.")
    max_fps: float | None = Field(None, gt=0, le=240, description="Analyse at most this many frames/s (skips evenly by pts).")
    decoder: Literal["cpu", "cuda"] = Field(
        "cpu", description="cpu, or cuda: hardware decode through PyAV's hwaccel (falls back to cpu with a log line).")
    # live sources (URLs) only:
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport (tcp survives lossy links).")
    open_timeout_s: float = Field(10.0, gt=0, le=300, description="Connect and probe a live source within this.")
    read_timeout_s: float = Field(5.0, gt=0, le=300, description="Socket I/O timeout of a live source (one read).")
    stall_timeout_s: float = Field(10.0, ge=0.5, le=3600,
                                   description="Watchdog: reconnect a live source that yields no frame for this long "
                                               "(wall clock, even while a read blocks).")
    reconnect_min_s: float = Field(1.0, ge=0.1, le=60, description="First reconnect delay; doubles after each failure.")
    reconnect_max_s: float = Field(30.0, ge=0.1, le=3600, description="Longest reconnect delay (seconds).")
    reconnect_reset_s: float = Field(60.0, gt=0, le=86400,
                                     description="A connection that delivered frames this long resets the delay to "
                                                 "reconnect_min_s.")

    @field_validator("source")
    @classmethod
    def _expand_env(cls, source: str) -> str:
        """``${NAME}`` in a source is the environment variable NAME (keeps passwords out of config files)."""
        def sub(m: re.Match) -> str:
            if m.group(1) not in os.environ:
                raise ValueError(f"environment variable {m.group(1)} is not set (the source uses ${{{m.group(1)}}})")
            return os.environ[m.group(1)]

        return ENV_REF.sub(sub, source)

    @model_validator(mode="after")
    def _reconnect_bounds(self) -> "CameraConfig":
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"reconnect_max_s: must be >= reconnect_min_s ({self.reconnect_min_s}), "
                             f"got {self.reconnect_max_s}")
        return self


class TrackerConfig(_Strict):
    type: Literal["mask"] = Field("mask", description="Tracker implementation: mask (association by mask IoU + motion).")
    low_conf: float = Field(0.1, gt=0, lt=1, description="Second-pass detections: between this and model.conf.")
    new_track_conf: float | None = Field(None, gt=0, lt=1, description="Least confidence to start a track (default model.conf).")
    min_hits: int = Field(2, ge=1, le=100, description="Matches before a track is reported.")
    max_lost_s: float = Field(4.0, ge=0, le=3600, description="Keep a lost track this long (stream seconds).")
    min_similarity: float = Field(0.2, gt=0, lt=1, description="Least similarity to continue a track (first pass).")
    mask_weight: float = Field(0.3, ge=0, le=1, description="Weight of mask IoU against predicted-box IoU.")
    recover_dist: float = Field(1.5, ge=0, le=100, description="A lost track takes the nearest unmatched detection of its "
                                "class and size within this many track sizes of its prediction.")
    duplicate_iou: float = Field(0.5, ge=0, le=1, description="Drop a detection whose mask overlaps a more confident "
                                 "one's this much, any class: the same object seen twice (0: off).")
    duplicate_cover: float = Field(0.8, ge=0, le=1, description="Drop a detection whose mask lies this much inside a "
                                   "more confident one's of the same class: a part of it (0: off).")
    foot_weight: float = Field(0.5, ge=0, le=10, description="Similarity lost per track height that a detection's bottom "
                               "edge lies below a track's prediction: of two objects passing, the detection goes to the "
                               "one in front (lower in the image). 0 for cameras looking straight down.")
    ambiguity_margin: float = Field(0.3, ge=0, le=1, description="A detection that another track left without one "
                                    "would have taken almost as well (similarity within this) is two objects seen as "
                                    "one: it is not reported that frame (0: off).")
    report_conf: float | None = Field(None, ge=0, lt=1, description="A track is reported once one of its detections "
                                      "reached this confidence: a steady low-confidence mistake (a cone seen as a "
                                      "worker) is followed but never reported. Default: model.conf + 0.25, at most 0.6 "
                                      "(0.6 at the default conf 0.35). 0: report every confirmed track.")
    sole_inherit: bool = Field(True, description="The only track of a class confirmed in a frame takes over the ID "
                               "of a lost track that was the only one of that class, however far: a kicked ball "
                               "found again (never among many players).")
    colour_weight: float = Field(0.2, ge=0, le=1, description="Similarity lost by a detection whose mean mask colour "
                                 "is far from the track's (two team kits, a hi-vis vest beside dark clothes); 0: off, "
                                 "association by geometry alone.")

    def params(self, model_conf: float):
        from .tracking import TrackerParams

        return TrackerParams(high_conf=model_conf, low_conf=min(self.low_conf, model_conf),
                             new_track_conf=self.new_track_conf or model_conf, min_hits=self.min_hits,
                             max_lost_s=self.max_lost_s, min_similarity=self.min_similarity,
                             mask_weight=self.mask_weight, recover_dist=self.recover_dist,
                             duplicate_iou=self.duplicate_iou,
                             duplicate_cover=self.duplicate_cover, foot_weight=self.foot_weight,
                             ambiguity_margin=self.ambiguity_margin,
                             report_conf=min(0.6, model_conf + 0.25) if self.report_conf is None else self.report_conf,
                             sole_inherit=self.sole_inherit, colour_weight=self.colour_weight)


class MqttTlsConfig(_Strict):
    ca_file: Path | None = Field(None, description="CA certificate(s) (PEM) the broker's certificate must chain to; "
                                                   "default: the system's trusted CAs.")
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for brokers that require one.")
    key_file: Path | None = Field(None, description="Private key (PEM) of cert_file; omit when cert_file holds both.")
    insecure: bool = Field(False, description="Skip the check that the broker's certificate names `host` "
                                             "(the chain is still verified). Only for testing.")

    @model_validator(mode="after")
    def _key_needs_cert(self) -> "MqttTlsConfig":
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file: needs cert_file (the client certificate it belongs to)")
        return self


class HomeAssistantConfig(_Strict):
    discovery_prefix: str = Field("homeassistant", min_length=1, max_length=128,
                                  pattern=r"^[^/#+\s]([^#+\s]*[^/#+\s])?$",
                                  description="Home Assistant's discovery prefix (its MQTT integration's setting).")
    node_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
                                description="The node id in discovery topics and unique ids; default "
                                            "maskwatch_<topic_prefix> (two maskwatch instances need two).")


class MqttConfig(_Strict):
    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_\[\]-]+$",
                      description="Broker host name or IP address (not a URL).")
    port: int | None = Field(None, ge=1, le=65535, description="Broker port; default 1883, or 8883 with tls.")
    topic_prefix: str = Field("maskwatch", min_length=1, max_length=128, pattern=r"^[^/#+\s]([^#+\s]*[^/#+\s])?$",
                              description="First topic level(s): <prefix>/<camera>/alerts, <prefix>/status, ... "
                                          "(no wildcards, no leading or trailing '/').")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of alert messages; an alert leaves the outbox on PUBACK "
                                                 "(QoS 1) / PUBCOMP (QoS 2), or once written (QoS 0: may be lost).")
    client_id: str | None = Field(None, min_length=1, max_length=128,
                                  description="MQTT client id; default maskwatch-<host name>-<random>.")
    username: str | None = Field(None, min_length=1, description="User name for the broker.")
    password_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                     description="Name of the environment variable that holds the password "
                                                 "(the password itself is never in the config).")
    tls: MqttTlsConfig | None = Field(None, description="Connect with TLS (omit for plain TCP).")
    clean_start: bool = Field(True, description="Start a new broker session on every connect (False keeps the "
                                                "session across reconnects; needs client_id).")
    keepalive_s: int = Field(30, ge=5, le=3600, description="Keep-alive interval (seconds).")
    reconnect_min_s: int = Field(1, ge=1, le=60, description="First reconnect delay; doubles after each failure.")
    reconnect_max_s: int = Field(30, ge=1, le=3600, description="Longest reconnect delay (seconds).")
    reconnect_max_pending_s: int = Field(2, ge=1, le=3600,
                                         description="Longest reconnect delay while alerts wait in the outbox: a "
                                                     "broker back after an outage is found within about this long.")
    homeassistant: HomeAssistantConfig | None = Field(
        None, description="Publish Home Assistant MQTT discovery configs: per camera a connectivity sensor, per "
                          "rule a binary sensor (on while an alert of it is active), per zone and class an "
                          "occupancy sensor.")
    max_inflight: int = Field(100, ge=1, le=1000,
                              description="Alerts published and not yet acknowledged at most (the rest wait in the outbox).")

    @model_validator(mode="after")
    def _cross_checks(self) -> "MqttConfig":
        if self.password_env is not None and self.username is None:
            raise ValueError("password_env: needs username")
        if not self.clean_start and self.client_id is None:
            raise ValueError("clean_start: a persistent session (false) needs a fixed client_id (the broker keys the session by it)")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"reconnect_max_s: must be >= reconnect_min_s ({self.reconnect_min_s}), "
                             f"got {self.reconnect_max_s}")
        return self

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.tls is not None else 1883)


class SnapshotsConfig(_Strict):
    dir: Path = Field(description="Folder for JPEG snapshots (<dir>/<camera>/<alert id>.jpg).")
    publish: bool = Field(False, description="Also publish each snapshot to <prefix>/<camera>/alerts/<id>/snapshot "
                                             "(needs mqtt; best effort, not through the outbox).")
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality.")
    ring_slots: int = Field(8, ge=1, le=256, description="Snapshots waiting to be drawn at most; the oldest is "
                                                         "dropped (and counted) when full.")


class ClipsConfig(_Strict):
    dir: Path = Field(description="Folder for event clips (<dir>/<camera>/<alert id>.mp4, H.264).")
    pre_s: float = Field(5.0, ge=0, le=60, description="Seconds of video before the alert's start; kept in memory "
                                                       "per camera (the pre-roll: frame bytes x fps x pre_s).")
    post_s: float = Field(10.0, ge=0, le=600, description="Seconds of video after the alert's end.")
    max_gb: float = Field(20.0, gt=0, le=1_000_000, description="Most gigabytes (10^9 bytes) of clips kept in dir; "
                                                                "the oldest are deleted (counted and logged).")
    max_s: float = Field(300.0, gt=0, le=86_400, description="Longest clip (seconds): a longer alert's clip ends "
                                                             "here (its start and this much are kept).")
    scale: float = Field(1.0, ge=0.1, le=1, description="Clip size relative to the model input's content (640x360 "
                                                        "for a 720p camera and a 640 model); less saves memory and "
                                                        "disk.")
    crf: int = Field(26, ge=0, le=51, description="H.264 quality (libx264 CRF): lower is better and larger.")
    ring_slots: int = Field(64, ge=1, le=4096, description="Frames waiting to be drawn and encoded at most (all "
                                                           "cameras); the oldest is dropped (and counted) when full.")


class AlertsConfig(_Strict):
    jsonl: Path | None = Field(None, description="Append delivered alerts to this JSON Lines file.")
    outbox: Path = Field(Path("var/outbox.sqlite"), description="Durable outbox (SQLite) alerts pass through.")
    outbox_max_rows: int = Field(100_000, ge=10, le=100_000_000,
                                 description="Most undelivered alerts kept; when full the oldest 'update' alerts "
                                             "are dropped first, 'start'/'end' only when no 'update' is left "
                                             "(counted and logged).")
    drain_timeout_s: float = Field(30.0, ge=0, le=86_400,
                                   description="At the end of a run (file sources ended), keep delivering what waits "
                                               "in the outbox for up to this long, reconnecting at once (0: do not "
                                               "wait; it is sent at the next start). SIGINT stops the wait.")
    outbox_max_age_s: float | None = Field(None, gt=0, le=31_536_000,
                                           description="Drop undelivered alerts older than this (seconds; counted "
                                                       "and logged); default: no age limit.")
    mqtt: MqttConfig | None = Field(None, description="Publish alerts, status and occupancy to an MQTT broker.")
    snapshots: SnapshotsConfig | None = Field(None, description="JPEG of the frame at each alert start.")
    clips: ClipsConfig | None = Field(None, description="An H.264 MP4 per alert, from pre_s before its start to "
                                                      "post_s after its end, masks and zones drawn.")

    @model_validator(mode="after")
    def _snapshot_publish_needs_mqtt(self) -> "AlertsConfig":
        if self.snapshots is not None and self.snapshots.publish and self.mqtt is None:
            raise ValueError("snapshots.publish: needs alerts.mqtt")
        return self


LISTEN_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); ValueError naming the expectation."""
    m = LISTEN_RE.match(listen.strip())
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ValueError(f"expected HOST:PORT with a port 1..65535 (e.g. 127.0.0.1:8080), got {listen!r}")
    return m.group(1).strip("[]"), int(m.group(2))


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


class WebConfig(_Strict):
    enabled: bool = Field(True, description="Serve the web console (live view, zone editor, alerts, health, "
                                            "/metrics) inside `maskwatch run`.")
    listen: str = Field("127.0.0.1:8080", description="HOST:PORT to listen on. Loopback needs no login; any other "
                                                      "address needs token_env.")
    token_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                  description="Environment variable holding the access token (required when "
                                              "listen is not a loopback address).")
    tls_cert: Path | None = Field(None, description="TLS certificate (PEM): serve HTTPS.")
    tls_key: Path | None = Field(None, description="TLS private key (PEM) of tls_cert.")
    preview_fps: float = Field(5.0, gt=0, le=30, description="Live view frames per second per watched camera at "
                                                             "most (drawn only while someone watches).")
    jpeg_quality: int = Field(80, ge=10, le=100, description="JPEG quality of live views.")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        split_listen(v)
        return v.strip()

    @model_validator(mode="after")
    def _tls_pair(self) -> "WebConfig":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_key: tls_cert and tls_key go together")
        return self


RAY_ADDRESS_RE = re.compile(r"^(auto|local|ray://[A-Za-z0-9.\[\]:_-]+:[0-9]{1,5}|[A-Za-z0-9.\[\]:_-]+:[0-9]{1,5})$")
RESOURCE_NAME = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$"


def check_ray_address(address: str) -> str:
    if not RAY_ADDRESS_RE.match(address):
        raise ValueError("expected auto, local, ray://HOST:PORT or HOST:PORT (the head's GCS address)")
    return address


class WorkerResources(_Strict):
    num_cpus: float = Field(1.0, ge=0, le=1024, description="CPUs each worker reserves; also its inference threads "
                                                           "(rounded, at least 1) unless model.threads is set.")
    num_gpus: float = Field(0.0, ge=0, le=64, description="GPUs each worker reserves (fractions share a GPU).")
    resources: dict[str, float] = Field(default_factory=dict, description="Custom Ray resources each worker needs "
                                        "(e.g. {site_a: 1} with `ray start --resources '{\"site_a\": 4}'`).")

    @field_validator("resources")
    @classmethod
    def _names(cls, v: dict[str, float]) -> dict[str, float]:
        for name, amount in v.items():
            if not re.match(RESOURCE_NAME, name) or name in ("CPU", "GPU", "memory"):
                raise ValueError(f"resource name {name!r}: letters, digits, '_', '.', ':', '-' (not CPU/GPU/memory)")
            if not 0 < amount <= 1e6:
                raise ValueError(f"resource {name!r}: amount must be > 0, got {amount}")
        return v


class ClusterConfig(_Strict):
    address: str = Field("auto", description="Ray cluster: auto (the cluster this machine runs, `ray start`), "
                                             "local (start a private one-machine cluster), ray://HOST:PORT (Ray "
                                             "Client) or HOST:PORT (the head's GCS address).")
    name: str = Field("maskwatch", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                      description="This deployment's name on the cluster: its workers are named actors "
                                  "<name>/w<N> (one driver per name; a restarted driver takes the names over).")
    cameras_per_worker: int = Field(4, ge=1, le=256, description="Cameras one worker actor runs (one Pipeline, "
                                                                "batched inference across its cameras).")
    worker_resources: WorkerResources = Field(default_factory=WorkerResources,
                                              description="What each worker reserves on its node.")
    camera_resources: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Per camera id, extra custom resources its worker needs: pins the camera "
                                          "to nodes that have them (a site's node). Cameras with the same pins share "
                                          "workers.")
    max_restarts: int = Field(-1, ge=-1, le=1_000_000, description="Restarts of a worker after its process or node "
                                                                   "died (-1: without limit).")
    worker_dir: str = Field("~/.maskwatch/cluster", min_length=1,
                            description="Folder on each worker node for the model, zone files and the worker's "
                                        "outbox (a persistent disk: undelivered alerts wait there).")
    status_interval_s: float = Field(0.5, ge=0.05, le=60, description="The driver asks every worker for its status "
                                                                      "this often.")
    worker_timeout_s: float = Field(10.0, ge=0.5, le=3600, description="A worker that has not answered for this long "
                                                                       "counts as lost (its alerts end).")
    takeover_timeout_s: float = Field(60.0, ge=0, le=3600,
                                      description="At start, wait this long for the workers of a previous driver of "
                                                  "the same name to go (Ray stops them when their driver died).")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        return check_ray_address(v.strip())

    @field_validator("camera_resources")
    @classmethod
    def _pins(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for pins in v.values():
            WorkerResources._names(pins)
        return v


class PipelineConfig(_Strict):
    frame_ring_slots: int = Field(4, ge=1, le=1024, description="Slots of each file camera's frame ring.")
    live_frame_ring_slots: int = Field(1, ge=1, le=1024,
                                       description="Slots of each live camera's frame ring: when inference falls "
                                                   "behind, the oldest frames are dropped (counted), so what is "
                                                   "analysed is at most this many frames old.")
    detection_ring_slots: int = Field(8, ge=1, le=1024,
                                      description="Slots of each camera's detection ring (live cameras: at most 2, "
                                                  "so that analysed frames stay recent).")
    shutdown_timeout_s: float = Field(5.0, gt=0, le=300, description="Bound on joining threads at shutdown.")
    batch: int | None = Field(None, ge=1, le=64,
                              description="Frames per inference call at most, gathered across cameras (fair: one "
                                          "per camera per pass); default: the number of cameras for a model with a "
                                          "dynamic batch axis, else the model's own batch (a static-batch model "
                                          "runs a larger batch as a loop: no faster, only later).")
    inference_workers: int = Field(0, ge=0, le=16,
                                   description="Threads that run the engine at once, each on its own batch (frame "
                                               "order is kept). 0 = auto: 2 for ONNX Runtime on the CPU, each with "
                                               "half the cores (measured faster than one call on all cores), else 1.")
    batch_timeout_ms: float = Field(0.0, ge=0, le=1000,
                                    description="Wait this long after a batch's first frame for more (0: run what "
                                                "is there now).")


class FeedbackConfig(_Strict):
    keep_frames: bool = Field(False, description="Save the frame and the model's masks at every alert start, so "
                                                 "alerts marked false positive (or acknowledged) can become "
                                                 "training data (`maskwatch feedback export`).")
    dir: Path = Field(Path("var/feedback"), description="Folder for the kept frames (<dir>/<camera>/<alert id>.jpg "
                                                        "and .npz).")
    max_gb: float = Field(2.0, gt=0, le=1_000_000, description="Most gigabytes kept; the oldest frames are deleted "
                                                                "beyond (counted, logged).")


class Config(_Strict):
    model: ModelConfig
    cameras: list[CameraConfig] = Field(min_length=1, description="At least one camera.")
    tracker: TrackerConfig = TrackerConfig()
    alerts: AlertsConfig = AlertsConfig()
    pipeline: PipelineConfig = PipelineConfig()
    web: WebConfig = WebConfig()
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig, description="Alert feedback (ack, false "
                                     "positive) and the frames that turn it into training data.")
    cluster: ClusterConfig | None = Field(None, description="Run the cameras on a Ray cluster (`maskwatch run "
                                                           "--ray ADDRESS` sets it too); omitted: this machine.")

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
    def _pinned_cameras_exist(self) -> "Config":
        if self.cluster is not None:
            ids = [c.id for c in self.cameras]
            for cid in self.cluster.camera_resources:
                if cid not in ids:
                    raise ValueError(f"cluster.camera_resources: unknown camera {cid!r}, expected one of {ids}")
        return self

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
        if self.alerts.snapshots is not None:
            self.alerts.snapshots.dir = r(self.alerts.snapshots.dir) or self.alerts.snapshots.dir
        if self.alerts.clips is not None:
            self.alerts.clips.dir = r(self.alerts.clips.dir) or self.alerts.clips.dir
        self.feedback.dir = r(self.feedback.dir) or self.feedback.dir
        self.web.tls_cert = r(self.web.tls_cert) or self.web.tls_cert
        self.web.tls_key = r(self.web.tls_key) or self.web.tls_key
        tls = self.alerts.mqtt.tls if self.alerts.mqtt is not None else None
        if tls is not None:
            tls.ca_file = r(tls.ca_file) or tls.ca_file
            tls.cert_file = r(tls.cert_file) or tls.cert_file
            tls.key_file = r(tls.key_file) or tls.key_file
        return self


def parse_config(data: object, file: str | Path | None = None, base: Path | None = None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(file, "", f"expected a mapping with model and cameras, got {type(data).__name__}")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        err = from_validation_error(exc, file)
        if ": " in err.message:  # a model-level check names its field first: lift it into the path
            field, _, msg = err.message.partition(": ")
            if " " not in field:
                raise ConfigError(file, f"{err.field}.{field}" if err.field else field, msg) from None
        raise err from None
    return cfg.resolve_paths(base if base is not None else Path(file).parent if file else Path.cwd())


def inference_plan(cfg: Config) -> tuple[int, int | None]:
    """(inference workers, engine threads per call; None = the runtime's default) for a run.

    ONNX Runtime on the CPU: two workers, each with half the cores (one model call on 2 cores
    measured 21 images/s at 85 ms CPU each; two concurrent one-thread calls 22.6-24.3 images/s at
    79 ms, and a preempted thread no longer stalls its partner at the thread pool's barrier).
    Other backends run one call at a time on their device."""
    m = cfg.model
    cores = os.cpu_count() or 1
    from .factory import choose_backend

    backend = choose_backend(m)[0]
    if backend == "auto" and m.path.suffix.lower() == ".onnx":
        backend = "onnxruntime"
    # OpenVINO runs one call on all cores faster than two concurrent ones (measured: bf16 47.8 against 28.4
    # frames/s, fp32 worse still), ONNX Runtime the other way round (README: CPU inference)
    cpu_ort = m.device == "cpu" and backend == "onnxruntime"
    workers = cfg.pipeline.inference_workers or (2 if cpu_ort and cores >= 2 else 1)
    threads = m.threads or (max(1, cores // workers) if cpu_ort and workers > 1 else None)
    return workers, threads


def load_config(path: str | Path) -> Config:
    """Read, validate and resolve a config file; raises ConfigError."""
    path = Path(path)
    return parse_config(read_yaml(path, "config file"), path, path.resolve().parent)


def check_files(cfg: Config, file: str | Path | None = None, sources: bool = True) -> None:
    """Files the config names must exist (run and check call this before starting); ``sources=False``: not
    the file cameras (a cluster driver: they are checked on the worker's node)."""
    if not cfg.model.path.is_file() and not (cfg.model.path.is_dir() and cfg.model.path.name.endswith("_openvino_model")):
        raise ConfigError(file, "model.path", f"model file not found: {cfg.model.path}")
    for i, cam in enumerate(cfg.cameras):
        if sources and not is_url(cam.source) and not Path(cam.source).is_file():
            raise ConfigError(file, f"cameras[{i}].source", f"video file not found: {cam.source}")
        if cam.zones is not None and not cam.zones.is_file():
            raise ConfigError(file, f"cameras[{i}].zones", f"zone file not found: {cam.zones}")
    for name in ("tls_cert", "tls_key"):
        p = getattr(cfg.web, name)
        if cfg.web.enabled and p is not None and not p.is_file():
            raise ConfigError(file, f"web.{name}", f"file not found: {p}")
    mqtt = cfg.alerts.mqtt
    if mqtt is not None:
        if mqtt.password_env is not None and mqtt.password_env not in os.environ:
            raise ConfigError(file, "alerts.mqtt.password_env",
                              f"environment variable {mqtt.password_env} is not set (it should hold the broker password)")
        for name in ("ca_file", "cert_file", "key_file"):
            p = getattr(mqtt.tls, name) if mqtt.tls is not None else None
            if p is not None and not p.is_file():
                raise ConfigError(file, f"alerts.mqtt.tls.{name}", f"file not found: {p}")
