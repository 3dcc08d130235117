"""A restarted daemon goes on from where the checks left off, instead of reading everything again.

A real daemon runs the visits and patrols checks on a small SQLite city; rows are appended while
it runs and while it is down; it is stopped with SIGTERM or killed with SIGKILL and started
again on the same config and state database. Its first run must read only the rows appended
since the checks' saved state (``gridwatch_source_rows_read_total``) and give the figures worked
out by hand below. A saved state that no longer applies — a replaced database file, deleted
rows, a changed check or grid registry, a damaged row — is said in the log and the tables are
read in full, with the same figures.

The city (times relative to the test's start; the coverage window is 30 days):

- G1: H1 (visited 2 days ago), H2 (never, until "B" visits it 1 hour ago);
- G2: H3 (visited 40 days ago: outside the window), H4 (never, until "A" visits it 1 day ago);
- G3: H5, an elderly person living alone, visited 10 days ago (within the 30-day interval).

Before any append: coverage G1 1/2, G2 0/2, G3 1/1. With "A" (one visit, one patrol of G2):
G2 1/2. With "B" too (one visit, one patrol of G3): G1 2/2.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import signal
import sqlite3
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gridwatch import config
from gridwatch.pipeline.checkpoint import CHUNK, EVERY, decode, encode
from gridwatch.pipeline.runtime import Runtime
from gridwatch.store import Store
from gridwatch.testing import DaemonProcess, free_port, wait_for
from tests.faults import kill
from tests.test_incremental import CHECKS, START, City, _config, _lights, _samples

DAY = 86400.0
T0 = time.time()
HOUSEHOLDS = [
    ("H1", "G1", None),
    ("H2", "G1", None),
    ("H3", "G2", None),
    ("H4", "G2", None),
    ("H5", "G3", "elderly_alone"),
]
VISITS = [("V1", "H1", "G1", T0 - 2 * DAY), ("V2", "H3", "G2", T0 - 40 * DAY), ("V3", "H5", "G3", T0 - 10 * DAY)]
PATROLS = [("P1", "G1", T0 - 3 * 3600)]
A = {"visits": [("V4", "H4", "G2", T0 - DAY)], "patrols": [("P2", "G2", T0 - 2 * 3600)]}
B = {"visits": [("V5", "H2", "G1", T0 - 3600)], "patrols": [("P3", "G3", T0 - 1800)]}


def stamp(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def write_city(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE grids (grid_id TEXT PRIMARY KEY, name TEXT, community TEXT, street TEXT, zone TEXT)")
        db.executemany("INSERT INTO grids VALUES (?, ?, 'C', 'S', NULL)", [(g, g) for g in ("G1", "G2", "G3")])
        db.execute("CREATE TABLE households (household_id TEXT PRIMARY KEY, grid_id TEXT, category TEXT)")
        db.executemany("INSERT INTO households VALUES (?, ?, ?)", HOUSEHOLDS)
        db.execute("CREATE TABLE visits (visit_id TEXT PRIMARY KEY, household_id TEXT, grid_id TEXT, visited_at TEXT)")
        db.execute("CREATE TABLE patrols (patrol_id TEXT PRIMARY KEY, grid_id TEXT, patrolled_at TEXT)")
    append(path, {"visits": VISITS, "patrols": PATROLS})
    db.close()


def append(path: Path, rows: dict[str, list[tuple[str, ...]]]) -> None:
    with sqlite3.connect(path) as db:
        for row in rows.get("visits", []):
            db.execute("INSERT INTO visits VALUES (?, ?, ?, ?)", [*row[:3], stamp(row[3])])
        for row in rows.get("patrols", []):
            db.execute("INSERT INTO patrols VALUES (?, ?, ?)", [*row[:2], stamp(row[2])])
    db.close()


def write_config(tmp_path: Path, port: int, window: str = "30d") -> Path:
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        'timezone = "UTC"\n'
        f'[server]\nlisten = "127.0.0.1:{port}"\n'
        '[state]\npath = "state.db"\n'
        '[grids]\nsource = "city"\n'
        '[sources.city]\ntype = "sqlite"\npath = "city.db"\n'
        f'[[checks]]\nname = "visits"\ntype = "visits"\nsource = "city"\ninterval = "1s"\nwindow = "{window}"\n'
        '[[checks]]\nname = "patrols"\ntype = "patrols"\nsource = "city"\ninterval = "1s"\n',
        encoding="utf-8",
    )
    return cfg


def runs(d: DaemonProcess, check: str) -> float:
    return d.metric("gridwatch_check_runs_total", check=check, outcome="success") or 0


def read(d: DaemonProcess, table: str) -> float:
    return d.metric("gridwatch_source_rows_read_total", source="city", table=table) or 0


def ready(d: DaemonProcess) -> DaemonProcess:
    wait_for(lambda: d.get("/readyz")[0] == 200, 20, f"/readyz\n{d.log()}")
    return d


def coverage(d: DaemonProcess) -> dict[str, float | None]:
    return {g: d.metric("gridwatch_visit_coverage_ratio", grid=g) for g in ("G1", "G2", "G3")}


def last_patrols(d: DaemonProcess) -> dict[str, float | None]:
    return {g: d.metric("gridwatch_patrol_last_timestamp_seconds", grid=g) for g in ("G1", "G2", "G3")}


def whole(t: float) -> float:
    return float(int(t))  # the city's times are written to the second


@pytest.fixture
def city(tmp_path: Path) -> Path:
    write_city(tmp_path / "city.db")
    return tmp_path / "city.db"


def first_life(tmp_path: Path, city: Path, port: int) -> DaemonProcess:
    """A daemon that read the city in full, then "A" incrementally; left running."""
    d = ready(DaemonProcess(write_config(tmp_path, port), port).start())
    assert read(d, "visits") == 3 and read(d, "households") == 5
    before = runs(d, "visits")
    append(city, A)
    wait_for(lambda: runs(d, "visits") >= before + 2 and read(d, "visits") == 4, 15, f"A read\n{d.log()}")
    assert coverage(d) == {"G1": 0.5, "G2": 0.5, "G3": 1.0}
    assert read(d, "households") == 5  # nothing appended there: the steady run read nothing
    return d


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_restart_reads_only_what_was_appended(tmp_path: Path, city: Path, how: str) -> None:
    port = free_port()
    d1 = first_life(tmp_path, city, port)
    try:
        if how == "SIGTERM":
            assert d1.stop(signal.SIGTERM) == 0
        else:
            kill(d1)
    finally:
        d1.__exit__()
    append(city, B)
    with DaemonProcess(tmp_path / "gridwatch.toml", port) as d2:
        ready(d2)
        # after SIGTERM the state saved at the stop holds "A": only "B" is read; after SIGKILL the
        # last checkpoint is the first run's (one a check's first run, then at most every 5 min):
        # "A" and "B" are read
        assert read(d2, "visits") == (1 if how == "SIGTERM" else 2)
        assert read(d2, "patrols") == (1 if how == "SIGTERM" else 2)
        assert read(d2, "households") == 0
        assert coverage(d2) == {"G1": 1.0, "G2": 0.5, "G3": 1.0}
        assert d2.metric("gridwatch_visit_key_households_overdue", grid="G3", category="elderly_alone") == 0
        assert last_patrols(d2) == {"G1": whole(T0 - 3 * 3600), "G2": whole(T0 - 2 * 3600), "G3": whole(T0 - 1800)}
        log = d2.log()
        assert "going on from its saved state" in log
        assert "tables are read in full" not in log and "Traceback" not in log


def test_a_reload_goes_on_from_the_checks_state(tmp_path: Path, city: Path) -> None:
    """SIGHUP builds new checks: they take the old ones' state, and read only what is appended."""
    port = free_port()
    with DaemonProcess(write_config(tmp_path, port), port) as d:
        ready(d)
        d.send(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in d.log(), 15, f"the reload\n{d.log()}")
        append(city, A)
        # the new runtime's sources count from zero: its runs read "A", and nothing else
        wait_for(lambda: read(d, "visits") == 1, 15, f"A read after the reload\n{d.log()}")
        wait_for(lambda: read(d, "patrols") == 1, 15, f"A read after the reload\n{d.log()}")
        assert read(d, "households") == 0
        assert coverage(d) == {"G1": 0.5, "G2": 0.5, "G3": 1.0}
        assert "going on from its saved state" in d.log()
        assert "tables are read in full" not in d.log()


