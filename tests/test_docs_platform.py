"""docs/configuration.md, "Your platform's database", run as written: its SQL builds the
platform's database, its TOML blocks (in order, one file) the config, and what it says
``check-config --connect`` prints and ``once`` computes must be what they do."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
NOW = "2026-11-20T21:00:00+08:00"

# worked out by hand (the reasoning is in the doc's table): metric -> (WG01, WG02); None: no sample
EXPECTED: dict[str, tuple[float | None, float | None]] = {
    "gridwatch_grid_households": (3, 2),
    "gridwatch_visit_coverage_ratio": (0.6667, 1),
    "gridwatch_visit_unvisited_households": (1, 0),
    "gridwatch_incidents_open": (1, 1),
    "gridwatch_incidents_overdue": (0, 1),
    "gridwatch_incident_oldest_open_age_seconds": (46800, 198000),
    "gridwatch_incidents_on_time_closure_ratio": (None, 0.5),
    "gridwatch_report_daily_status": (0, 2),
}
LIGHTS = {"WG01": "red", "WG02": "yellow"}


def section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n## Your platform's database\n")
    return text[start : text.index("\n## ", start + 1)]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, re.S | re.M)


def gridwatch(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridwatch", *args], cwd=directory, capture_output=True, text=True, timeout=120
    )


def connect(directory: Path, toml: str) -> subprocess.CompletedProcess[str]:
    (directory / "gridwatch.toml").write_text(toml, encoding="utf-8")
    return gridwatch(directory, "check-config", "--connect", "-c", "gridwatch.toml")


def figures_in_the_doc(text: str) -> dict[str, tuple[float | None, float | None]]:
    """The table of figures: the first number of each cell (a dash: no sample)."""
    out = {}
    for metric, wg01, wg02 in re.findall(r"^\| `(gridwatch_\w+)`[^|]* \| ([^|]+) \| ([^|]+) \|$", text, re.M):

        def number(cell: str) -> float | None:
            m = re.match(r"\s*([0-9.]+)", cell)
            return float(m.group(1)) if m else None

        out[metric] = (number(wg01), number(wg02))
    return out


def test_the_platform_walkthrough_runs_as_written(tmp_path):
    text = section()
    [sql] = blocks(text, "sql")
    tomls = blocks(text, "toml")
    consoles = blocks(text, "console")
    assert len(tomls) == 5 and len(consoles) == 2
    with sqlite3.connect(tmp_path / "platform.db") as conn:
        conn.executescript(sql)
    conn.close()

    # step 1: nothing mapped yet -- exactly the lines the doc shows
    first = connect(tmp_path, tomls[0])
    assert first.returncode == 2
    assert first.stderr.splitlines() == consoles[0].splitlines()[1:]

    # step 2: the tables mapped; the doc quotes one of the problems left
    second = connect(tmp_path, "".join(tomls[:2]))
    assert second.returncode == 2
    [quoted] = re.findall(r"e\.g\.\n?`(column 'grid_id'.*?)`", text, re.S)
    assert " ".join(quoted.split()) in second.stderr
    # every column the checks read (visits: 3 + 4, incidents 11, reports 6) and the registry's 5
    assert len(second.stderr.splitlines()) == 3 + 4 + 11 + 6 + 5

    # step 3: the names are right
    third = connect(tmp_path, "".join(tomls[:3]))
    assert (third.returncode, third.stderr) == (0, "")
    ok, *following = third.stdout.splitlines()
    assert ok == "gridwatch.toml: ok"
    quoted = re.findall(r"`(sources\.platform: visits: .*?)`", text, re.S)
    assert [" ".join(q.split()) for q in quoted] == [f for f in following if " visits: " in f]

    # without step 5 (`codes`) the incidents and reports checks fail, as the doc quotes
    connect(tmp_path, "".join(tomls[:4]))
    uncoded = gridwatch(tmp_path, "once", "-c", "gridwatch.toml", "--json", "--now", NOW)
    assert uncoded.returncode == 1
    [quoted] = re.findall(r"e\.g\.\n?`(3 of 3 rows rejected.*?)`", text, re.S)
    errors = {e["check"]: e["error"] for e in json.loads(uncoded.stdout)["errors"]}
    assert sorted(errors) == ["incidents", "reports"] and errors["incidents"] == " ".join(quoted.split())

    # the whole config, and the figures
    assert connect(tmp_path, "".join(tomls)).returncode == 0
    assert f"--now {NOW}" in consoles[1]
    out = gridwatch(tmp_path, "once", "-c", "gridwatch.toml", "--json", "--now", NOW)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert figures_in_the_doc(text) == {
        m: tuple(None if v is None else float(v) for v in vs) for m, vs in EXPECTED.items()
    }
    assert figures(report["samples"]) == EXPECTED
    assert {g["grid"]: g["light"] for g in report["grids"]} == LIGHTS


def figures(samples: list[dict[str, Any]]) -> dict[str, tuple[float | None, float | None]]:
    """The doc's figures from ``once --json`` samples, rounded as the doc writes them."""
    got: dict[str, dict[str, float]] = {m: {} for m in EXPECTED}
    for s in samples:
        if s["metric"] in got and s["labels"].get("severity", "normal") == "normal":
            assert s["labels"].get("stage", "accepted") == "accepted"
            got[s["metric"]][s["labels"]["grid"]] = round(s["value"], 4)
    return {m: (v.get("WG01"), v.get("WG02")) for m, v in got.items()}
