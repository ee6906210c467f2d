"""Durable outbox: every AlertEvent is written here (SQLite, WAL) before anything else.

The publisher (``pipeline.sinks.Publisher``) reads rows in order and hands them to every
sink. Each sink acknowledges rows on its own (JSONL once fsync'ed, MQTT on PUBACK): its
bit is set in the row's ``acked_by`` mask, so a row JSONL has written is never written
again while MQTT is still behind. A row is deleted once every configured sink's bit is
set. Rows left by a killed process are sent first on the next start (they have the lowest
row numbers).

Open alerts: the outbox also keeps, in the same transaction as each event, the latest event of every
alert that started and has not ended (table ``open_alerts``). A process killed with alerts active leaves
them there; the next start finds them in ``left_open`` and ends them (``Pipeline``: ``extra.reason``
``restarted``), so no consumer waits forever for an ``end``.

Bounded: ``max_rows`` undelivered rows at most. When full, the oldest ``update`` rows are
dropped first; ``start`` / ``end`` rows only when no ``update`` is left ("forced"). With
``max_age_s``, rows older than that are dropped, whatever their type. Every drop is
counted (``dropped``, ``expired``) and logged, never silent.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from .types import AlertEvent

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    type TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload TEXT NOT NULL,
    created_s REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    acked_by INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS open_alerts (
    alert_id TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sinks (
    name TEXT PRIMARY KEY,
    bit INTEGER NOT NULL UNIQUE
);
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS outbox_type_row ON outbox (type, row);
CREATE INDEX IF NOT EXISTS outbox_created ON outbox (created_s);
"""
MAX_SINKS = 62  # bits of a SQLite INTEGER we use
LOG_EVERY_S = 10.0  # drop warnings are summarised at most this often


class Row(NamedTuple):
    """One undelivered alert as the sinks see it."""

    row: int
    camera: str
    payload: str  # AlertEvent JSON


