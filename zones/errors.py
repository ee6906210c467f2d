"""Errors users see for bad config and zone files: file, field path, expectation."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError


class ConfigError(Exception):
    """A config or zone file is wrong. ``str()`` is the one line users see (exit code 2)."""

    def __init__(self, file: str | Path | None, field: str, message: str) -> None:
        self.file = str(file) if file is not None else None
        self.field = field
        self.message = message
        where = f"{self.file}: " if self.file else ""
        super().__init__(f"{where}{field}: {message}" if field else f"{where}{message}")

    def __reduce__(self):  # picklable (a cluster worker's error travels to the driver): rebuilt from its parts
        return type(self), (self.file, self.field, self.message)


class ZoneFileError(ConfigError):
    """A zone file is wrong."""


def field_path(loc: tuple) -> str:
    """pydantic location tuple -> ``rules[1].min_overlap``; union-tag parts are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and (part.startswith("function-") or part in _UNION_TAGS):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


_UNION_TAGS: set[str] = set()


def register_union_tags(*tags: str) -> None:
    """Discriminator values pydantic puts in error locations (``rules.0.intrusion.zone``)."""
    _UNION_TAGS.update(tags)


def _describe(err: dict) -> str:
    kind = err.get("type", "")
    msg = err.get("msg", "invalid")
    got = err.get("input")
    if kind == "extra_forbidden":
        return "unknown field (check spelling; see the documented fields)"
    if kind == "missing":
        return "required field is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if got is not None and kind not in ("model_type", "dict_type") and not isinstance(got, (dict, list)):
        return f"{msg}, got {got!r}"
    return msg


def from_validation_error(exc: ValidationError, file: str | Path | None, cls: type[ConfigError] = ConfigError) -> ConfigError:
    """The first error of a pydantic ``ValidationError`` as a one-line ``ConfigError``."""
    err = exc.errors()[0]
    more = len(exc.errors()) - 1
    message = _describe(err)
    if more:
        message += f" (and {more} more error{'s' if more > 1 else ''})"
    return cls(file, field_path(tuple(err.get("loc", ()))), message)


def read_yaml(path: str | Path, what: str, cls: type[ConfigError] = ConfigError) -> object:
    """Parse a YAML file safely; unreadable files and syntax errors become one-line ``cls`` errors."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise cls(path, "", f"cannot read {what} ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise cls(path, "", f"not valid YAML{where}") from None
