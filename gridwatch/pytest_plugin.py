"""The gridwatch test kit as a pytest plugin: fixtures to test a check type the way the core does.

Installed with gridwatch and registered through the ``pytest11`` entry point, so any project
that has gridwatch installed gets these fixtures without a ``conftest.py``:

- ``gridwatch_check(check_type, tables, *, now=None, options=None, ...) -> CheckResult`` runs
  one check type once against rows given inline, in a temporary SQLite source in the standard
  schema (plus any table of the plugin's own), as of a fixed ``now``;
- ``gridwatch_alerts(result, rules=None, grids=None) -> [(alert, severity, labels)]``: the alerts
  rules fire on a result (default: the check type's default rules);
- ``gridwatch_daemon(config_text, *, tables=None, ...) -> DaemonProcess`` runs the whole daemon
  on a config, on a free port, stopped at teardown;
- ``gridwatch_now`` (the fixed evaluation time) and ``gridwatch_plugin_dirs`` (directories of
  loose plugin modules to load) are fixtures a test module or ``conftest.py`` may override.

Disable with ``-p no:gridwatch``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gridwatch.testing import CheckResult, DaemonProcess, fired_alerts, free_port, wait_for, with_listen

DEFAULT_NOW = "2026-03-31 12:00:00"
"""The evaluation time checks run at unless a test says otherwise (a Tuesday, local time)."""


def pytest_report_header(config: pytest.Config) -> str:
    from gridwatch import __version__
    from gridwatch.api import PLUGIN_API_VERSION

    return f"gridwatch: {__version__}, plugin API {PLUGIN_API_VERSION}"


@pytest.fixture
def gridwatch_now() -> str | datetime:
    """The fixed ``now`` of ``gridwatch_check`` runs: ISO 8601, local time in the run's timezone
    unless it has an offset. Override it in a module or ``conftest.py`` to move every run."""
    return DEFAULT_NOW


@pytest.fixture
def gridwatch_plugin_dirs() -> Sequence[str | Path]:
    """Directories of loose plugin modules (``[plugins] dirs``) that ``gridwatch_check`` loads,
    relative to the test file. Installed plugins are always loaded. Override to add yours."""
    return ()


class CheckRunner:
    """The ``gridwatch_check`` fixture: call it to run a check type once; each call gets a
    directory of its own, so a test may run a check as often as it likes."""

    def __init__(self, base: Path, test_dir: Path, now: str | datetime, plugin_dirs: Sequence[str | Path]) -> None:
        self._base = base
        self._test_dir = test_dir
        self._counter = itertools.count(1)
        self.now = now
        self.plugin_dirs = [test_dir / d for d in plugin_dirs]

    def __call__(
        self,
        check_type: str,
        tables: Mapping[str, list[dict[str, Any]]] | None = None,
        *,
        now: str | datetime | None = None,
        options: Mapping[str, Any] | None = None,
        config: str = "",
        timezone: str = "Asia/Shanghai",
        source: str | None = None,
        plugin_dirs: Sequence[str | Path] = (),
        schema: Mapping[str, Sequence[str]] | None = None,
        clock: str | datetime | None = None,
    ) -> CheckResult:
        """Run ``check_type`` once on ``tables`` ({table: [row dict]}) and return what it did.

        ``now`` defaults to the ``gridwatch_now`` fixture; ``clock`` is the wall clock the run
        sees (default: ``now``; a later one replays ``now`` as ``gridwatch once --now`` does);
        ``options`` are the check's options as in ``[[checks]]``; ``config`` is extra TOML at the
        top level (``future_tolerance``, a ``[calendar]`` table, ``[[rules]]``...);
        ``source`` replaces the body of the ``[sources.data]`` table; ``plugin_dirs`` adds
        directories (relative to the test file) to ``gridwatch_plugin_dirs``; ``schema`` gives the
        columns of a table of the plugin's own that has no rows. The check's source is named
        ``data`` and is also the grid registry (put the grids in ``tables["grids"]``).
        """
        from gridwatch.testing import run_check

        where = self._base / f"run{next(self._counter)}"
        where.mkdir(parents=True)
        return run_check(
            check_type,
            dict(tables or {}),
            now=self.now if now is None else now,
            tmp_path=where,
            options=dict(options or {}),
            config=config,
            timezone=timezone,
            source=source,
            plugin_dirs=[*self.plugin_dirs, *(self._test_dir / d for d in plugin_dirs)],
            schema=schema,
            clock=clock,
        )


@pytest.fixture
def gridwatch_check(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    gridwatch_now: str | datetime,
    gridwatch_plugin_dirs: Sequence[str | Path],
) -> CheckRunner:
    """``gridwatch_check(check_type, tables, *, now=None, options=None, config="",
    timezone="Asia/Shanghai", source=None, plugin_dirs=(), schema=None, clock=None) -> CheckResult``."""
    return CheckRunner(tmp_path / "gridwatch-checks", request.path.parent, gridwatch_now, gridwatch_plugin_dirs)


@pytest.fixture
def gridwatch_alerts() -> Callable[..., list[Any]]:
    """``gridwatch_alerts(result, rules=None, grids=None) -> [(alert, severity, labels)]``: the
    alerts ``rules`` (default: those in force for the run — the check type's default rules) fire
    on a ``CheckResult``; each item also has ``.value``, ``.summary`` and ``.description``."""
    return fired_alerts


class DaemonLauncher:
    """The ``gridwatch_daemon`` fixture: call it to start ``gridwatch run`` on a config."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self._counter = itertools.count(1)
        self.started: list[DaemonProcess] = []

    def __call__(
        self,
        config_text: str,
        *,
        tables: Mapping[str, list[dict[str, Any]]] | None = None,
        db: str = "data.db",
        schema: Mapping[str, Sequence[str]] | None = None,
        files: Mapping[str, str | bytes] | None = None,
        env: Mapping[str, str] | None = None,
        ready: bool = True,
        timeout: float = 30.0,
    ) -> DaemonProcess:
        """Write ``config_text`` as ``gridwatch.toml`` in a fresh directory, with ``[server]
        listen`` set to a free port, and start the daemon there.

        ``tables`` are written to the SQLite file ``db`` in that directory (the standard schema
        plus tables of your own), so a ``[sources.*]`` entry reads it with ``path = "data.db"``;
        ``files`` are more files to write there ({relative path: content}). With ``ready`` it
        waits until ``/readyz`` answers 200, i.e. every check has run once.
        """
        from gridwatch.testing import write_standard_db

        where = self._base / f"daemon{next(self._counter)}"
        where.mkdir(parents=True)
        if tables is not None:
            write_standard_db(where / db, dict(tables), schema)
        for rel, content in (files or {}).items():
            path = where / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        port = free_port()
        config = where / "gridwatch.toml"
        config.write_text(with_listen(config_text, port), encoding="utf-8")
        daemon = DaemonProcess(config, port, env=dict(env or {}))
        self.started.append(daemon)
        daemon.start()
        if ready:
            wait_for(
                lambda: daemon._healthy() and daemon.get("/readyz")[0] == 200,
                timeout,
                f"every check to run once (/readyz)\n{daemon.log()}",
            )
        return daemon

    def stop_all(self) -> None:
        errors = []
        for daemon in reversed(self.started):
            try:
                daemon.stop()
            except AssertionError as exc:
                errors.append(str(exc))
        if errors:
            raise AssertionError("\n".join(errors))


@pytest.fixture
def gridwatch_daemon(tmp_path: Path) -> Iterator[DaemonLauncher]:
    """``gridwatch_daemon(config_text, *, tables=None, db="data.db", schema=None, files=None,
    env=None, ready=True, timeout=30) -> DaemonProcess`` (``.metrics()``, ``.metric(name,
    **labels)``, ``.json(path)``, ``.get(path)``, ``.log()``); every daemon stops at teardown."""
    launcher = DaemonLauncher(tmp_path / "gridwatch-daemons")
    yield launcher
    launcher.stop_all()
