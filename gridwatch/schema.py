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
