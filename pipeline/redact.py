"""Keep secrets out of logs, metrics and alerts."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@:]+)(:[^/@]*)?@")


def redact_url(url: str) -> str:
    """``rtsp://user:pass@host/x`` -> ``rtsp://user:***@host/x``; other strings unchanged."""
    return _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}{':***' if m.group(3) else ''}@", url)
