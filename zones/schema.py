"""Zone file schema (YAML, one per camera): zones, optional ground calibration, rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from shapely.geometry import Polygon

from .errors import ZoneFileError, from_validation_error, read_yaml, register_union_tags
from .geometry import homography
from .schedule import Schedule


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Point = tuple[float, float]


class Zone(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                    description="Unique zone id (letters, digits, - and _), used in rules, topics and alerts.")
    name: str | None = Field(None, description="Human-readable name.")
    polygon: list[Point] = Field(description="Vertices in the file's `units`.")

    @field_validator("polygon")
    @classmethod
    def _valid_polygon(cls, v: list[Point]) -> list[Point]:
        if len(v) < 3:
            raise ValueError(f"polygon needs at least 3 points, got {len(v)}")
        poly = Polygon(v)
        if not poly.is_valid:
            raise ValueError("polygon is self-intersecting (vertices must go round the zone in order)")
        if poly.area <= 0:
            raise ValueError("polygon has zero area")
        return v


class RuleBase(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="Unique rule id.")
    classes: list[str] = Field(min_length=1, description="Object classes the rule applies to.")
    enabled: bool = Field(True, description="A disabled rule is validated but not evaluated.")
    min_confidence: float = Field(0.0, ge=0, le=1, description="Ignore objects below this confidence.")
    min_duration_s: float = Field(0.0, ge=0, le=3600, description="Entry debounce: the condition must hold this long.")
    clear_after_s: float = Field(1.0, ge=0, le=3600, description="Exit hysteresis: inactive only after this long below threshold.")
    cooldown_s: float = Field(0.0, ge=0, le=86400, description="After an end, no new start for the same key this long.")
    update_interval_s: float = Field(1.0, ge=0, le=3600, description="Least time between `update` events of one alert; 0 = no updates.")
    ignore_stationary: float | None = Field(None, gt=0, le=86400,
                                            description="Do not start alerts for objects that have not moved for this many seconds.")
    severity: Literal["info", "warning", "critical"] = Field("warning", description="Severity carried by alerts.")
    schedule: Schedule | None = Field(None, description="Armed only inside these weekly windows (and the "
                                                        "camera's schedule); outside, no start and active alerts "
                                                        "end (reason disarmed).")


class IntrusionRule(RuleBase):
    """An object of `classes` is inside `zone`: a fraction >= min_overlap of its mask."""

    type: Literal["intrusion"]
    zone: str = Field(description="Zone id.")
    min_overlap: float = Field(0.05, gt=0, le=1, description="Fraction of the object's mask inside the zone.")


class ProximityRule(RuleBase):
    """An object of `classes` is within max_distance of an object of `near` (mask to mask)."""

    type: Literal["proximity"]
    near: list[str] = Field(min_length=1, description="Classes of the other object.")
    max_distance: float = Field(gt=0, description="Alert at or below this distance, in `units`.")
    units: Literal["m", "px"] = Field(description="m (needs calibration: ground distance) or px (frame pixels).")
    zone: str | None = Field(None, description="Only objects overlapping this zone (optional).")


class OccupancyRule(RuleBase):
    """More than max_count objects of `classes` inside `zone` (per zone, not per object)."""

    type: Literal["occupancy"]
    zone: str
    max_count: int = Field(ge=0, description="Alert when the count exceeds this.")
    min_overlap: float = Field(0.5, gt=0, le=1, description="Fraction of a mask inside the zone to count the object.")
    hold_s: float = Field(0.0, ge=0, le=60, description="An object counted inside stays counted this long after it "
                          "was last seen inside, unless it is seen outside meanwhile: a bunched herd or a crowd whose "
                          "members the detector misses for a few frames each. 0: count only the objects seen in "
                          "this frame.")


class DwellRule(RuleBase):
    """An object of `classes` stays inside `zone` longer than max_duration_s."""

    type: Literal["dwell"]
    zone: str
    max_duration_s: float = Field(gt=0, le=86400, description="Alert once an object has been inside this long.")
    min_overlap: float = Field(0.5, gt=0, le=1, description="Fraction of a mask inside the zone to count as inside.")


class LineCrossingRule(RuleBase):
    """An object of `classes` crosses `line` in `direction` (judged by its mask centroid or bottom)."""

    type: Literal["line_crossing"]
    line: tuple[Point, Point] = Field(description="Two points in the file's `units`.")
    direction: Literal["any", "left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top"] = Field(
        "any", description="left/right for mostly vertical lines, top/bottom for mostly horizontal ones.")
    anchor: Literal["centroid", "bottom"] = Field("centroid", description="Point of the mask that crosses.")

    @model_validator(mode="after")
    def _direction_fits_line(self) -> "LineCrossingRule":
        (ax, ay), (bx, by) = self.line
        if (ax, ay) == (bx, by):
            raise ValueError("line: the two points are the same")
        vertical = abs(by - ay) >= abs(bx - ax)
        if self.direction in ("left_to_right", "right_to_left") and not vertical:
            raise ValueError(f"direction: {self.direction} needs a mostly vertical line; use top_to_bottom or bottom_to_top")
        if self.direction in ("top_to_bottom", "bottom_to_top") and vertical:
            raise ValueError(f"direction: {self.direction} needs a mostly horizontal line; use left_to_right or right_to_left")
        return self


class SpeedRule(RuleBase):
    """An object of `classes` moves faster than max_kmh on the ground (needs calibration): its ground point (the
    bottom of its mask, through the calibration) tracked over `window_s`."""

    type: Literal["speed"]
    max_kmh: float = Field(gt=0, le=1000, description="Alert above this ground speed (km/h).")
    zone: str | None = Field(None, description="Only objects overlapping this zone (optional).")
    min_overlap: float = Field(0.05, gt=0, le=1, description="With zone: the fraction of a mask inside it.")
    window_s: float = Field(1.0, ge=0.2, le=10, description="Speed is the slope of a straight-line fit of the "
                                                            "ground point over this many seconds (smooths the "
                                                            "mask's jitter; an object is judged once it was "
                                                            "seen for most of a window).")


RULE_TYPES = ("intrusion", "proximity", "occupancy", "dwell", "line_crossing", "speed")
register_union_tags(*RULE_TYPES)
Rule = Annotated[Union[IntrusionRule, ProximityRule, OccupancyRule, DwellRule, LineCrossingRule, SpeedRule],
                 Field(discriminator="type")]


class ObjectFilter(_Strict):
    """Limits a detection must meet to reach the tracker (per class, or ``default`` for every class)."""

    min_score: float | None = Field(None, ge=0, le=1, description="Least confidence.")
    min_area: float | None = Field(None, gt=0, description="Least mask area, in area_units.")
    max_area: float | None = Field(None, gt=0, description="Largest mask area, in area_units.")
    area_units: Literal["fraction", "px", "m2"] = Field(
        "fraction", description="fraction of the frame, frame pixels, or m2 on the ground (needs calibration).")
    min_ratio: float | None = Field(None, gt=0, description="Least box width / height.")
    max_ratio: float | None = Field(None, gt=0, description="Largest box width / height.")

    @model_validator(mode="after")
    def _ranges(self) -> "ObjectFilter":
        for lo, hi in (("min_area", "max_area"), ("min_ratio", "max_ratio")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{hi}: must be >= {lo} ({a}), got {b}")
        if self.area_units == "fraction" and any(v is not None and v > 1 for v in (self.min_area, self.max_area)):
            raise ValueError("min_area: a fraction of the frame is at most 1 (or set area_units: px or m2)")
        return self


class IgnoreRegion(_Strict):
    """Detections whose mask lies mostly inside are dropped before the tracker: a cone the model calls a
    worker, a parked machine, a poster of a person."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="Region id (counted per id).")
    polygon: list[Point] = Field(description="Vertices in the file's `units`.")
    classes: list[str] | None = Field(None, min_length=1, description="Only these classes (default: every class).")
    min_overlap: float = Field(0.5, gt=0, le=1, description="Fraction of a mask inside the region to drop it.")

    _valid_polygon = field_validator("polygon")(Zone._valid_polygon.__func__)


