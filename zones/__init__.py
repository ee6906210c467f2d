"""Zones: zone files, rule evaluation in mask space, alert lifecycle. Pure logic."""

from .engine import ZoneEngine
from .geometry import rasterize
from .errors import ConfigError, ZoneFileError
from .events import AlertEvent, AlertObject
from .schema import ZoneFile, load_zone_file, parse_zone_file

__all__ = [
    "AlertEvent", "AlertObject", "ConfigError", "ZoneEngine", "ZoneFile", "ZoneFileError",
    "load_zone_file", "parse_zone_file", "rasterize",
]
