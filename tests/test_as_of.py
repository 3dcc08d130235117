"""Evaluation as of a time (DOMAIN.md §5): facts dated after ``now`` had not happened yet.

A visit, patrol or report dated after ``now`` is left out (and counts once its time comes); a
case closed after ``now`` was still open then, at the stage it had reached; only a time past the
wall clock by more than ``future_tolerance`` is a bad row. ``gridwatch once --now T`` therefore
shows what a daemon showed at T, and writes nothing into the daemon's state database.

The city below, as of T = Tuesday 2026-11-10 12:00 (Asia/Shanghai):
- G1: major case M reported 11-08 09:00 (community, 1 day: due 11-09 09:00), accepted; resolved
  11-11 16:00 and closed 11-12 15:00, both after T. At T: open at stage accepted, past its deadline
  by 1 d 3 h (超期) -> red.
- G2: case S reported 10-20 08:00 (due 10-21 08:00), closed 11-11 10:00 after T. At T: past its
  deadline by 20 d 4 h: more than 14 days, 挂牌督办 -> red, "超期 20 天".
- G3: case R reported 10-28 08:00 (subdistrict, 2 days: due 10-30 08:00), resolved 11-10 18:00
  after T. At T: past its deadline by 11 d 4 h: 二次通报 -> yellow. Its last patrol was 11-08
  10:00, so 11-09's working hours passed without one (the one at 11-10 14:00 comes after T).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gridwatch import config
from gridwatch.pipeline.results import Results
from gridwatch.pipeline.runtime import Runtime
from gridwatch.process.daemon import Daemon
from gridwatch.process.once import run_once
from gridwatch.testing import free_port, write_standard_db

TZ = ZoneInfo("Asia/Shanghai")
T = datetime(2026, 11, 10, 12, 0, tzinfo=TZ)
LATER = datetime(2026, 11, 13, 9, 0, tzinfo=TZ)  # "a few days later": every row added is before it

GRIDS = [
    {"grid_id": "G1", "name": "一网格", "community": "幸福社区", "street": "城关街道"},
    {"grid_id": "G2", "name": "二网格", "community": "幸福社区", "street": "城关街道"},
    {"grid_id": "G3", "name": "三网格", "community": "和平社区", "street": "东湖街道"},
]


def incident(iid: str, grid: str, reported: str, **kw: Any) -> dict[str, Any]:
    return {
        "incident_id": iid,
        "grid_id": grid,
        "severity": "normal",
        "tier": "community",
        "reported_at": reported,
        **kw,
    }


def city_then() -> dict[str, list[dict[str, Any]]]:
    """The city's tables as they were at T."""
    return {
        "grids": GRIDS,
        "households": [
            {"household_id": h, "grid_id": g} for h, g in (("H1", "G1"), ("H2", "G1"), ("H3", "G2"), ("H4", "G3"))
        ],
        "visits": [
            {"visit_id": "V1", "household_id": "H1", "grid_id": "G1", "visited_at": "2026-11-01 10:00:00"},
            {"visit_id": "V2", "household_id": "H2", "grid_id": "G1", "visited_at": "2026-11-02 10:00:00"},
            {"visit_id": "V3", "household_id": "H3", "grid_id": "G2", "visited_at": "2026-11-02 11:00:00"},
            {"visit_id": "V4", "household_id": "H4", "grid_id": "G3", "visited_at": "2026-11-03 09:00:00"},
        ],
        "patrols": [
            {"patrol_id": "P1", "grid_id": "G1", "patrolled_at": "2026-11-09 10:00:00"},
            {"patrol_id": "P2", "grid_id": "G2", "patrolled_at": "2026-11-10 08:00:00"},
            {"patrol_id": "P3", "grid_id": "G3", "patrolled_at": "2026-11-08 10:00:00"},
        ],
        "reports": [
            {
                "report_id": "D1",
                "grid_id": "G1",
                "kind": "daily",
                "period": "2026-11-10",
                "submitted_at": "2026-11-10 09:00:00",
            },
        ],
        "incidents": [
            incident("M", "G1", "2026-11-08 09:00:00", severity="major", accepted_at="2026-11-08 10:00:00"),
            incident(
                "S", "G2", "2026-10-20 08:00:00", accepted_at="2026-10-20 09:00:00", dispatched_at="2026-10-21 09:00:00"
            ),
            incident("R", "G3", "2026-10-28 08:00:00", tier="subdistrict"),
            incident("C", "G3", "2026-11-05 08:00:00", closed_at="2026-11-05 18:00:00"),
        ],
    }


