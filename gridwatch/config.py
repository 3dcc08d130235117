"""gridwatch.toml → validated settings, with errors that name the file, key path and problem.

Validation has two layers: the top level here, and each source/check/notifier entry against
the ``Options`` model its plugin type declares — one validator for built-in and third-party
types alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import re
import ssl
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gridwatch.api import Check, Deduction, Notifier, Options, Source
from gridwatch.assessment.scorecard import ItemOptions, default_items
from gridwatch.durations import Duration
from gridwatch.names import NameTable, is_name_table
from gridwatch.names import merge as merge_names
from gridwatch.names import problems as name_problems
from gridwatch.plugins import PluginError, PluginHost
from gridwatch.rules import Rule
from gridwatch.settings import (
    MAX_REJECTED_RATIO,
    AlertingSection,
    CheckSpec,
    DigestSpec,
    NotifierSpec,
    ReaderSpec,
    Settings,
    SourceSpec,
)
from gridwatch.tokens import BCRYPT_HASH, digest

log = logging.getLogger("gridwatch.config")

NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


_LINE_BREAKS = {c: f"\\u{c:04x}" for c in (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)}
"""What ``str.splitlines`` breaks a line at, as JSON-style escapes."""


@dataclass(frozen=True)
class ConfigError:
    file: str
    path: str
    message: str

    def __str__(self) -> str:
        line = f"{self.file}: {self.path}: {self.message}" if self.path else f"{self.file}: {self.message}"
        return line.translate(_LINE_BREAKS)  # one problem, one line: a value with a line break is escaped


class ConfigErrors(Exception):
    """All problems found in one config file, one line each."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(map(str, errors)))
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_SHA256_HEX = r"^[0-9a-fA-F]{64}$"


class ReaderSection(_Strict):
    """``[[server.readers]]``: a street office's credential, which sees only its grids."""

    name: str = Field(min_length=1)
    token_sha256: str | None = Field(None, pattern=_SHA256_HEX)
    """SHA-256 (hex) of a bearer token"""
    user: str | None = None
    """a basic-auth user, with password_hash"""
    password_hash: str | None = None
    """bcrypt hash of the user's password (salted, slow: a leaked config gives no password away)"""
    streets: list[str] = []
    communities: list[str] = []
    """a community's name, or ``street/community`` where several streets have one of that name"""

    @field_validator("name", "user")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or not v.isprintable()):
            raise ValueError("expected a name: not empty, no control characters")
        return v

    @field_validator("password_hash")
    @classmethod
    def _bcrypt(cls, v: str | None) -> str | None:
        if v is not None and not BCRYPT_HASH.fullmatch(v.strip()):
            # the value may be a password pasted by mistake: never echo it
            raise ValueError("expected a bcrypt hash ($2b$12$ and 53 characters; see docs/operations.md)")
        return v.strip() if v is not None else None

    @field_validator("streets", "communities")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for i, name in enumerate(v):
            if not name.strip():
                raise ValueError(f"entry {i} is empty")
        return [name.strip() for name in v]


