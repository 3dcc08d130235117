"""The validated settings: what :func:`gridwatch.config.load` makes of ``gridwatch.toml``.

Plain values, apart from the config's reading and validation, so that everything that only
reads settings (the plugin contract included) need not know how they were made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridwatch.api import Deduction, Options
from gridwatch.durations import Duration
from gridwatch.names import DisplayNames
from gridwatch.rules import Rule


class AlertingSection(BaseModel):
    """``[alerting]``: how often rules run and how long resolved alerts and expired silences stay in view."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evaluation_interval: Duration = 15.0
    resolved_retention: Duration = 900.0
    history: int = Field(10_000, ge=100)
    silence_retention: Duration = 120 * 3600.0
    """how long an expired silence stays listed before it is deleted (Alertmanager: 120h)"""


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DIGEST_AT = {"daily": time(8, 30), "weekly": time(17, 0), "monthly": time(9, 0)}
"""When each kind of digest goes out by default (DOMAIN.md §7), local time."""


class DigestSpec(BaseModel):
    """A ``[[digests]]`` entry: which digest (通报) goes out when, to whom, about which streets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["daily", "weekly", "monthly"]
    name: str = Field("", pattern=r"^$|^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    """what the delivery record knows it by (default: the kind); unique among the entries"""
    at: time | None = None
    """local time it goes out (default 08:30 daily, 17:00 weekly, 09:00 monthly)"""
    weekday: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] | None = None
    """weekly only: the day it goes out (default friday)"""
    day: int | None = Field(None, ge=1, le=28)
    """monthly only: the day of the month it goes out (default 1)"""
    notifiers: list[str] = Field(min_length=1)
    streets: list[str] = []
    """only these streets' grids (a street office's digest); empty: every grid this instance watches"""
    top: int = Field(10, ge=1, le=100)
    """how many of the grids lit longest are listed"""

    @model_validator(mode="after")
    def _fill(self) -> DigestSpec:
        if self.weekday is not None and self.kind != "weekly":
            raise ValueError("weekday applies to weekly digests only")
        if self.day is not None and self.kind != "monthly":
            raise ValueError("day applies to monthly digests only")
        if self.at is not None and (self.at.tzinfo is not None or self.at.microsecond):
            raise ValueError("at is a local time of day, like 08:30 (no offset, no fractions of a second)")
        if any(not s.strip() for s in self.streets):
            raise ValueError("a street is a name, not empty")
        values = {
            "name": self.name or self.kind,
            "at": self.at or DIGEST_AT[self.kind],
            "weekday": self.weekday or ("friday" if self.kind == "weekly" else None),
            "day": self.day or (1 if self.kind == "monthly" else None),
            "notifiers": list(dict.fromkeys(self.notifiers)),
            "streets": list(dict.fromkeys(s.strip() for s in self.streets)),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)  # the defaults that depend on the kind, filled once
        return self


MAX_REJECTED_RATIO = 0.5
"""More than half of the rows a check run read rejected fails the run (DOMAIN.md §5)."""


@dataclass(frozen=True)
class NotifierSpec:
    name: str
    type: str
    options: Options


@dataclass(frozen=True)
class SourceSpec:
    name: str
    type: str
    options: Options


@dataclass(frozen=True)
class CheckSpec:
    name: str
    type: str
    source: str | None
    interval: float
    timeout: float
    options: Options
    max_rejected_ratio: float = MAX_REJECTED_RATIO
    """more than this share of the rows a run read rejected fails the run (DOMAIN.md §5)"""


@dataclass(frozen=True)
class ReaderSpec:
    """``[[server.readers]]``: a read credential that sees only some streets and communities."""

    name: str
    token_sha256: str | None
    user: str | None
    password_hash: str | None  # bcrypt
    streets: frozenset[str]
    communities: frozenset[str]  # a community's name, or "street/community" for that street's only


@dataclass
class Settings:
    """A validated config, with paths resolved against the config file's directory."""

    path: Path
    timezone: ZoneInfo
    host: str
    port: int
    state_path: Path
    history: int
    plugin_dirs: list[Path]
    sources: dict[str, SourceSpec]
    checks: list[CheckSpec]
    grids_source: str | None = None
    grids_refresh: float = 30.0
    shard: tuple[int, int] | None = None
    shard_by: str = "hash"
    holidays: list[date] = field(default_factory=list)
    workdays: list[date] = field(default_factory=list)
    future_tolerance: float = 300.0
    notifiers: dict[str, NotifierSpec] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)
    alerting: AlertingSection = field(default_factory=AlertingSection)
    token_sha256: str | None = None
    external_url: str = ""
    read_token_sha256: str | None = None
    basic_auth_users: dict[str, str] = field(default_factory=dict)
    readers: tuple[ReaderSpec, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_timeout: float = 30.0
    max_connections: int = 512
    hostnames: list[str] | None = None  # None: the check applies only while reads are open
    assessment: dict[str, Deduction] = field(default_factory=dict)
    """the scorecard items in force (``[assessment]`` over the defaults), by name"""
    digests: list[DigestSpec] = field(default_factory=list)
    shared_path: Path | None = None
    """``[state] shared_path``: the digest ledger both replicas of a shard share (None: the state database)"""
    names: DisplayNames = field(default_factory=DisplayNames)
    """the display names of codes: every check type's, then the config's ``[display_names]``"""
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def reads_protected(self) -> bool:
        """Whether the read endpoints want credentials (a read token, basic auth or a scoped reader is
        configured: a street's credential would mean nothing if reads without one saw everything)."""
        return bool(self.read_token_sha256 or self.basic_auth_users or self.readers)

    @property
    def base_dir(self) -> Path:
        return self.path.parent
