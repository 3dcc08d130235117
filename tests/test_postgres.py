"""The same city in PostgreSQL, read through the `sql` source, gives exactly the same samples."""

import json
import sqlite3
import subprocess
import sys
from datetime import datetime

import pytest

from gridwatch.schema import INTEGER_COLUMNS
from gridwatch.tools import demo

pytestmark = pytest.mark.component

NOW = "2026-10-13T20:30:00+08:00"  # the National Day cases are inside every window
CHECKS = "".join(
    f'[[checks]]\nname = "{t}"\ntype = "{t}"\nsource = "city"\ntimeout = "60s"\n'
    for t in ("visits", "patrols", "incidents", "reports")
)


def load_into_postgres(sqlite_path, dsn) -> None:
    """Copy every table the demo city writes (the optional ones too), with real TIMESTAMP, DATE and
    INTEGER columns on the PostgreSQL side."""
    import psycopg

    def kind(col: str) -> str:
        if col in INTEGER_COLUMNS:
            return "INTEGER"
        return "TIMESTAMP" if col.endswith("_at") else "DATE" if col == "since" else "TEXT"

    src = sqlite3.connect(sqlite_path)
    with psycopg.connect(dsn) as pg, pg.cursor() as cur:
        for table, cols in demo.SCHEMA.items():
            cur.execute(f"CREATE TABLE {table} ({', '.join(f'{c} {kind(c)}' for c in cols)})")
            rows = src.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    src.close()


def once(directory, name: str, source: str) -> dict:
    cfg = directory / f"{name}.toml"
    cfg.write_text(f'[state]\npath = "{name}-state.db"\n[grids]\nsource = "city"\n{source}\n{CHECKS}', encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "gridwatch", "once", "-c", str(cfg), "--json", "--now", NOW],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_postgresql_gives_exactly_the_samples_sqlite_gives(postgres, tmp_path):
    demo.generate(tmp_path / "city.db", grids=24, days=45, now=datetime.fromisoformat(NOW))
    dsn = postgres.createdb("city")
    load_into_postgres(tmp_path / "city.db", dsn)

    lite = once(tmp_path, "lite", '[sources.city]\ntype = "sqlite"\npath = "city.db"')
    pg = once(tmp_path, "pg", f'[sources.city]\ntype = "sql"\nurl = "{postgres.url_for("city")}"')

    def key(s):
        return s["check"], s["metric"], sorted(s["labels"].items())

    assert len(lite["samples"]) > 24 * 8
    assert sorted(pg["samples"], key=key) == sorted(lite["samples"], key=key)
    assert pg["grids"] == lite["grids"]
    assert pg["errors"] == lite["errors"] == []
