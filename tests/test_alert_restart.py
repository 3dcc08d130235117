"""A SIGKILLed gridwatch neither forgets nor repeats: alert state and ``for`` timers survive.

The daemon runs in a subprocess on a SQLite file the test changes while it runs and reports
to a local webhook recorder; it is killed with SIGKILL (no shutdown code runs) and started
again on the same config and state database.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from gridwatch.testing import DaemonProcess, free_port, wait_for
from tests.test_alertmanager import hook_alerts, set_values, ts, write_config, write_data
from tests.test_notifiers import Recorder


@pytest.fixture
def recorder() -> Any:
    r = Recorder().start()
    try:
        yield r
    finally:
        r.stop()


def alert(d: DaemonProcess, grid: str = "G1") -> dict[str, Any] | None:
    found = [a for a in d.json("/api/v1/alerts") if a["labels"].get("grid") == grid]
    return found[0] if found else None


def kill(d: DaemonProcess) -> None:
    assert d.proc is not None
    d.proc.kill()
    d.proc.wait(10)


def check_runs(d: DaemonProcess) -> float:
    return d.metric("gridwatch_check_runs_total", check="test_value", outcome="success") or 0


def transitions(state_db: Path, to_state: str) -> list[float]:
    with sqlite3.connect(f"{state_db.as_uri()}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT at FROM alert_history WHERE to_state = ? ORDER BY id", [to_state]).fetchall()
    db.close()
    return [r[0] for r in rows]


def test_a_firing_alert_survives_sigkill_without_a_second_notification(tmp_path, recorder):
    data = write_data(tmp_path, {"G1": 9, "G2": 1})
    port = free_port()
    cfg = write_config(tmp_path, port, f"{recorder.url}/hook")
    d1 = DaemonProcess(cfg, port)
    d2 = DaemonProcess(cfg, port)
    try:
        d1.start()
        wait_for(lambda: hook_alerts(recorder, "G1"), 15, f"the firing notification\n{d1.log()}")
        # delivered and marked delivered in the outbox before the kill
        wait_for(lambda: d1.metric("gridwatch_notification_queue_length", notifier="hook") == 0, 10, "delivery")
        before = alert(d1)
        assert before is not None and before["state"] == "firing"
        kill(d1)

        d2.start()
        after = alert(d2)  # straight from the state database, before any check has run
        assert after is not None and after["state"] == "firing"
        assert (after["active_since"], after["severity"]) == (before["active_since"], before["severity"])
        # evaluations with the check's fresh samples: still the same firing alert
        runs = check_runs(d2)
        wait_for(lambda: check_runs(d2) >= runs + 3, 10, "three runs of the check after the restart")
        time.sleep(1.0)  # an evaluation after the last run, and time for a notification to arrive
        after = alert(d2)
        assert after is not None and after["state"] == "firing" and after["active_since"] == before["active_since"]
        assert [(a["status"], a["labels"]["severity"]) for a in hook_alerts(recorder, "G1")] == [("firing", "critical")]
        assert transitions(tmp_path / "state.db", "firing") == [ts(before["active_since"])]

        # a resolution later is announced once, as usual
        set_values(data, {"G1": 1, "G2": 1})
        wait_for(lambda: len(hook_alerts(recorder, "G1")) == 2, 10, "the resolved notification")
        assert [a["status"] for a in hook_alerts(recorder, "G1")] == ["firing", "resolved"]
        assert d2.stop() == 0
    finally:
        for d in (d1, d2):
            if d.proc is not None and d.proc.poll() is None:
                kill(d)


def test_a_pending_alert_fires_when_its_for_would_have_ended_despite_a_restart(tmp_path, recorder):
    data = write_data(tmp_path, {"G1": 1, "G2": 1})
    port = free_port()
    cfg = write_config(tmp_path, port, f"{recorder.url}/hook", for_="6s")
    d1 = DaemonProcess(cfg, port)
    d2 = DaemonProcess(cfg, port)
    try:
        d1.start()
        wait_for(lambda: d1.get("/readyz")[0] == 200, 15, "readiness")
        set_values(data, {"G1": 9, "G2": 1})
        pending = wait_for(lambda: alert(d1), 10, "the pending alert")
        assert pending["state"] == "pending"
        t0 = ts(pending["active_since"])
        # kill 3 s into the 6 s: a timer restarted by the restart would fire ≥ t0 + 3 + 6
        wait_for(lambda: time.time() >= t0 + 3, 5, "three seconds of pending")
        assert alert(d1)["state"] == "pending"
        kill(d1)
        assert hook_alerts(recorder, "G1") == []

        d2.start()
        after = alert(d2)
        assert after is not None and after["state"] == "pending" and ts(after["active_since"]) == t0
        wait_for(lambda: (alert(d2) or {}).get("state") == "firing", 12, f"firing\n{d2.log()}")
        [fired_at] = transitions(tmp_path / "state.db", "firing")
        # on time: not before t0 + for, and within an evaluation interval plus start-up of it
        # (a timer restarted at the restart would fire after t0 + 3 + 6)
        assert t0 + 6 <= fired_at <= t0 + 6 + 3, (fired_at - t0, d2.log())
        assert ts(alert(d2)["active_since"]) == t0
        [n] = wait_for(lambda: hook_alerts(recorder, "G1"), 10, "the firing notification")
        assert n["status"] == "firing" and ts(n["startsAt"]) == pytest.approx(fired_at, abs=0.01)
        assert d2.stop() == 0
    finally:
        for d in (d1, d2):
            if d.proc is not None and d.proc.poll() is None:
                kill(d)
