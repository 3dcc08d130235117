"""One alert as the state database keeps it, and the names of its states."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

PENDING, FIRING, RESOLVED = "pending", "firing", "resolved"


def fingerprint(labels: Mapping[str, str]) -> str:
    """Stable id of an alert: its label set (severity is not part of it)."""
    text = json.dumps(sorted(labels.items()), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z") if ts is not None else None


@dataclass
class Alert:
    id: str
    alert: str
    labels: dict[str, str]
    state: str
    severity: str
    value: float
    active_since: float
    last_true: float
    summary: str = ""
    description: str = ""
    fired_at: float | None = None
    resolved_at: float | None = None
    notified_severity: str | None = None  # what receivers were last told is firing

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = json.dumps(self.labels, ensure_ascii=False, sort_keys=True)
        return d

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Alert:
        d = dict(row)
        d["labels"] = json.loads(d["labels"])
        return cls(**d)

    def view(self, silenced: bool = False) -> dict[str, Any]:
        """The public shape of /api/v1/alerts."""
        return {
            "alert": self.alert,
            "labels": self.labels,
            "state": self.state,
            "severity": self.severity,
            "value": self.value,
            "active_since": iso(self.active_since),
            "summary": self.summary,
            "description": self.description,
            "silenced": silenced,
        }
