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

from gridwatch.api import Options
from gridwatch.durations import Duration
from gridwatch.names import DisplayNames
from gridwatch.rules import Rule


class AlertingSection(BaseModel):
    """``[alerting]``: how often rules run and how long resolved alerts stay in view."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evaluation_interval: Duration = 15.0
    resolved_retention: Duration = 900.0
    history: int = Field(10_000, ge=100)


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
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_timeout: float = 30.0
    names: DisplayNames = field(default_factory=DisplayNames)
    """the display names of codes: every check type's, then the config's ``[display_names]``"""
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def reads_protected(self) -> bool:
        """Whether the read endpoints want credentials (a read token or basic auth is configured)."""
        return bool(self.read_token_sha256 or self.basic_auth_users)

    @property
    def base_dir(self) -> Path:
        return self.path.parent
