"""Where alerts go after the outbox, and the publisher loop that moves them there.

A sink takes rows (``send``) and acknowledges them later (``acked``): at once for the
JSONL file (after fsync), on PUBACK for MQTT. Each sink acknowledges on its own; the
outbox deletes a row once every sink did (``Outbox.ack``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .outbox import Outbox, Row

log = logging.getLogger(__name__)
POLL_S = 0.1
UNREACHABLE_LOG_EVERY_S = 30.0


class Sink(Protocol):
    """What the publisher needs from a sink. Only the publisher thread calls these,
    except ``start`` and ``close`` (the pipeline calls them before and after it runs)."""

    name: str  # stable: the outbox keys acknowledgements by it

    def start(self, wake: Callable[[], None]) -> None:
        """Begin (connect). ``wake()`` tells the publisher that acks or the connection changed."""

    @property
    def connected(self) -> bool:
        """Can take rows now (False: rows wait in the outbox)."""

    def capacity(self) -> int:
        """How many rows ``send`` would take now (0 while disconnected or the in-flight window is full)."""

    def send(self, rows: list[Row]) -> int:
        """Submit rows in order; returns how many of them (a prefix) it took."""

    def acked(self) -> list[int]:
        """Rows delivered (stored / acknowledged by the broker) since the last call."""

    def returned(self) -> list[int]:
        """Rows taken but not delivered (to be offered again), since the last call."""

    def in_flight(self) -> set[int]:
        """Rows taken, not yet acked nor returned."""

    def close(self) -> None: ...


class JsonlSink:
    """Appends one alert per line and fsyncs each batch before acknowledging it."""

    name = "jsonl"
    connected = True

    def __init__(self, path: str | Path, batch: int = 256) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.batch = batch
        self._f = open(self.path, "a", encoding="utf-8")
        self._acked: list[int] = []

    def start(self, wake: Callable[[], None]) -> None:
        pass

    def capacity(self) -> int:
        return self.batch

    def send(self, rows: list[Row]) -> int:
        if not rows:
            return 0
        self._f.write("".join(r.payload + "\n" for r in rows))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._acked.extend(r.row for r in rows)
        return len(rows)

    def acked(self) -> list[int]:
        out, self._acked = self._acked, []
        return out

    def returned(self) -> list[int]:
        return []

    def in_flight(self) -> set[int]:
        return set()

    def close(self) -> None:
        self._f.close()


HURRY_CHECK_S = 0.5  # how often the publisher tells reconnecting sinks whether alerts wait for them


@dataclass
class _SinkState:
    cursor: int = 0  # highest row taken by the sink (rows at or below are taken, acked or returned)
    last_unreachable_log: float = 0.0


class Publisher:
    """Moves rows from the outbox to every sink, in row order (so in order per camera).

    Each sink has its own cursor: a slow or disconnected sink never holds back the others
    and never gets a row twice while connected. Undelivered rows of an earlier run have the
    lowest row numbers and go first.
    """

    def __init__(self, outbox: Outbox, sinks: list[Sink], batch: int = 256) -> None:
        self.outbox = outbox
        self.sinks = sinks
        self.batch = batch
        outbox.use_sinks([s.name for s in sinks])
        self._state = {s.name: _SinkState() for s in sinks}
        self._next_expire = 0.0

    def step(self) -> bool:
        """One round over the sinks; True when anything moved."""
        moved = False
        if not self.sinks:  # nobody to deliver to: the rows are done
            rows = self.outbox.pending(self.batch)
            self.outbox.ack([r.row for r in rows])
            return bool(rows)
        for sink in self.sinks:
            st = self._state[sink.name]
            acked = sink.acked()
            if acked:
                self.outbox.ack(acked, sink.name)
                moved = True
            back = sink.returned()
            if back:  # offered again; rows still in flight are skipped below
                st.cursor = min(st.cursor, min(back) - 1)
                moved = True
            room = sink.capacity()
            if room <= 0:
                continue
            busy = sink.in_flight()
            rows = self.outbox.pending(min(room, self.batch) + len(busy), sink=sink.name, after=st.cursor)
            rows = [r for r in rows if r.row not in busy][:room]
            if not rows:
                continue
            taken = sink.send(rows)
            if taken:
                st.cursor = max(st.cursor, rows[taken - 1].row)
                moved = True
                acked = sink.acked()  # synchronous sinks acknowledge at once
                if acked:
                    self.outbox.ack(acked, sink.name)
        return moved

    def flushed(self) -> bool:
        """Every sink has every row (nothing pending, nothing in flight)."""
        return all(not sink.in_flight() and self.outbox.pending_count(sink.name) == 0 for sink in self.sinks) \
            if self.sinks else self.outbox.count() == 0

    def _report_unreachable(self) -> None:
        now = time.monotonic()
        for sink in self.sinks:
            st = self._state[sink.name]
            if sink.connected or now - st.last_unreachable_log < UNREACHABLE_LOG_EVERY_S:
                continue
            n = self.outbox.pending_count(sink.name)
            if n:
                if st.last_unreachable_log:
                    log.warning("publisher: %s not connected; %d alert(s) wait in the outbox", sink.name, n)
                st.last_unreachable_log = now

    def _hurry_sinks(self, now: bool = False) -> None:
        """Sinks that reconnect with backoff (MQTT) wait less while alerts wait for them."""
        for sink in self.sinks:
            hurry = getattr(sink, "hurry", None)
            if hurry is not None:
                hurry(self.outbox.pending_count(sink.name) > 0, now=now)

    def run(self, done: Callable[[], bool], abort: threading.Event, drain_timeout_s: float) -> None:
        """Deliver until ``done()`` and everything is delivered, or ``drain_timeout_s`` after ``done()``
        (a sink that stays unreachable keeps its rows in the outbox for the next start), or ``abort``.
        At ``done()`` a disconnected sink with rows waiting is asked to reconnect at once."""
        drain_deadline: float | None = None
        next_hurry = 0.0
        while not abort.is_set():
            moved = self.step()
            now = time.monotonic()
            if self.outbox.max_age_s is not None and now >= self._next_expire:
                self.outbox.expire()
                self._next_expire = now + 1.0
            if now >= next_hurry:
                self._hurry_sinks()
                next_hurry = now + HURRY_CHECK_S
            if moved:
                continue
            self._report_unreachable()
            if done():
                if self.flushed():
                    if drain_deadline is not None:
                        log.info("publisher: every alert delivered (%.1f s after the run's end)",
                                 now - drain_deadline + drain_timeout_s)
                    return
                if drain_deadline is None:
                    drain_deadline = now + drain_timeout_s
                    left = {s.name: self.outbox.pending_count(s.name) for s in self.sinks}
                    if drain_timeout_s > 0:
                        log.info("publisher: the run ended with alerts waiting (%s); delivering for up to %g s "
                                 "(alerts.drain_timeout_s; Ctrl-C stops)",
                                 ", ".join(f"{n} for {k}" for k, n in left.items() if n), drain_timeout_s)
                    self._hurry_sinks(now=True)
                    continue
                elif now >= drain_deadline:
                    left = {s.name: self.outbox.pending_count(s.name) for s in self.sinks}
                    log.warning("publisher: stopping with undelivered alerts in the outbox %s (%s); they are sent "
                                "on the next start", self.outbox.path,
                                ", ".join(f"{n} for {k}{'' if self._connected(k) else ' (not connected)'}"
                                          for k, n in left.items() if n))
                    return
            self.outbox.wait(POLL_S)

    def _connected(self, name: str) -> bool:
        return next((s.connected for s in self.sinks if s.name == name), False)
