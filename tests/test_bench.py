"""The benchmark's quick mode: every step runs on two tiny cities (the demo's, and the second city
written as another platform writes it) and each table has every figure.

Slow the first time (it installs query-exporter from the package index into bench/.work and
keeps it there); no figure is held to its target here, but every answer must agree.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FIGURES = (
    "Full run: visits (wall / CPU)",
    "Full run: patrols (wall / CPU)",
    "Full run: incidents (wall / CPU)",
    "Full run: reports (wall / CPU)",
    "Full run: all four checks (wall / CPU)",
    "Plain-SQL floor, same figures (wall / CPU)",
    "Full run ÷ floor (wall)",
    "Floor and full run agree (series / mismatches)",
    "Rows read, full run",
    "Rows changed: inserted + updated (0.1 %)",
    "Steady run: visits (wall / CPU)",
    "Steady run: patrols (wall / CPU)",
    "Steady run: incidents (wall / CPU)",
    "Steady run: reports (wall / CPU)",
    "Steady run: all four checks (wall / CPU)",
    "Steady run ÷ full run (wall)",
    "Rows read, steady run",
    "/metrics response (p50 / max)",
    "/metrics size",
    "Event-loop lag during scrapes (gridwatch_event_loop_lag_seconds)",
    "/healthz answer during scrapes (p50 / max)",
    "Peak RSS, in-process full run",
    "Peak RSS, daemon",
    "CPU per cycle: gridwatch steady run / query-exporter",
    "Rows read per cycle: gridwatch steady run / query-exporter",
    "/metrics scrape p50: gridwatch / query-exporter",
    "query-exporter and steady run agree (series / mismatches)",
)


def cells(table: str) -> dict[str, list[str]]:
    """{figure: [value, target, met]} from the Markdown table."""
    out = {}
    for line in table.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if len(parts) == 4 and parts[0] not in ("figure", "") and not set(parts[0]) <= {"-"}:
            out[parts[0]] = parts[1:]
    return out


@pytest.mark.soak
def test_quick_bench_runs_every_step_and_prints_every_figure(tmp_path):
    out = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    written = out.read_text(encoding="utf-8")
    assert written.strip() in proc.stdout  # the tables, printed and written alike
    # one table per city: the demo's, and the second city's (integer ids, times with offsets)
    sections = written.split("## ")[1:]
    assert len(sections) == 2 and "demo city" in sections[0] and "second city" in sections[1]
    for section in sections:
        table = cells(section)
        assert list(table) == list(FIGURES)
        for figure in (
            "Floor and full run agree (series / mismatches)",
            "query-exporter and steady run agree (series / mismatches)",
        ):
            compared, mismatches = (int(x.replace(",", "")) for x in table[figure][0].split(" / "))
            assert compared > 0 and mismatches == 0, (figure, table[figure])
            assert table[figure][2] == "yes"
        for figure in FIGURES:  # every step ran: only rows read may wait for the sources' counter
            value = table[figure][0]
            if "Rows read" not in figure:
                assert "n/a" not in value, (figure, value)
        assert "Python" in section and "SQLite" in section and "cores" in section
