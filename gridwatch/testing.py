"""Test kit: run a real gridwatch daemon in a subprocess and look at what it serves.

Shipped with gridwatch so plugin authors test the way the core does. The pytest fixtures built
on it (``gridwatch_check``, ``gridwatch_alerts``, ``gridwatch_daemon``) live in
:mod:`gridwatch.pytest_plugin`, registered through the ``pytest11`` entry point.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    end = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < end:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # not up yet
            last_exc = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f": {last_exc!r}" if last_exc else ""))


class DaemonProcess:
    """``gridwatch run`` on a config, in a subprocess, with helpers to query it."""

    def __init__(
        self,
        config: Path,
        port: int,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        python: str | Path | None = None,
    ) -> None:
        self.python = str(python or sys.executable)  # another environment's interpreter, to test an install
        self.config = config
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, **(env or {})}
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = config.with_suffix(".log")

    def start(self, wait: bool = True) -> DaemonProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [self.python, "-m", "gridwatch", *self.args, "run", "-c", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.config.parent,
        )
        if wait:
            wait_for(self._healthy, 30, f"gridwatch to answer /healthz\n{self.log()}")
        return self

    def _healthy(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise AssertionError(f"gridwatch exited with {self.proc.returncode}:\n{self.log()}")
        return self.get("/healthz")[0] == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, f"GET {path} answered {status}: {body[:500]!r}"
        return json.loads(body)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """``/metrics`` parsed: {(sample name, sorted labels): value}."""
        status, body = self.get("/metrics")
        assert status == 200
        out = {}
        for fam in text_string_to_metric_families(body.decode()):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, tuple(sorted(labels.items()))))

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the daemon and wait; returns its exit code (kills it if it overstays)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"gridwatch did not exit within {timeout}s:\n{self.log()}") from None
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._log.closed:
            self._log.close()


# -- running one check against inline rows ---------------------------------------------------


class CheckResult:
    """What one run of a check produced: samples, rejected rows, and the error if it failed.

    ``rules`` are the rules in force for the run (the check type's default rules, as the config
    overrides them), ``grids`` the grid registry it ran with, ``directory`` where its files are
    (``gridwatch.toml``, the data and the state database ``state.db``).
    """

    def __init__(
        self,
        samples: list[Any],
        rejected: dict[tuple[str, str], int],
        error: str | None,
        *,
        rules: Mapping[str, Any] | None = None,
        grids: Mapping[str, Any] | None = None,
        directory: Path | None = None,
        reasons: list[Any] | None = None,
        tallies: list[Any] | None = None,
        names: Any = None,
    ):
        self.samples = samples
        self.names = names
        """the display names of codes in force for the run (:class:`gridwatch.names.DisplayNames`)"""
        self.reasons = reasons or []
        """the light reasons the check gives for these samples (:class:`gridwatch.api.Reason`)"""
        self.tallies = tallies or []
        """the counts the check adds to the digests for these samples (:class:`gridwatch.api.Tally`)"""
        self.rejected = rejected
        self.error = error
        self.rules = dict(rules or {})
        self.grids = dict(grids or {})
        self.directory = directory

    @property
    def state_path(self) -> Path:
        """The run's state database (tables a check keeps through ``ctx.state``)."""
        assert self.directory is not None, "this result was not produced by run_check"
        return self.directory / "state.db"

    def assert_value(self, metric: str, value: float, /, **labels: str) -> None:
        """Assert the series of ``metric`` with exactly these labels exists and has ``value``.

        Values compare with a relative tolerance of 1e-9, so ``2 / 3`` matches however the check
        computed it. On failure the message lists the series that are there.
        """
        __tracebackhide__ = True  # pytest: show the test's line, not this one
        want = {k: str(v) for k, v in labels.items()}
        found = [s for s in self.samples if s.metric == metric and dict(s.labels) == want]
        if len(found) > 1:
            raise AssertionError(f"{_series_name(metric, want)} appears {len(found)} times\n{self._present(metric)}")
        if not found:
            raise AssertionError(f"no series {_series_name(metric, want)}\n{self._present(metric)}")
        got = found[0].value
        if not math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-12):
            name = _series_name(metric, want)
            raise AssertionError(f"{name} is {got!r}, expected {value!r}\n{self._present(metric)}")

    def assert_absent(self, metric: str, /, **labels: str) -> None:
        """Assert there is no series of ``metric`` with exactly these labels (e.g. a ratio with
        nothing to divide by); without labels, no series of ``metric`` at all."""
        __tracebackhide__ = True
        want = {k: str(v) for k, v in labels.items()}
        found = [s for s in self.samples if s.metric == metric and (not want or dict(s.labels) == want)]
        if found:
            raise AssertionError(
                f"expected no series {_series_name(metric, want)}, found {len(found)}\n{self._present(metric)}"
            )

    def alerts(self, rules: Iterable[Any] | Mapping[str, Any] | None = None, grids: Any = None) -> list[Fired]:
        """The alerts ``rules`` fire on these samples (default: the rules in force for the run,
        i.e. the check type's default rules), sorted; see :func:`fired_alerts`."""
        return fired_alerts(self, rules=rules, grids=grids)

    def _present(self, metric: str) -> str:
        lines = []
        if self.error:
            lines.append(f"the check failed: {self.error}")
        same = [s for s in self.samples if s.metric == metric]
        shown = same or self.samples
        if not self.samples:
            lines.append("the check produced no samples")
        else:
            lines.append(f"series of {metric}:" if same else f"no series of {metric}; the check produced:")
            for s in sorted(shown, key=lambda s: (s.metric, sorted(s.labels.items())))[:50]:
                lines.append(f"  {_series_name(s.metric, dict(s.labels))} {s.value!r}")
            if len(shown) > 50:
                lines.append(f"  ... and {len(shown) - 50} more")
        return "\n".join(lines)

    def value(self, metric: str, **labels: str) -> float | None:
        """The value of the one series with exactly these labels, or None if absent."""
        want = dict(labels)
        found = [s.value for s in self.samples if s.metric == metric and dict(s.labels) == want]
        assert len(found) <= 1, f"{metric}{want} appears {len(found)} times"
        return found[0] if found else None

    def series(self, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every series of a metric: {sorted label pairs: value}."""
        return {tuple(sorted(s.labels.items())): s.value for s in self.samples if s.metric == metric}

    def by_grid(self, metric: str, **labels: str) -> dict[str, float]:
        """{grid: value} for the series of a metric that also carry ``labels``."""
        return {
            s.labels["grid"]: s.value
            for s in self.samples
            if s.metric == metric and all(s.labels.get(k) == v for k, v in labels.items())
        }


def write_standard_db(
    path: Path,
    tables: dict[str, list[dict[str, Any]]],
    schema: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """A SQLite file in the standard schema holding ``tables`` (absent columns are NULL).

    An optional column of the standard schema (``patrols.role``) is created only when a row of
    its table names it, or ``schema`` lists it; an optional table (``household_categories``) only
    when ``tables`` has it. A table outside the standard schema (a plugin's own, e.g.
    ``hydrants``) is created too, with the columns ``schema`` gives it or else those its rows use,
    in order of appearance.
    """
    import sqlite3

    from gridwatch.schema import OPTIONAL_COLUMNS, OPTIONAL_TABLES, STANDARD_SCHEMA, create_sql

    own = {t: tuple(c) for t, c in (schema or {}).items() if t not in STANDARD_SCHEMA}
    for table, rows in tables.items():
        if table not in STANDARD_SCHEMA and table not in own:
            found = list(OPTIONAL_TABLES.get(table, ())) or list(dict.fromkeys(c for r in rows for c in r))
            assert found, f"table {table!r} has no rows to take its columns from: give them with schema="
            own[table] = tuple(found)
    with sqlite3.connect(path) as db:
        for table, standard in STANDARD_SCHEMA.items():
            rows = tables.get(table, [])
            named = set((schema or {}).get(table, ())).union(*rows)
            optional = tuple(c for c in OPTIONAL_COLUMNS.get(table, ()) if c in named)
            db.execute(create_sql(table, optional=optional))
            cols = (*standard, *optional)
            for row in rows:
                unknown = set(row) - set(cols)
                assert not unknown, f"{table} has no column(s) {sorted(unknown)}"
            db.executemany(
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [tuple(r.get(c) for c in cols) for r in rows],
            )
        for table, cols in own.items():
            rows = tables.get(table, [])
            for row in rows:
                unknown = set(row) - set(cols)
                assert not unknown, f"{table} has no column(s) {sorted(unknown)}"
            names = ", ".join(_quote_ident(c) for c in cols)
            db.execute(f"CREATE TABLE {_quote_ident(table)} ({names})")  # no affinity: values stay as given
            db.executemany(
                f"INSERT INTO {_quote_ident(table)} ({names}) VALUES ({', '.join('?' * len(cols))})",
                [tuple(r.get(c) for c in cols) for r in rows],
            )
    db.close()
    return path


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def run_check(
    check_type: str,
    tables: dict[str, list[dict[str, Any]]],
    *,
    now: str | Any,
    tmp_path: Path,
    options: dict[str, Any] | None = None,
    config: str = "",
    timezone: str = "Asia/Shanghai",
    source: str | None = None,
    plugin_dirs: Sequence[str | Path] = (),
    schema: Mapping[str, Sequence[str]] | None = None,
    clock: str | Any | None = None,
) -> CheckResult:
    """Run one check type once against inline rows in the standard schema, as of ``now``.

    ``now`` is ISO 8601 (local time in ``timezone`` without an offset) or an aware datetime.
    ``clock`` is the wall clock the run sees, in the same forms: by default ``now`` itself (a run
    at that moment); a later one replays ``now`` the way ``gridwatch once --now`` does, where only
    a time past the clock (by more than ``future_tolerance``) is a bad row.
    ``config`` is extra TOML at the top of the generated file (a top-level key, a ``[calendar]``
    table, ``[[rules]]``).
    ``source`` replaces the body of ``[sources.data]`` (default: a SQLite file holding
    ``tables``), to run the check through another source type.
    ``plugin_dirs`` are directories of loose plugin modules to load (``[plugins] dirs``);
    installed plugins (the ``gridwatch`` entry point) are always loaded. Tables outside the
    standard schema are created from their rows, or from the columns ``schema`` names.
    """
    import asyncio
    import tomllib
    from datetime import datetime

    from gridwatch import config as config_mod
    from gridwatch.pipeline.results import Results
    from gridwatch.pipeline.runtime import assemble
    from gridwatch.store import Store

    db = write_standard_db(tmp_path / "standard.db", tables, schema)
    opts = "".join(f"{k} = {_toml(v)}\n" for k, v in (options or {}).items())
    source_body = source or f'type = "sqlite"\npath = "{db.name}"'
    plugins = f"[plugins]\ndirs = {_toml([str(Path(d).resolve()) for d in plugin_dirs])}\n" if plugin_dirs else ""

    path = tmp_path / "gridwatch.toml"
    path.write_text(
        f'timezone = "{timezone}"\n{config}\n[state]\npath = "state.db"\n[grids]\nsource = "data"\n{plugins}'
        f"[sources.data]\n{source_body}\n"
        f'[[checks]]\nname = "{check_type}"\ntype = "{check_type}"\n'
        f'source = "data"\n{opts}',
        encoding="utf-8",
    )
    tomllib.loads(path.read_text(encoding="utf-8"))  # a bad option value fails here, clearly
    settings, host = config_mod.load(path)

    def aware(value: str | Any) -> Any:
        from zoneinfo import ZoneInfo

        if not isinstance(value, str):
            return value
        at = datetime.fromisoformat(value)
        return at.replace(tzinfo=ZoneInfo(timezone)) if at.tzinfo is None else at

    now = aware(now)
    wall = aware(now if clock is None else clock).timestamp()

    async def go() -> CheckResult:
        store = Store(settings.state_path)
        store.open()
        runtime, results = assemble(settings, host, store, asyncio.get_running_loop(), clock=lambda: wall)
        try:
            outcome = await runtime.run(runtime.runners[check_type], now, results)
            rejected = dict(results.rejected)
            grids = runtime.registry.cached() if runtime.registry is not None else {}
            if runtime.registry is not None and not grids:
                grids = runtime.load_grids(now, Results())
            check = runtime.runners[check_type].check
            reasons, tallies = list(check.reasons(outcome.samples)), list(check.tallies(outcome.samples))
            return CheckResult(
                outcome.samples,
                rejected,
                outcome.error,
                rules=settings.rules,
                grids=grids,
                directory=tmp_path,
                reasons=reasons,
                tallies=tallies,
                names=settings.names,
            )
        finally:
            runtime.close()
            store.close()

    return asyncio.run(go())


def _toml(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _series_name(metric: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{metric}{{{inner}}}"


# -- which alerts rules fire -------------------------------------------------------------------


class Fired(tuple):
    """One alert a rule fires on one series: equal to the tuple ``(alert, severity, labels)``
    (``labels``: the series' labels plus the rule's), and carrying ``value``, ``summary`` and
    ``description`` as rendered for the operator."""

    value: float
    summary: str
    description: str

    def __new__(
        cls, alert: str, severity: str, labels: dict[str, str], value: float, summary: str, description: str
    ) -> Fired:
        self = super().__new__(cls, (alert, severity, labels))
        self.value, self.summary, self.description = value, summary, description
        return self

    @property
    def alert(self) -> str:
        return self[0]

    @property
    def severity(self) -> str:
        return self[1]

    @property
    def labels(self) -> dict[str, str]:
        return self[2]


def fired_alerts(
    result: CheckResult | Iterable[Any],
    rules: Iterable[Any] | Mapping[str, Any] | None = None,
    grids: Any = None,
    names: Any = None,
) -> list[Fired]:
    """Which alerts ``rules`` fire on a result's samples, through :func:`gridwatch.rules.evaluate`.

    ``rules``: ``Rule`` objects or ``[[rules]]``-shaped dicts (a plugin's ``default_rules()``), a
    {name: rule} mapping, or None for the rules in force for the run. ``grids``: a {grid_id: Grid}
    mapping, a list of ``grids`` rows, or None for the run's registry (names fill the templates).
    ``names``: the display names of codes (``{category_name}``…), None for those of the run, or of
    every installed check type when given samples.
    A rule fires as soon as a value crosses it: ``for`` is the daemon's business, not a check's.
    The labels are the series' and the rule's: the ``street`` and ``community`` every grid alert
    also gets from the registry are left out (the summary names them).
    Returns ``[(alert, severity, labels)]`` sorted by alert and labels.
    """
    from gridwatch.api import Grid
    from gridwatch.rules import Rule, evaluate

    samples = result.samples if isinstance(result, CheckResult) else list(result)
    if rules is None:
        assert isinstance(result, CheckResult), "give rules= when passing samples"
        rules = result.rules
    if isinstance(rules, Mapping):
        rules = list(rules.values())
    parsed = [r if isinstance(r, Rule) else Rule.model_validate(r) for r in rules]
    if grids is None:
        grids = result.grids if isinstance(result, CheckResult) else {}
    if not isinstance(grids, Mapping):
        rows = list(grids)
        grids = {}
        for g in rows:
            if isinstance(g, Grid):
                grids[g.grid_id] = g
            else:
                row = dict(g)
                gid = str(row["grid_id"])
                name = str(row.get("name") or gid)
                grids[gid] = Grid(gid, name, str(row.get("community") or ""), str(row.get("street") or ""))
    fired = [
        Fired(
            h.rule.alert,
            h.severity,
            {k: v for k, v in h.labels.items() if k != "alertname" and k not in h.place},
            h.value,
            h.summary,
            h.description,
        )
        for h in evaluate(parsed, samples, grids, names or getattr(result, "names", None) or installed_names())
    ]
    return sorted(fired, key=lambda f: (f.alert, sorted(f.labels.items()), f.severity))


def installed_names() -> Any:
    """The display names every installed check type gives its codes (no config's overrides)."""
    from gridwatch.names import merge
    from gridwatch.plugins import PluginHost

    host = PluginHost.default()
    return merge(getattr(cls, "display_names", {}) for cls in host.types["check"].values())


# -- a daemon on a config ------------------------------------------------------------------------


def with_listen(config_text: str, port: int, host: str = "127.0.0.1") -> str:
    """``config_text`` with ``[server] listen`` set to ``host:port`` (added, or replaced)."""
    import tomllib

    data = tomllib.loads(config_text)
    listen = f'listen = "{host}:{port}"'
    server = data.get("server")
    if server is None:
        return config_text.rstrip("\n") + f"\n\n[server]\n{listen}\n"
    lines = config_text.splitlines()
    header = next((i for i, line in enumerate(lines) if re.fullmatch(r"\s*\[\s*server\s*\]\s*(#.*)?", line)), None)
    if header is None:
        raise ValueError("write [server] as a table of its own, not inline, so its listen address can be set")
    end = next((i for i in range(header + 1, len(lines)) if re.match(r"\s*\[", lines[i])), len(lines))
    body = [line for line in lines[header + 1 : end] if not re.match(r"\s*listen\s*=", line)]
    out = [*lines[: header + 1], listen, *body, *lines[end:]]
    text = "\n".join(out) + "\n"
    tomllib.loads(text)
    return text
