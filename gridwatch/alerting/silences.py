"""Silences: matchers that keep an alert from its receivers for a while, as Alertmanager has them."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import sqlite_utils

from gridwatch.alerting.alert import iso


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
                if not re.fullmatch(m["value"], value):
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
            re.compile(value)
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
    s = Silence(uuid.uuid4().hex, matchers, starts_at, ends_at, created_by, comment, now)
    with db.conn:
        db.table("silences").insert({**asdict(s), "matchers": json.dumps(matchers, ensure_ascii=False)})
    return s


def expire_silence(db: sqlite_utils.Database, silence_id: str, now: float) -> bool:
    with db.conn:
        cur = db.execute("UPDATE silences SET ends_at = ? WHERE id = ? AND ends_at > ?", [now, silence_id, now])
        return cur.rowcount > 0
