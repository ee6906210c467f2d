"""Zone file schema (YAML, one per camera)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from shapely.geometry import Polygon

from .errors import ZoneFileError, from_validation_error, register_union_tags


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Point = tuple[float, float]


class Zone(_Strict):
    id: str = Field(min_length=1, description="Unique zone id, used in rules, topics and alerts.")
    name: str | None = Field(None, description="Human-readable name.")
    polygon: list[Point] = Field(description="Vertices in the file's `units`.")

    @field_validator("polygon")
    @classmethod
    def _valid_polygon(cls, v: list[Point]) -> list[Point]:
        if len(v) < 3:
            raise ValueError(f"polygon needs at least 3 points, got {len(v)}")
        if not Polygon(v).is_valid:
            raise ValueError("polygon is self-intersecting")
        return v


class RuleBase(_Strict):
    id: str = Field(min_length=1, description="Unique rule id.")
    classes: list[str] = Field(min_length=1, description="Object classes the rule applies to.")
    min_duration_s: float = Field(0.0, ge=0, description="Entry debounce: condition must hold this long.")
    clear_after_s: float = Field(1.0, ge=0, description="Exit hysteresis: inactive only after this long below threshold.")
    severity: Literal["info", "warning", "critical"] = Field("warning", description="Severity carried by alerts.")


class IntrusionRule(RuleBase):
    type: Literal["intrusion"]
    zone: str = Field(description="Zone id.")
    min_overlap: float = Field(0.05, gt=0, le=1, description="Fraction of the object's mask inside the zone.")


register_union_tags("intrusion")
Rule = Annotated[IntrusionRule, Field(discriminator="type")]


class Calibration(_Strict):
    image: list[Point] = Field(min_length=4, description="Image points (in `units`).")
    ground: list[Point] = Field(min_length=4, description="Ground positions in metres.")

    @model_validator(mode="after")
    def _same_length(self) -> "Calibration":
        if len(self.image) != len(self.ground):
            raise ValueError(f"image has {len(self.image)} points but ground has {len(self.ground)}")
        return self


class ZoneFile(_Strict):
    units: Literal["normalized", "pixels"] = Field(description="Coordinate units; never guessed.")
    frame_size: tuple[int, int] | None = Field(None, description="[width, height], required when units: pixels.")
    calibration: Calibration | None = None
    zones: list[Zone] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_checks(self) -> "ZoneFile":
        if self.units == "pixels" and self.frame_size is None:
            raise ValueError("frame_size: required when units is 'pixels'")
        if self.units == "normalized":
            for i, z in enumerate(self.zones):
                for x, y in z.polygon:
                    if not (0 <= x <= 1 and 0 <= y <= 1):
                        raise ValueError(f"zones[{i}].polygon: normalized coordinates must be in 0..1, got [{x}, {y}]")
        ids = [z.id for z in self.zones]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"zones: duplicate zone id {sorted(dup)[0]!r}")
        rids = [r.id for r in self.rules]
        dup = {i for i in rids if rids.count(i) > 1}
        if dup:
            raise ValueError(f"rules: duplicate rule id {sorted(dup)[0]!r}")
        for i, r in enumerate(self.rules):
            if getattr(r, "zone", None) is not None and r.zone not in ids:
                raise ValueError(f"rules[{i}].zone: unknown zone {r.zone!r}, expected one of {ids}")
        return self

    def zone(self, zone_id: str) -> Zone:
        return next(z for z in self.zones if z.id == zone_id)

    def polygon_px(self, zone_id: str, frame_wh: tuple[int, int]) -> list[Point]:
        """Zone polygon in frame pixels of a frame of ``frame_wh``."""
        poly = self.zone(zone_id).polygon
        if self.units == "normalized":
            sx, sy = frame_wh
        else:
            sx, sy = frame_wh[0] / self.frame_size[0], frame_wh[1] / self.frame_size[1]
        return [(x * sx, y * sy) for x, y in poly]


def parse_zone_file(data: object, file: str | Path | None = None) -> ZoneFile:
    if not isinstance(data, dict):
        raise ZoneFileError(file, "", f"expected a mapping with units, zones and rules, got {type(data).__name__}")
    try:
        return ZoneFile.model_validate(data)
    except ValidationError as exc:
        err = from_validation_error(exc, file, ZoneFileError)
        # model-level validators report "field: message"; lift the field into place
        if not err.field and ": " in err.message:
            field, _, msg = err.message.partition(": ")
            raise ZoneFileError(file, field, msg) from None
        raise err from None


def load_zone_file(path: str | Path) -> ZoneFile:
    """Read and validate a zone file; raises ZoneFileError naming file, field and expectation."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ZoneFileError(path, "", f"cannot read zone file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ZoneFileError(path, "", f"not valid YAML{where}") from None
    return parse_zone_file(data, path)
