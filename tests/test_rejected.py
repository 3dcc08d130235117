"""A check whose rows are mostly bad has failed, not succeeded (DOMAIN.md §5).

More than half of the rows a run read rejected is a check error naming the top reason and
column and what to set: it shows in ``/api/v1/status`` (and so on the board's banner), in
``gridwatch once``'s exit code, and as the default ``CheckRowsRejected`` alert.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gridwatch.config import load, problems
from gridwatch.pipeline.results import Results, shape
from gridwatch.pipeline.runtime import assemble
from gridwatch.store import Store
from gridwatch.testing import run_check, wait_for, write_standard_db

NOW = "2026-11-20T21:00:00+08:00"
GRIDS = [{"grid_id": g, "name": f"网格{g}", "community": "和平社区", "street": "东街街道"} for g in ("G1", "G2", "G3")]


def incident(n: int, severity: str) -> dict[str, Any]:
    return {
        "incident_id": f"S{n}",
        "grid_id": GRIDS[n % 3]["grid_id"],
        "category": "环境卫生",
        "severity": severity,
        "tier": "community",
        "reported_at": "2026-11-20 08:00:00",
        "reopened_count": 0,
        "extended": 0,
    }


# the platform writes 一般事件, the mapping knows 一般: 11 of the 12 cases are bad rows
INCIDENTS = [incident(n, "一般事件") for n in range(11)] + [incident(11, "一般")]
CODES = 'codes = { incidents = { severity = { "一般" = "normal", "重大" = "major" } } }'
# 11 incidents rejected of 12 incidents and the 3 grids the registry read in the same run
MOSTLY_BAD = (
    "11 of 15 rows rejected (73%), most for unmapped_code in severity (severity='一般事件' has no mapping"
    " in codes): map the platform's codes with sources.data.codes.incidents.severity"
)


def config(extra: str = "", check: str = "") -> str:
    return (
        f'{extra}\n[state]\npath = "state.db"\n[grids]\nsource = "data"\n'
        f'[sources.data]\ntype = "sqlite"\npath = "data.db"\n{CODES}\n'
        f'[[checks]]\nname = "incidents"\ntype = "incidents"\nsource = "data"\ninterval = "1s"\n{check}'
    )


def once(directory: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    (directory / "gridwatch.toml").write_text(text, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "gridwatch", "once", "-c", "gridwatch.toml", "--json", "--now", NOW, *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_run_that_rejects_most_of_its_rows_fails_gridwatch_once(tmp_path):
    write_standard_db(tmp_path / "data.db", {"grids": GRIDS, "incidents": INCIDENTS})
    out = once(tmp_path, config())
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["errors"] == [{"check": "incidents", "error": MOSTLY_BAD}]
    assert [s for s in report["samples"] if s["check"] == "incidents"] == []  # the failed run's figures are dropped
    [alert] = [a for a in report["alerts"] if a["alert"] == "CheckRowsRejected"]
    assert alert["labels"] == {"alertname": "CheckRowsRejected", "check": "incidents"}
    assert (alert["severity"], alert["state"], alert["value"]) == ("warning", "firing", 11 / 15)
    assert alert["summary"] == "检查 incidents 读到的数据 73% 被拒收"
    # and the log names the code to map: a code column's value is shown, not its shape
    assert "first example: severity='一般事件' has no mapping in codes" in out.stderr

    # mapped, the same rows are read and the run succeeds
    fixed = config().replace('"一般" = "normal"', '"一般" = "normal", "一般事件" = "normal"')
    out = once(tmp_path, fixed)
    assert out.returncode == 0, out.stdout
    report = json.loads(out.stdout)
    assert report["errors"] == [] and [a for a in report["alerts"] if a["alert"] == "CheckRowsRejected"] == []
    assert any(s["metric"] == "gridwatch_incidents_open" for s in report["samples"])


def test_the_check_has_failed_in_the_status_api_of_a_running_daemon(gridwatch_daemon):
    daemon = gridwatch_daemon(config(), tables={"grids": GRIDS, "incidents": INCIDENTS})
    [check] = daemon.json("/api/v1/status")["checks"]
    # what the board's banner shows of a failed check (board.js: checkFailed, from this status)
    assert check["name"] == "incidents" and check["ok"] is False
    # the daemon read the registry before the first run: a run may not have read the grids itself
    assert check["error"] in (
        MOSTLY_BAD,
        MOSTLY_BAD.replace("11 of 15 rows rejected (73%)", "11 of 12 rows rejected (91%)"),
    )
    assert daemon.metric("gridwatch_check_runs_total", check="incidents", outcome="success") == 0
    assert daemon.metric("gridwatch_check_rejected_ratio", check="incidents") in (11 / 15, 11 / 12)
    assert daemon.metric("gridwatch_incidents_open", grid="G1", severity="normal", stage="reported") is None

    def firing() -> list[dict[str, Any]]:
        return [
            a for a in daemon.json("/api/v1/alerts") if a["alert"] == "CheckRowsRejected" and a["state"] == "firing"
        ]

    [alert] = wait_for(firing, 10, "the CheckRowsRejected alert")
    assert alert["labels"] == {"alertname": "CheckRowsRejected", "check": "incidents"}
    assert alert["severity"] == "warning"


# ------------------------------------------------------------------------- where the bound lies

GRID = [{"grid_id": "G1", "name": "一", "community": "c", "street": "s"}]


def patrols(good: int, bad: int) -> list[dict[str, Any]]:
    """``good`` patrols of G1 this morning, and ``bad`` whose time does not parse."""
    return [
        {"patrol_id": f"P{n}", "grid_id": "G1", "worker_id": "W1", "patrolled_at": "2026-11-20 09:00:00"}
        for n in range(good)
    ] + [
        {"patrol_id": f"B{n}", "grid_id": "G1", "worker_id": "W1", "patrolled_at": "2026-11-20 9点"} for n in range(bad)
    ]


def run_patrols(tmp_path: Path, good: int, bad: int, config: str = "", **options: Any) -> Any:
    tmp_path.mkdir()
    return run_check(
        "patrols",
        {"grids": GRID, "patrols": patrols(good, bad)},
        now=NOW,
        tmp_path=tmp_path,
        config=config,
        options=options,
    )


def test_exactly_half_rejected_is_not_an_error_more_than_half_is(tmp_path):
    # rows read: the grid row and the patrols; 2 bad of 1 + 3 is exactly half
    half = run_patrols(tmp_path / "half", 1, 2)
    assert half.rejected == {("data", "bad_timestamp"): 2}
    assert half.error is None
    half.assert_value("gridwatch_patrol_overdue", 0, grid="G1")
    # 3 bad of 1 + 4
    more = run_patrols(tmp_path / "more", 1, 3)
    assert more.error == (
        "3 of 5 rows rejected (60%), most for bad_timestamp in patrolled_at (patrolled_at='9999-99-99 9x'):"
        " declare how the platform writes the time with sources.data.formats.patrols.patrolled_at"
    )
    assert more.samples == []


def test_the_bound_is_set_for_every_check_and_for_one(tmp_path):
    # with the bound at 1 a run never fails for its bad rows: every patrol rejected (3 of 1 + 3)
    assert run_patrols(tmp_path / "off", 0, 3, config="max_rejected_ratio = 1").error is None
    # 1 bad of 1 + 3: 25% is over a bound of 0.2 set for every check
    assert run_patrols(tmp_path / "strict", 2, 1, config="max_rejected_ratio = 0.2").error.startswith(
        "1 of 4 rows rejected (25%)"
    )
    # the check's own bound wins over the top-level one, both ways
    assert run_patrols(tmp_path / "own", 2, 1, config="max_rejected_ratio = 0.2", max_rejected_ratio=0.25).error is None
    assert run_patrols(tmp_path / "tight", 2, 1, max_rejected_ratio=0.2).error.startswith("1 of 4 rows rejected")


def test_the_error_names_what_to_set_for_each_kind_of_bad_row(tmp_path):
    def error(name: str, rows: list[dict[str, Any]], source: str | None = None) -> str:
        (tmp_path / name).mkdir()
        tables = {"grids": GRIDS, "incidents": rows}
        return run_check("incidents", tables, now=NOW, tmp_path=tmp_path / name, source=source).error

    # no mapping: a value that is not standard shows only its shape (it may be a name)
    assert error("uncoded", [incident(n, "一般") for n in range(4)]) == (
        "4 of 7 rows rejected (57%), most for bad_severity in severity (severity='xx'): the values are not the"
        " standard ones: map the platform's codes with sources.data.codes.incidents.severity"
    )
    # grid ids the registry does not know: either side's mapping may be wrong
    assert error("grids", [{**incident(n, "normal"), "grid_id": f"WG{n}"} for n in range(4)]) == (
        "4 of 7 rows rejected (57%), most for unknown_grid in grid_id (grid_id=xx9): the grid ids are not in the"
        " grid registry: check the column's mapping, sources.data.columns.incidents.grid_id"
        " or sources.data.columns.grids.grid_id"
    )
    # epoch milliseconds read as ISO text
    assert error("epoch", [{**incident(n, "normal"), "reported_at": 1795132800000 + n} for n in range(4)]) == (
        "4 of 7 rows rejected (57%), most for bad_timestamp in reported_at (reported_at='9999999999999'): declare"
        " how the platform writes the time with sources.data.formats.incidents.reported_at"
    )


def test_the_bound_is_a_share_between_0_and_1(tmp_path):
    path = tmp_path / "gridwatch.toml"
    path.write_text(
        'max_rejected_ratio = 1.5\n[sources.data]\ntype = "sqlite"\npath = "data.db"\n'
        '[[checks]]\nname = "p"\ntype = "patrols"\nsource = "data"\nmax_rejected_ratio = -0.1\n',
        encoding="utf-8",
    )
    assert list(problems(path)) == [
        f"{path}: max_rejected_ratio: Input should be less than or equal to 1",
        f"{path}: checks[0].max_rejected_ratio: Input should be greater than or equal to 0",
    ]


# ------------------------------------------------------------------------- incremental runs


class Patrols:
    """A patrols check in a runtime kept between runs, as the daemon keeps it, on a SQLite file
    that grows between them."""

    def __init__(self, tmp_path: Path, rows: list[dict[str, Any]]) -> None:
        self.db = write_standard_db(tmp_path / "data.db", {"grids": GRID, "patrols": rows})
        path = tmp_path / "gridwatch.toml"
        path.write_text(
            '[state]\npath = "state.db"\n[grids]\nsource = "data"\n[sources.data]\ntype = "sqlite"\npath = "data.db"\n'
            '[[checks]]\nname = "patrols"\ntype = "patrols"\nsource = "data"\nresync = "1h"\n',
            encoding="utf-8",
        )
        self.settings, self.host = load(path)
        self.store = Store(self.settings.state_path)
        self.store.open()

    def add(self, rows: list[dict[str, Any]]) -> None:
        with sqlite3.connect(self.db) as conn:
            conn.executemany(
                "INSERT INTO patrols (patrol_id, grid_id, worker_id, patrolled_at) VALUES (?, ?, ?, ?)",
                [(r["patrol_id"], r["grid_id"], r["worker_id"], r["patrolled_at"]) for r in rows],
            )
        conn.close()

    async def runs(self, *steps: tuple[str, list[dict[str, Any]]]) -> list[tuple[str | None, float | None]]:
        """Each step: rows appended, then a run as of the time given; (error, share rejected) of each."""
        runtime, results = assemble(self.settings, self.host, self.store, asyncio.get_running_loop())
        out = []
        try:
            for at, rows in steps:
                self.add(rows)
                outcome = await runtime.run(runtime.runners["patrols"], datetime.fromisoformat(at), results)
                out.append((outcome.error, results.checks["patrols"].rejected_ratio))
        finally:
            runtime.close()
            self.store.close()
        return out


def renamed(rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [{**r, "patrol_id": prefix + r["patrol_id"]} for r in rows]


def test_a_few_bad_rows_in_a_small_incremental_run_are_not_a_failure(tmp_path):
    runs = asyncio.run(
        Patrols(tmp_path, patrols(10, 0)).runs(
            ("2026-11-20T10:00:00+08:00", []),  # a full read: the grid and 10 patrols, all good
            # 2 bad of the 3 appended: the run keeps the full read's verdict
            ("2026-11-20T10:01:00+08:00", renamed(patrols(1, 2), "N")),
        )
    )
    assert runs == [(None, 0.0), (None, 0.0)]


def test_a_broken_source_stays_failed_through_small_runs_until_a_full_read_finds_it_mended(tmp_path):
    runs = asyncio.run(
        Patrols(tmp_path, patrols(1, 4)).runs(
            ("2026-11-20T10:00:00+08:00", []),  # the grid and 1 good patrol, 4 bad: 4 of 6
            ("2026-11-20T10:01:00+08:00", renamed(patrols(1, 0), "N")),  # 1 good more: still failed
            # 6 good more, and the resync (1h) reads every patrol again (the grids are still
            # cached): 4 of 12
            ("2026-11-20T11:05:00+08:00", renamed(patrols(6, 0), "M")),
        )
    )
    failed = (
        "4 of 6 rows rejected (66%), most for bad_timestamp in patrolled_at (patrolled_at='9999-99-99 9x'):"
        " declare how the platform writes the time with sources.data.formats.patrols.patrolled_at"
    )
    assert runs == [(failed, 4 / 6), (failed, 4 / 6), (None, 4 / 12)]


def test_a_daemon_keeps_the_full_reads_verdict_run_after_run(gridwatch_daemon):
    """Each incremental run of incidents reads the refused cases again: their counts must not
    pile up in the error (11 of 12, then 22 of 24...)."""
    daemon = gridwatch_daemon(config(), tables={"grids": GRIDS, "incidents": INCIDENTS})
    runs = daemon.metric("gridwatch_check_runs_total", check="incidents", outcome="failure")
    first = daemon.json("/api/v1/status")["checks"][0]["error"]
    wait_for(
        lambda: daemon.metric("gridwatch_check_runs_total", check="incidents", outcome="failure") >= runs + 3,
        15,
        "three more runs",
    )
    assert daemon.json("/api/v1/status")["checks"][0]["error"] == first


# ------------------------------------------------------------------------- the rejected-row log


@pytest.mark.parametrize(
    ("example", "logged"),
    [
        # the value of a code the source's mapping lacks is what the operator must add: shown,
        # its first 20 characters
        ("severity='一般事件' has no mapping in codes", "severity='一般事件' has no mapping in codes"),
        ("category='吸毒人员' has no mapping in codes", "category='吸毒人员' has no mapping in codes"),
        ("zone='红区（重点）' has no mapping in codes", "zone='红区（重点）' has no mapping in codes"),
        ("kind='" + "网格日报" * 6 + "' has no mapping", "kind='" + "网格日报" * 5 + "' has no mapping"),  # 24: 20
        ('tier="it\'s" has no mapping in codes', 'tier="it\'s" has no mapping in codes'),
        ("severity='13812345678' has no mapping", "severity='99999999999' has no mapping"),  # a phone, still
        # an id, a person, a time: only its shape, whatever it holds
        ("household_id='13800138000'", "household_id='99999999999'"),
        ("grid_id=张三13800138000", "grid_id=xx99999999999"),
        ("visited_at='2026/11/20 08:00'", "visited_at='9999/99/99 99:99'"),
        ("worker_id='王五' has no mapping in codes", "worker_id='xx' has no mapping in codes"),
        ("name='东湖一网格' has no mapping in codes", "name='xxxxx' has no mapping in codes"),
        # no value: long numbers and names outside ASCII are masked anyway
        ("household_id 13800138000 not in households", "household_id 99999999999 not in households"),
        ("grid_id is NULL", "grid_id is NULL"),
    ],
)
def test_the_log_shows_an_unmapped_codes_value_and_only_the_shape_of_the_rest(example, logged):
    assert shape(example, unmapped=True) == logged


@pytest.mark.parametrize(
    ("example", "logged"),
    [
        # a code column without a mapping may hold anything typed into it: a name, a phone number
        ("severity='刘洋'", "severity='xx'"),
        ("kind='13987654321'", "kind='99999999999'"),
        ("monthly period='440301198506151238'", "monthly period='999999999999999999'"),
        ("severity='一般事件' has no mapping in codes", "severity='xxxx' has no mapping in codes"),
    ],
)
def test_a_value_that_is_not_an_unmapped_code_shows_only_its_shape(example, logged):
    assert shape(example) == logged


def test_the_rejected_row_log_line(caplog):
    results = Results()
    counts = Counter({("city", "unmapped_code"): 612, ("city", "bad_timestamp"): 3, ("city", "bad_severity"): 1})
    examples = {
        ("city", "unmapped_code"): "severity='一般事件' has no mapping in codes",
        ("city", "bad_timestamp"): "household_id='13800138000'",  # a phone number where an id should be
        ("city", "bad_severity"): "severity='刘洋'",  # a name where a code should be, and no mapping
    }
    with caplog.at_level(logging.WARNING, "gridwatch.pipeline.results"):
        results.count_rejected(counts, examples)
    assert caplog.messages == [
        "source city: rejected 612 row(s) for unmapped_code;"
        " first example: severity='一般事件' has no mapping in codes",
        "source city: rejected 3 row(s) for bad_timestamp; first example: household_id='99999999999'",
        "source city: rejected 1 row(s) for bad_severity; first example: severity='xx'",
    ]
