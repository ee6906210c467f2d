"""Durable outbox: every AlertEvent is written here (SQLite, WAL) before anything else.

The publisher reads rows in order, hands them to every sink, and deletes a row only
when every sink has acknowledged it. Rows left by a killed process are sent first on
the next start. (Bounds, MQTT acks and the outage tests come with the MQTT issue.)
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from .types import AlertEvent

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    type TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload TEXT NOT NULL,
    created_s REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
"""


class Outbox:
    """Thread-safe: one SQLite connection per thread; writers notify the publisher."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._cond = threading.Condition()
        self.added = 0
        self.delivered = 0
        with self._conn() as db:
            db.executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an alert survives a killed process and a power cut
            self._local.db = db
        return db

    def add(self, event: AlertEvent) -> int:
        """Store durably; returns the row number. Returns only after the commit."""
        cur = self._conn().execute(
            "INSERT INTO outbox (camera, alert_id, type, seq, payload) VALUES (?, ?, ?, ?, ?)",
            (event.camera, event.id, event.type, event.seq, event.to_json()),
        )
        with self._cond:
            self.added += 1
            self._cond.notify_all()
        return int(cur.lastrowid)

    def pending(self, limit: int = 100) -> list[tuple[int, str]]:
        """Oldest undelivered rows: (row, payload JSON)."""
        return self._conn().execute("SELECT row, payload FROM outbox ORDER BY row LIMIT ?", (limit,)).fetchall()

    def ack(self, rows: list[int]) -> None:
        """Rows every sink has acknowledged."""
        if rows:
            db = self._conn()
            db.executemany("DELETE FROM outbox WHERE row = ?", [(r,) for r in rows])
            self.delivered += len(rows)

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def wait(self, timeout: float) -> None:
        """Sleep until something is added or ``timeout`` passes."""
        with self._cond:
            self._cond.wait(timeout)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
