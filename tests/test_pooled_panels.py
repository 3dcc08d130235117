"""The dashboard's street and district panels pool, in a real Prometheus scraping a real gridwatch:
a street's on-time closure is its grids' on-time cases over their due cases, not the mean of the
grids' ratios, and it agrees with ``/api/v1/summary``.

The city is one where the two differ: on 东街, G1 closed 1 of 1 case on time and G2 1 of 4, so the
street closed 2 of 5 on time, 0.4; the mean of 1 and 0.25 would be 0.625."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gridwatch.testing import DaemonProcess, wait_for, write_standard_db
from tests.components import free_port
from tests.test_e2e import as_grafana_would

pytestmark = pytest.mark.component

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards" / "gridwatch.json"
EAST, WEST = "东街街道", "西街街道"


def panel(title: str) -> dict[str, Any]:
    return next(p for p in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"] if p["title"] == title)


def target(title: str, name: str) -> str:
    """The query of a panel's column (a table) or series (a stat) called ``name``."""
    p = panel(title)
    if p["type"] == "table":
        renamed = p["transformations"][-1]["options"]["renameByName"]
        return next(t["expr"] for t in p["targets"] if renamed.get(f"Value #{t['refId']}") == name)
    return next(t["expr"] for t in p["targets"] if t["legendFormat"] == name)


def city(now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Cases reported three days ago by the community (1 day to handle): due two days ago."""
    reported = now - timedelta(days=3)
    on_time, late = now - timedelta(days=2, hours=12), now - timedelta(days=1)

    def case(cid: str, grid: str, closed: datetime) -> dict[str, Any]:
        return {
            "incident_id": cid,
            "grid_id": grid,
            "severity": "normal",
            "tier": "community",
            "reported_at": reported.strftime("%Y-%m-%d %H:%M:%S"),
            "closed_at": closed.strftime("%Y-%m-%d %H:%M:%S"),
        }

    return {
        "grids": [
            {"grid_id": "G1", "name": "一网格", "community": "东湖社区", "street": EAST},
            {"grid_id": "G2", "name": "二网格", "community": "东湖社区", "street": EAST},
            {"grid_id": "G3", "name": "三网格", "community": "南山社区", "street": WEST},
        ],
        "incidents": [
            case("A1", "G1", on_time),  # G1: 1 of 1 on time
            case("B1", "G2", on_time),  # G2: 1 of 4 on time
            case("B2", "G2", late),
            case("B3", "G2", late),
            case("B4", "G2", late),
            case("C1", "G3", late),  # G3: 0 of 1
        ],
    }


def test_a_streets_ratio_is_pooled_not_averaged(tmp_path: Path, prometheus) -> None:
    write_standard_db(tmp_path / "city.db", city(datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)))
    port = free_port()
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[grids]\nsource = "city"\n'
        '[sources.city]\ntype = "sqlite"\npath = "city.db"\n'
        '[[checks]]\nname = "incidents"\ntype = "incidents"\nsource = "city"\ninterval = "1s"\n',
        encoding="utf-8",
    )
    with DaemonProcess(cfg, port) as gw:
        wait_for(lambda: gw.get("/readyz")[0] == 200, 30, "the check to have run")
        prom = prometheus(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [{"job_name": "gridwatch", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
            }
        )
        prom.query_until("gridwatch_incidents_due", lambda r: len(r) == 3)
        # gridwatch publishes each grid's counts, and the grids' own ratios differ from the street's
        assert {r["metric"]["grid"]: r["value"][1] for r in prom.query("gridwatch_incidents_due")} == {
            "G1": "1",
            "G2": "4",
            "G3": "1",
        }
        ratios = prom.query("gridwatch_incidents_on_time_closure_ratio")
        assert {r["metric"]["grid"]: float(r["value"][1]) for r in ratios} == {"G1": 1, "G2": 0.25, "G3": 0}

        # the street panel: 东街 (1 + 1) / (1 + 4) = 0.4, not (1 + 0.25) / 2 = 0.625; 西街 0 / 1 = 0
        streets = prom.query(as_grafana_would(target("各街道指标（合并计算）", "按期结案率")))
        assert {r["metric"]["street"]: float(r["value"][1]) for r in streets} == {EAST: 0.4, WEST: 0}
        # a street chosen in the dashboard's variable
        (east,) = prom.query(as_grafana_would(target("各街道指标（合并计算）", "按期结案率"), street=EAST))
        assert float(east["value"][1]) == 0.4
        # the district (every street selected): (1 + 1 + 0) / (1 + 4 + 1) = 1/3, not the mean 0.4167
        (district,) = prom.query(as_grafana_would(target("所选范围的指标（合并计算）", "按期结案率")))
        assert float(district["value"][1]) == pytest.approx(1 / 3)
        (four,) = prom.query(as_grafana_would(target("四项指标", "按期结案率")))
        assert float(four["value"][1]) == pytest.approx(1 / 3)
        # the community panel: 东湖 = G1 + G2 = 2/5
        communities = prom.query(as_grafana_would(target("各社区指标（合并计算）", "按期结案率")))
        assert {r["metric"]["community"]: float(r["value"][1]) for r in communities} == {"东湖社区": 0.4, "南山社区": 0}
        # a unit with nothing to divide by has no value, never NaN: no visits check here, no households
        assert prom.query(as_grafana_would(target("各街道指标（合并计算）", "走访覆盖率"))) == []

        # the API pools the same way, with the counts beside the ratio
        units = {u["street"]: u for u in gw.json("/api/v1/summary")["units"]}
        (on_time,) = [i for i in units[EAST]["indicators"] if i["metric"] == ratios[0]["metric"]["__name__"]]
        assert (on_time["numerator"], on_time["denominator"], on_time["ratio"]) == (2, 5, 0.4)
