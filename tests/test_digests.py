"""Digests (通报, DOMAIN.md §7) worked out by hand on a small city, through the CLI and a daemon.

The city (Asia/Shanghai), two streets, five grids; each grid sends its daily report at 10:00 of
every day from 11-09 to 11-21 except where said:

- 东城街道 幸福社区 G1 第一网格: nothing on 11-19 and 11-20 -> yellow both days.
- 东城街道 幸福社区 G2 第二网格: nothing on 11-18 (yellow); 11-20's report flags a petition (red).
- 东城街道 和平社区 G3 第三网格: every day green.
- 西城街道 江南社区 G4 第四网格: only 11-09's report, and on 11-16 one that flags a petition: yellow
  every day from 11-10 on, red on 11-16. The reports check keeps 7 days (``window = "7d"``): the
  lights of 11-09 (green) to 11-13 (yellow) are in the state database from before, as a daemon
  kept them.
- 西城街道 江南社区 G5, named ``[link](x) <@all>`` + a line break + ``### 伪造标题`` (a hostile name): its
  11-20 report came at 21:30, after the 20:00 cutoff -> yellow on 11-20.

Cases (community tier, 1 day to handle; 二次通报 past the deadline by over 7 days, 挂牌督办 over 14):
I1 G1 reported 11-19 08:00 (due 11-20 08:00); I2 G2 reported 11-11 08:00 (due 11-12 08:00); I3 G4
reported 11-03 08:00 (due 11-04 08:00); I4 G4 reported 11-20 06:00 (due 11-21 06:00); I5 G3
reported 11-18 08:00, closed the same day.

**Daily digest as of Saturday 11-21 09:00, for 11-20.** Lights of 11-20: 东城 G1 yellow, G2 red,
G3 green; 西城 G4 yellow, G5 yellow. Red or yellow up to 11-20: G4 from 11-10, 11 days (red 1,
yellow 10); G1 2 days yellow; G2 1 day red; G5 1 day yellow. Cases at 09:00: I1 25 h late (超期,
东城), I2 9 d 1 h (二次通报, 东城), I3 17 d 1 h (挂牌督办, 西城), I4 3 h (超期, 西城).

**Weekly digest as of Friday 11-20 17:30, for 11-13 to 11-19.** Light-days: G1 6 green 1 yellow,
G2 6 green 1 yellow, G3 7 green (东城: red 0, yellow 2, green 19); G4 6 yellow 1 red, G5 7 green
(西城: red 1, yellow 6, green 7). Red or yellow up to 11-19: G4 from 11-10, 10 days (red 1, yellow
9); G1 1 day yellow. Cases at 17:30: I1 9.5 h late (超期, 东城), I2 8 d 9.5 h (二次通报, 东城), I3
16 d 9.5 h (挂牌督办, 西城); I4 is not due yet.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import sqlite3
import textwrap
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from time import monotonic
from typing import Any
from urllib.parse import unquote_plus
from zoneinfo import ZoneInfo

import pytest

from gridwatch import config
from gridwatch.api import Grid, Sample, Tally
from gridwatch.cli import main
from gridwatch.digests import render
from gridwatch.digests.content import Inputs, Ranked, Ranking, Run, build
from gridwatch.digests.ledger import undelivered
from gridwatch.digests.periods import latest_due
from gridwatch.process.daemon import Daemon
from gridwatch.settings import DigestSpec
from gridwatch.store import Store
from gridwatch.testing import free_port, write_standard_db
from tests.test_notifiers import Recorder

TZ = ZoneInfo("Asia/Shanghai")
HOSTILE = "[link](x) <@all>\n### 伪造标题"
SHOWN = "［link］（x） ＜＠all＞ ＃＃＃ 伪造标题"  # what a robot shows of it
GRIDS = [
    {"grid_id": "G1", "name": "第一网格", "community": "幸福社区", "street": "东城街道"},
    {"grid_id": "G2", "name": "第二网格", "community": "幸福社区", "street": "东城街道"},
    {"grid_id": "G3", "name": "第三网格", "community": "和平社区", "street": "东城街道"},
    {"grid_id": "G4", "name": "第四网格", "community": "江南社区", "street": "西城街道"},
    {"grid_id": "G5", "name": HOSTILE, "community": "江南社区", "street": "西城街道"},
]
KEPT = [("G4", "2026-11-09", "green")] + [("G4", f"2026-11-{d}", "yellow") for d in range(10, 14)]


def _reports() -> list[dict[str, Any]]:
    rows = []
    for day in range(9, 22):
        period = f"2026-11-{day:02d}"
        for grid in ("G1", "G2", "G3", "G4", "G5"):
            if (grid == "G1" and day in (19, 20)) or (grid == "G2" and day == 18) or (grid == "G4" and day != 9):
                continue
            at = "21:30:00" if (grid == "G5" and day == 20) else "10:00:00"
            flag = "petition" if grid == "G2" and day == 20 else None
            rows.append(
                {
                    "report_id": f"R{grid}{day}",
                    "grid_id": grid,
                    "kind": "daily",
                    "period": period,
                    "submitted_at": f"{period} {at}",
                    "flag": flag,
                }
            )
    rows.append(
        {
            "report_id": "RG4-16",
            "grid_id": "G4",
            "kind": "daily",
            "period": "2026-11-16",
            "submitted_at": "2026-11-16 10:00:00",
            "flag": "petition",
        }
    )
    return rows


def _incident(iid: str, grid: str, reported: str, **kw: Any) -> dict[str, Any]:
    return {
        "incident_id": iid,
        "grid_id": grid,
        "severity": "normal",
        "tier": "community",
        "reported_at": reported,
        **kw,
    }


def write_city(d: Path) -> Path:
    return write_standard_db(
        d / "city.db",
        {
            "grids": GRIDS,
            "reports": _reports(),
            "incidents": [
                _incident("I1", "G1", "2026-11-19 08:00:00"),
                _incident("I2", "G2", "2026-11-11 08:00:00"),
                _incident("I3", "G4", "2026-11-03 08:00:00"),
                _incident("I4", "G4", "2026-11-20 06:00:00"),
                _incident("I5", "G3", "2026-11-18 08:00:00", closed_at="2026-11-18 18:00:00"),
            ],
        },
    )


def keep_lights(state: Path) -> None:
    """The lights a daemon kept before the checks' window (the reports check's own table)."""
    store = Store(state)
    store.open()
    store.close()
    with sqlite3.connect(state) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS reports_daily_lights (grid_id TEXT NOT NULL, day TEXT NOT NULL, "
            "light TEXT NOT NULL, PRIMARY KEY (grid_id, day))"
        )
        db.executemany("INSERT INTO reports_daily_lights VALUES (?, ?, ?)", KEPT)
    db.close()


def write_config(
    d: Path,
    extra: str = "",
    port: int | None = None,
    interval: str = "1s",
    name: str = "gridwatch",
    state: str = "state",
) -> Path:
    checks = "".join(
        f'[[checks]]\nname = "{c}"\ntype = "{c}"\nsource = "city"\ninterval = "{interval}"\ntimeout = "30s"\n'
        + ('window = "7d"\n' if c == "reports" else "")
        for c in ("incidents", "reports")
    )
    path = d / f"{name}.toml"
    path.write_text(
        f'timezone = "Asia/Shanghai"\n[server]\nlisten = "127.0.0.1:{port or free_port()}"\n'
        'external_url = "https://gridwatch.example.org/board"\n'
        f'[state]\npath = "{state}.db"\n[grids]\nsource = "city"\n'
        '[sources.city]\ntype = "sqlite"\npath = "city.db"\n' + checks + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def city(tmp_path: Path) -> Path:
    write_city(tmp_path)
    keep_lights(tmp_path / "state.db")
    return tmp_path


DAILY = f"""\
### 网格化管理日报（2026年11月20日）
> 共 5 个网格

