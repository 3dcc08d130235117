"""Residents' and workers' identities never leave gridwatch, whatever source they come through.

The rule book (DOMAIN.md, "Privacy"): no household, person or worker identifier, name, phone
or ID number in a metric label, an alert label or a log line at INFO level; the grid is the
finest public unit. Source data is full of them — ids are often phone or ID-card numbers, case
titles name the parties — so every source type gets the same city with personal data in every
column that can hold it (good rows and bad ones), a real daemon runs all four domain checks with
rules that fire, and none of those strings may appear in what gridwatch serves, sends or logs.
"""

from __future__ import annotations

import asyncio
import csv
import json
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from aiohttp import web

from gridwatch.rows import parse_ts
from gridwatch.schema import STANDARD_SCHEMA, create_sql
from gridwatch.testing import DaemonProcess, free_port, wait_for, write_standard_db

TZ = ZoneInfo("Asia/Shanghai")
INGEST_TOKEN = "privacy-ingest-token"


def id_card(first17: str) -> str:
    """An 18-digit resident ID number with its ISO 7064 MOD 11-2 check character (GB 11643)."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


NAMES = ["张伟", "王秀英", "李娜", "刘洋"]
PHONES = ["13812345678", "13987654321", "15011112222", "18600001111", "13700002222"]
ID_CARDS = [id_card(base) for base in ("11010519491231002", "44030119850615123", "31011519900101007")]
ID_CARDS.append(id_card("51010719781203551"))
HOUSEHOLDS = [f"户-{NAMES[0]}-{PHONES[0]}", ID_CARDS[0], "HH20260042", PHONES[1]]
WORKERS = [f"W-{NAMES[2]}", f"WK{PHONES[2]}", "W-88012"]
PERSONAL = [*NAMES, *PHONES, *ID_CARDS, *HOUSEHOLDS, *WORKERS]


def test_the_id_numbers_are_well_formed() -> None:
    """Real-looking data, so a filter keyed on the format would be tested too: 11010519491231002X is
    the standard's own example."""
    assert id_card("11010519491231002") == "11010519491231002X"
    assert all(len(n) == 18 for n in ID_CARDS)


