"""gridwatch against a real Alertmanager: alerts arrive, stay active, escalate, resolve, and
survive an Alertmanager outage in the outbox.

The daemon runs in a subprocess on a SQLite file the test changes while it runs; a ``sql``
check reads it every second and one rule watches what it yields. Alertmanager forwards what it
gets to a local recorder (its own webhook receiver), so its view of each alert is checked both
through ``/api/v2/alerts`` and through what it notifies.
"""

from __future__ import annotations

import sqlite3
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gridwatch.testing import DaemonProcess, free_port, wait_for, write_standard_db
from tests.test_notifiers import Recorder

pytestmark = pytest.mark.component

EXTERNAL_URL = "http://gridwatch.example.org/"
GRID_ROWS = [
    {"grid_id": "G1", "name": "东湖一网格", "community": "东湖社区", "street": "东街街道"},
    {"grid_id": "G2", "name": "西河二网格", "community": "西河社区", "street": "西街街道"},
]


def write_data(tmp_path: Path, values: dict[str, float]) -> Path:
    """The watched database: the standard grid registry plus ``test_values(grid, n)``."""
    path = write_standard_db(tmp_path / "data.db", {"grids": GRID_ROWS})
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE test_values (grid TEXT, n REAL)")
    db.close()
    set_values(path, values)
    return path


def set_values(path: Path, values: dict[str, float]) -> None:
    with sqlite3.connect(path, timeout=10) as db:
        db.execute("DELETE FROM test_values")
        db.executemany("INSERT INTO test_values VALUES (?, ?)", list(values.items()))
    db.close()


def write_config(
    tmp_path: Path,
    port: int,
    hook_url: str,
    am_urls: list[str] | None = None,
    for_: str = "0s",
) -> Path:
    text = f"""
        [server]
        listen = "127.0.0.1:{port}"
        external_url = "{EXTERNAL_URL}"

        [state]
        path = "state.db"

        [alerting]
        evaluation_interval = "1s"

        [grids]
        source = "data"

        [sources.data]
        type = "sqlite"
        path = "data.db"

        [[checks]]
        name = "test_value"
        type = "sql"
        source = "data"
        interval = "1s"
        metric = "gridwatch_test_value"
        help = "A value the test sets"
        value = "n"
        query = "SELECT grid, n FROM test_values"

        [[rules]]
        alert = "TestValueHigh"
        metric = "gridwatch_test_value"
        above = {{ warning = 5, critical = 8 }}
        for = "{for_}"
        labels = {{ team = "网格中心" }}
        summary = "{{grid_name}}测试值过高：{{value:.0f}}"
        description = "{{street}}{{community}}，请核查"

        [notifiers.hook]
        type = "webhook"
        url = "{hook_url}"
        """
    if am_urls:
        urls = ", ".join(f'"{u}"' for u in am_urls)
        text += f"""
        [notifiers.am]
        type = "alertmanager"
        urls = [{urls}]
        resend_interval = "1s"
        """
    path = tmp_path / "gridwatch.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def am_config(recorder: Recorder) -> dict[str, Any]:
    """Alertmanager routes everything at once to the recorder, resolutions included."""
    return {
        "route": {
            "receiver": "recorder",
            "group_by": ["alertname", "grid"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "recorder", "webhook_configs": [{"url": f"{recorder.url}/am", "send_resolved": True}]},
        ],
    }


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def am_alerts(am: Any, grid: str) -> list[dict[str, Any]]:
    return [a for a in am.alerts() if a["labels"].get("alertname") == "TestValueHigh" and a["labels"]["grid"] == grid]


def am_notified(recorder: Recorder, grid: str, status: str) -> list[dict[str, Any]]:
    """The alerts Alertmanager sent the recorder with this status for ``grid``."""
    return [
        a
        for body in recorder.bodies("/am")
        for a in body["alerts"]
        if a["labels"].get("grid") == grid and a["status"] == status
    ]


def hook_alerts(recorder: Recorder, grid: str) -> list[dict[str, Any]]:
    """What gridwatch's own webhook notifier delivered about ``grid``, in order."""
    return [a for body in recorder.bodies("/hook") for a in body["alerts"] if a["labels"].get("grid") == grid]


@pytest.fixture
def recorder() -> Any:
    r = Recorder().start()
    try:
        yield r
    finally:
        r.stop()