class Outbox:
    """Thread-safe: one SQLite connection per thread; writers notify the publisher."""

    def __init__(self, path: str | Path, max_rows: int | None = None, max_age_s: float | None = None) -> None:
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"outbox: max_rows must be >= 1, got {max_rows}")
        if max_age_s is not None and max_age_s <= 0:
            raise ValueError(f"outbox: max_age_s must be > 0, got {max_age_s}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._wake = threading.Event()
        self._lock = threading.Lock()  # the row count and the counters below
        self.added = 0
        self.delivered = 0
        self.dropped = {"update": 0, "start": 0, "end": 0}  # bound hit (start/end only when forced)
        self.expired = {"update": 0, "start": 0, "end": 0}  # older than max_age_s
        self._last_drop_log = 0.0
        self._drops_since_log = 0
        self._sink_mask = 0
        self._bits: dict[str, int] = {}  # sink name -> its bit in acked_by
        db = self._conn()
        db.executescript(SCHEMA)
        cols = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
        if "acked_by" not in cols:  # an outbox written before per-sink acknowledgement
            db.execute("ALTER TABLE outbox ADD COLUMN acked_by INTEGER NOT NULL DEFAULT 0")
        db.executescript(INDEXES)
        self._rows = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        # alerts a previous process started and never ended (killed); oldest first
        self.left_open: list[AlertEvent] = [AlertEvent.from_json(p) for (p,) in db.execute(
            "SELECT payload FROM open_alerts ORDER BY rowid")]
        self.expire()

    def forget_open(self, ids: list[str]) -> None:
        """Take alerts off the open list without an ``end`` row: something else ended them (a cluster driver
        ended a lost worker's alerts before the restarted worker found them here)."""
        with self._write() as db:
            db.executemany("DELETE FROM open_alerts WHERE alert_id = ?", [(i,) for i in ids])

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on this thread's connection: the write lock taken up front (BEGIN IMMEDIATE),
        committed at the end of the block, rolled back when it raises."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _conn(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an alert survives a killed process and a power cut
            self._local.db = db
            with self._lock:
                self._conns.append(db)
        return db

    # -- sinks ----------------------------------------------------------------------------
    def sink_bit(self, name: str) -> int:
        """The bit of ``acked_by`` that belongs to sink ``name`` (stable across runs)."""
        bit = self._bits.get(name)
        if bit is not None:
            return bit
        with self._write() as db:
            got = db.execute("SELECT bit FROM sinks WHERE name = ?", (name,)).fetchone()
            if got is None:
                used = {int(b) for (b,) in db.execute("SELECT bit FROM sinks")}
                free = [b for b in range(MAX_SINKS) if b not in used]
                if not free:
                    raise RuntimeError(f"outbox {self.path}: more than {MAX_SINKS} sink names were ever used")
                db.execute("INSERT INTO sinks (name, bit) VALUES (?, ?)", (name, free[0]))
                got = (free[0],)
        self._bits[name] = 1 << int(got[0])
        return self._bits[name]

    def use_sinks(self, names: list[str]) -> None:
        """The sinks of this run: a row is deleted once all of them acknowledged it.

        Rows that every one of them acknowledged in an earlier run are deleted now.
        """
        mask = 0
        for name in names:
            mask |= self.sink_bit(name)
        self._sink_mask = mask
        if mask:
            cur = self._conn().execute("DELETE FROM outbox WHERE (acked_by & ?) = ?", (mask, mask))
            self._count_deleted(cur.rowcount, delivered=True)

    # -- writing --------------------------------------------------------------------------
    def add(self, event: AlertEvent) -> int:
        """Store durably; returns the row number. Returns only after the commit (fsync)."""
        dropped: list[tuple[int, str]] = []
        with self._write() as db:
            if self.max_rows is not None:
                with self._lock:
                    over = self._rows - self.max_rows + 1
                if over > 0:
                    dropped = self._make_room(db, over)
            payload = event.to_json()
            cur = db.execute(
                "INSERT INTO outbox (camera, alert_id, type, seq, payload) VALUES (?, ?, ?, ?, ?)",
                (event.camera, event.id, event.type, event.seq, payload),
            )
            if event.type == "end":
                db.execute("DELETE FROM open_alerts WHERE alert_id = ?", (event.id,))
            else:
                db.execute("INSERT OR REPLACE INTO open_alerts (alert_id, camera, payload) VALUES (?, ?, ?)",
                           (event.id, event.camera, payload))
        with self._lock:
            self._rows += 1 - len(dropped)
            self.added += 1
            for _, kind in dropped:
                self.dropped[kind] = self.dropped.get(kind, 0) + 1
        if dropped:
            self._log_drops(dropped)
        self.notify()
        return int(cur.lastrowid)

    def _make_room(self, db: sqlite3.Connection, n: int) -> list[tuple[int, str]]:
        """Delete ``n`` rows: the oldest updates, then (forced) the oldest starts / ends."""
        victims = db.execute("SELECT row, type FROM outbox WHERE type = 'update' ORDER BY row LIMIT ?", (n,)).fetchall()
        if len(victims) < n:
            victims += db.execute("SELECT row, type FROM outbox WHERE type != 'update' ORDER BY row LIMIT ?",
                                  (n - len(victims),)).fetchall()
        db.executemany("DELETE FROM outbox WHERE row = ?", [(r,) for r, _ in victims])
        return [(int(r), str(t)) for r, t in victims]

    def _log_drops(self, dropped: list[tuple[int, str]]) -> None:
        forced = [r for r, t in dropped if t != "update"]
        now = time.monotonic()
        with self._lock:
            self._drops_since_log += len(dropped)
            due = forced or now - self._last_drop_log >= LOG_EVERY_S
            if not due:
                return
            n, self._drops_since_log, self._last_drop_log = self._drops_since_log, 0, now
            totals = dict(self.dropped)
        if forced:
            log.error("outbox full (max_rows %d undelivered alerts): no 'update' left to drop, dropped %d "
                      "'start'/'end' alert(s) (rows %s); dropped so far: %s", self.max_rows,
                      len(forced), ", ".join(map(str, forced[:5])), totals)
        else:
            log.warning("outbox full (max_rows %d undelivered alerts): dropped the %d oldest 'update' alert(s); "
                        "dropped so far: %s", self.max_rows, n, totals)

    def expire(self) -> int:
        """Drop rows older than ``max_age_s`` (counted and logged); returns how many."""
        if self.max_age_s is None:
            return 0
        cutoff = time.time() - self.max_age_s
        with self._write() as db:
            old = db.execute("SELECT type, COUNT(*) FROM outbox WHERE created_s < ? GROUP BY type", (cutoff,)).fetchall()
            if old:
                db.execute("DELETE FROM outbox WHERE created_s < ?", (cutoff,))
        n = sum(int(c) for _, c in old)
        if n:
            with self._lock:
                self._rows -= n
                for kind, c in old:
                    self.expired[kind] = self.expired.get(kind, 0) + int(c)
                totals = dict(self.expired)
            log.warning("outbox: dropped %d undelivered alert(s) older than max_age_s %g s (%s); expired so far: %s",
                        n, self.max_age_s, ", ".join(f"{c} {k}" for k, c in old), totals)
        return n

    # -- reading and acknowledging -----------------------------------------------------
    def pending(self, limit: int = 100, *, sink: str | None = None, after: int = 0) -> list[Row]:
        """Oldest rows after row ``after`` that ``sink`` has not acknowledged (any sink: all rows)."""
        if sink is None:
            q = "SELECT row, camera, payload FROM outbox WHERE row > ? ORDER BY row LIMIT ?"
            args: tuple = (after, limit)
        else:
            q = "SELECT row, camera, payload FROM outbox WHERE row > ? AND (acked_by & ?) = 0 ORDER BY row LIMIT ?"
            args = (after, self.sink_bit(sink), limit)
        return [Row(*r) for r in self._conn().execute(q, args).fetchall()]

    def pending_count(self, sink: str | None = None) -> int:
        if sink is None:
            return self.count()
        return int(self._conn().execute("SELECT COUNT(*) FROM outbox WHERE (acked_by & ?) = 0",
                                        (self.sink_bit(sink),)).fetchone()[0])

    def ack(self, rows: list[int], sink: str | None = None) -> None:
        """Rows ``sink`` has acknowledged; rows every sink of this run acknowledged are deleted.

        ``sink=None``: delete the rows (no sinks configured, or all of them acknowledged).
        """
        if not rows:
            return
        params = [(r,) for r in rows]
        bit = self.sink_bit(sink) if sink is not None else 0  # before BEGIN: a new name is its own transaction
        with self._write() as db:
            if sink is None:
                before = db.total_changes
                db.executemany("DELETE FROM outbox WHERE row = ?", params)
                deleted = db.total_changes - before
            else:
                mask = self._sink_mask or bit  # without use_sinks: this sink alone
                db.executemany(f"UPDATE outbox SET acked_by = acked_by | {bit} WHERE row = ?", params)
                before = db.total_changes
                db.executemany(f"DELETE FROM outbox WHERE row = ? AND (acked_by & {mask}) = {mask}", params)
                deleted = db.total_changes - before
        self._count_deleted(deleted, delivered=True)

    def _count_deleted(self, n: int, delivered: bool) -> None:
        if n > 0:
            with self._lock:
                self._rows -= n
                if delivered:
                    self.delivered += n

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def stats(self) -> dict:
        with self._lock:
            return {"added": self.added, "delivered": self.delivered, "pending": self._rows,
                    "dropped": dict(self.dropped), "expired": dict(self.expired)}

    # -- waking the publisher -------------------------------------------------------------
    def notify(self) -> None:
        """Wake ``wait`` (a row was added, or a sink acknowledged something)."""
        self._wake.set()

    def wait(self, timeout: float) -> None:
        """Sleep until ``notify`` or ``timeout``. A notify that came since the last wait returns at once,
        so a caller that reads the outbox after ``wait`` never sleeps through a change."""
        self._wake.wait(timeout)
        self._wake.clear()

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for db in conns:
            try:
                db.close()
            except sqlite3.Error:  # pragma: no cover - closing only
                pass
        self._local = threading.local()
