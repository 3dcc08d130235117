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


def create_sql(table: str) -> str:
    """CREATE TABLE for one standard table in SQLite or PostgreSQL (text, and integers)."""
    cols = ", ".join(f"{c} {'INTEGER' if c in INTEGER_COLUMNS else 'TEXT'}" for c in STANDARD_SCHEMA[table])
    return f"CREATE TABLE {table} ({cols})"
