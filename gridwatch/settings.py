"""The validated settings: what :func:`gridwatch.config.load` makes of ``gridwatch.toml``.

Plain values, apart from the config's reading and validation, so that everything that only
reads settings (the plugin contract included) need not know how they were made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from gridwatch.api import Deduction, Options
from gridwatch.durations import Duration
from gridwatch.rules import Rule


class AlertingSection(BaseModel):
    """``[alerting]``: how often rules run and how long resolved alerts and expired silences stay in view."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evaluation_interval: Duration = 15.0
    resolved_retention: Duration = 900.0
    history: int = Field(10_000, ge=100)
    silence_retention: Duration = 120 * 3600.0
    """how long an expired silence stays listed before it is deleted (Alertmanager: 120h)"""


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
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def reads_protected(self) -> bool:
        """Whether the read endpoints want credentials (a read token, basic auth or a scoped reader is
        configured: a street's credential would mean nothing if reads without one saw everything)."""
        return bool(self.read_token_sha256 or self.basic_auth_users or self.readers)

    @property
    def base_dir(self) -> Path:
        return self.path.parent