def days_later(db: Path) -> None:
    """What happened after T, written in as a platform writes it: rows added, cases moved on."""
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "UPDATE incidents SET resolved_at = ?, closed_at = ? WHERE incident_id = ?",
            [
                ("2026-11-11 16:00:00", "2026-11-12 15:00:00", "M"),
                (None, "2026-11-11 10:00:00", "S"),
                ("2026-11-10 18:00:00", None, "R"),
            ],
        )
        conn.execute(
            "INSERT INTO incidents (incident_id, grid_id, severity, tier, reported_at) "
            "VALUES ('N', 'G2', 'major', 'community', '2026-11-10 14:00:00')"
        )
        conn.execute("INSERT INTO visits VALUES ('V5', 'H2', 'G1', 'W1', '2026-11-10 15:00:00')")
        conn.execute(
            "INSERT INTO patrols (patrol_id, grid_id, patrolled_at) VALUES ('P4', 'G3', '2026-11-10 14:00:00')"
        )
        conn.executemany(
            "INSERT INTO reports (report_id, grid_id, kind, period, submitted_at, flag) "
            "VALUES (?, ?, 'daily', ?, ?, ?)",
            [
                ("D2", "G2", "2026-11-10", "2026-11-10 19:00:00", None),
                ("D3", "G3", "2026-11-10", "2026-11-10 13:00:00", "petition"),
                ("D4", "G1", "2026-11-11", "2026-11-11 09:00:00", None),
            ],
        )
    conn.close()


def write_config(d: Path, port: int | None = None) -> Path:
    checks = "".join(
        f'[[checks]]\nname = "{c}"\ntype = "{c}"\nsource = "city"\ninterval = "1s"\ntimeout = "30s"\n'
        for c in ("visits", "patrols", "incidents", "reports")
    )
    path = d / "gridwatch.toml"
    path.write_text(
        f'timezone = "Asia/Shanghai"\n[server]\nlisten = "127.0.0.1:{port or free_port()}"\n'
        '[state]\npath = "state/gridwatch-state.db"\n[grids]\nsource = "city"\n'
        '[sources.city]\ntype = "sqlite"\npath = "city.db"\n' + checks,
        encoding="utf-8",
    )
    return path


def series(report: dict[str, Any]) -> dict[tuple[Any, ...], float]:
    return {(s["check"], s["metric"], *sorted(s["labels"].items())): s["value"] for s in report["samples"]}


def assert_same_series(got: dict[str, Any], shown: dict[str, Any]) -> None:
    """The same series with the same values; ages in seconds within a second or two, for a daemon
    evaluates a run as of the moment it is due, a fraction of a second after its clock's reading."""
    a, b = series(got), series(shown)
    assert a.keys() == b.keys()
    for key, value in a.items():
        if key[1].endswith("_seconds"):
            assert value == pytest.approx(b[key], abs=2), key
        else:
            assert value == b[key], key


def light_of(grids: list[dict[str, Any]], grid: str) -> tuple[str, list[str]]:
    (g,) = [g for g in grids if g["grid"] == grid]
    return g["light"], g["reasons"]


def once(cfg: Path, now: datetime, clock: datetime) -> dict[str, Any]:
    settings, host = config.load(cfg)
    return asyncio.run(run_once(settings, host, now, None, clock=clock.timestamp))


def state_files(cfg: Path) -> dict[str, bytes]:
    state = cfg.parent / "state"
    return {p.name: p.read_bytes() for p in sorted(state.iterdir())} if state.exists() else {}


async def daemon_at(cfg: Path, at: datetime) -> dict[str, Any]:
    """A daemon whose clock reads ``at``: its samples and lights once every check has run and the
    rules have been evaluated on them (in the shape ``gridwatch once --json`` prints)."""
    daemon = Daemon(cfg, *config.load(cfg), clock=lambda: at)
    await daemon.start()
    try:
        for _ in range(600):  # every check has run, and an evaluation has lit the firing alerts
            view = daemon.view
            if view is not None and not view.not_ready() and view.alerting.engine.lit:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the daemon did not settle: waiting for {daemon.view and daemon.view.not_ready()}")
        lights = await daemon.pages.lights.get()
        samples = [
            {"check": name, "metric": s.metric, "labels": dict(s.labels), "value": s.value}
            for name, st in daemon.results.checks.items()
            for s in st.samples
        ]
        return {
            "samples": samples,
            "grids": [gl.as_dict() for gl in lights.all],
            "rejected": dict(daemon.results.rejected),
        }
    finally:
        await daemon.stop()