class Calibration(_Strict):
    image: list[Point] = Field(min_length=4, description="Image points (in the file's `units`).")
    ground: list[Point] = Field(min_length=4, description="Their ground positions in metres.")

    @model_validator(mode="after")
    def _solvable(self) -> "Calibration":
        if len(self.image) != len(self.ground):
            raise ValueError(f"calibration: image has {len(self.image)} points but ground has {len(self.ground)}")
        try:
            homography(np.array(self.image), np.array(self.ground))
        except ValueError as exc:
            raise ValueError(f"calibration: degenerate ({exc})") from None
        return self


class ZoneFile(_Strict):
    units: Literal["normalized", "pixels"] = Field(description="Coordinate units; never guessed.")
    frame_size: tuple[int, int] | None = Field(None, description="[width, height], required when units: pixels.")
    calibration: Calibration | None = None
    zones: list[Zone] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    filters: dict[str, ObjectFilter] = Field(default_factory=dict, description="Per class name (or `default`): "
                                             "detections outside the limits are dropped before the tracker.")
    ignore: list[IgnoreRegion] = Field(default_factory=list, description="Regions whose detections are dropped "
                                                                         "before the tracker.")
    schedule: Schedule | None = Field(None, description="The camera's arming schedule: every rule is armed only "
                                                        "inside it (and inside its own).")
    switch_override: Literal["next_boundary", "until_switched"] = Field(
        "next_boundary", description="A remote switch (MQTT .../set) overrides the schedule until the schedule's "
                                     "next window boundary (next_boundary), or until it is switched back "
                                     "(until_switched). Without a schedule a switch holds until switched back.")

    @model_validator(mode="after")
    def _cross_checks(self) -> "ZoneFile":
        if self.units == "pixels" and self.frame_size is None:
            raise ValueError("frame_size: required when units is 'pixels'")
        w, h = (1.0, 1.0) if self.units == "normalized" else self.frame_size
        what = "normalized coordinates must be in 0..1" if self.units == "normalized" else \
            f"pixel coordinates must be inside the frame {w}x{h}"

        def inside(pts, field):
            for x, y in pts:
                if not (0 <= x <= w and 0 <= y <= h):
                    raise ValueError(f"{field}: {what}, got [{x}, {y}]")

        for i, z in enumerate(self.zones):
            inside(z.polygon, f"zones[{i}].polygon")
        ids = [z.id for z in self.zones]
        for i, zid in enumerate(ids):
            if zid in ids[:i]:
                raise ValueError(f"zones[{i}].id: duplicate zone id {zid!r}")
        rids = [r.id for r in self.rules]
        for i, rid in enumerate(rids):
            if rid in rids[:i]:
                raise ValueError(f"rules[{i}].id: duplicate rule id {rid!r}")
        for i, r in enumerate(self.rules):
            zone = getattr(r, "zone", None)
            if zone is not None and zone not in ids:
                raise ValueError(f"rules[{i}].zone: unknown zone {zone!r}, expected one of {ids}")
            if isinstance(r, ProximityRule) and r.units == "m" and self.calibration is None:
                raise ValueError(f"rules[{i}].units: 'm' needs a calibration section (or use units: px)")
            if isinstance(r, SpeedRule) and self.calibration is None:
                raise ValueError(f"rules[{i}].type: speed needs a calibration section (ground metres)")
            if isinstance(r, LineCrossingRule):
                inside(r.line, f"rules[{i}].line")
        if self.calibration is not None:
            inside(self.calibration.image, "calibration.image")
        for cls, flt in self.filters.items():
            if flt.area_units == "m2" and self.calibration is None:
                raise ValueError(f"filters.{cls}.area_units: m2 needs a calibration section")
        iids = [r.id for r in self.ignore]
        for i, region in enumerate(self.ignore):
            inside(region.polygon, f"ignore[{i}].polygon")
            if region.id in iids[:i]:
                raise ValueError(f"ignore[{i}].id: duplicate region id {region.id!r}")
        return self

    def zone(self, zone_id: str) -> Zone:
        return next(z for z in self.zones if z.id == zone_id)

    def to_px(self, pts, frame_wh: tuple[int, int]) -> list[Point]:
        """Points in the file's units -> frame pixels of a frame of ``frame_wh``."""
        if self.units == "normalized":
            sx, sy = frame_wh
        else:
            sx, sy = frame_wh[0] / self.frame_size[0], frame_wh[1] / self.frame_size[1]
        return [(x * sx, y * sy) for x, y in pts]

    def polygon_px(self, zone_id: str, frame_wh: tuple[int, int]) -> list[Point]:
        """Zone polygon in frame pixels of a frame of ``frame_wh``."""
        return self.to_px(self.zone(zone_id).polygon, frame_wh)

    def ground_homography(self, frame_wh: tuple[int, int]) -> np.ndarray | None:
        """Frame pixels -> ground metres, or None without calibration."""
        if self.calibration is None:
            return None
        return homography(np.array(self.to_px(self.calibration.image, frame_wh)), np.array(self.calibration.ground))


def parse_zone_file(data: object, file: str | Path | None = None) -> ZoneFile:
    if not isinstance(data, dict):
        raise ZoneFileError(file, "", f"expected a mapping with units, zones and rules, got {type(data).__name__}")
    try:
        return ZoneFile.model_validate(data)
    except ValidationError as exc:
        err = from_validation_error(exc, file, ZoneFileError)
        # model-level validators report "field: message"; lift the field into place
        if ": " in err.message and not err.message.startswith("Input"):
            field, _, msg = err.message.partition(": ")
            if " " not in field:
                field = f"{err.field}.{field}" if err.field and not field.startswith(err.field) else field
                raise ZoneFileError(file, field, msg) from None
        raise err from None


def load_zone_file(path: str | Path) -> ZoneFile:
    """Read and validate a zone file; raises ZoneFileError naming file, field and expectation."""
    return parse_zone_file(read_yaml(path, "zone file", ZoneFileError), Path(path))