def spoil_file(tmp_path: Path, city: Path) -> None:
    """Another file with the same rows (a restored backup): its cursors mean nothing."""
    copy = tmp_path / "copy.db"
    shutil.copy(city, copy)
    city.unlink()
    copy.rename(city)


def spoil_rows(tmp_path: Path, city: Path) -> None:
    """A visit deleted, and the same number appended: only a count of the rows up to the cursor tells."""
    with sqlite3.connect(city) as db:
        db.execute("DELETE FROM visits WHERE visit_id = 'V2'")  # (H3's, outside the window anyway)
        db.execute("INSERT INTO visits VALUES ('V9', 'H3', 'G2', ?)", [stamp(T0 - 41 * DAY)])
    db.close()


def spoil_config(tmp_path: Path, city: Path) -> None:
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace('window = "30d"', 'window = "31d"'), encoding="utf-8")


def spoil_registry(tmp_path: Path, city: Path) -> None:
    with sqlite3.connect(city) as db:
        db.execute("INSERT INTO grids VALUES ('G4', 'G4', 'C', 'S', NULL)")
    db.close()


def spoil_checkpoint(tmp_path: Path, city: Path) -> None:
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE gridwatch_checkpoints SET body = substr(body, 1, length(body) / 2)")
        assert db.total_changes == 2
    db.close()


