"""SQL text shared by the SQL-speaking sources: reading a standard table under its mapping."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gridwatch.api import ROW_KEY, Source


def select_sql(
    source: Source, table: str, columns: Sequence[str], quote: Callable[[str], str], key: str | None = None
) -> str:
    """``SELECT "src_col" AS "std_col", ... FROM "src_table"`` with every identifier quoted.

    Names come from config, never from data, and are quoted by the dialect's rules, so a
    mapping cannot inject SQL. ``key`` (an expression such as ``rowid``) is selected first,
    as :data:`gridwatch.api.ROW_KEY`.
    """
    cols = ", ".join(f"{quote(src)} AS {quote(std)}" for std, src in source.column_map(table, columns).items())
    if key is not None:
        cols = f"{key} AS {quote(ROW_KEY)}, {cols}"
    return f"SELECT {cols} FROM {quote(source.table_name(table))}"
