"""Silences: matchers that keep an alert from its receivers for a while, as Alertmanager has them.

Regex matchers are RE2 expressions, matched in time linear in the label's length, as
Alertmanager matches them: a stored silence is evaluated for every alert on every evaluation
and every ``/api/v1/alerts`` request, so a backtracking engine would let one pattern such as
``(.*.*)*X`` freeze the daemon (and again after every restart, since the silence is stored).
RE2 has no backreferences or lookaround; such a pattern is refused when the silence is made.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import re2
import sqlite_utils

from gridwatch.alerting.alert import iso

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the caller's message, not a line on stderr


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    """The compiled pattern (matched whole, as Alertmanager anchors it); None if RE2 refuses it:
    a silence stored before patterns were checked this way then silences nothing."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except (re2.error, UnicodeError, TypeError):
        return None


def check_regex(name: str, pattern: str) -> None:
    """Raise ValueError unless RE2 accepts ``pattern``, saying why in one line."""
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(
            f"matcher {name}: invalid regex: {reason} (RE2 syntax: no backreferences or lookaround)"
        ) from None
    except UnicodeError:
        raise ValueError(f"matcher {name}: invalid regex: not valid Unicode text") from None


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: list[dict[str, Any]]  # [{"name", "value", "isRegex"}], as Alertmanager has them
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        for m in self.matchers:
            value = labels.get(m["name"], "")
            if m.get("isRegex"):
                regex = _compiled(m["value"])
                if regex is None or not regex.fullmatch(_utf8(value)):
                    return False
            elif value != m["value"]:
                return False
        return True

    def view(self, now: float) -> dict[str, Any]:
        state = "active" if self.active(now) else ("pending" if now < self.starts_at else "expired")
        return {
            "id": self.id,
            "matchers": self.matchers,
            "startsAt": iso(self.starts_at),
            "endsAt": iso(self.ends_at),
            "createdBy": self.created_by,
            "comment": self.comment,
            "status": {"state": state},
        }


def parse_matchers(items: Iterable[str]) -> list[dict[str, Any]]:
    """``name=value`` or ``name=~regex`` → Alertmanager-style matchers."""
    out = []
    for item in items:
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(=~|=)(.*)", item)
        if not m:
            raise ValueError(f"bad matcher {item!r}: use name=value or name=~regex")
        name, op, value = m.groups()
        if op == "=~":
            check_regex(name, value)
        out.append({"name": name, "value": value, "isRegex": op == "=~"})
    if not out:
        raise ValueError("a silence needs at least one matcher")
    return out


def load_silences(db: sqlite_utils.Database) -> list[Silence]:
    return [Silence(**{**r, "matchers": json.loads(r["matchers"])}) for r in db["silences"].rows]


def add_silence(
    db: sqlite_utils.Database,
    matchers: list[dict[str, Any]],
    starts_at: float,
    ends_at: float,
    created_by: str,
    comment: str,
    now: float,
) -> Silence:
    if ends_at <= starts_at:
        raise ValueError("a silence must end after it starts")
    if ends_at <= now:
        raise ValueError("it has already ended: its end must be in the future")
    for m in matchers:
        if m.get("isRegex"):
            check_regex(m["name"], m["value"])
    s = Silence(uuid.uuid4().hex, matchers, starts_at, ends_at, created_by, comment, now)
    with db.conn:
        db.table("silences").insert({**asdict(s), "matchers": json.dumps(matchers, ensure_ascii=False)})
    return s


def delete_expired_silences(db: sqlite_utils.Database, before: float) -> int:
    """Delete the silences that ended before ``before`` (now minus the retention), as Alertmanager
    does: kept for ever, they made every listing grow (20,000 of them: a 5.5 MB answer)."""
    with db.conn:
        return db.execute("DELETE FROM silences WHERE ends_at < ?", [before]).rowcount


def _utf8(value: str) -> str:
    """A label value RE2 can take: a lone surrogate (from a JSON source) becomes U+FFFD."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


def expire_silence(db: sqlite_utils.Database, silence_id: str, now: float) -> bool:
    with db.conn:
        cur = db.execute("UPDATE silences SET ends_at = ? WHERE id = ? AND ends_at > ?", [now, silence_id, now])
        return cur.rowcount > 0
