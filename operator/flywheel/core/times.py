"""Times and durations as the API writes them: RFC 3339 timestamps (`...Z`, whole seconds) and
Go-style durations (`90s`, `1h30m`)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time as the API server writes it (`...Z`), or None."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def rfc3339(moment: datetime) -> str:
    """A time as status fields carry it: UTC, whole seconds, `Z`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(text: str) -> timedelta:
    """A duration such as `90s`, `5m` or `1h30m` (the API's pattern)."""
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(seconds=sum(float(amount) * _UNITS[unit] for amount, unit in parts))
