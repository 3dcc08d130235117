"""``gridwatch check-config --connect``: open every source and ask it for what the checks read.

Plain ``check-config`` stays offline (a config can be checked where the database is out of
reach); with ``--connect`` every table and column a configured check declares
(:meth:`gridwatch.api.Check.reads`) and the grid registry's columns are looked up in their
source, as the first run would (:meth:`gridwatch.api.Source.missing`), without running a
check: a mistyped name is found before the daemon starts, not on the wall at 8 a.m.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from gridwatch.api import Environment, Source
from gridwatch.config import ConfigError
from gridwatch.pipeline.grids import COLUMNS as GRID_COLUMNS
from gridwatch.plugins import PluginHost
from gridwatch.settings import Settings

REGISTRY = "the grid registry"  # reads its table in full, on its own schedule: never followed

TIMEOUT = 30.0
"""seconds each source has to answer"""

Wanted = dict[str, dict[str, dict[str, list[str]]]]
"""source -> table -> column -> who reads it"""


def problems(
    settings: Settings, host: PluginHost, fname: str | None = None, following: list[str] | None = None
) -> list[ConfigError]:
    """One problem per source that cannot be opened and per table or column it lacks, each
    naming the config key to fix (``sources.NAME.columns.TABLE.COLUMN``, ``.cursors.TABLE``) and
    who reads it; ``fname`` is the file as the operator named it (default: its full path). Into
    ``following`` goes a line per table read saying how runs follow it (or read it in full, and why)."""
    fname = fname or str(settings.path)
    wanted: Wanted = {}
    out: list[ConfigError] = []
    for spec in settings.checks:
        cls = host.check_type(spec.type)
        if spec.source is None or cls is None:
            continue
        try:
            reads = cls.reads(spec.options)
        except Exception as exc:  # a plugin's bug: say whose, and go on with the others
            out.append(ConfigError(fname, f"checks.{spec.name}", f"cannot tell what it reads: {exc!r}"))
            continue
        for table, columns in reads.items():
            _want(wanted, spec.source, table, columns, f"check {spec.name}")
    if settings.grids_source is not None:
        _want(wanted, settings.grids_source, "grids", GRID_COLUMNS, REGISTRY)

    env = Environment(settings.base_dir, settings.timezone, settings.state_path.parent)
    for name, source_spec in settings.sources.items():
        where = f"sources.{name}"  # (a source name is letters, digits, _ . -)
        source_type = host.source_type(source_spec.type)
        if source_type is None or source_type.accepts_pushes:  # pushed rows are stored in the standard schema
            continue
        try:
            source: Source = source_type(name, source_spec.options, env)
        except Exception as exc:
            out.append(ConfigError(fname, where, f"cannot open source {name}: {exc}"))
            continue
        try:
            found = _source_problems(source, where, wanted.get(name, {}), fname)
            out += found
            if following is not None and not found:
                checked = {
                    t
                    for t, cols in wanted.get(name, {}).items()
                    if any(w != REGISTRY for ws in cols.values() for w in ws)
                }
                following += [source.follows(table).sentence(table, where) for table in sorted(checked)]
        finally:
            source.close()
    return out


def build_problems(settings: Settings, host: PluginHost, fname: str | None = None) -> list[ConfigError]:
    """Every source made as ``run`` makes it at start, and closed again: nothing is connected, so
    plain ``check-config`` stays offline, yet a source that cannot even be made (its database
    driver not installed, a URL SQLAlchemy cannot read) is one line here, not a traceback at start."""
    fname = fname or str(settings.path)
    env = Environment(settings.base_dir, settings.timezone, settings.state_path.parent)
    out: list[ConfigError] = []
    for name, source_spec in settings.sources.items():
        source_type = host.source_type(source_spec.type)
        if source_type is None:
            continue
        try:
            source: Source = source_type(name, source_spec.options, env)
        except Exception as exc:
            out.append(ConfigError(fname, f"sources.{name}", str(exc).removeprefix(f"source {name}: ")))
            continue
        source.close()
    return out


def _want(wanted: Wanted, source: str, table: str, columns: Sequence[str], who: str) -> None:
    by_column = wanted.setdefault(source, {}).setdefault(table, {})
    for column in columns:
        by_column.setdefault(column, []).append(who)


def _source_problems(
    source: Source, where: str, tables: dict[str, dict[str, list[str]]], fname: str
) -> list[ConfigError]:
    try:
        source.ping()
        found = []
        for table, columns in tables.items():
            deadline = time.monotonic() + TIMEOUT
            for key, why in source.missing(table, list(columns), deadline=deadline):
                # a missing column is read by those who read it; a missing table by all
                whos = columns.get(key.rsplit(".", 1)[-1]) if key.startswith("columns.") else None
                readers = sorted(set(whos or (w for ws in columns.values() for w in ws)))
                found.append(ConfigError(fname, f"{where}.{key}", f"{why} (read by {', '.join(readers)})"))
        return found
    except Exception as exc:
        return [ConfigError(fname, where, f"cannot read source {source.name}: {exc}")]