def city(now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Three grids; personal data in every id, worker and free-text column; bad rows carrying it too.

    What the rules see, by hand: G1 has a never-visited key household (KeyHouseholdOverdue), an open
    major case reported 3 days ago under the 1-day community limit (MajorIncidentOpen,
    IncidentsOverdue), today's daily report flagged as a petition (DailyReportStatus, critical) and
    no patrol (PatrolOverdue); G2 has one of two households visited (coverage 0.5: VisitCoverageLow),
    a case closed a day after its deadline (OnTimeClosureLow) and its last patrol 3 days ago.
    """

    def at(delta: timedelta) -> str:
        return (now - delta).strftime("%Y-%m-%d %H:%M:%S")

    day = timedelta(days=1)
    return {
        "grids": [
            {"grid_id": "G1", "name": "一网格", "community": "和平社区", "street": "东街街道", "zone": "red"},
            {"grid_id": "G2", "name": "二网格", "community": "和平社区", "street": "东街街道", "zone": None},
            {"grid_id": "G3", "name": "三网格", "community": "幸福社区", "street": "西街街道", "zone": None},
        ],
        "households": [
            {"household_id": HOUSEHOLDS[0], "grid_id": "G1", "category": "独居老人"},
            {"household_id": HOUSEHOLDS[1], "grid_id": "G1", "category": None},
            {"household_id": HOUSEHOLDS[2], "grid_id": "G2", "category": None},
            {"household_id": HOUSEHOLDS[3], "grid_id": "G2", "category": ""},
            # bad: a name typed into the grid column
            {"household_id": ID_CARDS[3], "grid_id": NAMES[3], "category": None},
        ],
        "visits": [
            {
                "visit_id": f"走访-{ID_CARDS[1]}",
                "household_id": HOUSEHOLDS[1],
                "grid_id": "G1",
                "worker_id": WORKERS[0],
                "visited_at": at(2 * day),
            },
            {
                "visit_id": PHONES[3],
                "household_id": HOUSEHOLDS[3],
                "grid_id": "G2",
                "worker_id": WORKERS[1],
                "visited_at": at(day),
            },
            # bad: a phone number in the grid column, a name and a phone in the timestamp
            {
                "visit_id": f"走访-{NAMES[1]}",
                "household_id": HOUSEHOLDS[2],
                "grid_id": PHONES[4],
                "worker_id": WORKERS[2],
                "visited_at": at(day),
            },
            {
                "visit_id": f"走访-{PHONES[2]}",
                "household_id": HOUSEHOLDS[2],
                "grid_id": "G2",
                "worker_id": WORKERS[2],
                "visited_at": f"{NAMES[0]} {PHONES[0]}",
            },
            # bad: a visit to a household nobody registered, by its ID number
            {
                "visit_id": f"V-{ID_CARDS[2]}",
                "household_id": ID_CARDS[2],
                "grid_id": "G3",
                "worker_id": WORKERS[0],
                "visited_at": at(day),
            },
        ],
        "patrols": [
            {
                "patrol_id": f"巡查-{NAMES[1]}-{PHONES[1]}",
                "grid_id": "G2",
                "worker_id": WORKERS[1],
                "patrolled_at": at(3 * day),
            },
            {
                "patrol_id": ID_CARDS[2],
                "grid_id": "G3",
                "worker_id": WORKERS[2],
                "patrolled_at": at(timedelta(minutes=5)),
            },
            # bad: a worker's phone number as the time
            {"patrol_id": f"巡查-{WORKERS[0]}", "grid_id": "G3", "worker_id": WORKERS[0], "patrolled_at": PHONES[1]},
        ],
        "incidents": [
            {
                "incident_id": ID_CARDS[2],
                "grid_id": "G1",
                "category": f"{NAMES[0]}与{NAMES[1]}宅基地纠纷，联系电话{PHONES[0]}",
                "severity": "major",
                "tier": "community",
                "reported_at": at(3 * day),
                "accepted_at": at(3 * day - timedelta(hours=1)),
            },
            {
                "incident_id": f"案-{NAMES[2]}-{PHONES[3]}",
                "grid_id": "G2",
                "category": f"{NAMES[2]}（身份证{ID_CARDS[0]}）反映噪音扰民",
                "severity": "normal",
                "tier": "subdistrict",
                "reported_at": at(5 * day),
                "resolved_at": at(2 * day),
                "closed_at": at(day),
                "reopened_count": 1,
                "extended": 0,
            },
            # bad: a name as the severity, a phone number as the tier
            {
                "incident_id": f"案-{ID_CARDS[3]}",
                "grid_id": "G3",
                "severity": NAMES[3],
                "tier": "community",
                "reported_at": at(day),
            },
            {
                "incident_id": f"案-{PHONES[4]}",
                "grid_id": "G3",
                "severity": "normal",
                "tier": PHONES[4],
                "reported_at": at(day),
            },
        ],
        "reports": [
            {
                "report_id": f"报-{NAMES[0]}-{PHONES[0]}",
                "grid_id": "G1",
                "kind": "daily",
                "period": now.strftime("%Y-%m-%d"),
                "submitted_at": at(timedelta(seconds=1)),
                "flag": "petition",
            },
            # good: yesterday's daily reports of G2 and G3, so that the bad rows below are not most
            # of the reports (a check whose rows are mostly bad has failed, DOMAIN.md §5)
            *(
                {
                    "report_id": f"报-{who}",
                    "grid_id": grid,
                    "kind": "daily",
                    "period": (now - day).strftime("%Y-%m-%d"),
                    "submitted_at": at(day),
                }
                for who, grid in ((NAMES[1], "G2"), (PHONES[2], "G3"))
            ),
            # bad: a phone number as the kind, an ID number as the period, a name as the flag
            {"report_id": f"报-{ID_CARDS[1]}", "grid_id": "G2", "kind": PHONES[1], "submitted_at": at(day)},
            {
                "report_id": f"报-{WORKERS[1]}",
                "grid_id": "G2",
                "kind": "monthly",
                "period": ID_CARDS[1],
                "submitted_at": at(day),
            },
            {
                "report_id": f"报-{HOUSEHOLDS[2]}",
                "grid_id": "G3",
                "kind": "daily",
                "period": now.strftime("%Y-%m-%d"),
                "submitted_at": at(day),
                "flag": NAMES[2],
            },
        ],
    }


# --------------------------------------------------------------------------- local HTTP servers


class LocalServers:
    """An HTTP platform serving the city as JSON, and a webhook receiver, on a loop of their own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = free_port()
        self.tables: dict[str, list[Any]] = {}
        self.received: list[bytes] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalServers:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/{table}", self.table)
        app.router.add_post("/hook", self.hook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def table(self, request: web.Request) -> web.Response:
        rows = self.tables.get(request.match_info["table"])
        return web.Response(status=404) if rows is None else web.json_response(rows)

    async def hook(self, request: web.Request) -> web.Response:
        self.received.append(await request.read())
        return web.Response(status=200)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[LocalServers]:
    with LocalServers() as s:
        yield s


# --------------------------------------------------------------------------- the city, through each source


def write_files(directory: Path, tables: dict[str, list[dict[str, Any]]], fmt: str) -> None:
    directory.mkdir()
    for table, rows in tables.items():
        columns = STANDARD_SCHEMA[table]
        if fmt == "csv":
            with open(directory / f"{table}.csv", "w", newline="", encoding="utf-8") as f:
                out = csv.writer(f)
                out.writerow(columns)
                out.writerows([["" if r.get(c) is None else r.get(c) for c in columns] for r in rows])
                out.writerow([f"{NAMES[0]}的户", PHONES[0]])  # bad: a short line
        else:
            lines = [json.dumps(r, ensure_ascii=False) for r in rows]
            lines += [f'{{"{NAMES[1]}": {PHONES[1]}', json.dumps([ID_CARDS[0]])]  # bad: broken JSON, not an object
            (directory / f"{table}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def prepare_sqlite(d: Path, tables: dict[str, list[dict[str, Any]]], **_: Any) -> str:
    write_standard_db(d / "city.db", tables)
    return 'type = "sqlite"\npath = "city.db"'


def prepare_sql(d: Path, tables: dict[str, list[dict[str, Any]]], postgres: Any, **_: Any) -> str:
    name = f"privacy_{d.name.replace('-', '_').lower()}"
    dsn = postgres.createdb(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table, rows in tables.items():
            conn.execute(create_sql(table))  # text timestamps: the bad rows must fit
            columns = STANDARD_SCHEMA[table]
            for r in rows:
                marks = ", ".join(["%s"] * len(columns))
                conn.execute(f"INSERT INTO {table} VALUES ({marks})", [r.get(c) for c in columns])
    return f'type = "sql"\nurl = "{postgres.url_for(name)}"'


def prepare_csv(d: Path, tables: dict[str, list[dict[str, Any]]], **_: Any) -> str:
    write_files(d / "exports", tables, "csv")
    return 'type = "csv"\npath = "exports"'


def prepare_jsonl(d: Path, tables: dict[str, list[dict[str, Any]]], **_: Any) -> str:
    write_files(d / "exports", tables, "jsonl")
    return 'type = "jsonl"\npath = "exports"'


def prepare_http(d: Path, tables: dict[str, list[dict[str, Any]]], servers: LocalServers, **_: Any) -> str:
    prefix = d.name
    for table, rows in tables.items():
        servers.tables[f"{prefix}-{table}"] = [*rows, f"{NAMES[3]} {PHONES[3]}"]  # bad: not an object
    return f'type = "http"\nurl = "{servers.base}/api/{prefix}-{{table}}"'


def prepare_ingest(d: Path, tables: dict[str, list[dict[str, Any]]], **_: Any) -> str:
    return f'type = "ingest"\ntoken = "{INGEST_TOKEN}"'


PREPARE: dict[str, Callable[..., str]] = {
    "sqlite": prepare_sqlite,
    "sql": prepare_sql,
    "csv": prepare_csv,
    "jsonl": prepare_jsonl,
    "http": prepare_http,
    "ingest": prepare_ingest,
}


def post(gw: DaemonProcess, table: str, rows: Any) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"{gw.base}/api/v1/ingest/{table}",
        data=json.dumps(rows, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {INGEST_TOKEN}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def push_city(gw: DaemonProcess, tables: dict[str, list[dict[str, Any]]]) -> None:
    """The city pushed as a platform would, bad rows included, then batches the API refuses."""
    for table, rows in tables.items():
        assert post(gw, table, rows) == (201, {"stored": len(rows), "table": table})
    refused = [
        ("visits", [{"visit_id": PHONES[0], "grid_id": "G1", NAMES[0]: ID_CARDS[0]}]),  # unknown column
        ("households", [{"household_id": HOUSEHOLDS[0], "grid_id": {"name": NAMES[1]}}]),  # nested value
        ("patrols", {"grid_id": "G1", "worker_id": WORKERS[0]}),  # no id
    ]
    for table, body in refused:
        status, answer = post(gw, table, body)
        assert status == 400 and answer["error"], answer


REASONS = {
    # reason -> the bad rows above that carry it (each run counts them again: at least this many)
    "unknown_grid": 2,  # the household in grid 刘洋, the visit in grid 13700002222
    "bad_timestamp": 2,  # the visit at "张伟 13812345678", the patrol at 13987654321
    "bad_severity": 1,
    "bad_tier": 1,
    "bad_kind": 1,
    "bad_period": 1,
    "bad_flag": 1,
    "unknown_household": 1,
}


def rejected(gw: DaemonProcess) -> dict[str, float]:
    return {
        dict(labels)["reason"]: value
        for (name, labels), value in gw.metrics().items()
        if name == "gridwatch_source_rows_rejected_total"
    }


EXPECTED_ALERTS = {
    ("KeyHouseholdOverdue", "G1"),
    ("MajorIncidentOpen", "G1"),
    ("IncidentsOverdue", "G1"),
    ("DailyReportStatus", "G1"),
    ("PatrolOverdue", "G1"),
    ("PatrolOverdue", "G2"),
    ("VisitCoverageLow", "G2"),
    ("OnTimeClosureLow", "G2"),
    ("HouseholdsRegistered", "G1"),
    ("HouseholdsRegistered", "G2"),
}


@pytest.mark.parametrize("source_type", list(PREPARE))
def test_no_personal_data_reaches_metrics_alerts_grids_notifications_or_logs(
    source_type: str, tmp_path: Path, servers: LocalServers, request: pytest.FixtureRequest
) -> None:
    postgres = request.getfixturevalue("postgres") if source_type == "sql" else None
    now = datetime.now(TZ)
    tables = city(now)
    source = PREPARE[source_type](tmp_path, tables, postgres=postgres, servers=servers)
    hook = f"{servers.base}/hook"
    port = free_port()
    checks = "".join(
        f'[[checks]]\nname = "{c}"\ntype = "{c}"\nsource = "data"\ninterval = "2s"\n'
        for c in ("visits", "patrols", "incidents", "reports")
    )
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        timezone = "Asia/Shanghai"
        [server]
        listen = "127.0.0.1:{port}"
        [state]
        path = "state.db"
        [alerting]
        evaluation_interval = "1s"
        [grids]
        source = "data"
        refresh = "1s"
        [notifiers.hook]
        type = "webhook"
        url = "{hook}?source={source_type}"
        [notifiers.audit]
        type = "log"
        [[rules]]
        alert = "HouseholdsRegistered"
        metric = "gridwatch_grid_households"
        above = {{ warning = 0 }}
        labels = {{ street = "{{street}}", where = "{{community}}{{grid_name}}" }}
        summary = "{{grid_name}}（{{grid}}）登记{{value:.0f}}户"
        description = "{{street}}{{community}}{{grid_name}}"
        """)
        + f"[sources.data]\n{source}\n"
        + checks,
        encoding="utf-8",
    )
    start = len(servers.received)
    with DaemonProcess(cfg, port, args=("--log-format", "json", "--log-level", "info")) as gw:
        if source_type == "ingest":
            push_city(gw, tables)
        wait_for(lambda: gw.get("/readyz")[0] == 200, 30, f"every check to run\n{gw.log()}")

        def firing() -> set[tuple[str, str]]:
            return {
                (a["alert"], a["labels"].get("grid", "")) for a in gw.json("/api/v1/alerts") if a["state"] == "firing"
            }

        wait_for(lambda: firing() >= EXPECTED_ALERTS, 30, f"the alerts to fire (firing: {firing()})")
        got = wait_for(lambda: rejected(gw) if set(REASONS) <= set(rejected(gw)) else None, 20, "bad rows counted")
        for reason, n in REASONS.items():
            assert got[reason] >= n, (reason, got)

        def notified() -> set[str]:
            names = set()
            for body in servers.received[start:]:
                names |= {a["labels"]["alertname"] for a in json.loads(body)["alerts"]}
            return names

        wants = {a for a, _ in EXPECTED_ALERTS}
        wait_for(lambda: wants <= notified(), 30, "the webhook to receive every alert")
        wait_for(lambda: gw.log().count("notification firing") >= len(EXPECTED_ALERTS), 20, "the log notifier")

        outputs = {
            "/metrics": gw.get("/metrics")[1].decode(),
            "/metrics (OpenMetrics)": gw.get("/metrics", {"Accept": "application/openmetrics-text"})[1].decode(),
            "/api/v1/alerts": json.dumps(gw.json("/api/v1/alerts"), ensure_ascii=False),
            "/api/v1/grids": json.dumps(gw.json("/api/v1/grids"), ensure_ascii=False),
            "/api/v1/status": json.dumps(gw.json("/api/v1/status"), ensure_ascii=False),
            "/api/v1/summary": json.dumps(gw.json("/api/v1/summary?by=community"), ensure_ascii=False),
            "/api/v1/assessment": json.dumps(gw.json("/api/v1/assessment"), ensure_ascii=False),
            "/api/v1/assessment (CSV)": gw.get("/api/v1/assessment?format=csv")[1].decode("utf-8-sig"),
            "webhook": "\n".join(b.decode() for b in servers.received[start:]),
        }
        for grid in ("G1", "G2", "G3"):
            outputs[f"/api/v1/grids/{grid}"] = json.dumps(gw.json(f"/api/v1/grids/{grid}"), ensure_ascii=False)
    log_lines = [json.loads(line) for line in gw.log().splitlines() if line.startswith("{")]
    assert log_lines, gw.log()
    outputs["log (INFO and above)"] = "\n".join(
        json.dumps(r, ensure_ascii=False) for r in log_lines if r["level"] in ("info", "warning", "error", "critical")
    )
    # the data really went through: the grids and their public names are there
    assert '"一网格"' in outputs["/api/v1/grids"] and 'grid="G1"' in outputs["/metrics"]

    leaks = [(where, s) for where, text in outputs.items() for s in PERSONAL if s in text]
    assert not leaks, "personal data leaked:\n" + "\n".join(
        f"  {s!r} in {where}: ...{text_around(outputs[where], s)}..." for where, s in leaks
    )


def text_around(text: str, needle: str, width: int = 80) -> str:
    i = text.find(needle)
    return text[max(0, i - width) : i + len(needle) + width].replace("\n", " ")


def test_the_bad_rows_are_bad_for_the_reasons_counted() -> None:
    """The rejected-row counts the main test waits for, derived from the rows by hand."""
    tables = city(datetime(2026, 11, 21, 10, 0, tzinfo=TZ))
    grids = {g["grid_id"] for g in tables["grids"]}
    assert [h["grid_id"] for h in tables["households"] if h["grid_id"] not in grids] == [NAMES[3]]
    assert [v["grid_id"] for v in tables["visits"] if v["grid_id"] not in grids] == [PHONES[4]]
    for text in (f"{NAMES[0]} {PHONES[0]}", PHONES[1]):  # 15011112222 would read as 1501-11-12 22:00
        with pytest.raises(ValueError):
            parse_ts(text, TZ)