@pytest.fixture
def city(tmp_path: Path) -> Iterator[Path]:
    write_standard_db(tmp_path / "city.db", city_then())
    yield write_config(tmp_path)


def test_once_now_shows_what_the_daemon_showed_then_and_leaves_its_state_alone(city: Path) -> None:
    shown = asyncio.run(daemon_at(city, T))
    # worked by hand (see the module docstring): G1 red for its open major case, G2 red for a
    # supervised case 20 whole days overdue, G3 yellow for a case reported again
    assert light_of(shown["grids"], "G1")[0] == "red"
    assert "重大案件未结 1 件" in light_of(shown["grids"], "G1")[1]
    assert light_of(shown["grids"], "G2")[0] == "red"
    assert "挂牌督办案件 1 件，超期 20 天" in light_of(shown["grids"], "G2")[1]
    assert light_of(shown["grids"], "G3")[0] == "yellow"
    assert {"二次通报案件 1 件", "巡查超时未完成"} <= set(light_of(shown["grids"], "G3")[1])
    assert not shown["rejected"]
    before = state_files(city)
    assert before, "the daemon keeps a state database"

    days_later(city.parent / "city.db")
    replay = once(city, T, clock=LATER)
    assert not replay["errors"]
    assert_same_series(replay, shown)
    assert replay["grids"] == shown["grids"]
    # the replay wrote nothing where the daemon keeps its state
    assert state_files(city) == before

    # and as of LATER the same city has moved on: M and S closed, N (reported 11-10 14:00) open
    now = once(city, LATER, clock=LATER)
    assert "重大案件未结 1 件" not in light_of(now["grids"], "G1")[1]
    assert "重大案件未结 1 件" in light_of(now["grids"], "G2")[1]
    assert not any("挂牌督办" in r for r in light_of(now["grids"], "G2")[1])