def test_alert_arrives_is_resent_escalates_and_resolves(tmp_path, alertmanager, recorder):
    am = alertmanager(am_config(recorder))
    data = write_data(tmp_path, {"G1": 1, "G2": 1})
    port = free_port()
    cfg = write_config(tmp_path, port, f"{recorder.url}/hook", [am.url])
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: d.get("/readyz")[0] == 200, 15, "readiness")
        assert am_alerts(am, "G1") == []
        set_values(data, {"G1": 7, "G2": 1})

        # it arrives, with its labels and annotations
        [a] = wait_for(lambda: am_alerts(am, "G1"), 10, f"the alert in Alertmanager\n{d.log()}")
        place = {"street": "东街街道", "community": "东湖社区"}  # from the grid registry: routes by street
        assert a["labels"] == {
            "alertname": "TestValueHigh",
            "grid": "G1",
            **place,
            "team": "网格中心",
            "severity": "warning",
        }
        assert a["annotations"] == {"summary": "东湖一网格测试值过高：7", "description": "东街街道东湖社区，请核查"}
        assert a["status"]["state"] == "active"
        assert a["generatorURL"] == EXTERNAL_URL
        [mine] = d.json("/api/v1/alerts")
        assert mine["state"] == "firing" and ts(a["startsAt"]) == pytest.approx(ts(mine["active_since"]), abs=0.01)
        assert [x["name"] for x in a["receivers"]] == ["recorder"]
        assert am_alerts(am, "G2") == []
        # ... and Alertmanager notifies its own receiver
        [n] = wait_for(lambda: am_notified(recorder, "G1", "firing"), 10, "Alertmanager's notification")
        assert n["annotations"]["summary"] == "东湖一网格测试值过高：7"

        # it stays active while firing: re-sent every second, each time with a later endsAt,
        # and still active after the endsAt of the first delivery has passed
        first_end = ts(a["endsAt"])
        assert first_end > time.time()
        wait_for(lambda: ts(am_alerts(am, "G1")[0]["endsAt"]) > first_end, 5, "a re-send")
        wait_for(lambda: time.time() > first_end + 0.5, 6, "the first endsAt to pass")
        [a] = am_alerts(am, "G1")
        assert a["status"]["state"] == "active" and ts(a["endsAt"]) > time.time()

        # escalation: the critical alert replaces the warning one (same alert, new severity)
        set_values(data, {"G1": 9, "G2": 1})
        wait_for(
            lambda: [x["labels"]["severity"] for x in am_alerts(am, "G1")] == ["critical"],
            10,
            "the critical alert alone in Alertmanager",
        )
        [a] = am_alerts(am, "G1")
        assert a["annotations"]["summary"] == "东湖一网格测试值过高：9"
        wait_for(lambda: am_notified(recorder, "G1", "resolved"), 10, "the warning alert's end")
        [ended] = am_notified(recorder, "G1", "resolved")
        assert ended["labels"]["severity"] == "warning"

        # the condition clears: Alertmanager hears the resolution (not an expiry: the end it
        # gets is before the endsAt of the last re-send)
        last_end = ts(am_alerts(am, "G1")[0]["endsAt"])
        cleared = time.time()
        set_values(data, {"G1": 1, "G2": 1})
        wait_for(lambda: am_alerts(am, "G1") == [], 10, "the alert to leave Alertmanager's active alerts")
        assert time.time() < last_end
        resolved = wait_for(
            lambda: [x for x in am_notified(recorder, "G1", "resolved") if x["labels"]["severity"] == "critical"],
            10,
            "Alertmanager's resolved notification",
        )
        assert cleared <= ts(resolved[0]["endsAt"]) < last_end
        assert d.json("/api/v1/alerts")[0]["state"] == "resolved"

        # gridwatch's own webhook heard each change once: firing, escalated, resolved
        statuses = [(x["status"], x["labels"]["severity"]) for x in hook_alerts(recorder, "G1")]
        assert statuses == [("firing", "warning"), ("firing", "critical"), ("resolved", "critical")]


def test_notifications_wait_in_the_outbox_while_alertmanager_is_down(tmp_path, alertmanager, recorder):
    am = alertmanager(am_config(recorder))
    data = write_data(tmp_path, {"G1": 9, "G2": 1})
    port = free_port()
    cfg = write_config(tmp_path, port, f"{recorder.url}/hook", [am.url])
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: am_alerts(am, "G1"), 15, f"the first alert in Alertmanager\n{d.log()}")
        wait_for(lambda: d.metric("gridwatch_notification_queue_length", notifier="am") == 0, 10, "an empty queue")
        sent = d.metric("gridwatch_notifications_total", notifier="am", outcome="success")

        am.stop()
        set_values(data, {"G1": 9, "G2": 9})
        wait_for(
            lambda: any(x["labels"]["grid"] == "G2" and x["state"] == "firing" for x in d.json("/api/v1/alerts")),
            10,
            "G2 firing in gridwatch",
        )
        wait_for(
            lambda: (d.metric("gridwatch_notification_queue_length", notifier="am") or 0) > 0,
            10,
            "the notification to wait in the outbox",
        )
        wait_for(
            lambda: (d.metric("gridwatch_notifications_total", notifier="am", outcome="failure") or 0) > 0,
            10,
            "a failed delivery",
        )
        # the outage of one receiver holds up no other
        wait_for(lambda: hook_alerts(recorder, "G2"), 10, "the webhook notification")
        assert d.metric("gridwatch_notification_queue_length", notifier="hook") == 0

        am.start()  # an empty Alertmanager on the same port
        [a] = wait_for(lambda: am_alerts(am, "G2"), 20, f"the queued alert after the restart\n{d.log()}")
        assert a["labels"]["severity"] == "critical"
        assert a["annotations"]["summary"] == "西河二网格测试值过高：9"
        wait_for(
            lambda: d.metric("gridwatch_notification_queue_length", notifier="am") == 0,
            20,
            "the outbox to drain",
        )
        assert d.metric("gridwatch_notifications_total", notifier="am", outcome="success") > sent
        wait_for(lambda: am_alerts(am, "G1"), 10, "the still-firing G1 re-sent")
