"""Durations as operators write them in config: ``30s``, ``5m``, ``1h``, ``1d``, ``1h30m``."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")  # ASCII digits: \d would take ٣ or ３ too
MAX_SECONDS = 100 * 365 * 86400.0
"""A century: longer is a typo, and ``now - duration`` must stay a representable date."""


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
    if not math.isfinite(total) or total > MAX_SECONDS:
        raise ValueError(f"duration {text!r} is longer than 100 years")
    return total


def format_duration(seconds: float) -> str:
    """The shortest config spelling of a whole number of units; other values in seconds, written
    out in full so that :func:`parse_duration` reads back exactly the same number."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    # repr is the shortest text that reads back as the same float; Decimal spells it without an
    # exponent (1e-07 -> 0.0000001), which the duration grammar does not have
    text = format(Decimal(repr(float(seconds))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A config field holding a duration, validated to seconds."""
