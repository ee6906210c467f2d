"""Hot reload of a camera's zone file: re-validated and swapped in at the next frame."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from maskwatch.zones import ZoneFile, ZoneFileError, load_zone_file

log = logging.getLogger(__name__)


class ZoneFileWatcher:
    """Owned by one analytics thread. ``poll()`` returns a new ZoneFile after a valid edit.

    An invalid edit is logged once and the zones in force stay; the next valid edit wins.
    """

    def __init__(self, path: Path, check_every_s: float = 1.0) -> None:
        self.path = Path(path)
        self.check_every_s = check_every_s
        self.current: ZoneFile = load_zone_file(self.path)
        self._stamp = self._stat()
        self._next_check = time.monotonic() + check_every_s
        self.reloads = 0
        self.rejected = 0

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
            return (st.st_mtime_ns, st.st_size)
        except OSError:
            return None

    def poll(self) -> ZoneFile | None:
        now = time.monotonic()
        if now < self._next_check:
            return None
        self._next_check = now + self.check_every_s
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            new = load_zone_file(self.path)
        except ZoneFileError as exc:
            self.rejected += 1
            log.error("zone file change rejected, the previous zones stay in force: %s", exc)
            return None
        if new == self.current:
            return None
        self.current = new
        self.reloads += 1
        log.info("zone file reloaded: %s (%d zones, %d rules)", self.path, len(new.zones), len(new.rules))
        return new