def spoil_header(tmp_path: Path, city: Path) -> None:
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE gridwatch_checkpoints SET header = '{not json'")
    db.close()


@pytest.mark.parametrize(
    ("spoil", "said"),
    [
        (spoil_file, "the source's database was replaced since"),
        (spoil_rows, "the saved position no longer applies (city.db: rows of visits were deleted)"),
        (spoil_config, "the check's configuration changed since"),
        (spoil_registry, "the grid registry changed since"),
        (spoil_checkpoint, "its saved state is not used: it is damaged"),
        (spoil_header, "its saved state is not used: it is damaged"),
    ],
)
def test_a_saved_state_that_no_longer_applies_is_read_in_full(tmp_path: Path, city: Path, spoil, said) -> None:
    port = free_port()
    d1 = first_life(tmp_path, city, port)
    try:
        assert d1.stop(signal.SIGTERM) == 0
    finally:
        d1.__exit__()
    spoil(tmp_path, city)
    append(city, B)
    with DaemonProcess(tmp_path / "gridwatch.toml", port) as d2:
        ready(d2)
        assert read(d2, "visits") == 5 and read(d2, "households") == 5  # everything, once
        log = d2.log()
        assert said in log and "tables are read in full" in log, log
        assert "Traceback" not in log
        # the same figures as a daemon that never stopped (a 31-day window changes none of them;
        # G4 has no household: 0, no coverage)
        assert coverage(d2) == {"G1": 1.0, "G2": 0.5, "G3": 1.0}
        assert last_patrols(d2) == {"G1": whole(T0 - 3 * 3600), "G2": whole(T0 - 2 * 3600), "G3": whole(T0 - 1800)}


@pytest.mark.parametrize("seed", range(6))
def test_runs_after_restarts_equal_full_recomputation(tmp_path: Path, seed: int, caplog) -> None:
    """tests/test_incremental.py's property, with restarts between steps: the kept runtime is
    closed and a new one goes on from the saved state — saved at a stop (SIGTERM), or only as
    the runs left it (SIGKILL: the latest checkpoint may be several steps old, or saved after
    every run) — and its samples must equal a full recomputation at every step."""
    rnd = random.Random(seed)
    city = City(f"sqlite:///{tmp_path / 'city.db'}", rnd, unique_ids=seed % 2 == 0, optional=seed % 3 != 2)
    settings, host = config.load(_config(tmp_path, "kept", resync="3650d"))
    now = START
    steps = [0]  # the checkpoints' clock: a step is past the minimum time between checkpoints
    restored: list[int] = []  # checks restored at each start

    def start() -> Runtime:
        runtime = Runtime(settings, host, clock=lambda: now.timestamp())
        runtime.state = Store(settings.state_path)
        runtime.state.open()
        restored.append(runtime.resume())
        assert runtime.checkpoints is not None
        if rnd.random() < 0.5:
            runtime.checkpoints.clock = lambda: steps[0] * EVERY
        return runtime

    def stop(runtime: Runtime) -> None:
        runtime.close()
        assert runtime.state is not None
        runtime.state.close()

    city.grow(now, timedelta(days=20))
    kept = start()
    restarts = 0
    try:
        for step in range(10):
            full_settings, _ = config.load(_config(tmp_path, f"full{step}", resync="0s"), host)
            full = Runtime(full_settings, host, clock=lambda at=now: at.timestamp())
            full.state = full_state = Store(full_settings.state_path)
            full_state.open()
            try:
                expected = _samples(full, now)
                expected_lights = _lights(full_settings.state_path)
            finally:
                full.close()
                full_state.close()
            got = _samples(kept, now)
            for name in CHECKS:
                assert got[name] == expected[name], f"seed {seed}, step {step}, check {name}"
            lights = _lights(settings.state_path)  # the daily lights kept for the assessment
            assert {k: lights.get(k) for k in expected_lights} == expected_lights, f"seed {seed}, step {step}"
            steps[0] += 1
            if rnd.random() < 0.5:  # a restart before the next step
                if rnd.random() < 0.5:
                    kept.save_state()  # SIGTERM
                stop(kept)
                kept = start()
                restarts += 1
            gap = timedelta(minutes=rnd.choice([1, 7, 45, 180, 600, 1500]))
            now += gap
            city.grow(now, gap + timedelta(hours=2))
            city.move_incidents(now)
    finally:
        stop(kept)
    assert not [
        r.message for r in caplog.records if r.name == "gridwatch.pipeline.checkpoint" and "cannot" in r.message
    ]
    assert restarts and restored[0] == 0 and all(n == len(CHECKS) for n in restored[1:]), restored


