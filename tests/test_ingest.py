"""Rows pushed over HTTP: evaluated by the next run; a bad token or body stores nothing."""

import json
import textwrap
import urllib.request

import pytest

from gridwatch.testing import DaemonProcess, free_port, wait_for

TOKEN = "s3cret-ingest-token"


def post(d: DaemonProcess, path: str, body: bytes, token: str | None = TOKEN) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(d.base + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def daemon(tmp_path):
    port = free_port()
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [server]
        listen = "127.0.0.1:{port}"
        [state]
        path = "state.db"
        [grids]
        source = "inbox"
        refresh = "1s"
        [sources.inbox]
        type = "ingest"
        token = "${{GW_INGEST_TOKEN}}"
        [[checks]]
        name = "reports"
        type = "reports"
        source = "inbox"
        interval = "1s"
        [[checks]]
        name = "stored"
        type = "sql"
        source = "inbox"
        interval = "1s"
        metric = "gridwatch_test_stored_reports"
        value = "n"
        query = "SELECT count(*) AS n FROM reports"
        """),
        encoding="utf-8",
    )
    with DaemonProcess(cfg, port, env={"GW_INGEST_TOKEN": TOKEN}) as d:
        yield d


def stored(d: DaemonProcess) -> float | None:
    return d.metric("gridwatch_test_stored_reports")


def test_rows_posted_with_the_token_are_evaluated_by_the_next_run(daemon):
    d = daemon
    grids = [
        {"grid_id": "G1", "name": "第1网格", "community": "和平社区", "street": "东街街道"},
        {"grid_id": "G2", "name": "第2网格", "community": "和平社区", "street": "东街街道"},
    ]
    assert post(d, "/api/v1/ingest/grids", json.dumps(grids).encode()) == (201, {"stored": 2, "table": "grids"})
    # a grid's "平安" SMS, turned into a daily report flagged as a petition movement: today → red
    today = __import__("datetime").datetime.now(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    report = {
        "report_id": "R1",
        "grid_id": "G1",
        "kind": "daily",
        "period": today.strftime("%Y-%m-%d"),
        "submitted_at": today.strftime("%Y-%m-%d %H:%M:%S"),
        "flag": "petition",
    }
    status, body = post(d, "/api/v1/ingest/reports", json.dumps(report).encode())
    assert (status, body) == (201, {"stored": 1, "table": "reports"})
    wait_for(lambda: d.metric("gridwatch_report_daily_status", grid="G1") == 3, 15, "the flagged report")
    lights = {g["grid"]: g["light"] for g in d.json("/api/v1/grids")}
    assert lights["G1"] == "red"
    wait_for(lambda: stored(d) == 1, 10, "the stored count")


@pytest.mark.parametrize(("token", "expected"), [(None, 401), ("wrong", 401)])
def test_no_or_a_wrong_token_gets_401_and_stores_nothing(daemon, token, expected):
    d = daemon
    wait_for(lambda: stored(d) == 0, 10, "an empty inbox")
    row = {
        "report_id": "R9",
        "grid_id": "G1",
        "kind": "daily",
        "period": "2026-11-21",
        "submitted_at": "2026-11-21 08:00:00",
    }
    status, body = post(d, "/api/v1/ingest/reports", json.dumps(row).encode(), token=token)
    assert status == expected and "token" in body["error"]
    runs = d.metric("gridwatch_check_runs_total", check="stored", outcome="success")
    wait_for(lambda: d.metric("gridwatch_check_runs_total", check="stored", outcome="success") > runs + 1, 10, "runs")
    assert stored(d) == 0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'[{"report_id": "R1", "grid_id": "G1", "colour": "red"}]', 400, "colour"),
        (b'[{"report_id": "R1"}, 42]', 400, ""),
        (b'"just a string"', 400, ""),
        (b"[" + b'{"report_id": "R", "grid_id": "G1"},' * 150_000 + b"{}]", 413, ""),
    ],
    ids=["malformed", "unknown-column", "not-an-object", "not-a-list", "oversized"],
)
def test_a_bad_body_gets_a_4xx_with_a_message_and_stores_nothing(daemon, body, status, message):
    d = daemon
    got, answer = post(d, "/api/v1/ingest/reports", body)
    assert got == status and answer["error"] and message in answer["error"]
    runs = d.metric("gridwatch_check_runs_total", check="stored", outcome="success")
    wait_for(lambda: d.metric("gridwatch_check_runs_total", check="stored", outcome="success") > runs + 1, 10, "runs")
    assert stored(d) == 0


def test_an_unknown_table_is_refused(daemon):
    status, answer = post(daemon, "/api/v1/ingest/passwords", b"[]")
    assert status == 400 and "passwords" in answer["error"]
