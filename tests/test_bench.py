"""The benchmark's quick mode: every step runs on two tiny cities (the demo's, and the second city
written as another platform writes it), each on SQLite and on a private PostgreSQL server, and
each city's table has every figure for both.

Slow the first time (it installs query-exporter from the package index into bench/.work and
keeps it there); no figure is held to its target here, but every answer must agree. Without
PostgreSQL's server programs the test fails under CI and is skipped elsewhere.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.components import missing, postgres_missing

ROOT = Path(__file__).resolve().parent.parent

FIGURES = (
    "Full run: visits (wall / CPU)",
    "Full run: patrols (wall / CPU)",
    "Full run: incidents (wall / CPU)",
    "Full run: reports (wall / CPU)",
    "Full run: all four checks (wall / CPU)",
    "Full run: database server CPU",
    "Plain-SQL floor, same figures (wall / database CPU)",
    "Full run ÷ floor (wall)",
    "Floor and full run agree (series / mismatches)",
    "Rows read, full run",
    "Rows changed: inserted + updated (0.1 %)",
    "Steady run: visits (wall / CPU)",
    "Steady run: patrols (wall / CPU)",
    "Steady run: incidents (wall / CPU)",
    "Steady run: reports (wall / CPU)",
    "Steady run: all four checks (wall / CPU)",
    "Steady run: database server CPU",
    "Steady run ÷ full run (wall)",
    "Rows read, steady run",
    "/metrics response (p50 / max)",
    "/metrics size",
    "Event-loop lag during scrapes (gridwatch_event_loop_lag_seconds)",
    "/healthz answer during scrapes (p50 / max)",
    "Peak RSS, in-process full run",
    "Peak RSS, daemon",
    "Restart to /readyz after SIGTERM",
    "Samples before and after the SIGTERM restart agree (series / mismatches)",
    "Restart to /readyz after SIGKILL",
    "Samples before and after the SIGKILL restart agree (series / mismatches)",
    "CPU per cycle, with the database server's: gridwatch steady run / query-exporter",
    "Rows read per cycle: gridwatch steady run / query-exporter",
    "/metrics scrape p50: gridwatch / query-exporter",
    "query-exporter and steady run agree (series / mismatches)",
)


AGREE = (
    "Floor and full run agree (series / mismatches)",
    "Samples before and after the SIGTERM restart agree (series / mismatches)",
    "Samples before and after the SIGKILL restart agree (series / mismatches)",
    "query-exporter and steady run agree (series / mismatches)",
)


def cells(table: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(header, {figure: {column: cell}}) from the Markdown table."""
    lines = [[p.strip() for p in line.strip().strip("|").split("|")] for line in table.splitlines()]
    rows = [parts for parts in lines if len(parts) > 1 and not set(parts[0]) <= {"-"}]
    header = rows[0]
    return header, {r[0]: dict(zip(header, r, strict=True)) for r in rows[1:]}


@pytest.mark.soak
def test_quick_bench_runs_every_step_on_both_cities_and_databases_and_prints_every_figure(tmp_path):
    absent = postgres_missing()
    if absent is not None:
        missing(absent)
    out = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    written = out.read_text(encoding="utf-8")
    assert written.strip() in proc.stdout  # the tables, printed and written alike
    # one table per city: the demo's, and the second city's (integer ids, times with offsets)
    sections = written.split("## ")[1:]
    assert len(sections) == 2 and "demo city" in sections[0] and "second city" in sections[1]
    for section in sections:
        header, table = cells(section)
        assert header == ["figure", "SQLite", "PostgreSQL", "target", "met"]
        assert list(table) == list(FIGURES)
        for db in ("SQLite", "PostgreSQL"):
            for figure in AGREE:
                compared, mismatches = (int(x.replace(",", "")) for x in table[figure][db].split(" / "))
                assert compared > 0 and mismatches == 0, (db, figure, table[figure])
            for figure in FIGURES:  # every step ran: only rows read may wait for the sources' counter
                if "Rows read" not in figure:
                    assert "n/a" not in table[figure][db], (db, figure, table[figure])
        for figure in AGREE:
            assert table[figure]["met"] == "yes"
        # one plan of changes, made in both databases' copies
        assert (
            table["Rows changed: inserted + updated (0.1 %)"]["SQLite"]
            == (table["Rows changed: inserted + updated (0.1 %)"]["PostgreSQL"])
        )
        # the server's CPU is PostgreSQL's alone: SQLite's work is inside the process
        assert table["Steady run: database server CPU"]["SQLite"].startswith("—")
        assert table["Steady run: database server CPU"]["PostgreSQL"][0].isdigit()
        for fact in ("- Python: ", "- SQLite: ", "- PostgreSQL: ", " cores"):
            assert fact in section, fact
