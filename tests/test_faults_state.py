"""The state database's disk fills up, or the file turns read-only, under a running daemon.

Real faults: the state directory is a small tmpfs filled to the last byte (ENOSPC, SQLite's
"database or disk is full"), or the database and its WAL get ``chattr +i`` (EPERM, "disk I/O
error", as on a file system remounted read-only). Both need root; under CI (root on Debian) they
must work, elsewhere the tests skip when they cannot.

What must hold: gridwatch says so loudly (one ERROR line, ``gridwatch_state_db_writable`` 0 and
``gridwatch_state_db_write_errors_total`` counting, ``/readyz`` 503 naming the state database),
keeps checking and evaluating in memory, delivers nothing twice, and once the disk takes writes
again writes every transition with its original time and delivers every notification, in order.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gridwatch.alerting.engine import AlertEngine, Route
from gridwatch.api import Grid, Sample
from gridwatch.rules import Rule, evaluate
from gridwatch.store import Store
from gridwatch.testing import DaemonProcess, free_port, wait_for
from tests.faults import (
    alert_config,
    fill,
    flaky_server,
    hook_alerts,
    immutable,
    integrity,
    read_state,
    runs,
    small_filesystem,
    truncate_wal,
)
from tests.test_alertmanager import set_values, write_data

TABLES = ("alerts", "alert_history", "outbox")  # what one evaluation writes


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def alert(d: DaemonProcess, grid: str) -> dict[str, Any] | None:
    found = [a for a in d.json("/api/v1/alerts") if a["labels"].get("grid") == grid]
    return found[0] if found else None


def state_of(d: DaemonProcess, grid: str) -> str | None:
    a = alert(d, grid)
    return a["state"] if a else None


def writable(d: DaemonProcess) -> float | None:
    return d.metric("gridwatch_state_db_writable")


def assert_loud(d: DaemonProcess, error: str) -> None:
    """The outage is told every way an operator looks: log, metrics, /readyz, and /healthz still 200."""
    wait_for(lambda: writable(d) == 0, 10, f"gridwatch_state_db_writable 0\n{d.log()[-3000:]}")
    assert (d.metric("gridwatch_state_db_write_errors_total") or 0) >= 1
    errors = [line for line in d.log().splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "cannot write the state database" in errors[0] and error in errors[0], errors
    status, body = d.get("/readyz")
    ready = json.loads(body)
    assert status == 503 and "state database" in ready["waiting_for"], ready
    assert error in ready["state_database"]["error"] and ready["state_database"]["writable"] is False
    assert d.json("/api/v1/status")["state_database"] == ready["state_database"]  # what the board shows
    assert d.get("/healthz")[0] == 200


def assert_recovered(d: DaemonProcess) -> None:
    wait_for(lambda: writable(d) == 1, 15, f"writes to succeed again\n{d.log()[-3000:]}")
    wait_for(lambda: d.get("/readyz")[0] == 200, 10, "/readyz 200 again")
    assert d.json("/api/v1/status")["state_database"] == {"writable": True, "error": None}
    assert "is writable again" in d.log()


def history(state_db: Path, grid: str) -> list[tuple[str, str, float]]:
    rows = read_state(
        state_db, "SELECT from_state, to_state, at FROM alert_history WHERE labels LIKE ? ORDER BY id", (f'%"{grid}"%',)
    )
    return [(r[0], r[1], r[2]) for r in rows]


def test_a_full_disk_is_reported_and_nothing_is_lost_or_sent_twice(tmp_path):
    state_dir = tmp_path / "state"
    with small_filesystem(state_dir) as state_dir, flaky_server() as hook:
        data = write_data(tmp_path, {"G1": 1, "G2": 1})
        port = free_port()
        cfg = alert_config(tmp_path, port, f"{hook.url}/hook", state="state/state.db")
        state_db = state_dir / "state.db"
        with DaemonProcess(cfg, port) as d:
            wait_for(lambda: d.get("/readyz")[0] == 200, 15, f"ready\n{d.log()}")

            # G2 fires while the receiver is down: its notification waits in the outbox
            hook.stop()
            set_values(data, {"G1": 1, "G2": 9})
            wait_for(lambda: d.metric("gridwatch_notification_queue_length", notifier="hook") == 1, 10, "queued")

            # the disk fills up
            truncate_wal(state_db)
            filler = fill(state_dir)
            set_values(data, {"G1": 9, "G2": 9})
            assert_loud(d, "database or disk is full")
            # checks and rules go on in memory: G1 fires
            wait_for(lambda: state_of(d, "G1") == "firing", 10, "G1 firing in memory")
            g1_since = alert(d, "G1")["active_since"]
            runs_before = runs(d, "test_value")

            # the receiver is back: G2's notification goes out, once, though the disk cannot record it
            hook.start()
            wait_for(lambda: hook_alerts(hook, "G2"), 10, f"G2 delivered\n{d.log()[-3000:]}")
            wait_for(lambda: runs(d, "test_value") >= runs_before + 4, 10, "four more check runs")
            assert [a[:2] for a in hook_alerts(hook, "G2")] == [("firing", "critical")]
            assert hook_alerts(hook, "G1") == []  # its notification is not written yet: not sent yet

            # both resolve, in memory
            set_values(data, {"G1": 1, "G2": 1})
            wait_for(lambda: state_of(d, "G1") == "resolved" and state_of(d, "G2") == "resolved", 10, "resolved")
            assert writable(d) == 0
            outage_runs = runs(d, "test_value") - runs_before

            # space returns
            filler.unlink()
            assert_recovered(d)
            wait_for(lambda: len(hook_alerts(hook, "G1")) == 2, 10, f"G1's notifications\n{d.log()[-3000:]}")
            wait_for(lambda: len(hook_alerts(hook, "G2")) == 2, 10, "G2's resolution")
            g1 = hook_alerts(hook, "G1")
            assert [a[:2] for a in g1] == [("firing", "critical"), ("resolved", "critical")]
            assert ts(g1[0][2]) == ts(g1_since)  # the time it really fired, not the time it was written
            assert [a[:2] for a in hook_alerts(hook, "G2")] == [("firing", "critical"), ("resolved", "critical")]
            wait_for(lambda: d.metric("gridwatch_notification_queue_length", notifier="hook") == 0, 10, "drained")
            total_runs = runs(d, "test_value")
            errors = d.metric("gridwatch_state_db_write_errors_total")
            print(f"disk full: {errors:g} failed writes, {outage_runs:g} check runs during the outage")  # -s
            assert d.stop() == 0

        # the database holds it all: every transition at its time, every notification delivered once
        assert integrity(state_db) == "ok"
        assert [h[:2] for h in history(state_db, "G1")] == [
            ("inactive", "pending"),
            ("pending", "firing"),
            ("firing", "resolved"),
        ]
        assert history(state_db, "G1")[1][2] == ts(g1_since)
        undelivered = read_state(state_db, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
        assert undelivered == [(0,)]
        assert read_state(state_db, "SELECT count(*) FROM outbox") == [(4,)]
        # the run history of the outage was kept and written too: every run is there
        [(n,)] = read_state(state_db, "SELECT count(*) FROM check_runs WHERE check_name = 'test_value'")
        assert n >= total_runs and outage_runs >= 4


def test_a_read_only_state_database_survives_a_reload_and_loses_nothing(tmp_path):
    with flaky_server() as hook:
        data = write_data(tmp_path, {"G1": 1, "G2": 1})
        port = free_port()
        cfg = alert_config(tmp_path, port, f"{hook.url}/hook")
        state_db = tmp_path / "state.db"
        with DaemonProcess(cfg, port) as d:
            wait_for(lambda: d.get("/readyz")[0] == 200, 15, f"ready\n{d.log()}")
            with immutable(state_db, state_db.with_name("state.db-wal")):
                set_values(data, {"G1": 7, "G2": 1})
                assert_loud(d, "disk I/O error")
                wait_for(lambda: state_of(d, "G1") == "firing", 10, "G1 firing in memory")
                since = alert(d, "G1")["active_since"]
                # a reload meanwhile carries the unwritten alert state over
                d.send(signal.SIGHUP)
                wait_for(lambda: d.log().count("config reloaded") == 1, 10, "the reload")
                assert state_of(d, "G1") == "firing" and alert(d, "G1")["active_since"] == since
                assert hook_alerts(hook, "G1") == []
            assert_recovered(d)
            [(status, severity, starts)] = wait_for(lambda: hook_alerts(hook, "G1"), 10, "G1's notification")
            assert (status, severity) == ("firing", "warning") and ts(starts) == ts(since)
            assert d.stop() == 0
        assert integrity(state_db) == "ok"
        assert [h[:2] for h in history(state_db, "G1")] == [("inactive", "pending"), ("pending", "firing")]


def test_an_evaluation_is_written_whole_or_not_at_all_and_retried_with_its_times(tmp_path):
    """A write refused half-way (here the last table of the transaction, the outbox, refuses its
    rows): neither the alert nor its history is written without its notification, and the next
    evaluation writes all three with the time the alert really fired."""
    rule = Rule.model_validate({"alert": "TestValueHigh", "metric": "gridwatch_test_value", "above": {"critical": 8}})
    grids = {"G1": Grid("G1", "东湖一网格", "东湖社区", "东街街道")}
    hits = evaluate([rule], [Sample("gridwatch_test_value", {"grid": "G1"}, 9)], grids)
    store = Store(tmp_path / "state.db")
    store.open()
    try:
        engine = AlertEngine([Route("hook")])
        store.call(
            lambda db: db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'no room'); END"
            )
        )
        with pytest.raises(sqlite3.IntegrityError):
            store.call(engine.step, 1000.0, hits, {rule.alert: rule})
        counts = store.call(lambda db: [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES])
        assert counts == [0, 0, 0]  # all or nothing
        assert engine.views(1000.0)[0]["state"] == "firing" and engine.unwritten

        store.call(lambda db: db.execute("DROP TRIGGER refuse"))
        assert store.call(engine.step, 1005.0, hits, {rule.alert: rule}) == {"hook"}
        counts = store.call(lambda db: [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES])
        assert counts == [1, 2, 1] and not engine.unwritten
        [(fired_at,)] = store.call(lambda db: db.execute("SELECT fired_at FROM alerts").fetchall())
        [(payload,)] = store.call(lambda db: db.execute("SELECT payload FROM outbox").fetchall())
        assert fired_at == 1000.0 and json.loads(payload)["startsAt"] == "1970-01-01T00:16:40Z"
    finally:
        store.close()
