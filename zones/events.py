"""AlertEvent: what the zone engine emits, the outbox stores and the sinks deliver."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Literal


@dataclass
class AlertObject:
    track_id: int
    class_name: str  # "class" in JSON
    confidence: float
    box_xyxy: list[float]  # frame pixels
    overlap: float | None = None  # fraction of the object's mask inside the zone
    distance_m: float | None = None  # proximity rules (later)
    distance_px: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["class"] = d.pop("class_name")
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> "AlertObject":
        d = dict(d)
        d["class_name"] = d.pop("class")
        return cls(**d)


@dataclass
class AlertEvent:
    id: str  # stable for the alert's whole life: start, updates and end share it
    type: Literal["start", "update", "end"]
    camera: str
    rule: str
    rule_type: str
    zone: str | None
    severity: str
    objects: list[AlertObject]
    frame_index: int
    pts_s: float  # stream clock of the frame that produced the event
    wall_time: float  # epoch seconds at that frame's arrival
    started_at: float  # epoch seconds of the start
    started_pts_s: float
    ended_at: float | None = None  # epoch seconds, on end
    seq: int = 0  # per-alert monotonic: start = 0, then 1, 2, ...; receivers de-duplicate on id + seq
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["objects"] = [o.to_dict() for o in self.objects]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "AlertEvent":
        d = dict(d)
        d["objects"] = [AlertObject.from_dict(o) for o in d.get("objects", [])]
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "AlertEvent":
        return cls.from_dict(json.loads(text))

    def ended(self, reason: str, wall_s: float) -> "AlertEvent":
        """The ``end`` of this alert when its own process can no longer end it (``extra.reason`` says why:
        ``restarted`` after a killed process, ``worker_lost`` when a cluster worker's node is gone)."""
        return replace(self, type="end", seq=self.seq + 1, wall_time=wall_s, ended_at=wall_s,
                       objects=list(self.objects), extra={**self.extra, "reason": reason})
