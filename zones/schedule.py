"""Arming schedules: weekly time windows in a named time zone, with date exceptions.

A camera (the zone file's ``schedule``) and each rule (its own ``schedule``) may have one; a rule is armed
when both are. Outside its windows a rule starts no alert and ends an active one (``extra.reason:
disarmed``). Times are the frames' wall clock (epoch seconds), so a test can drive the schedule by the
timestamps it feeds, without sleeping. The standard library's ``zoneinfo`` reads the time-zone database
(the ``tzdata`` package supplies it where the system has none); daylight-saving changes follow the zone.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


class Window(_Strict):
    days: list[str] = Field(min_length=1, description="Days it starts on: mon, tue, ... sun (or all, weekdays, "
                                                      "weekend).")
    start: str = Field(description="Local start time HH:MM.")
    end: str = Field(description="Local end time HH:MM (24:00: midnight); earlier than start: it ends the next day.")

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, v):
        groups = {"all": list(DAYS), "weekdays": list(DAYS[:5]), "weekend": list(DAYS[5:])}
        out: list[str] = []
        for d in [v] if isinstance(v, str) else v:
            d = str(d).lower()[:3] if str(d).lower() not in groups else str(d).lower()
            if d in groups:
                out += groups[d]
            elif d in DAYS:
                out.append(d)
            else:
                raise ValueError(f"unknown day {d!r}, expected one of {', '.join(DAYS)}, all, weekdays, weekend")
        return out

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, v) -> str:
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1440:
            v = f"{v // 60:02d}:{v % 60:02d}"  # YAML 1.1 (PyYAML) reads an unquoted 22:00 as 1320 (base 60)
        if not _HHMM.match(str(v)):
            raise ValueError(f"expected HH:MM (00:00..24:00), got {v!r}")
        return str(v)

    @model_validator(mode="after")
    def _not_empty(self) -> "Window":
        if _minutes(self.start) == _minutes(self.end):
            raise ValueError("end: equal to start (an empty window; use 00:00 to 24:00 for the whole day)")
        return self

    def covers(self, local: dt.datetime) -> bool:
        minute = local.hour * 60 + local.minute
        s, e = _minutes(self.start), _minutes(self.end)
        day = DAYS[local.weekday()]
        if s < e:
            return day in self.days and s <= minute < e
        prev = DAYS[(local.weekday() - 1) % 7]  # overnight: from start on a listed day to end the next morning
        return (day in self.days and minute >= s) or (prev in self.days and minute < e)


class DateException(_Strict):
    date: dt.date = Field(description="Local date YYYY-MM-DD.")
    armed: bool = Field(False, description="false: disarmed the whole day (a holiday); true: armed the whole day.")


class Schedule(_Strict):
    timezone: str = Field(description="IANA time zone, e.g. Europe/Berlin.")
    windows: list[Window] = Field(min_length=1, description="Armed inside any of these.")
    exceptions: list[DateException] = Field(default_factory=list, description="Whole days that differ.")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone (expected an IANA name such as Europe/Berlin)") from None
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # ZoneInfo keeps its own cache of zones

    def armed(self, wall_s: float) -> bool:
        local = dt.datetime.fromtimestamp(wall_s, self.tz)
        for ex in self.exceptions:
            if ex.date == local.date():
                return ex.armed
        return any(w.covers(local) for w in self.windows)

    def next_boundary(self, wall_s: float, horizon_days: int = 9) -> float | None:
        """The first time after ``wall_s`` at which ``armed`` changes (None within the horizon: never)."""
        now = self.armed(wall_s)
        start = dt.datetime.fromtimestamp(wall_s, self.tz).date()
        candidates = set()
        for k in range(-1, horizon_days):
            day = start + dt.timedelta(days=k)
            candidates.add(dt.datetime.combine(day, dt.time(0, 0), self.tz).timestamp())
            for w in self.windows:
                for hhmm in (w.start, w.end):
                    m = _minutes(hhmm)
                    t = dt.datetime.combine(day, dt.time(0, 0), self.tz) + dt.timedelta(minutes=m)
                    candidates.add(t.timestamp())
        for t in sorted(c for c in candidates if c > wall_s):
            if self.armed(t) != now:
                return t
        return None
