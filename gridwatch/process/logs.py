"""Logging through the standard library, as plain text or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, tzinfo

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

_zone: tzinfo | None = None
"""The configured timezone, once a config is read; before it, the machine's."""


def use_timezone(tz: tzinfo | None) -> None:
    """Write text log times in ``tz`` from now on: the zone the operator reads every other time in."""
    global _zone
    _zone = tz


def _aware(ts: float, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(ts, tz) if tz is not None else datetime.fromtimestamp(ts).astimezone()


def local_time(ts: float, tz: tzinfo | None = None) -> str:
    """``2026-11-20T17:45:00+08:00``: a Unix time in ``tz`` (default: the log's zone), with its
    offset, so a time read off a terminal or a log is never taken for another zone's."""
    return _aware(ts, tz or _zone).isoformat(timespec="seconds")


class TextFormatter(logging.Formatter):
    """``2026-11-20T17:45:00.123+08:00 INFO gridwatch: message``: local time with its offset."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _aware(record.created, _zone).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
