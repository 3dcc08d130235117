"""A reload with the config unchanged changes nothing anyone sees: no alert resolves, none fires
again, no ``for`` timer restarts, and the board keeps its grids.

The daemon runs in a subprocess on a SQLite file holding the grid registry and a table a ``sql``
check reads; its rule matches on ``street``, a label only the registry gives (as in the
documented example), so rules evaluated against a registry not yet loaded see no match at all.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from gridwatch.testing import DaemonProcess, free_port, wait_for
from tests.test_alertmanager import hook_alerts, write_config, write_data
from tests.test_notifiers import Recorder

STREET_RULE = 'match = { street = "东街街道" }\n'


@pytest.fixture
def recorder() -> Any:
    r = Recorder().start()
    try:
        yield r
    finally:
        r.stop()


def street_config(tmp_path: Path, port: int, hook: str, for_: str = "0s") -> Path:
    """test_alertmanager's config, its rule limited to one street as docs/configuration.md shows."""
    cfg = write_config(tmp_path, port, hook, for_=for_)
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(text.replace('for = "', STREET_RULE + 'for = "', 1), encoding="utf-8")
    return cfg


def runs(d: DaemonProcess) -> float:
    return d.metric("gridwatch_check_runs_total", check="test_value", outcome="success") or 0


def settle(d: DaemonProcess, more: int = 3) -> None:
    """Wait for ``more`` check runs (each followed by an evaluation) and an empty outbox."""
    before = runs(d)
    wait_for(lambda: runs(d) >= before + more, 15, f"{more} more check runs")
    wait_for(lambda: d.metric("gridwatch_notification_queue_length", notifier="hook") == 0, 10, "an empty outbox")


def test_sighup_neither_resolves_nor_fires_again(tmp_path, recorder):
    write_data(tmp_path, {"G1": 9, "G2": 1})  # G1 (东街街道) critical; G2 is on another street
    port = free_port()
    cfg = street_config(tmp_path, port, f"{recorder.url}/hook")
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: hook_alerts(recorder, "G1"), 15, f"the firing notification\n{d.log()}")
        settle(d)
        first = [a for a in d.json("/api/v1/alerts") if a["state"] == "firing"]
        assert [a["labels"]["grid"] for a in first] == ["G1"]
        for i in range(3):
            d.send(signal.SIGHUP)
            wait_for(lambda i=i: d.log().count("config reloaded") > i, 10, "the reload")
            settle(d)
        assert [(a["status"], a["labels"]["grid"]) for a in hook_alerts(recorder, "G1")] == [("firing", "G1")]
        after = [a for a in d.json("/api/v1/alerts") if a["state"] == "firing"]
        assert [(a["labels"]["grid"], a["active_since"]) for a in after] == [("G1", first[0]["active_since"])]
        assert d.stop() == 0


def test_sighup_keeps_a_pending_alert_s_for_timer(tmp_path, recorder):
    write_data(tmp_path, {"G1": 9, "G2": 1})
    port = free_port()
    cfg = street_config(tmp_path, port, f"{recorder.url}/hook", for_="1h")
    with DaemonProcess(cfg, port) as d:
        pending = wait_for(lambda: [a for a in d.json("/api/v1/alerts") if a["state"] == "pending"], 15, "pending")
        since = pending[0]["active_since"]
        d.send(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in d.log(), 10, "the reload")
        settle(d)
        now = d.json("/api/v1/alerts")
        assert [(a["state"], a["active_since"]) for a in now] == [("pending", since)]
        assert hook_alerts(recorder, "G1") == []
        assert d.stop() == 0


def test_sighup_keeps_the_board_s_grids_with_only_sql_checks(tmp_path, recorder):
    write_data(tmp_path, {"G1": 1, "G2": 1})
    port = free_port()
    cfg = write_config(tmp_path, port, f"{recorder.url}/hook")
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: len(d.json("/api/v1/grids")) == 2, 15, "the two grids on the board")
        d.send(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in d.log(), 10, "the reload")
        settle(d)
        assert [g["grid"] for g in d.json("/api/v1/grids")] == ["G1", "G2"]
        assert d.metric("gridwatch_grid_light", grid="G1") == 0
        assert d.stop() == 0