def test_a_restored_check_reads_only_what_was_appended(tmp_path: Path) -> None:
    """Without a daemon: after a stop, the new runtime's first run reads the rows appended since."""
    rnd = random.Random(3)
    city = City(f"sqlite:///{tmp_path / 'city.db'}", rnd, unique_ids=True)
    city.grow(START, timedelta(days=20))
    settings, host = config.load(_config(tmp_path, "kept", resync="3650d"))
    first = Runtime(settings, host)
    first.state = store = Store(settings.state_path)
    store.open()
    try:
        first.resume()
        _samples(first, START)
        first.save_state()
        first.close()
        counts = {t: city.count(t) for t in ("visits", "patrols", "reports")}
        city.grow(START + timedelta(minutes=5), timedelta(minutes=5))
        second = Runtime(settings, host)
        second.state = store
        assert second.resume() == len(CHECKS)
        try:
            _samples(second, START + timedelta(minutes=5))
            source = second.sources["db"]
            for table in ("visits", "patrols", "reports"):
                appended = city.count(table) - counts[table]
                assert source.rows_read[table] == appended, table
            assert source.rows_read["households"] < 50  # those appended, not the city's
        finally:
            second.close()
    finally:
        store.close()


def test_a_checkpoint_holds_plain_data_only(tmp_path: Path) -> None:
    """The codec gives back what it was given — big dicts and sets in pieces, times with their
    zone — and refuses anything that would run code when read, without running it."""
    tz = ZoneInfo("Asia/Shanghai")
    state = {
        "households": {f"H{i}": ("G1", None, float(i)) for i in range(CHUNK * 2 + 7)},
        "seen": set(range(CHUNK + 1)),
        "later": [{"visited_at": datetime(2026, 11, 21, 9, 30, tzinfo=tz), "n": Decimal("1.5")}],
        "cursor": [[1, 2, 3], 40, 41],
        "grids": frozenset({"G1", "G2"}),
        "tracker": {"feeds": [{"seen": frozenset(range(CHUNK + 3)), "cursor": None}, {"seen": set()}], "n": 1},
    }
    body = encode(state)
    back = decode(body)
    assert back == state
    assert type(back["tracker"]["feeds"][0]["seen"]) is frozenset
    assert len(pickle.loads(body)[1]["tracker"][1]["feeds"][1][0][1]["seen"][2]) == 2  # in pieces
    assert back["later"][0]["visited_at"].tzinfo is tz  # the zone itself, from the cache

    ran = tmp_path / "ran"

    class Boom:
        def __reduce__(self) -> tuple[object, ...]:
            return (os.mkdir, (str(ran),))

    inner = ("record", {"x": ("whole", pickle.dumps(Boom()))})
    for forged in (pickle.dumps(inner), pickle.dumps(Boom())):
        with pytest.raises(pickle.UnpicklingError, match="is not plain data"):
            decode(forged)
    with pytest.raises(pickle.UnpicklingError):
        decode(b"garbage")
    assert not ran.exists()
