"""The durable outbox and the publisher loop, without a broker: order, per-sink acknowledgement,
bounds (rows and age) with their counted, logged drop policy, restart and old-schema files."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time

import pytest

from maskwatch.pipeline.outbox import Outbox, Row
from maskwatch.pipeline.sinks import JsonlSink, Publisher
from maskwatch.zones import AlertEvent, AlertObject


def _ev(n: int, typ: str = "update", camera: str = "cam1", seq: int | None = None) -> AlertEvent:
    return AlertEvent(id=f"{camera}:r:{n}", type=typ, camera=camera, rule="r", rule_type="intrusion", zone="z",
                      severity="info", objects=[AlertObject(1, "worker", 0.9, [0, 0, 1, 1])], frame_index=n,
                      pts_s=float(n), wall_time=1.0, started_at=1.0, started_pts_s=0.0,
                      seq=seq if seq is not None else (0 if typ == "start" else 1))


class HeldSink:
    """A sink that takes rows and acknowledges them only when the test says so (like MQTT waiting
    for PUBACKs); ``online`` False makes it take nothing (like a broker that is down)."""

    def __init__(self, name: str = "held") -> None:
        self.name = name
        self.online = True
        self.sent: list[Row] = []
        self._inflight: list[int] = []
        self._acked: list[int] = []
        self._returned: list[int] = []

    connected = property(lambda self: self.online)

    def start(self, wake) -> None:
        pass

    def capacity(self) -> int:
        return 1000 if self.online else 0

    def send(self, rows):
        self.sent.extend(rows)
        self._inflight.extend(r.row for r in rows)
        return len(rows)

    def release(self, n: int | None = None, returned: bool = False) -> None:
        n = len(self._inflight) if n is None else n
        take, self._inflight = self._inflight[:n], self._inflight[n:]
        (self._returned if returned else self._acked).extend(take)

    def acked(self):
        out, self._acked = self._acked, []
        return out

    def returned(self):
        out, self._returned = self._returned, []
        return out

    def in_flight(self):
        return set(self._inflight)

    def close(self) -> None:
        pass


def test_rows_come_back_in_order_with_their_camera(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    rows = [ob.add(_ev(i, camera=("a", "b")[i % 2])) for i in range(10)]
    assert rows == sorted(rows)
    got = ob.pending(100)
    assert [r.row for r in got] == rows
    assert [r.camera for r in got] == ["a", "b"] * 5
    assert [json.loads(r.payload)["frame_index"] for r in got] == list(range(10))
    assert [r.row for r in ob.pending(3, after=rows[4])] == rows[5:8]


def test_a_row_is_deleted_only_when_every_sink_acked_it(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    ob.use_sinks(["jsonl", "mqtt"])
    rows = [ob.add(_ev(i)) for i in range(5)]
    ob.ack(rows[:3], "jsonl")
    assert ob.count() == 5 and ob.delivered == 0
    assert [r.row for r in ob.pending(10, sink="jsonl")] == rows[3:]
    assert [r.row for r in ob.pending(10, sink="mqtt")] == rows
    ob.ack(rows[1:4], "mqtt")
    assert [r.row for r in ob.pending(10)] == [rows[0], rows[3], rows[4]]  # rows 1, 2 had both
    assert ob.delivered == 2 and ob.stats()["pending"] == 3


def test_sink_bits_are_stable_across_restarts_and_config_changes(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    ob.use_sinks(["jsonl", "mqtt"])
    rows = [ob.add(_ev(i)) for i in range(4)]
    ob.ack(rows[:2], "jsonl")
    bits = (ob.sink_bit("jsonl"), ob.sink_bit("mqtt"))
    ob.close()
    ob = Outbox(tmp_path / "o.sqlite")
    assert (ob.sink_bit("mqtt"), ob.sink_bit("jsonl")) == bits[::-1]
    assert bits[0] != bits[1]
    ob.use_sinks(["jsonl"])  # mqtt removed from the config: rows JSONL already has are done
    assert [r.row for r in ob.pending(10)] == rows[2:]
    assert ob.delivered == 2


def test_full_outbox_drops_oldest_updates_first_counted_and_logged(tmp_path, caplog):
    ob = Outbox(tmp_path / "o.sqlite", max_rows=10)
    caplog.set_level(logging.WARNING, logger="maskwatch.pipeline.outbox")
    ob.add(_ev(0, "start"))
    for i in range(1, 9):
        ob.add(_ev(i, "update"))
    ob.add(_ev(9, "end"))
    assert ob.count() == 10 and not caplog.records
    ob.add(_ev(10, "start"))
    ob.add(_ev(11, "update"))
    assert ob.count() == 10
    frames = [json.loads(r.payload)["frame_index"] for r in ob.pending(100)]
    assert frames == [0, 3, 4, 5, 6, 7, 8, 9, 10, 11]  # updates 1 and 2 went; start 0 and end 9 stayed
    assert ob.dropped == {"update": 2, "start": 0, "end": 0}
    warn = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warn and "outbox full (max_rows 10" in warn[0].getMessage() and "'update'" in warn[0].getMessage()


def test_full_outbox_with_only_start_end_drops_forced_with_an_error(tmp_path, caplog):
    ob = Outbox(tmp_path / "o.sqlite", max_rows=10)
    caplog.set_level(logging.WARNING, logger="maskwatch.pipeline.outbox")
    for i in range(10):
        ob.add(_ev(i, ("start", "end")[i % 2]))
    ob.add(_ev(10, "start"))
    assert ob.count() == 10
    assert [json.loads(r.payload)["frame_index"] for r in ob.pending(100)] == list(range(1, 11))
    assert ob.dropped == {"update": 0, "start": 1, "end": 0}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "no 'update' left to drop" in errors[0].getMessage()
    assert ob.stats()["dropped"]["start"] == 1


def test_rows_older_than_max_age_expire_counted_and_logged(tmp_path, caplog):
    ob = Outbox(tmp_path / "o.sqlite", max_age_s=60)
    caplog.set_level(logging.WARNING, logger="maskwatch.pipeline.outbox")
    for i, typ in enumerate(["start", "update", "end", "start"]):
        ob.add(_ev(i, typ))
    db = sqlite3.connect(tmp_path / "o.sqlite")
    db.execute("UPDATE outbox SET created_s = created_s - 3600 WHERE row <= 3")  # an hour old
    db.commit()
    db.close()
    assert ob.expire() == 3
    assert [json.loads(r.payload)["frame_index"] for r in ob.pending(10)] == [3]
    assert ob.expired == {"update": 1, "start": 1, "end": 1}
    assert any("older than max_age_s 60" in r.getMessage() for r in caplog.records)
    assert ob.stats()["pending"] == 1


def test_outbox_of_an_earlier_version_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE outbox (row INTEGER PRIMARY KEY AUTOINCREMENT, camera TEXT NOT NULL, alert_id TEXT NOT NULL,
            type TEXT NOT NULL, seq INTEGER NOT NULL, payload TEXT NOT NULL,
            created_s REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0));
    """)
    db.execute("INSERT INTO outbox (camera, alert_id, type, seq, payload) VALUES ('c', 'c:r:1', 'start', 0, '{}')")
    db.commit()
    db.close()
    ob = Outbox(path)
    ob.use_sinks(["jsonl"])
    assert [r.row for r in ob.pending(10, sink="jsonl")] == [1]
    ob.ack([1], "jsonl")
    assert ob.count() == 0


