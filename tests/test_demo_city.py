"""The shipped config on the demo city: what `make run` shows, and that no one is identified."""

import re
import sqlite3
from pathlib import Path

import pytest

from gridwatch.testing import DaemonProcess, free_port, wait_for
from gridwatch.tools import demo

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """The repository's gridwatch.toml, on its own port, over a demo city written up to now
    (the daemon evaluates at the wall clock, as `make run` does)."""
    d = tmp_path_factory.mktemp("city")
    demo.generate(d / "var" / "demo.db")
    port = free_port()
    text = (REPO / "gridwatch.toml").read_text(encoding="utf-8")
    text = text.replace('listen = "127.0.0.1:9477"', f'listen = "127.0.0.1:{port}"')
    (d / "gridwatch.toml").write_text(text + '\n[alerting]\nevaluation_interval = "1s"\n', encoding="utf-8")
    return d, port


def personal_ids(db: Path) -> set[str]:
    with sqlite3.connect(db) as c:
        ids = {r[0] for r in c.execute("SELECT household_id FROM households")}
        ids |= {r[0] for r in c.execute("SELECT worker_id FROM visits WHERE worker_id IS NOT NULL")}
        ids |= {r[0] for r in c.execute("SELECT worker_id FROM patrols WHERE worker_id IS NOT NULL")}
    c.close()
    return ids


def test_the_demo_city_shows_every_check_and_all_three_lights_without_identifying_anyone(city):
    d, port = city
    with DaemonProcess(d / "gridwatch.toml", port, args=("--log-level", "info")) as gw:
        wait_for(lambda: gw.get("/readyz")[0] == 200, 60, "every check to have run")
        grids = gw.json("/api/v1/grids")
        assert len(grids) == 60
        assert {g["light"] for g in grids} == {"green", "yellow", "red"}
        for g in grids:
            assert set(g) >= {"grid", "name", "community", "street", "light", "reasons"}
            assert (g["light"] == "green") == (g["reasons"] == [])

        _status, body = gw.get("/metrics")
        text = body.decode()
        for metric in (
            "gridwatch_grid_info",
            "gridwatch_grid_light",
            "gridwatch_grid_households",
            "gridwatch_visit_coverage_ratio",
            "gridwatch_visit_unvisited_households",
            "gridwatch_visit_key_households_overdue",
            "gridwatch_patrol_last_timestamp_seconds",
            "gridwatch_patrol_overdue",
            "gridwatch_incidents_open",
            "gridwatch_incidents_overdue",
            "gridwatch_incident_oldest_open_age_seconds",
            "gridwatch_incidents_closure_ratio",
            "gridwatch_incidents_on_time_closure_ratio",
            "gridwatch_report_daily_status",
            "gridwatch_report_on_time_ratio",
            "gridwatch_custom_open_cases",
        ):
            assert re.search(rf"^{metric}\{{", text, re.M), f"{metric} missing from /metrics"
        assert len(re.findall(r"^gridwatch_grid_light\{", text, re.M)) == 60

        wait_for(lambda: any(a["state"] == "firing" for a in gw.json("/api/v1/alerts")), 20, "alerts to fire")
        alerts = gw.json("/api/v1/alerts")

        ids = personal_ids(d / "var" / "demo.db")
        assert len(ids) > 10_000
        label_values = set(re.findall(r'="([^"]*)"', text))
        for a in alerts:
            label_values |= set(a["labels"].values())
        assert not (label_values & ids), "a household or worker id became a label"
        tokens = set(re.findall(r"[HW]\d{4,}", gw.log()))
        assert not (tokens & ids), "a household or worker id reached the log"
