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

INTEGER_COLUMNS = {"reopened_count", "extended"}


def create_sql(table: str, timestamp_type: str = "TEXT") -> str:
    """CREATE TABLE for one standard table: text, integers, and ``*_at`` columns as
    ``timestamp_type`` (TEXT in SQLite; e.g. TIMESTAMP in PostgreSQL)."""

    def kind(col: str) -> str:
        if col in INTEGER_COLUMNS:
            return "INTEGER"
        return timestamp_type if col.endswith("_at") else "TEXT"

    return f"CREATE TABLE {table} ({', '.join(f'{c} {kind(c)}' for c in STANDARD_SCHEMA[table])})"
