"""Values as SQLAlchemy's drivers return them, turned into what the checks take; shared by the
``sql`` source's rows and its folds (:mod:`gridwatch.sources.sqlfold`)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from gridwatch.sources.sqlite import decode_text


def driver_value(v: Any) -> Any:
    """Driver values as the checks take them: numbers, text, datetimes (parse_ts reads both).
    Bytes are text a binary column holds: decoded, or :data:`UNDECODABLE`."""
    if isinstance(v, bytes | bytearray | memoryview):
        return decode_text(bytes(v))
    if isinstance(v, Decimal):
        if v.is_finite() and v == v.to_integral_value():
            return int(v)
        return float(v)
    if isinstance(v, dt.time):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, uuid.UUID):
        return str(v)
    return v