def test_gridwatch_once_now_replays_a_past_day(city: Path) -> None:
    """The reproduced defect: replayed as of 11-10, the major case closed on 11-12 was open, and
    the grid red; the row was rejected as future_timestamp and the grid shown green."""
    days_later(city.parent / "city.db")
    out = subprocess.run(
        [sys.executable, "-m", "gridwatch", "once", "-c", str(city), "--json", "--now", "2026-11-10T12:00:00"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=city.parent,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert "future_timestamp" not in out.stderr
    light, reasons = light_of(report["grids"], "G1")
    assert light == "red" and "重大案件未结 1 件" in reasons
    opened = {
        (s["labels"]["grid"], s["labels"]["severity"], s["labels"]["stage"]): s["value"]
        for s in report["samples"]
        if s["metric"] == "gridwatch_incidents_open"
    }
    # M at the stage it had on 11-10 (accepted), S still open (dispatched), R not yet resolved;
    # N (reported 11-10 14:00) not yet there
    assert opened == {
        ("G1", "major", "accepted"): 1,
        ("G2", "normal", "dispatched"): 1,
        ("G3", "normal", "reported"): 1,
    }
    assert not (city.parent / "state").exists()  # nothing written where a daemon keeps its state


def run_kept(runtime: Runtime, results: Results, at: datetime) -> dict[str, dict[tuple[Any, ...], float]]:
    async def go() -> dict[str, dict[tuple[Any, ...], float]]:
        out = {}
        for name, runner in runtime.runners.items():
            outcome = await runtime.run(runner, at, results)
            assert outcome.outcome == "success", outcome.error
            out[name] = {(s.metric, *sorted(s.labels.items())): s.value for s in outcome.samples}
        return out

    return asyncio.run(go())


def test_what_was_left_out_counts_once_its_time_has_come_in_a_daemon(city: Path) -> None:
    """One runtime kept between runs, as the daemon keeps it, its clock reading each run's time:
    a row a few minutes ahead of the clock (clocks disagree a little) is left out, not rejected,
    and counts at the first run after its time, with no edit to any row."""
    with sqlite3.connect(city.parent / "city.db") as conn:
        conn.execute(
            "INSERT INTO patrols (patrol_id, grid_id, patrolled_at) VALUES ('P5', 'G3', '2026-11-10 12:03:00')"
        )
        conn.execute("UPDATE incidents SET closed_at = '2026-11-10 12:02:00' WHERE incident_id = 'S'")
        conn.execute(
            "INSERT INTO incidents (incident_id, grid_id, severity, tier, reported_at) "
            "VALUES ('N', 'G2', 'major', 'community', '2026-11-10 12:01:00')"
        )
    conn.close()
    settings, host = config.load(city)
    clock = [T]
    runtime = Runtime(settings, host, clock=lambda: clock[0].timestamp())
    results = Results()
    results.replace(*runtime.states())
    n_open = ("gridwatch_incidents_open", ("grid", "G2"), ("severity", "major"), ("stage", "reported"))
    supervised = ("gridwatch_incidents_escalated", ("grid", "G2"), ("level", "supervised"))
    try:
        at_t = run_kept(runtime, results, T)
        assert not results.rejected  # ahead of now, but not of the clock by more than 5 minutes
        # 12:00: the patrol at 12:03 and N reported at 12:01 are still to come, S closes at 12:02
        assert at_t["patrols"][("gridwatch_patrol_overdue", ("grid", "G3"))] == 1
        assert at_t["incidents"][supervised] == 1
        assert n_open not in at_t["incidents"]

        clock[0] = T + timedelta(minutes=4)  # 12:04: all three have happened
        at_4 = run_kept(runtime, results, clock[0])
        assert not results.rejected
        assert at_4["patrols"][("gridwatch_patrol_overdue", ("grid", "G3"))] == 0
        assert at_4["incidents"][supervised] == 0
        assert at_4["incidents"][n_open] == 1
        # exactly what a full recomputation at that instant gives
        fresh = Runtime(settings, host, clock=lambda: clock[0].timestamp())
        try:
            assert at_4 == run_kept(fresh, Results(), clock[0])
        finally:
            fresh.close()
    finally:
        runtime.close()


@pytest.mark.parametrize(
    ("at", "rejected"),
    [
        # the clock reads now (12:00)
        ("2026-11-10 12:01:00", {}),  # 1 min ahead: inside the 5-minute tolerance, left out
        ("2026-11-10 12:05:00", {}),  # exactly 5 min ahead: still inside
        ("2026-11-10 12:05:01", {("data", "future_timestamp"): 1}),  # beyond it: a bad row
        ("2026-11-10 13:00:00", {("data", "future_timestamp"): 1}),  # 1 h ahead: a bad row
    ],
)
def test_a_patrol_ahead_of_the_clock(gridwatch_check, at: str, rejected: dict) -> None:
    rows = [
        {"patrol_id": "P1", "grid_id": "G1", "patrolled_at": "2026-11-09 10:00:00"},
        {"patrol_id": "P2", "grid_id": "G1", "patrolled_at": at},
    ]
    r = gridwatch_check("patrols", {"grids": GRIDS[:1], "patrols": rows}, now="2026-11-10 12:00:00")
    assert r.rejected == rejected
    # P2 is left out either way: the last patrol is P1's 11-09 10:00, which covers 11-09's hours
    r.assert_value(
        "gridwatch_patrol_last_timestamp_seconds", datetime(2026, 11, 9, 10, tzinfo=TZ).timestamp(), grid="G1"
    )
    r.assert_value("gridwatch_patrol_overdue", 0, grid="G1")


def test_a_patrol_after_now_but_before_the_clock_is_left_out_of_a_replay(gridwatch_check) -> None:
    # replayed as of 11-10 12:00 with the clock at 11-13: the 11-10 14:00 patrol had not happened
    rows = [
        {"patrol_id": "P1", "grid_id": "G1", "patrolled_at": "2026-11-08 10:00:00"},
        {"patrol_id": "P2", "grid_id": "G1", "patrolled_at": "2026-11-10 14:00:00"},
    ]
    r = gridwatch_check("patrols", {"grids": GRIDS[:1], "patrols": rows}, now="2026-11-10 12:00", clock=LATER)
    assert not r.rejected
    # 11-09's hours passed without a patrol: overdue, as it was then
    r.assert_value("gridwatch_patrol_overdue", 1, grid="G1")


def test_a_negative_tolerance_is_a_config_error(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    cfg.write_text('future_tolerance = "-5m"\n' + cfg.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(config.ConfigErrors, match="future_tolerance"):
        config.load(cfg)