class ServerSection(_Strict):
    listen: str = "127.0.0.1:9477"
    token: str | None = None
    """bearer token for write endpoints (silences); prefer token_sha256 in a shared file"""
    token_sha256: str | None = Field(None, pattern=_SHA256_HEX)
    read_token: str | None = None
    """bearer token the read endpoints then require (Prometheus, scripts); prefer read_token_sha256"""
    read_token_sha256: str | None = Field(None, pattern=_SHA256_HEX)
    basic_auth_users: dict[str, str] = {}
    """user → SHA-256 (hex) of the password: HTTP basic auth for the read endpoints (people, Prometheus)"""
    readers: list[ReaderSection] = []
    """scoped read credentials: each sees only its streets and communities"""
    tls_cert: str | None = None
    """PEM certificate chain: serve HTTPS directly (relative to the config file)"""
    tls_key: str | None = None
    """PEM private key of tls_cert"""
    client_timeout: Duration = 30.0
    """a client must send a whole request head within this; an idle keep-alive connection is closed
    after it, and a request body must arrive within it"""
    external_url: str = ""
    """how people reach this gridwatch; links in notifications point here"""
    max_connections: int = Field(512, ge=1)
    """open HTTP connections at most; more are answered 503 and closed at once"""
    hostnames: list[str] | None = None
    """the names clients may call this gridwatch by in ``Host`` (besides IP addresses and localhost)"""

    @field_validator("hostnames")
    @classmethod
    def _hostnames(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        for name in v:
            with contextlib.suppress(ValueError):
                ipaddress.ip_address(name.strip("[]"))  # (always answered: listing one changes nothing)
                continue
            if not re.fullmatch(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?", name):
                raise ValueError(f"{name!r} is not a host name (no port, no scheme: gridwatch.example.org)")
        return [name.rstrip(".").lower() for name in v]

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        split_listen(v)
        return v

    @field_validator("token", "read_token")
    @classmethod
    def _not_empty(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("the token is empty (is its environment variable set to nothing?)")
        return v

    @field_validator("basic_auth_users")
    @classmethod
    def _users(cls, v: dict[str, str]) -> dict[str, str]:
        for user, hashed in v.items():
            if not user or ":" in user:
                raise ValueError(f"user {user!r}: a basic-auth user name is not empty and holds no ':'")
            if not re.fullmatch(_SHA256_HEX, hashed.strip()):
                # the value may be a password pasted by mistake: never echo it
                raise ValueError(f"user {user!r}: expected the password's SHA-256 as 64 hex digits")
        return {user: hashed.strip().lower() for user, hashed in v.items()}

    @field_validator("client_timeout")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("client_timeout must be positive")
        return v

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both tls_cert and tls_key, or neither")
        if self.tls_cert is not None and not (self.tls_cert.strip() and (self.tls_key or "").strip()):
            raise ValueError("tls_cert and tls_key name files: an empty one would serve plain HTTP")
        return self


class StateSection(_Strict):
    path: str = "var/gridwatch-state.db"
    history: int = Field(1000, ge=10, description="check runs kept per check")
    shared_path: str | None = None
    """a SQLite file the replicas of a shard share: the digests are kept there, so each goes out once"""

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return _usable_path(v)

    @field_validator("shared_path")
    @classmethod
    def _shared(cls, v: str | None) -> str | None:
        return None if v is None else _usable_path(v)


class PluginsSection(_Strict):
    dirs: list[str] = []

    @field_validator("dirs")
    @classmethod
    def _dirs(cls, v: list[str]) -> list[str]:
        return [_usable_path(d) for d in v]


class GridsSection(_Strict):
    source: str | None = None
    refresh: Duration = 30.0
    shard: str | None = Field(None, pattern=r"^[1-9][0-9]*/[1-9][0-9]*$")
    """``K/N``: this instance watches the K-th of N shards of the grids"""
    shard_by: Literal["hash", "street"] = "hash"
    """split by a stable hash of the grid id, or keep each street whole"""

    @field_validator("shard")
    @classmethod
    def _shard(cls, v: str | None) -> str | None:
        if v is not None:
            k, n = map(int, v.split("/"))
            if k > n:
                raise ValueError(f"shard {v}: K must be between 1 and N")
        return v


class CalendarSection(_Strict):
    holidays: list[date] = []
    workdays: list[date] = []


class Root(_Strict):
    timezone: str = "Asia/Shanghai"
    future_tolerance: Duration = Field(300.0, ge=0)
    """how far past the wall clock a timestamp may lie before it is a bad row: clocks disagree a
    little; beyond this the source's clock is wrong (a time merely after ``--now`` is left out)"""
    max_rejected_ratio: float = Field(MAX_REJECTED_RATIO, ge=0, le=1)
    """a check run that rejects more than this share of the rows it read has failed (a check's own
    ``max_rejected_ratio`` wins); 1 never fails a run for its bad rows"""
    alerting: AlertingSection = AlertingSection()
    notifiers: dict[str, dict[str, Any]] = {}
    rules: list[dict[str, Any]] = []
    assessment: dict[str, Any] = {}
    """scorecard items by name: points, cap, target (checked against the items in force)"""
    grids: GridsSection = GridsSection()
    calendar: CalendarSection = CalendarSection()
    server: ServerSection = ServerSection()
    state: StateSection = StateSection()
    plugins: PluginsSection = PluginsSection()
    sources: dict[str, dict[str, Any]] = {}
    checks: list[dict[str, Any]] = []
    digests: list[dict[str, Any]] = []
    display_names: dict[str, Any] = {}
    """label -> {code -> name}: what people read for a code (checked by :func:`gridwatch.names.problems`)"""

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
            raise ValueError(f"unknown timezone {v!r}") from None
        return v


class CheckBase(_Strict):
    name: str = Field(pattern=NAME)
    type: str
    source: str | None = None
    interval: Duration = 60.0
    timeout: Duration = 30.0
    max_rejected_ratio: float | None = Field(None, ge=0, le=1)
    """this check's bound on the share of rows rejected (default: the top-level one)"""

    @field_validator("interval", "timeout")
    @classmethod
    def _longer_than_zero(cls, v: float, info: ValidationInfo) -> float:
        if v <= 0:
            raise ValueError(f"{info.field_name} must be longer than zero")
        return v


class SourceBase(_Strict):
    type: str


def split_listen(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", value)
    if not m:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 0 < int(port) < 65536:
        raise ValueError(f"port {port} out of range")
    return host, int(port)


def resolve_path(base: Path, value: str) -> Path:
    try:
        p = Path(value).expanduser()
    except RuntimeError:  # ~user of a user this machine does not have: left as written, as a shell does
        p = Path(value)
    return p if p.is_absolute() else base / p


def _usable_path(value: str) -> str:
    """Refuse what no file system takes, so it is a config error rather than a crash at start."""
    if not value or "\x00" in value:
        raise ValueError("expected a path (not empty, no NUL character)")
    return value


def config_path(explicit: str | None) -> Path:
    """``-c`` wins, then ``$GRIDWATCH_CONFIG``, then ``./gridwatch.toml``."""
    return Path(explicit or os.environ.get("GRIDWATCH_CONFIG") or "gridwatch.toml")


def read(path: Path, errors: list[ConfigError] | None = None) -> dict[str, Any]:
    """Parse TOML and substitute ``${VAR}``.

    Unreadable or malformed files raise ConfigErrors; a missing variable is appended to
    ``errors`` when given (so validation can report everything at once), else raised.
    """
    fname = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigErrors([ConfigError(fname, "", f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigErrors([ConfigError(fname, "", f"not UTF-8: {exc.reason}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigErrors([ConfigError(fname, "", f"not valid TOML: {exc}")]) from None
    found: list[ConfigError] = []
    data = _substitute(data, "", fname, found)
    if errors is not None:
        errors.extend(found)
    elif found:
        raise ConfigErrors(found)
    return data


def _substitute(value: Any, path: str, fname: str, errors: list[ConfigError]) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                errors.append(ConfigError(fname, path, f"environment variable ${{{name}}} is not set"))
                return ""
            return os.environ[name]

        return _ENV.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, _join(path, k), fname, errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{path}[{i}]", fname, errors) for i, v in enumerate(value)]
    return value


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not re.fullmatch(r"[A-Za-z0-9_-]+", key):
        key = json.dumps(key, ensure_ascii=False).translate(_LINE_BREAKS)  # quoted, line breaks escaped
    return f"{path}.{key}" if path else key


def _pydantic_errors(exc: ValidationError, prefix: str, fname: str) -> list[ConfigError]:
    out = []
    for err in exc.errors():
        path = prefix
        loc = err["loc"]
        for part in loc:
            path = _join(path, part)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = msg.removeprefix("Value error, ")
        out.append(ConfigError(fname, path, msg))
    return out


def _validate(model: type[BaseModel], data: Any, prefix: str, fname: str, errors: list[ConfigError]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors.extend(_pydantic_errors(exc, prefix, fname))
        return None


def plugin_dirs(path: Path, data: dict[str, Any]) -> list[Path]:
    """The plugin directories a config names, read before validation: anything malformed is left
    out here and reported by the validation of ``[plugins]``."""
    plugins = data.get("plugins")
    dirs = plugins.get("dirs") if isinstance(plugins, dict) else None
    if not isinstance(dirs, list):
        return []
    base = path.resolve().parent
    return [resolve_path(base, d) for d in dirs if isinstance(d, str) and d and "\x00" not in d]


def load(path: Path, host: PluginHost | None = None) -> tuple[Settings, PluginHost]:
    """Read, validate and resolve a config; load the plugins it names if no host is given."""
    env_errors: list[ConfigError] = []
    data = read(path, env_errors)
    fname = str(path)
    if host is None:
        try:
            host = PluginHost.default(plugin_dirs(path, data))
        except PluginError as exc:
            raise ConfigErrors([ConfigError(fname, "plugins", str(exc))]) from None
    else:
        for d in plugin_dirs(path, data):
            try:
                host.load_dir(d)
            except PluginError as exc:
                raise ConfigErrors([ConfigError(fname, "plugins.dirs", str(exc))]) from None
    return validate(data, path, host, env_errors), host


def validate(data: dict[str, Any], path: Path, host: PluginHost, errors: list[ConfigError] | None = None) -> Settings:
    fname = str(path)
    errors = list(errors or ())
    root = _validate(Root, data, "", fname, errors)
    # entries are checked even when the top level has errors, so one run reports every problem
    sources_raw = _table(data, "sources")
    checks_raw = _array(data, "checks")
    max_rejected = root.max_rejected_ratio if root is not None else MAX_REJECTED_RATIO

    sources: dict[str, SourceSpec] = {}
    for name, entry in sources_raw.items():
        prefix = _join("sources", name)
        if not re.fullmatch(NAME, name):
            errors.append(ConfigError(fname, prefix, "a source name may hold letters, digits, _ . -"))
        spec = _typed(entry, prefix, SourceBase, host.types["source"], "source", fname, errors)
        if spec:
            base, options = spec
            sources[name] = SourceSpec(name, base.type, options)

    checks: list[CheckSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(checks_raw):
        prefix = f"checks[{i}]"
        spec = _typed(entry, prefix, CheckBase, host.types["check"], "check", fname, errors)
        # the references are judged on the entry as written, so a wrong key elsewhere in it
        # (a bad interval, an unknown type) never hides an unknown source
        raw = entry if isinstance(entry, dict) else {}
        check_name, type_name, source = raw.get("name"), raw.get("type"), raw.get("source")
        if isinstance(check_name, str):
            if check_name in seen:
                errors.append(ConfigError(fname, f"{prefix}.name", f"duplicate check name {check_name!r}"))
            seen.add(check_name)
        cls = host.check_type(type_name) if isinstance(type_name, str) else None
        if source is None and cls is not None and cls.needs_source:
            errors.append(ConfigError(fname, f"{prefix}.source", f"check type {type_name!r} needs a source"))
        elif isinstance(source, str) and source not in sources_raw:
            errors.append(ConfigError(fname, f"{prefix}.source", f"unknown source {source!r}"))
        if not spec:
            continue
        base, options = spec
        bound = base.max_rejected_ratio if base.max_rejected_ratio is not None else max_rejected
        checks.append(CheckSpec(base.name, base.type, base.source, base.interval, base.timeout, options, bound))

    if root is not None and root.grids.source is not None and root.grids.source not in sources_raw:
        errors.append(ConfigError(fname, "grids.source", f"unknown source {root.grids.source!r}"))
    notifiers: dict[str, NotifierSpec] = {}
    notifiers_raw = _table(data, "notifiers")
    for name, entry in notifiers_raw.items():
        spec = _typed(
            entry,
            _join("notifiers", name),
            SourceBase,
            host.types["notifier"],
            "notifier",
            fname,
            errors,
        )
        if spec:
            notifiers[name] = NotifierSpec(name, spec[0].type, spec[1])

    rules = _rules(data, host, checks, fname, errors, core_rules(max_rejected))
    assessment = _assessment(data, host, checks, fname, errors)
    digests = _digests(data, notifiers, notifiers_raw, host, root, fname, errors)
    names_raw = data.get("display_names", {})
    errors += [ConfigError(fname, where, problem) for where, problem in name_problems(names_raw)]

    if root is not None and set(root.calendar.holidays) & set(root.calendar.workdays):
        errors.append(ConfigError(fname, "calendar", "a date is both a holiday and a workday"))
    base_dir = path.resolve().parent
    if root is not None:
        errors.extend(_tls_errors(root.server, base_dir, fname))
        errors.extend(_reader_errors(root.server, fname))
    if errors or root is None:
        raise ConfigErrors(errors)
    host_, port = split_listen(root.server.listen)
    return Settings(
        path=path.resolve(),
        timezone=ZoneInfo(root.timezone),
        host=host_,
        port=port,
        state_path=resolve_path(base_dir, root.state.path),
        history=root.state.history,
        plugin_dirs=[resolve_path(base_dir, d) for d in root.plugins.dirs],
        sources=sources,
        checks=checks,
        grids_source=root.grids.source,
        grids_refresh=root.grids.refresh,
        shard=tuple(map(int, root.grids.shard.split("/"))) if root.grids.shard else None,  # type: ignore[arg-type]
        shard_by=root.grids.shard_by,
        holidays=list(root.calendar.holidays),
        workdays=list(root.calendar.workdays),
        future_tolerance=root.future_tolerance,
        notifiers=notifiers,
        rules=rules,
        alerting=root.alerting,
        token_sha256=_token_digest(root.server),
        external_url=root.server.external_url,
        read_token_sha256=_read_token_digest(root.server),
        basic_auth_users=dict(root.server.basic_auth_users),
        readers=tuple(_reader(r) for r in root.server.readers),
        tls_cert=resolve_path(base_dir, root.server.tls_cert) if root.server.tls_cert else None,
        tls_key=resolve_path(base_dir, root.server.tls_key) if root.server.tls_key else None,
        client_timeout=root.server.client_timeout,
        max_connections=root.server.max_connections,
        hostnames=root.server.hostnames,
        assessment=assessment,
        digests=digests,
        shared_path=resolve_path(base_dir, root.state.shared_path) if root.state.shared_path else None,
        names=merge_names(_contributed_names(host), names_raw),
        raw=data,
    )


def _table(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``data[key]`` when it is a table, else none: entries are checked even when the top level
    has errors, so one run reports every problem."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _array(data: Mapping[str, Any], key: str) -> list[Any]:
    """``data[key]`` when it is an array, else an empty one (see :func:`_table`)."""
    value = data.get(key)
    return value if isinstance(value, list) else []


def _typed(
    entry: Any,
    prefix: str,
    base_model: type[BaseModel],
    types: Mapping[str, type[Source | Check | Notifier]],
    kind: str,
    fname: str,
    errors: list[ConfigError],
) -> tuple[Any, Options] | None:
    """Validate an entry's common keys against ``base_model`` and the rest against its type."""
    if not isinstance(entry, dict):
        errors.append(ConfigError(fname, prefix, f"expected a table, got {type(entry).__name__}"))
        return None
    common = set(base_model.model_fields)
    base = _validate(base_model, {k: v for k, v in entry.items() if k in common}, prefix, fname, errors)
    type_name = entry.get("type")
    cls = types.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        if isinstance(type_name, str):
            known = ", ".join(sorted(types)) or "none"
            errors.append(ConfigError(fname, f"{prefix}.type", f"unknown {kind} type {type_name!r} (known: {known})"))
        return None
    options = _validate(cls.Options, {k: v for k, v in entry.items() if k not in common}, prefix, fname, errors)
    if base is None or options is None:
        return None
    return base, options


CORE_METRICS = {
    "gridwatch_grid_light",
    "gridwatch_grid_info",
    "gridwatch_source_up",
    "gridwatch_check_runs_total",
    "gridwatch_check_duration_seconds",
    "gridwatch_check_last_success_timestamp_seconds",
    "gridwatch_check_rejected_ratio",
    "gridwatch_source_rows_rejected_total",
    "gridwatch_notification_queue_length",
}


def core_rules(max_rejected_ratio: float) -> list[dict[str, Any]]:
    """gridwatch's own default rules, on the samples it keeps about its checks: a check whose rows
    are mostly bad (DOMAIN.md §5), at the top-level ``max_rejected_ratio``."""
    return [
        {
            "alert": "CheckRowsRejected",
            "metric": "gridwatch_check_rejected_ratio",
            "above": {"warning": max_rejected_ratio},
            "summary": "检查 {check} 读到的数据 {value:.0%} 被拒收",
            "description": (
                "检查 {check} 读到的数据行大多不合规则（时间格式、代码值、网格编号），检查已判为失败，"
                "沿用最后一次成功的结果。原因和要改的配置项见看板顶部的提示和监测服务的运行日志。"
            ),
        }
    ]


def _rules(
    data: dict[str, Any],
    host: PluginHost,
    checks: list[CheckSpec],
    fname: str,
    errors: list[ConfigError],
    core: list[dict[str, Any]],
) -> dict[str, Rule]:
    """Default rules (gridwatch's ``core`` ones, then the plugins'), overridden or disabled by name
    by ``[[rules]]``.

    A configured rule must watch a metric some configured check produces; a default rule whose
    metric nobody produces is simply not in force.
    """
    produced = set(CORE_METRICS)
    for c in checks:
        cls = host.check_type(c.type)
        if cls is not None:
            produced |= cls.produces(c.options)
    defaults: dict[str, dict[str, Any]] = {entry["alert"]: entry for entry in core}
    for plugin, result in host.call("default_rules"):
        if not isinstance(result, Exception):
            try:
                result = list(result or ())  # a generator fails here, not halfway through
            except Exception as exc:
                result = exc
        if isinstance(result, Exception):
            # another team's bug must not stop the operator's config: that plugin's defaults are
            # simply not in force (a [[rules]] entry can still define the alert)
            log.error("plugin %s: default_rules() failed, its default rules are skipped: %r", plugin, result)
            continue
        for entry in result:
            try:
                rule = Rule.model_validate(entry)
            except ValidationError as exc:
                errors.append(ConfigError(fname, "rules", f"plugin {plugin!r}: bad default rule: {exc}"))
                continue
            if rule.metric in produced:
                defaults[rule.alert] = dict(entry)
    rules = {name: Rule.model_validate(entry) for name, entry in defaults.items()}
    raw = _array(data, "rules")
    for i, entry in enumerate(raw):
        prefix = f"rules[{i}]"
        if not isinstance(entry, dict):
            errors.append(ConfigError(fname, prefix, "expected a table"))
            continue
        alert = entry.get("alert")
        merged = {**(defaults.get(alert, {}) if isinstance(alert, str) else {}), **entry}
        rule = _validate(Rule, merged, prefix, fname, errors)
        if rule is None:
            continue
        if rule.enabled and rule.metric not in produced:
            errors.append(ConfigError(fname, f"{prefix}.metric", f"no configured check produces {rule.metric!r}"))
            continue
        rules[rule.alert] = rule
    return rules


def _assessment(
    data: dict[str, Any], host: PluginHost, checks: list[CheckSpec], fname: str, errors: list[ConfigError]
) -> dict[str, Deduction]:
    """The scorecard items in force: the defaults of the light days and of the configured checks'
    types, with ``[assessment.NAME]`` changing their points, caps and targets."""
    items = default_items(cls for c in checks if (cls := host.check_type(c.type)) is not None)
    every = default_items(host.types["check"].values())
    for name, entry in _table(data, "assessment").items():
        prefix = _join("assessment", name)
        if name not in items:
            why = (
                f"no configured check feeds scorecard item {name!r}"
                if name in every
                else f"unknown scorecard item {name!r}"
            )
            errors.append(ConfigError(fname, prefix, f"{why} (in force: {', '.join(items)})"))
            continue
        item = _validate(ItemOptions, entry, prefix, fname, errors)
        if item is None:
            continue
        if item.target is not None and items[name].target is None:
            errors.append(ConfigError(fname, f"{prefix}.target", f"{name} is a count: it has no target"))
            continue
        items[name] = dataclasses.replace(items[name], **item.model_dump(exclude_none=True))
    return items


def _digests(
    data: dict[str, Any],
    notifiers: dict[str, NotifierSpec],
    notifiers_raw: dict[str, Any],
    host: PluginHost,
    root: Root | None,
    fname: str,
    errors: list[ConfigError],
) -> list[DigestSpec]:
    """``[[digests]]``: each entry's notifiers exist and take digests; names are unique."""
    out: list[DigestSpec] = []
    raw = _array(data, "digests")
    if raw and root is not None and root.grids.source is None:
        errors.append(ConfigError(fname, "digests", "digests count the grids: set [grids] source"))
    for i, entry in enumerate(raw):
        prefix = f"digests[{i}]"
        spec = _validate(DigestSpec, entry, prefix, fname, errors)
        if spec is None:
            continue
        if any(d.name == spec.name for d in out):
            why = f"duplicate digest name {spec.name!r}: give each {spec.kind} digest its own name"
            errors.append(ConfigError(fname, f"{prefix}.name", why))
        for j, name in enumerate(spec.notifiers):
            found = notifiers.get(name)
            cls = host.notifier_type(found.type) if found is not None else None
            if name not in notifiers_raw:
                known = ", ".join(sorted(notifiers_raw)) or "none"
                errors.append(
                    ConfigError(fname, f"{prefix}.notifiers[{j}]", f"unknown notifier {name!r} (known: {known})")
                )
            elif cls is not None and cls.digest_format is None and found is not None:
                why = f"notifier {name!r} ({found.type}) takes no digests; wecom, dingtalk and webhook do"
                errors.append(ConfigError(fname, f"{prefix}.notifiers[{j}]", why))
        out.append(spec)
    return out


def _contributed_names(host: PluginHost) -> list[NameTable]:
    """Every check type's display names, in the order the types were registered; a malformed
    table is left out (another team's slip must not stop the config: its codes show as codes)."""
    out = []
    for type_name, cls in host.types["check"].items():
        table = getattr(cls, "display_names", {})
        if is_name_table(table):
            out.append(table)
        else:
            log.error("check type %r: display_names is not {label: {code: (中文, English)}}; left out", type_name)
    return out


def _token_digest(server: ServerSection) -> str | None:
    if server.token_sha256:
        return server.token_sha256.lower()
    if server.token:
        return digest(server.token)
    return None


def _read_token_digest(server: ServerSection) -> str | None:
    if server.read_token_sha256:
        return server.read_token_sha256.lower()
    if server.read_token:
        return digest(server.read_token)
    return None


def _reader(r: ReaderSection) -> ReaderSpec:
    return ReaderSpec(
        name=r.name,
        token_sha256=r.token_sha256.lower() if r.token_sha256 else None,
        user=r.user,
        password_hash=r.password_hash,
        streets=frozenset(r.streets),
        communities=frozenset(r.communities),
    )


def _reader_errors(server: ServerSection, fname: str) -> list[ConfigError]:
    """What makes a reader unusable or ambiguous: no credential, nothing to see, or a name, user or
    token another credential has too (which of the two would a request be?)."""
    errors: list[ConfigError] = []
    names: dict[str, str] = {}
    users = {user: "server.basic_auth_users" for user in server.basic_auth_users}
    tokens = {
        d: f"server.{key}"
        for key, d in (("token", _token_digest(server)), ("read_token", _read_token_digest(server)))
        if d
    }
    for i, r in enumerate(server.readers):
        at = f"server.readers[{i}]"

        def error(key: str, message: str, at: str = at) -> None:
            errors.append(ConfigError(fname, f"{at}.{key}" if key else at, message))

        if r.name in names:
            error("name", f"duplicate reader name {r.name!r} (also {names[r.name]})")
        names.setdefault(r.name, at)
        if r.token_sha256 is None and r.user is None:
            error("", "a reader needs a credential: token_sha256, or user and password_hash")
        if (r.user is None) != (r.password_hash is None):
            error("password_hash" if r.user else "user", "set user and password_hash together")
        if r.user is not None:
            if ":" in r.user:
                error("user", "a basic-auth user name holds no ':'")
            elif r.user in users:
                error("user", f"user {r.user!r} is also {users[r.user]}")
            users.setdefault(r.user, at)
        if r.token_sha256 is not None:
            d = r.token_sha256.lower()
            if d in tokens:  # the digest is not echoed: it names a secret
                error("token_sha256", f"the same token as {tokens[d]}")
            tokens.setdefault(d, at)
        if not r.streets and not r.communities:
            error("streets", "a reader sees at least one street or community: streets and communities are both empty")
        for j, c in enumerate(r.communities):
            street, sep, community = c.partition("/")
            if sep and not (street.strip() and community.strip()):
                error(f"communities[{j}]", "expected a community, or street/community")
    return errors


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server's TLS settings: TLS 1.2 or newer, the library's default ciphers.

    An encrypted key is refused (an empty passphrase is offered) rather than prompting on a terminal
    nobody watches; ``load_cert_chain`` on the same context later swaps in a renewed certificate.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key, password=lambda: b"")
    return ctx


def _tls_errors(server: ServerSection, base_dir: Path, fname: str) -> list[ConfigError]:
    """A missing, unreadable or mismatched certificate or key is a config error, not a crash at start."""
    if not server.tls_cert or not server.tls_key:
        return []
    cert, key = resolve_path(base_dir, server.tls_cert), resolve_path(base_dir, server.tls_key)
    missing = [
        ConfigError(fname, f"server.{name}", f"no such file: {p}")
        for name, p in (("tls_cert", cert), ("tls_key", key))
        if not p.is_file()
    ]
    if missing:
        return missing
    try:
        tls_context(cert, key)
    except (ssl.SSLError, OSError) as exc:
        # the library's text names the problem (bad PEM, key does not match), never the key itself
        reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        return [ConfigError(fname, "server.tls_key", f"cannot use {cert.name} with {key.name}: {reason}")]
    return []


def problems(path: Path) -> Iterable[str]:
    """Every problem of a config file, one line each (for ``check-config``)."""
    try:
        load(path)
    except ConfigErrors as exc:
        return [str(e) for e in exc.errors]
    return []