**一、各街道亮灯情况（网格数）**
- 东城街道：红灯 1 个，黄灯 1 个，绿灯 1 个
- 西城街道：红灯 0 个，黄灯 2 个，绿灯 0 个

**二、连续亮红灯、黄灯最久的网格（截至11月20日）**
1. 西城街道 江南社区 第四网格：连续 11 天（红灯 1 天，黄灯 10 天）
2. 东城街道 幸福社区 第一网格：连续 2 天黄灯
3. 东城街道 幸福社区 第二网格：连续 1 天红灯
4. 西城街道 江南社区 {SHOWN}：连续 1 天黄灯

**三、案件督办（截至11月21日 09:00）**
- 东城街道：超期 1 件，二次通报 1 件，挂牌督办 0 件
- 西城街道：超期 1 件，二次通报 0 件，挂牌督办 1 件

[查看网格监测看板](https://gridwatch.example.org/board)"""

WEEKLY = """\
### 网格化管理周评（2026年11月13日至19日）
> 共 5 个网格，7 天

**一、各街道亮灯情况（网格·天次）**
- 西城街道：红灯 1 天次，黄灯 6 天次，绿灯 7 天次
- 东城街道：红灯 0 天次，黄灯 2 天次，绿灯 19 天次

**二、连续亮红灯、黄灯最久的网格（截至11月19日）**
1. 西城街道 江南社区 第四网格：连续 10 天（红灯 1 天，黄灯 9 天）
2. 东城街道 幸福社区 第一网格：连续 1 天黄灯

**三、案件督办（截至11月20日 17:30）**
- 东城街道：超期 1 件，二次通报 1 件，挂牌督办 0 件
- 西城街道：超期 0 件，二次通报 0 件，挂牌督办 1 件

[查看网格监测看板](https://gridwatch.example.org/board)"""


def assert_safe(markdown: str) -> None:
    """Nothing from data makes a link, a mention or a heading; no person shows."""
    assert "[link]" not in markdown and "<@all>" not in markdown and "@all" not in markdown
    headings = [line for line in markdown.splitlines() if line.lstrip().startswith("#")]
    assert len(headings) == 1 and headings[0].startswith("### 网格化管理"), headings
    assert markdown.count("](") <= 1  # the board's link only
    for code in ("overdue", "re_reported", "supervised", "petition", "yellow", "daily"):
        assert code not in markdown


# -- the CLI on the city -------------------------------------------------------------------------


def test_daily_digest_by_hand(city: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(city)
    before = (city / "state.db").read_bytes()
    assert main(["digest", "daily", "-c", str(cfg), "--now", "2026-11-21T09:00"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip("\n") == DAILY
    assert_safe(out)
    assert (city / "state.db").read_bytes() == before  # a replay leaves the daemon's record alone


def test_weekly_digest_by_hand(city: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(city)
    assert main(["digest", "weekly", "-c", str(cfg), "--now", "2026-11-20T17:30"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == WEEKLY


def test_a_street_office_gets_only_its_street(city: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(
        city,
        '[notifiers.xicheng]\ntype = "webhook"\nurl = "http://127.0.0.1:9/x"\n'
        '[[digests]]\nkind = "daily"\nname = "xicheng-daily"\nnotifiers = ["xicheng"]\nstreets = ["西城街道"]\n',
    )
    assert main(["digest", "daily", "-c", str(cfg), "--now", "2026-11-21T09:00"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == ["### 网格化管理日报（2026年11月20日，西城街道）", "> 共 2 个网格"]
    assert "东城街道" not in out and "第一网格" not in out
    assert "- 西城街道：红灯 0 个，黄灯 2 个，绿灯 0 个" in out
    assert "1. 西城街道 江南社区 第四网格：连续 11 天（红灯 1 天，黄灯 10 天）" in out
    assert f"2. 西城街道 江南社区 {SHOWN}：连续 1 天黄灯" in out
    assert "- 西城街道：超期 1 件，二次通报 0 件，挂牌督办 1 件" in out


def test_send_goes_to_the_configured_robots_and_webhook(city: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = Recorder().start()
    try:
        cfg = write_config(
            city, notifiers(rec) + '[[digests]]\nkind = "daily"\nnotifiers = ["wecom", "ding", "hook"]\n'
        )
        assert main(["digest", "daily", "-c", str(cfg), "--now", "2026-11-21T09:00", "--send"]) == 0
        assert sorted(capsys.readouterr().out.split("\n")[:3]) == [
            f"daily for 2026-11-20: sent to {n}" for n in ("ding", "hook", "wecom")
        ]
        check_formats(rec, made="09:00")

        rec.answer("/wecom", (200, {"errcode": 93000, "errmsg": "invalid webhook url"}))
        assert main(["digest", "daily", "-c", str(cfg), "--now", "2026-11-21T09:00", "--send"]) == 1
        assert "wecom failed: " in capsys.readouterr().err
    finally:
        rec.stop()


def test_digest_command_errors(city: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(city)
    assert main(["digest", "daily", "-c", str(cfg), "--send"]) == 2  # nothing configured to send to
    assert "no [[digests]] entry of kind 'daily'" in capsys.readouterr().err
    assert main(["digest", "daily", "-c", str(cfg), "--now", "yesterday"]) == 2
    assert "not an ISO 8601 time" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["digest", "hourly", "-c", str(cfg)])
    assert exc.value.code == 2


def notifiers(rec: Recorder) -> str:
    """The robots and the webhook, on the recorder; no alert matches them, so they get digests only."""
    return textwrap.dedent(
        f"""
        [notifiers.wecom]
        type = "wecom"
        url = "{rec.url}/wecom?key=K1"
        match = {{ digests = "only" }}
        [notifiers.ding]
        type = "dingtalk"
        url = "{rec.url}/ding?access_token=T1"
        secret = "SEC-1"
        match = {{ digests = "only" }}
        [notifiers.hook]
        type = "webhook"
        url = "{rec.url}/hook"
        match = {{ digests = "only" }}
        [notifiers.log]
        type = "log"
        """
    )


def check_formats(rec: Recorder, made: str) -> None:
    """One message to each receiver, in its documented format, saying what was worked out by hand."""
    expected = DAILY.replace("（截至11月21日 09:00）", f"（截至11月21日 {made}）")
    [wecom] = rec.received("/wecom")
    assert wecom.query == {"key": "K1"}
    assert wecom.body == {"msgtype": "markdown", "markdown": {"content": expected}}
    assert len(expected.encode()) <= 4096

    [ding] = rec.received("/ding")
    assert ding.body == {
        "msgtype": "markdown",
        "markdown": {"title": "网格化管理日报（2026年11月20日）", "text": expected},
    }
    ts = ding.query["timestamp"]
    want = base64.b64encode(hmac.new(b"SEC-1", f"{ts}\nSEC-1".encode(), hashlib.sha256).digest()).decode()
    assert ding.query["access_token"] == "T1" and unquote_plus(ding.query_string.split("sign=")[1]) == want

    [hook] = rec.received("/hook")
    doc = hook.body
    assert doc["type"] == "gridwatch.digest" and doc["version"] == 1
    assert (doc["id"], doc["digest"], doc["kind"]) == ("daily/2026-11-20", "daily", "daily")
    assert doc["period"] == {"key": "2026-11-20", "start": "2026-11-20", "end": "2026-11-20", "days": 1}
    assert doc["due_at"] == "2026-11-21T08:30:00+08:00"
    assert doc["grids"] == 5 and doc["streets"] == []
    assert doc["lights"] == [
        {"street": "东城街道", "red": 1, "yellow": 1, "green": 1},
        {"street": "西城街道", "red": 0, "yellow": 2, "green": 0},
    ]
    assert doc["lit_longest"]["total"] == 4
    assert [(g["grid"], g["days"], g["red"], g["yellow"]) for g in doc["lit_longest"]["grids"]] == [
        ("G4", 11, 1, 10),
        ("G1", 2, 0, 2),
        ("G2", 1, 1, 0),
        ("G5", 1, 0, 1),
    ]
    assert doc["lit_longest"]["grids"][3]["name"] == HOSTILE  # JSON keeps the value; only Markdown escapes
    [section] = doc["sections"]
    assert section["title"] == "案件督办"
    assert [c["code"] for c in section["columns"]] == [
        "incidents_overdue",
        "incidents_re_reported",
        "incidents_supervised",
    ]
    assert type(section["streets"][0]["counts"]["incidents_overdue"]) is int  # 1 on the wire, not 1.0
    assert section["streets"] == [
        {
            "street": "东城街道",
            "counts": {"incidents_overdue": 1, "incidents_re_reported": 1, "incidents_supervised": 0},
        },
        {
            "street": "西城街道",
            "counts": {"incidents_overdue": 1, "incidents_re_reported": 0, "incidents_supervised": 1},
        },
    ]
    assert doc["rankings"] == [] and doc["url"] == "https://gridwatch.example.org/board"
    assert doc["markdown"] == expected


# -- a daemon on the city --------------------------------------------------------------------------


class Clock:
    """Reads ``at`` when set, then moves on with real time (so retries come due)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    @property
    def at(self) -> datetime:
        return self._at

    @at.setter
    def at(self, value: datetime) -> None:
        self._at, self._set = value, monotonic()

    def __call__(self) -> datetime:
        return self._at + timedelta(seconds=monotonic() - self._set)


async def run_daemon(cfg: Path, clock: Clock, until: Any, timeout: float = 30.0) -> None:
    """A daemon whose clock reads ``clock``, stopped once ``until()`` holds (after every check ran)."""
    daemon = Daemon(cfg, *config.load(cfg), clock=clock)
    await daemon.start()
    try:
        for _ in range(int(timeout / 0.05)):
            view = daemon.view
            if view is not None and not view.not_ready() and until() and await settled(daemon):
                return
            await asyncio.sleep(0.05)
        d = daemon.digests
        assert d is not None
        waiting = daemon.view.not_ready() if daemon.view else "no view"
        raise AssertionError(f"the daemon did not get there: waiting for {waiting}, made {d._settled}, {d.waiting}")
    finally:
        await daemon.stop()


async def settled(daemon: Daemon) -> bool:
    """Every digest due is made (or not owed) and none waits for delivery."""
    d = daemon.digests
    assert d is not None
    due = {(s.name, latest_due(s, daemon.clock(), TZ).key) for s in d.settings.digests}
    return d._settled >= due and not await d.ledger.acall(undelivered)


def ledger(state: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(state) as db:
        rows = db.execute(
            "SELECT d.name, d.period, x.notifier, x.delivered_at IS NOT NULL FROM digests d "
            "JOIN digest_deliveries x ON x.digest_id = d.id ORDER BY d.id, x.notifier"
        ).fetchall()
    db.close()
    return rows


def test_a_daemon_sends_each_digest_once_and_a_missed_one_when_it_comes_back(city: Path) -> None:
    rec = Recorder().start()
    try:
        cfg = write_config(
            city, notifiers(rec) + '[[digests]]\nkind = "daily"\nnotifiers = ["wecom", "ding", "hook"]\n'
        )
        clock = Clock(datetime(2026, 11, 21, 8, 0, tzinfo=TZ))
        # first run, before 08:30: the digest is configured from now on; 11-19's (due 11-20 08:30) is not owed
        asyncio.run(run_daemon(cfg, clock, lambda: True))
        assert rec.received() == [] and ledger(city / "state.db") == []

        # down at 08:30; back at 09:00: 11-20's digest goes out at once
        clock.at = datetime(2026, 11, 21, 9, 0, 5, tzinfo=TZ)
        asyncio.run(run_daemon(cfg, clock, lambda: len(rec.received()) == 3))
        check_formats(rec, made="09:00")
        rows = ledger(city / "state.db")
        assert rows == [("daily", "2026-11-20", n, 1) for n in ("ding", "hook", "wecom")]
        assert rec.received("/hook")[0].body["rankings"] == []  # a daily digest ranks nobody

        # a restart the same day sends nothing again
        clock.at = datetime(2026, 11, 21, 10, 0, tzinfo=TZ)
        asyncio.run(run_daemon(cfg, clock, lambda: True))
        assert len(rec.received()) == 3

        # down over two mornings: only the latest period (11-22) goes out, not 11-21's as well
        clock.at = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)
        asyncio.run(run_daemon(cfg, clock, lambda: len(rec.received()) == 6))
        periods = [r.body["period"]["key"] for r in rec.received("/hook")]
        assert periods == ["2026-11-20", "2026-11-22"]
        assert [r[1] for r in ledger(city / "state.db")] == ["2026-11-20"] * 3 + ["2026-11-22"] * 3
    finally:
        rec.stop()


def test_a_weekly_digest_from_the_daemon_ranks_the_streets_and_their_grids(city: Path) -> None:
    rec = Recorder().start()
    try:
        cfg = write_config(city, notifiers(rec) + '[[digests]]\nkind = "weekly"\nnotifiers = ["hook"]\n')
        clock = Clock(datetime(2026, 11, 20, 16, 0, tzinfo=TZ))  # a Friday, before 17:00: owed from now on
        asyncio.run(run_daemon(cfg, clock, lambda: True))
        clock.at = datetime(2026, 11, 20, 17, 0, 5, tzinfo=TZ)
        asyncio.run(run_daemon(cfg, clock, lambda: len(rec.received("/hook")) == 1))
        [hook] = rec.received("/hook")
        rankings = hook.body["rankings"]
        # the streets by their grids' mean score, then each street's grids: every grid once
        assert rankings[0]["title"] == "街道得分排名"
        assert {e["name"] for e in rankings[0]["entries"]} == {"东城街道", "西城街道"}
        assert sorted(r["title"] for r in rankings[1:]) == ["东城街道网格得分排名", "西城街道网格得分排名"]
        assert sorted(e["grid"] for r in rankings[1:] for e in r["entries"]) == ["G1", "G2", "G3", "G4", "G5"]
        for r in rankings:
            assert [e["rank"] for e in r["entries"]] == sorted(e["rank"] for e in r["entries"])
            scores = [e["score"] for e in r["entries"]]
            assert scores == sorted(scores, reverse=True)  # rank 1 is the best score
    finally:
        rec.stop()


def test_a_failed_delivery_is_retried_with_the_same_message(city: Path) -> None:
    rec = Recorder().start()
    try:
        rec.answer("/hook", (503, {"error": "busy"}), (200, {}))
        cfg = write_config(city, notifiers(rec) + '[[digests]]\nkind = "daily"\nnotifiers = ["hook"]\n')
        seed_watch(city / "state.db", "daily", datetime(2026, 11, 20, tzinfo=TZ))
        clock = Clock(datetime(2026, 11, 21, 9, 0, tzinfo=TZ))
        asyncio.run(run_daemon(cfg, clock, lambda: len(rec.received()) == 2))
        first, second = rec.received("/hook")
        assert first.body == second.body and first.body["id"] == "daily/2026-11-20"
        assert ledger(city / "state.db") == [("daily", "2026-11-20", "hook", 1)]
    finally:
        rec.stop()


def seed_watch(path: Path, name: str, since: datetime, shared: bool = False) -> None:
    """Record that the digest ``name`` has been configured since ``since`` (as a daemon would have)."""
    from gridwatch.store import SHARED_MIGRATIONS

    store = Store(path, journal="DELETE", migrations=SHARED_MIGRATIONS) if shared else Store(path)
    store.open()
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO digest_watch (name, since) VALUES (?, ?)", [name, since.timestamp()])
    db.close()


# -- config -------------------------------------------------------------------------------------


def test_config_errors_name_file_key_and_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_city(tmp_path)
    cfg = write_config(
        tmp_path,
        '[notifiers.am]\ntype = "alertmanager"\nurls = ["http://127.0.0.1:9/"]\n'
        '[notifiers.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:9/h"\n'
        '[[digests]]\nkind = "daily"\nnotifiers = ["hook", "nosuch", "am"]\n'
        '[[digests]]\nkind = "daily"\nnotifiers = ["hook"]\nweekday = "friday"\n'
        '[[digests]]\nkind = "daily"\nnotifiers = ["hook"]\n'
        '[[digests]]\nkind = "hourly"\nnotifiers = ["hook"]\n'
        '[[digests]]\nkind = "monthly"\nday = 31\nnotifiers = []\n',
    )
    assert main(["check-config", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err.splitlines()
    f = str(cfg)
    assert f"{f}: digests[0].notifiers[1]: unknown notifier 'nosuch' (known: am, hook)" in err
    assert any(
        line.startswith(f"{f}: digests[0].notifiers[2]: notifier 'am' (alertmanager) takes no digests") for line in err
    )
    assert f"{f}: digests[1]: weekday applies to weekly digests only" in err
    assert any(line.startswith(f"{f}: digests[2].name: duplicate digest name 'daily'") for line in err)
    assert any(line.startswith(f"{f}: digests[3].kind: ") for line in err)
    assert any(line.startswith(f"{f}: digests[4].day: ") for line in err)
    assert any(line.startswith(f"{f}: digests[4].notifiers: ") for line in err)


def test_defaults_of_each_kind(tmp_path: Path) -> None:
    write_city(tmp_path)
    cfg = write_config(
        tmp_path,
        '[notifiers.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:9/h"\n'
        '[[digests]]\nkind = "daily"\nnotifiers = ["hook"]\n'
        '[[digests]]\nkind = "weekly"\nnotifiers = ["hook"]\n'
        '[[digests]]\nkind = "monthly"\nnotifiers = ["hook"]\n'
        '[[digests]]\nkind = "daily"\nname = "dongcheng"\nat = 07:45:00\nnotifiers = ["hook"]\n'
        'streets = ["东城街道"]\n',
    )
    settings, _ = config.load(cfg)
    got = [(d.name, d.kind, d.at, d.weekday, d.day, d.streets) for d in settings.digests]
    assert got == [
        ("daily", "daily", time(8, 30), None, None, []),
        ("weekly", "weekly", time(17, 0), "friday", None, []),
        ("monthly", "monthly", time(9, 0), None, 1, []),
        ("dongcheng", "daily", time(7, 45), None, None, ["东城街道"]),
    ]


# -- periods ------------------------------------------------------------------------------------


def spec(kind: str, **kw: Any) -> DigestSpec:
    return DigestSpec.model_validate({"kind": kind, "notifiers": ["x"], **kw})


@pytest.mark.parametrize(
    ("kind", "options", "now", "key", "due"),
    [
        ("daily", {}, "2026-11-21 08:30:00", "2026-11-20", "2026-11-21 08:30"),  # at the minute: due
        ("daily", {}, "2026-11-21 08:29:59", "2026-11-19", "2026-11-20 08:30"),  # a second before: yesterday's
        ("daily", {"at": "23:00"}, "2026-11-21 01:00:00", "2026-11-19", "2026-11-20 23:00"),
        ("weekly", {}, "2026-11-20 17:00:00", "2026-11-13/2026-11-19", "2026-11-20 17:00"),  # Friday
        ("weekly", {}, "2026-11-20 16:59:00", "2026-11-06/2026-11-12", "2026-11-13 17:00"),
        ("weekly", {}, "2026-11-23 09:00:00", "2026-11-13/2026-11-19", "2026-11-20 17:00"),  # Monday after
        (
            "weekly",
            {"weekday": "monday", "at": "09:00"},
            "2026-11-23 09:00:00",
            "2026-11-16/2026-11-22",
            "2026-11-23 09:00",
        ),
        ("monthly", {}, "2026-12-01 09:00:00", "2026-11", "2026-12-01 09:00"),
        ("monthly", {}, "2026-12-01 08:59:00", "2026-10", "2026-11-01 09:00"),
        ("monthly", {}, "2027-01-15 12:00:00", "2026-12", "2027-01-01 09:00"),  # across the year
        ("monthly", {"day": 5}, "2026-03-04 12:00:00", "2026-01", "2026-02-05 09:00"),
    ],
)
def test_the_period_due(kind: str, options: dict[str, Any], now: str, key: str, due: str) -> None:
    p = latest_due(spec(kind, **options), datetime.fromisoformat(now).replace(tzinfo=TZ), TZ)
    assert p.key == key
    assert p.due == datetime.fromisoformat(due).replace(tzinfo=TZ)
    if kind == "weekly":
        assert p.days == 7 and p.end == p.due.date() - timedelta(days=1)
    if kind == "monthly":
        assert p.start.day == 1 and (p.end + timedelta(days=1)).day == 1


# -- rendering ----------------------------------------------------------------------------------


def big_city(streets: int, per_street: int) -> dict[str, Grid]:
    return {
        f"G{s:03d}{g:03d}": Grid(f"G{s:03d}{g:03d}", f"{s}号街道{g}号网格" * 3, f"社区{g}", f"第{s}街道办事处[{s}]")
        for s in range(streets)
        for g in range(per_street)
    }


def every_day_yellow(ids: Any, since: date) -> dict[str, list[tuple[date, str]]]:
    end = date(2026, 11, 20)
    return {g: [(since + timedelta(days=i), "yellow") for i in range((end - since).days + 1)] for g in ids}


class Escalations:
    """A check that counts one case at each level per grid, as the incidents check would."""

    name = "fake"

    def tallies(self, samples: Any) -> Iterator[Tally]:
        for s in samples:
            yield Tally(s.labels["grid"], "案件督办", "incidents_overdue", "超期", s.value, "件")


def test_a_big_digest_is_cut_to_each_robots_limit() -> None:
    grids = big_city(80, 40)
    samples = [Sample("x", {"grid": g}, 1.0) for g in grids]
    inputs = Inputs(grids, [(Escalations(), samples)], every_day_yellow)  # type: ignore[list-item]
    now = datetime(2026, 11, 21, 9, 0, tzinfo=TZ)
    digest = build(spec("daily", top=100), latest_due(spec("daily"), now, TZ), inputs, now, "https://x.example/")
    assert digest.runs_total == 3200 and len(digest.runs) == 100
    for limit in (4096, 20000):
        msg = render.markdown(digest, limit)
        text = msg["text"]
        assert 0.8 * limit < len(text.encode()) <= limit
        assert text.startswith("### 网格化管理日报（2026年11月20日）")
        assert text.endswith("[查看网格监测看板](https://x.example/)")
        tails = [line for line in text.splitlines() if line.startswith("…等 ")]
        assert [t.split(" ")[-1] for t in tails] == ["个街道", "个网格", "个街道"]
        shown = sum(1 for line in text.splitlines() if line[:1].isdigit())
        assert f"…等 {3200 - shown} 个网格" in tails
    whole = render.markdown(digest)["text"]
    assert "…等 3100 个网格" in whole and len(whole.encode()) > 20000  # only `top` cuts it


def test_escaping_leaves_nothing_for_markdown() -> None:
    assert render.esc("[x](javascript:alert(1))") == "［x］（javascript：alert（1））"
    assert render.esc("a\r\n# b\u202e\u200bc") == "a ＃ b c"
    assert render.esc('<font color="warning">*x*</font>_`y`_') == '＜font color="warning"＞＊x＊＜/font＞＿｀y｀＿'
    assert render.esc("长" * 50).endswith("…") and len(render.esc("长" * 50)) == render.NAME_MAX


def test_rankings_show_only_with_a_provider_and_follow_the_street_filter() -> None:
    grids = {
        "G1": Grid("G1", "第一网格", "幸福社区", "东城街道"),
        "G2": Grid("G2", "第二网格", "江南社区", "西城街道"),
    }
    inputs = Inputs(grids, [], lambda ids, since: {})
    now = datetime(2026, 11, 20, 17, 30, tzinfo=TZ)
    weekly = spec("weekly")
    period = latest_due(weekly, now, TZ)
    asked: list[Any] = []

    def provider(p: Any, scope: Any) -> list[Ranking]:
        asked.append((p.key, sorted(scope)))
        return [
            Ranking("街道得分排名", [Ranked(1, "西城街道", 96.5, "西城街道"), Ranked(2, "东城街道", 91.0, "东城街道")]),
            Ranking(
                "网格得分排名",
                [Ranked(1, "第二网格", 98, "西城街道", "G2"), Ranked(2, "第一网格", 90, "东城街道", "G1")],
            ),
        ]

    plain = render.markdown(build(weekly, period, inputs, now))["text"]
    assert "排名" not in plain
    text = render.markdown(build(weekly, period, inputs, now, rankings=provider))["text"]
    assert asked == [("2026-11-13/2026-11-19", ["G1", "G2"])]
    assert "**三、街道得分排名**\n1. 西城街道 96.5 分\n2. 东城街道 91 分" in text
    assert "**四、网格得分排名**\n1. 第二网格 98 分\n2. 第一网格 90 分" in text
    street = build(spec("weekly", streets=["东城街道"]), period, inputs, now, rankings=provider)
    assert [(r.title, [e.name for e in r.entries]) for r in street.rankings] == [
        ("街道得分排名", ["东城街道"]),
        ("网格得分排名", ["第一网格"]),
    ]

    def broken(p: Any, scope: Any) -> list[Ranking]:
        raise RuntimeError("scores not ready")

    text = render.markdown(build(weekly, period, inputs, now, rankings=broken))["text"]
    assert "> 排名暂不可用" in text


def test_a_run_longer_than_the_first_read_is_read_further_back() -> None:
    grids = {"G1": Grid("G1", "第一网格", "幸福社区", "东城街道")}
    reads: list[date] = []

    def lights(ids: Any, since: date) -> dict[str, list[tuple[date, str]]]:
        reads.append(since)
        start = date(2026, 1, 5)  # yellow every day since, green before
        days = [(since + timedelta(days=i), "yellow") for i in range((date(2026, 11, 20) - since).days + 1)]
        return {"G1": [(d, c if d >= start else "green") for d, c in days]}

    now = datetime(2026, 11, 21, 9, 0, tzinfo=TZ)
    d = build(spec("daily"), latest_due(spec("daily"), now, TZ), Inputs(grids, [], lights), now)
    assert reads == [date(2026, 10, 21), date(2025, 10, 17)]
    assert d.runs == (Run(grids["G1"], 320, 0, 320),)


def test_the_incidents_check_counts_its_cases_per_level_for_the_digests(gridwatch_check: Any) -> None:
    """Through the plugin test kit, as a plugin author tests a check's digest counts."""
    result = gridwatch_check(
        "incidents",
        {"grids": GRIDS[:2], "incidents": [_incident("I1", "G1", "2026-11-19 08:00:00")]},
        now="2026-11-21 09:00",
    )
    got = {(t.grid, t.section, t.code, t.title, t.value, t.unit) for t in result.tallies}
    assert got == {
        (g, "案件督办", f"incidents_{level}", title, float(g == "G1" and level == "overdue"), "件")
        for g in ("G1", "G2")
        for level, title in (("overdue", "超期"), ("re_reported", "二次通报"), ("supervised", "挂牌督办"))
    }