def test_bad_bounds_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="max_rows must be >= 1, got 0"):
        Outbox(tmp_path / "o.sqlite", max_rows=0)
    with pytest.raises(ValueError, match="max_age_s must be > 0, got -1"):
        Outbox(tmp_path / "o.sqlite", max_age_s=-1)


# -- the publisher ------------------------------------------------------------------------------
def _run(pub: Publisher, drain_s: float = 5.0):
    done, abort = threading.Event(), threading.Event()
    t = threading.Thread(target=pub.run, args=(done.is_set, abort, drain_s), daemon=True)
    t.start()
    return done, abort, t


def test_a_lagging_sink_holds_rows_but_jsonl_writes_each_once(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    jsonl, held = JsonlSink(tmp_path / "a.jsonl"), HeldSink("mqtt")
    pub = Publisher(ob, [jsonl, held])
    for i in range(6):
        ob.add(_ev(i))
    while pub.step():
        pass
    assert len(held.sent) == 6 and ob.count() == 6  # JSONL acked all, MQTT none yet
    for _ in range(3):
        pub.step()  # nothing moves: no row is sent twice
    assert len(held.sent) == 6
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 6
    held.release(4)
    pub.step()
    assert ob.count() == 2 and ob.delivered == 4
    held.release(returned=True)  # the last two come back (e.g. QoS 0 lost on a disconnect)
    pub.step()
    assert [r.row for r in held.sent[6:]] == [5, 6]  # offered again, to that sink only
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 6
    held.release()
    pub.step()
    assert ob.count() == 0
    jsonl.close()


def test_publisher_restart_sends_old_rows_first_to_the_sink_that_missed_them(tmp_path):
    path = tmp_path / "o.sqlite"
    ob = Outbox(path)
    jsonl, held = JsonlSink(tmp_path / "a.jsonl"), HeldSink("mqtt")
    held.online = False
    pub = Publisher(ob, [jsonl, held])
    for i in range(3):
        ob.add(_ev(i))
    while pub.step():
        pass
    jsonl.close()
    ob.close()  # "killed": rows 1..3 are in JSONL, not in MQTT

    ob = Outbox(path)
    jsonl, held = JsonlSink(tmp_path / "a.jsonl"), HeldSink("mqtt")
    pub = Publisher(ob, [jsonl, held])
    ob.add(_ev(3))
    pub.step()
    assert [r.row for r in held.sent] == [1, 2, 3, 4]
    assert [json.loads(x)["frame_index"] for x in (tmp_path / "a.jsonl").read_text().splitlines()] == [0, 1, 2, 3]
    jsonl.close()


def test_publisher_ends_when_flushed(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    jsonl = JsonlSink(tmp_path / "a.jsonl")
    done, abort, t = _run(Publisher(ob, [jsonl]))
    for i in range(50):
        ob.add(_ev(i))
    done.set()
    t.join(10)
    assert not t.is_alive()
    assert ob.count() == 0 and len((tmp_path / "a.jsonl").read_text().splitlines()) == 50
    jsonl.close()


def test_publisher_gives_up_on_an_unreachable_sink_after_the_drain_bound(tmp_path, caplog):
    ob = Outbox(tmp_path / "o.sqlite")
    held = HeldSink("mqtt")
    held.online = False
    caplog.set_level(logging.WARNING, logger="maskwatch.pipeline.sinks")
    for i in range(5):
        ob.add(_ev(i))
    done, abort, t = _run(Publisher(ob, [held]), drain_s=0.5)
    t0 = time.monotonic()
    done.set()
    t.join(10)
    assert not t.is_alive() and 0.4 < time.monotonic() - t0 < 5
    assert ob.count() == 5  # kept for the next start
    assert any("5 for mqtt (not connected)" in r.getMessage() for r in caplog.records)


def test_without_sinks_rows_are_removed(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    pub = Publisher(ob, [])
    for i in range(3):
        ob.add(_ev(i))
    while pub.step():
        pass
    assert ob.count() == 0 and ob.delivered == 3


def test_open_alerts_are_remembered_until_their_end(tmp_path):
    """A process killed with alerts active leaves them in ``open_alerts`` (same transaction as the event);
    the next Outbox finds them in ``left_open`` with their latest event; ended alerts are not there."""
    ob = Outbox(tmp_path / "o.sqlite")
    ob.add(_ev(1, "start"))
    ob.add(_ev(1, "update", seq=1))
    ob.add(_ev(2, "start"))
    ob.add(_ev(2, "end", seq=1))
    ob.add(_ev(3, "start", camera="cam2"))
    assert ob.left_open == []  # nothing was open when it opened
    ob.close()  # as if killed: no end for 1 and 3
    again = Outbox(tmp_path / "o.sqlite")
    left = {e.id: e for e in again.left_open}
    assert set(left) == {"cam1:r:1", "cam2:r:3"}
    assert left["cam1:r:1"].seq == 1 and left["cam1:r:1"].type == "update"
    end = left["cam1:r:1"].ended("restarted", 5.0)
    assert (end.type, end.seq, end.ended_at, end.extra["reason"]) == ("end", 2, 5.0, "restarted")
    again.add(end)
    again.close()
    assert [e.id for e in Outbox(tmp_path / "o.sqlite").left_open] == ["cam2:r:3"]


def test_forgotten_open_alerts_leave_no_end_and_stay_forgotten(tmp_path):
    """``forget_open``: an alert ended elsewhere (a cluster driver ended a lost worker's) leaves the open list
    without an ``end`` row of its own; the next Outbox does not find it; the others stay."""
    ob = Outbox(tmp_path / "o.sqlite")
    for n in (1, 2, 3):
        ob.add(_ev(n, "start"))
    ob.close()
    again = Outbox(tmp_path / "o.sqlite")
    assert sorted(e.id for e in again.left_open) == ["cam1:r:1", "cam1:r:2", "cam1:r:3"]
    pending = again.stats()["pending"]
    again.forget_open(["cam1:r:1", "cam1:r:3", "cam1:r:9"])  # an unknown id is no error
    assert again.stats()["pending"] == pending == 3  # no end row added
    again.close()
    assert [e.id for e in Outbox(tmp_path / "o.sqlite").left_open] == ["cam1:r:2"]
