"""Bounded ring buffer joining two stages.

Fixed number of slots; when full, ``block`` makes the producer wait (lossless, for
files) and ``drop_oldest`` evicts the oldest item (live cameras: analysis always sees
recent frames). ``close()`` wakes every waiter: producers get ``RingClosed``, consumers
drain what is left and then get ``RingClosed``.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
Policy = Literal["block", "drop_oldest"]


class RingClosed(Exception):
    """The ring was closed (put) or is closed and empty (get)."""


class Ring(Generic[T]):
    def __init__(self, slots: int, policy: Policy = "block", name: str = "ring") -> None:
        if slots < 1:
            raise ValueError(f"ring {name!r}: slots must be >= 1, got {slots}")
        if policy not in ("block", "drop_oldest"):
            raise ValueError(f"ring {name!r}: policy must be 'block' or 'drop_oldest', got {policy!r}")
        self.slots = slots
        self.policy: Policy = policy
        self.name = name
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False
        self.puts = 0
        self.gets = 0
        self.dropped = 0

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Add an item. Returns False on timeout (``block`` only). Raises RingClosed."""
        with self._lock:
            if self._closed:
                raise RingClosed(self.name)
            if len(self._items) >= self.slots:
                if self.policy == "drop_oldest":
                    self._items.popleft()
                    self.dropped += 1
                else:
                    ok = self._not_full.wait_for(lambda: self._closed or len(self._items) < self.slots, timeout)
                    if self._closed:
                        raise RingClosed(self.name)
                    if not ok:
                        return False
            self._items.append(item)
            self.puts += 1
            self._not_empty.notify()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """Next item, or None on timeout. Raises RingClosed once closed and drained."""
        with self._lock:
            ok = self._not_empty.wait_for(lambda: self._closed or self._items, timeout)
            if self._items:
                item = self._items.popleft()
                self.gets += 1
                self._not_full.notify()
                return item
            if self._closed:
                raise RingClosed(self.name)
            assert not ok
            return None

    def get_nowait(self) -> T | None:
        """Next item or None; raises RingClosed once closed and drained."""
        return self.get(timeout=0)

    def close(self) -> None:
        """No more puts; wakes every waiting producer and consumer."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def drained(self) -> bool:
        """Closed and empty: the consumer is done."""
        with self._lock:
            return self._closed and not self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"put": self.puts, "got": self.gets, "dropped": self.dropped, "queued": len(self._items)}
