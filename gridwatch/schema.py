"""The standard schema: what the bundled checks read (ARCHITECTURE.md lists it publicly)."""

from __future__ import annotations

STANDARD_SCHEMA: dict[str, tuple[str, ...]] = {
    "grids": ("grid_id", "name", "community", "street", "zone"),
    "households": ("household_id", "grid_id", "category"),
    "visits": ("visit_id", "household_id", "grid_id", "worker_id", "visited_at"),
    "patrols": ("patrol_id", "grid_id", "worker_id", "patrolled_at"),
    "incidents": (
        "incident_id",
        "grid_id",
        "category",
        "severity",
        "tier",
        "reported_at",
        "accepted_at",
        "dispatched_at",
        "resolved_at",
        "closed_at",
        "reopened_count",
        "extended",
    ),
    "reports": ("report_id", "grid_id", "kind", "period", "submitted_at", "flag"),
}

OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {"grids": ("since",), "patrols": ("role",)}
"""Columns of a standard table a platform may not keep: a check reads one only where the source
has it (:meth:`gridwatch.api.Source.has`), and without it behaves as before it existed."""

OPTIONAL_TABLES: dict[str, tuple[str, ...]] = {"household_categories": ("household_id", "category")}
"""Tables a platform may not keep at all, read only where the source has them."""

INTEGER_COLUMNS = {"reopened_count", "extended"}


def create_sql(table: str, timestamp_type: str = "TEXT", optional: tuple[str, ...] = ()) -> str:
    """CREATE TABLE for one standard table (or optional table), with the ``optional`` columns
    asked for: text, integers, and ``*_at`` columns as ``timestamp_type`` (TEXT in SQLite;
    e.g. TIMESTAMP in PostgreSQL)."""

    def kind(col: str) -> str:
        if col in INTEGER_COLUMNS:
            return "INTEGER"
        return timestamp_type if col.endswith("_at") else "TEXT"

    columns = (*STANDARD_SCHEMA[table], *optional) if table in STANDARD_SCHEMA else OPTIONAL_TABLES[table]
    return f"CREATE TABLE {table} ({', '.join(f'{c} {kind(c)}' for c in columns)})"


STANDARD_CODES: dict[str, dict[str, tuple[str, ...]]] = {
    "grids": {"zone": ("red", "yellow", "blue")},
    "incidents": {
        "severity": ("normal", "major"),
        "tier": ("community", "subdistrict", "department", "special"),
    },
    "reports": {
        "kind": ("daily", "twice_weekly", "weekly", "monthly", "quarterly", "annual"),
        "flag": ("ok", "major_dispute", "early_warning", "petition"),
    },
    "patrols": {"role": ("worker", "supervisor", "head")},
}
"""The code values of the enumerated standard columns: what a source's ``codes`` may map onto
(a mapping onto anything else is a config error). ``households.category`` and
``incidents.category`` are open: any name maps."""

ISO, EPOCH, EPOCH_MS = "iso", "epoch", "epoch_ms"
TIME_FORMATS = (ISO, EPOCH, EPOCH_MS)
"""The named timestamp formats a source may declare per column; any other format is a
``strptime`` pattern (``%Y/%m/%d %H:%M:%S``)."""


def check_time_format(value: str) -> str:
    """A declared timestamp format, or a ValueError saying what is wrong with it.

    A pattern is tried on a sample time (2026-09-24 11:31:13 UTC) and back, so that a typo in a
    directive, or a pattern that cannot give a day, is a config error, not a column of
    ``bad_timestamp`` rows found at run time."""
    from datetime import UTC, datetime

    if value in TIME_FORMATS:
        return value
    if "%" not in value:
        raise ValueError(
            f"unknown timestamp format {value!r}: expected iso, epoch, epoch_ms or a strptime pattern "
            "such as '%Y/%m/%d %H:%M:%S'"
        )
    sample = datetime(2026, 9, 24, 11, 31, 13, tzinfo=UTC)
    try:
        back = datetime.strptime(sample.strftime(value), value)
    except ValueError as exc:
        raise ValueError(f"not a usable strptime pattern {value!r}: {exc}") from None
    if back.date() != sample.date():
        raise ValueError(f"the pattern {value!r} does not give a whole date (%Y, %m and %d, or the like)")
    return value
