"""Bad input is counted by source and reason and skipped; everything else is still evaluated."""

import json
import textwrap
import threading
from datetime import UTC, datetime

import pytest
from aiohttp import web

from gridwatch.testing import DaemonProcess, free_port, run_check, wait_for

NOW = "2026-11-21T12:00:00+08:00"
P1_EPOCH = datetime(2026, 11, 21, 1, 0, tzinfo=UTC).timestamp()


def test_each_kind_of_bad_row_through_a_csv_export(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    (files / "grids.csv").write_text(
        "grid_id,name,community,street,zone\nG1,第1网格,和平社区,东街街道,\nG2,第2网格,和平社区,东街街道,\n",
        encoding="utf-8",
    )
    (files / "households.csv").write_text(
        "household_id,grid_id,category\nH1,G1,\nH2,G1,\nH3,G1,\nH4,G2,\n", encoding="utf-8"
    )
    lines = [
        b"visit_id,household_id,grid_id,worker_id,visited_at",
        b"V1,H1,G1,W1,2026-11-20 10:00:00",  # good: H1 visited
        b"V2,H2,G1,W1,yesterday",  # bad_timestamp
        b"V3,H2,,W1,2026-11-20 10:00:00",  # null_grid
        b"V4,H2,G9,W1,2026-11-20 10:00:00",  # unknown_grid
        b"V1,H3,G1,W1,2026-11-20 10:00:00",  # duplicate_id
        b"V5,H3,G1,W1,2026-11-22 10:00:00",  # future_timestamp (after NOW)
        b"V6,H3,G1,W1,2026-11-20 10:00:00,extra",  # wrong_field_count
        "V7,H3,G1,W1,2026-11-20 10:00:00 备注".encode("gbk"),  # not UTF-8: bad_encoding
        b"V8,H4,G2,W2,2026-11-19T09:00:00+08:00",  # good: H4 visited
    ]
    (files / "visits.csv").write_bytes(b"\n".join(lines) + b"\n")
    result = run_check("visits", {}, now=NOW, tmp_path=tmp_path, source='type = "csv"\npath = "files"')
    assert result.error is None
    assert result.rejected == {
        ("data", "bad_timestamp"): 1,
        ("data", "null_grid"): 1,
        ("data", "unknown_grid"): 1,
        ("data", "duplicate_id"): 1,
        ("data", "future_timestamp"): 1,
        ("data", "wrong_field_count"): 1,
        ("data", "bad_encoding"): 1,
    }
    # G1: 3 households, only H1 visited by a good row → 1/3; G2: its one household visited → 1
    assert result.value("gridwatch_visit_coverage_ratio", grid="G1") == pytest.approx(1 / 3)
    assert result.value("gridwatch_visit_unvisited_households", grid="G1") == 2
    assert result.value("gridwatch_visit_coverage_ratio", grid="G2") == 1.0


def test_bad_rows_in_sqlite_are_counted_and_the_rest_evaluated(tmp_path):
    grids = [{"grid_id": "G1", "name": "一", "community": "c", "street": "s"}]
    patrols = [
        {"patrol_id": "P1", "grid_id": "G1", "worker_id": "W1", "patrolled_at": "2026-11-21 09:00:00"},
        {"patrol_id": "P2", "grid_id": "G1", "worker_id": "W1", "patrolled_at": "2026-13-01 09:00:00"},
        {"patrol_id": "P3", "grid_id": None, "worker_id": "W1", "patrolled_at": "2026-11-21 10:00:00"},
        {"patrol_id": "P4", "grid_id": "G1", "worker_id": "W1", "patrolled_at": "2026-11-21 13:00:01"},
        {"patrol_id": "P1", "grid_id": "G1", "worker_id": "W1", "patrolled_at": "2026-11-21 11:00:00"},
    ]
    r = run_check(
        "patrols",
        {"grids": grids, "patrols": patrols},
        now=NOW,
        tmp_path=tmp_path,
        options={
            "max_rejected_ratio": 1
        },  # every rule in one small table, most rows bad: the share is tests/test_rejected.py's
    )
    assert r.rejected == {
        ("data", "bad_timestamp"): 1,
        ("data", "null_grid"): 1,
        ("data", "future_timestamp"): 1,
        ("data", "duplicate_id"): 1,
    }
    # only P1 counts: 09:00 local (+08:00) on 2026-11-21 is 01:00 UTC
    assert r.value("gridwatch_patrol_last_timestamp_seconds", grid="G1") == P1_EPOCH


class Platform:
    """A grid platform's JSON API that can be made to misbehave."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.tables = {
            "grids": [{"grid_id": "G1", "name": "第1网格", "community": "和平社区", "street": "东街街道"}],
            "patrols": [
                {"patrol_id": "P1", "grid_id": "G1", "worker_id": "W1", "patrolled_at": "2026-11-21T09:00:00+08:00"}
            ],
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "500":
            return web.Response(status=500, text="upstream exploded")
        if self.mode == "html":
            return web.Response(text="<html><body>维护中</body></html>", content_type="text/html")
        body = json.dumps({"data": self.tables[request.match_info["table"]]})
        if self.mode == "truncated":
            body = body[: len(body) // 2]
        return web.Response(text=body, content_type="application/json")

    def serve(self, port: int) -> threading.Thread:
        import asyncio

        app = web.Application()
        app.router.add_get("/api/{table}", self.handle)
        runner = web.AppRunner(app)
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
            ready.set()
            loop.run_forever()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        ready.wait(10)
        return thread


def test_a_json_api_answering_500_html_or_garbage_is_down_keeps_the_last_samples_and_recovers(tmp_path):
    platform, api_port, port = Platform(), free_port(), free_port()
    platform.serve(api_port)
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [server]
        listen = "127.0.0.1:{port}"
        [state]
        path = "state.db"
        [grids]
        source = "platform"
        refresh = "1s"
        [sources.platform]
        type = "http"
        url = "http://127.0.0.1:{api_port}/api/{{table}}"
        records = "data"
        [[checks]]
        name = "patrols"
        type = "patrols"
        source = "platform"
        interval = "1s"
        """),
        encoding="utf-8",
    )
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: d.metric("gridwatch_patrol_last_timestamp_seconds", grid="G1") == P1_EPOCH, 15, "data")
        for mode in ("500", "html", "truncated"):
            platform.mode = mode
            wait_for(lambda: d.metric("gridwatch_source_up", source="platform") == 0, 15, f"down on {mode}")
            src = d.json("/api/v1/status")["sources"][0]
            assert src["up"] is False and src["error"]
            # the last good samples stay, with their age told by the last success time
            assert d.metric("gridwatch_patrol_last_timestamp_seconds", grid="G1") == P1_EPOCH
            platform.mode = "ok"
            wait_for(lambda: d.metric("gridwatch_source_up", source="platform") == 1, 15, f"back after {mode}")
        assert d.metric("gridwatch_source_rows_rejected_total", source="platform", reason="bad_json") >= 2
