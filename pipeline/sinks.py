"""Where alerts go after the outbox. A sink acknowledges what it has stored or delivered."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class Sink(Protocol):
    name: str

    def send(self, rows: list[tuple[int, str]]) -> list[int]:
        """Deliver rows (row, payload JSON) in order; return the rows acknowledged."""

    def close(self) -> None: ...


class JsonlSink:
    """Appends one alert per line and fsyncs each batch before acknowledging it."""

    name = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")

    def send(self, rows: list[tuple[int, str]]) -> list[int]:
        if not rows:
            return []
        self._f.write("".join(payload + "\n" for _, payload in rows))
        self._f.flush()
        os.fsync(self._f.fileno())
        return [row for row, _ in rows]

    def close(self) -> None:
        self._f.close()
