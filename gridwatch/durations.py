"""Durations as operators write them in config: ``30s``, ``5m``, ``1h``, ``1d``, ``1h30m``."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: object) -> float:
    """Return seconds; reject anything that is not a duration string, so typos fail loudly."""
    if not isinstance(text, str):
        raise ValueError(f"expected a duration like 30s, 5m, 1h or 1d, got {text!r}")
    s = text.strip()
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f"expected a duration like 30s, 5m, 1h or 1d, got {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """The shortest config spelling of a whole number of seconds (for messages)."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A config field holding a duration, validated to seconds."""
