"""The status board at ``/``, in Debian's headless Chromium driven by Playwright.

Playwright for Python only drives the browser: it launches Debian's ``chromium``
(``executable_path``), never a browser of its own (no ``playwright install``). Every browser
context starts from a fresh profile. The board runs on a real gridwatch daemon reading a
standard-schema SQLite file; the tests change that file and watch the page follow.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from gridwatch.testing import DaemonProcess, free_port, wait_for, write_standard_db
from tests.components import require
from tests.faults import immutable

browser_test = pytest.mark.component  # needs Debian's chromium

ARTIFACTS = Path(__file__).parent / "_artifacts"  # git-ignored
TZ = ZoneInfo("Asia/Shanghai")
TOKEN = "board-test-token"
REFRESH = 1  # seconds: ?refresh=1
CHROMIUM_FLAGS = [  # Playwright adds --headless and a fresh --user-data-dir of its own
    "--no-sandbox",  # as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

XSS = "<img src=x onerror=alert(1)>"
EAST, WEST = "东街街道", "西街街道"
GRIDS = [  # id, name, community, street, what makes its light
    ("E1", "和平社区第1网格", "和平社区", EAST),  # green; a red and a yellow day in its history
    ("E2", "和平社区第2网格", "和平社区", EAST),  # yellow: an overdue case
    ("E3", "新村社区第1网格", "新村社区", EAST),  # red: a major case open
    ("E4", XSS, "新村社区", EAST),  # yellow: an overdue case
    ("W1", "幸福社区第1网格", "幸福社区", WEST),  # green, until a flagged report arrives
    ("W2", "幸福社区第2网格", "幸福社区", WEST),  # yellow: an overdue case
    ("W3", "光明社区第1网格", "光明社区", WEST),  # red: a major case open
    ("W4", "光明社区第2网格", "光明社区", WEST),  # green
]


def local(dt: datetime) -> str:
    return dt.astimezone(TZ).strftime("%Y-%m-%d %H:%M:%S")


def city_tables(now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Every grid sends its daily report, today's included, so no light depends on the time of
    day (before the cutoff a missing report would be pending, after it yellow); yellow and red
    come from cases, which are overdue or open whatever the hour."""
    today = now.astimezone(TZ).date()
    reports = []
    for gid, *_ in GRIDS:
        for back in range(31):
            day = today - timedelta(days=back)
            if gid == "E1" and back == 3:
                continue  # a silent day: yellow in the strip
            reports.append(
                {
                    "report_id": f"R-{gid}-{day}",
                    "grid_id": gid,
                    "kind": "daily",
                    "period": day.isoformat(),
                    # today's came in ten minutes ago: on time whenever the test runs
                    "submitted_at": local(now - timedelta(minutes=10)) if back == 0 else f"{day} 17:30:00",
                    "flag": "petition" if gid == "E1" and back == 5 else None,
                }
            )

    def case(case_id: str, gid: str, severity: str, age: timedelta) -> dict[str, Any]:
        return {
            "incident_id": case_id,
            "grid_id": gid,
            "category": "矛盾纠纷",
            "severity": severity,
            "tier": "community",  # one day to close it
            "reported_at": local(now - age),
            "reopened_count": 0,
            "extended": 0,
        }

    incidents = [
        case("I-E2", "E2", "normal", timedelta(days=3)),
        case("I-E4", "E4", "normal", timedelta(days=3)),
        case("I-W2", "W2", "normal", timedelta(days=2)),
        case("I-E3", "E3", "major", timedelta(hours=1)),
        case("I-W3", "W3", "major", timedelta(hours=2)),
    ]
    grids = [{"grid_id": g, "name": n, "community": c, "street": s} for g, n, c, s in GRIDS]
    return {"grids": grids, "reports": reports, "incidents": incidents}


def city_config(path: Path, port: int, db: str) -> Path:
    path.write_text(
        textwrap.dedent(f"""
        timezone = "Asia/Shanghai"
        [server]
        listen = "127.0.0.1:{port}"
        token = "{TOKEN}"
        [state]
        path = "state.db"
        [grids]
        source = "data"
        [sources.data]
        type = "sqlite"
        path = "{db}"
        [[checks]]
        name = "reports"
        type = "reports"
        source = "data"
        interval = "1s"
        [[checks]]
        name = "incidents"
        type = "incidents"
        source = "data"
        interval = "1s"
        """),
        encoding="utf-8",
    )
    return path


def lights(d: DaemonProcess) -> dict[str, str]:
    return {g["grid"]: g["light"] for g in d.json("/api/v1/grids")}


@pytest.fixture(scope="module")
def city_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The grid platform's SQLite file the test city's daemon reads."""
    return write_standard_db(tmp_path_factory.mktemp("board") / "city.db", city_tables(datetime.now(TZ)))


@pytest.fixture(scope="module")
def city(city_db: Path) -> Iterator[DaemonProcess]:
    port = free_port()
    with DaemonProcess(city_config(city_db.parent / "gridwatch.toml", port, city_db.name), port) as d:
        want = {"E1": "green", "E2": "yellow", "E3": "red", "E4": "yellow", "W1": "green", "W3": "red"}
        wait_for(lambda: all(lights(d)[g] == c for g, c in want.items()), 20, f"the lights\n{d.log()}")
        yield d


class Chromium:
    """Debian's chromium, launched on first use: each browser test calls ``require`` first, so a
    missing chromium fails (CI) or skips that test rather than erroring in a fixture."""

    def __init__(self) -> None:
        self._pw: Playwright | None = None
        self._browser: Browser | None = None

    def context(self, width: int, height: int, headers: dict[str, str] | None = None) -> BrowserContext:
        if self._browser is None:
            self._pw = sync_playwright().start()
            self._browser = self._pw.chromium.launch(
                executable_path=require("chromium", "chromium"), args=CHROMIUM_FLAGS, headless=True
            )
        return self._browser.new_context(
            viewport={"width": width, "height": height},
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
            extra_http_headers=headers,
        )

    def close(self) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._pw is not None:
            self._pw.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    launcher = Chromium()
    try:
        yield launcher
    finally:
        launcher.close()


class Board:
    """A fresh browser context showing the board, with what the page did: dialogs opened (an
    XSS payload's alert), script errors, CSP violations, and main-frame navigations (a reload)."""

    def __init__(
        self, chromium: Chromium, width: int = 1366, height: int = 768, headers: dict[str, str] | None = None
    ) -> None:
        self.chromium, self.size, self.headers = chromium, (width, height), headers
        self.context: BrowserContext | None = None
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.navigations = 0

    @property
    def page(self) -> Page:
        if self.context is None:
            self.context = self.chromium.context(*self.size, self.headers)
            page = self.context.new_page()
            page.on("dialog", self._dialog)
            page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
            page.on("console", self._console)
            page.on("framenavigated", lambda frame: self._navigated(page, frame))
        return self.context.pages[0]

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and "Content Security Policy" in msg.text:
            self.errors.append(f"CSP: {msg.text}")

    def _navigated(self, page: Page, frame: Any) -> None:
        if frame == page.main_frame:
            self.navigations += 1

    def open(self, base: str, query: str = "") -> Page:
        page = self.page
        page.goto(f"{base}/?refresh={REFRESH}{query}")
        page.wait_for_function("() => window.__boardRefreshes >= 1")
        return page

    def assert_clean(self) -> None:
        assert self.dialogs == [], "the page opened a dialog: a value ran as code"
        assert self.errors == []

    def close(self) -> None:
        if self.context is not None:
            self.context.close()


@pytest.fixture
def board(chromium: Chromium) -> Iterator[Board]:
    b = Board(chromium)
    try:
        yield b
    finally:
        b.close()
    b.assert_clean()


TILES_JS = """() => [...document.querySelectorAll('.tile')].map(t => ({
    grid: t.dataset.grid,
    light: t.dataset.light,
    sym: t.querySelector('.sym').textContent,
    name: t.querySelector('.name').textContent,
    street: t.closest('[data-street]').dataset.street,
    community: t.closest('[data-community]').dataset.community,
    visible: t.offsetParent !== null,
}))"""
COUNTS_JS = """(sel) => Object.fromEntries([...document.querySelector(sel).querySelectorAll('[data-count]')]
    .map(c => [c.dataset.count, Number(c.querySelector('b').textContent)]))"""
SYMBOL = {"green": "●", "yellow": "▲", "red": "■"}


GREY_JS = "() => [...document.querySelectorAll('.tile')].map(t => getComputedStyle(t).backgroundColor)"


def visible_tiles(page: Page) -> set[str]:
    return {t["grid"] for t in page.evaluate(TILES_JS) if t["visible"]}


def no_sideways_scroll(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


# -- the page itself, without a browser ----------------------------------------------------------


def test_the_board_and_its_assets_are_served_locally_under_a_strict_policy(city):
    req = urllib.request.Request(city.base + "/")
    with urllib.request.urlopen(req, timeout=10) as resp:
        html = resp.read().decode()
        csp = resp.headers["Content-Security-Policy"]
        assert resp.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="board/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son\w+\s*=", html) and "style=" not in html  # no inline handlers or styles
    total = len(html)
    for name, kind in (("board.js", "javascript"), ("board.css", "css"), ("favicon.svg", "svg")):
        with urllib.request.urlopen(f"{city.base}/board/{name}", timeout=10) as resp:
            assert kind in resp.headers["Content-Type"]
            text = resp.read().decode()
        total += len(text)
        # nothing from elsewhere: no CDN, no web font (the SVG namespace is a name, not a fetch)
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), name
        code = re.sub(r"^\s*//.*$", "", text, flags=re.M)  # comments may name what the code avoids
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", code), name
    assert re.search(r"https?://", html) is None
    assert total < 100_000  # small: no framework
    assert city.get("/board/../daemon.py")[0] == 404
    assert city.get("/board/secret.txt")[0] == 404


# -- in the browser -------------------------------------------------------------------------------


@browser_test
def test_tiles_are_grouped_coloured_and_counted_as_the_api_says(city, board):
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    page = board.open(city.base)
    api = city.json("/api/v1/grids")
    tiles = {t["grid"]: t for t in page.evaluate(TILES_JS)}
    assert set(tiles) == {g["grid"] for g in api}
    for g in api:
        t = tiles[g["grid"]]
        assert (t["light"], t["street"], t["community"]) == (g["light"], g["street"], g["community"])
        assert t["sym"] == SYMBOL[g["light"]]  # colour is never the only signal
        assert g["name"].endswith(t["name"])  # the name, without the street/community in front
    want = Counter(g["light"] for g in api)
    assert page.evaluate(COUNTS_JS, "#totals") == {c: want[c] for c in SYMBOL}
    for street in (EAST, WEST):
        got = page.evaluate(COUNTS_JS, f'[data-street="{street}"] .street-head')
        per = Counter(g["light"] for g in api if g["street"] == street)
        assert got == {c: per[c] for c in SYMBOL}
    # the words go with the colours, the seeds' words (DOMAIN.md §3): 红灯／黄灯／绿灯
    totals = page.text_content("#totals")
    assert all(totals.count(word) == 1 for word in ("红灯", "黄灯", "绿灯")), totals
    assert not any(word in totals for word in ("告警", "关注", "正常"))
    assert page.locator("#updated").text_content().startswith("更新于")
    assert page.locator("#warning").is_hidden()
    firing = [a for a in city.json("/api/v1/alerts") if a["state"] == "firing"]
    assert page.locator("#alert-list > li").count() == len(firing) > 0
    assert no_sideways_scroll(page)


@browser_test
def test_filters_and_search_narrow_the_tiles(city, board):
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    page = board.open(city.base)
    api = {g["grid"]: g for g in city.json("/api/v1/grids")}
    everything = set(api)
    assert visible_tiles(page) == everything
    page.select_option("#f-street", WEST)
    assert visible_tiles(page) == {g for g in api if g.startswith("W")}
    page.select_option("#f-community", label="光明社区")
    assert visible_tiles(page) == {"W3", "W4"}
    page.select_option("#f-light", "red")
    assert visible_tiles(page) == {"W3"}
    page.select_option("#f-street", "")
    page.select_option("#f-community", "")
    assert visible_tiles(page) == {g for g, v in api.items() if v["light"] == "red"}
    page.select_option("#f-light", "notgreen")
    assert visible_tiles(page) == {g for g, v in api.items() if v["light"] != "green"}
    page.select_option("#f-light", "")
    page.fill("#f-search", "第2")
    assert visible_tiles(page) == {"E2", "W2", "W4"}
    page.fill("#f-search", "<img")
    assert visible_tiles(page) == {"E4"}
    page.fill("#f-search", "没有这个网格")
    assert visible_tiles(page) == set() and page.locator("#empty").is_visible()
    page.fill("#f-search", "")
    assert visible_tiles(page) == everything
    # a kiosk can open a filtered board; filtering never reloads the page
    page.goto(f"{city.base}/?refresh={REFRESH}&street={WEST}&light=yellow")
    page.wait_for_function("() => window.__boardRefreshes >= 1")
    assert visible_tiles(page) == {"W2"}
    page.goto(f"{city.base}/?refresh={REFRESH}&community=光明社区&q=第1")
    page.wait_for_function("() => window.__boardRefreshes >= 1")
    assert visible_tiles(page) == {"W3"}
    assert page.evaluate("window.__boardLoads") == 3  # each goto is a load; filtering never is


@browser_test
def test_reasons_on_hover_and_the_detail_view_on_click(city, board):
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    page = board.open(city.base)
    e3 = city.json("/api/v1/grids/E3")
    assert e3["light"] == "red" and any("重大案件未结" in r for r in e3["reasons"])
    page.hover('.tile[data-grid="E3"]')
    tip = page.locator("#tip")
    assert tip.is_visible()
    for reason in e3["reasons"]:
        assert reason in tip.text_content()

    page.click('.tile[data-grid="E3"]')
    page.wait_for_function("() => document.querySelector('#d-metrics tr') !== null")
    assert page.locator("#detail").is_visible()
    assert page.text_content("#d-name") == e3["name"]
    assert page.get_attribute("#d-light", "data-light") == "red"
    assert page.locator("#d-reasons li").all_text_contents() == [f"■ {r}" for r in e3["reasons"]]
    assert page.locator("#d-alerts li.alert").count() == len([a for a in e3["alerts"] if a["state"] == "firing"])
    page.click("#d-close")
    assert page.locator("#detail").is_hidden()

    # E1 is green today, with a flagged day and a silent day in its history
    page.click('.tile[data-grid="E1"]')
    page.wait_for_function("() => document.querySelectorAll('#d-days li').length > 0")
    e1 = city.json("/api/v1/grids/E1")
    strip = page.evaluate("[...document.querySelectorAll('#d-days li')].map(d => [d.dataset.day, d.dataset.light])")
    assert strip == [[d["day"], d["light"]] for d in e1["days"]]
    assert {"green", "yellow", "red"} <= {light for _, light in strip}
    assert page.locator("#d-reasons").text_content() == "● 各项工作正常"

    # English with a switch: the reason codes are translated, texts without a code stay
    page.keyboard.press("Escape")
    page.click("#lang")
    assert page.text_content("h1").strip().endswith("Grid status board")
    page.hover('.tile[data-grid="E3"]')
    assert "1 major case(s) open" in page.text_content("#tip")
    assert "Red" in page.text_content("#totals")
    page.click("#lang")
    assert "红灯" in page.text_content("#totals")


@browser_test
def test_a_grid_named_like_markup_is_shown_as_text_and_runs_nothing(city, board):
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    page = board.open(city.base)
    assert page.text_content('.tile[data-grid="E4"] .name') == XSS
    page.wait_for_function("() => document.querySelector('[data-alert-grid=\"E4\"]') !== null")
    assert XSS in page.text_content('[data-alert-grid="E4"] .agrid')
    page.hover('.tile[data-grid="E4"]')
    assert page.text_content("#tip .tip-name") == XSS
    page.click('.tile[data-grid="E4"]')
    page.wait_for_function("() => document.querySelector('#d-metrics tr') !== null")
    assert page.text_content("#d-name") == XSS
    assert page.evaluate("document.querySelectorAll('img').length") == 0  # never parsed as markup
    time.sleep(0.3)  # an onerror would have fired by now
    board.assert_clean()  # no dialog opened, nothing blocked by the policy


@browser_test
def test_the_page_follows_the_data_without_reloading(city, city_db, board):
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    page = board.open(city.base)
    page.evaluate("window.__marker = 'still here'")
    assert page.get_attribute('.tile[data-grid="W1"]', "data-light") == "green"
    navigations = board.navigations
    now = datetime.now(TZ)
    with sqlite3.connect(city_db) as db:  # a flagged report: red whenever it arrives
        db.execute(
            "INSERT INTO reports (report_id, grid_id, kind, period, submitted_at, flag) VALUES (?, ?, ?, ?, ?, ?)",
            ("R-W1-flag", "W1", "daily", now.date().isoformat(), local(now - timedelta(seconds=5)), "major_dispute"),
        )
    db.close()
    wait_for(lambda: lights(city)["W1"] == "red", 10, "the check to see the flagged report")
    page.wait_for_function(
        "() => document.querySelector('.tile[data-grid=\"W1\"]').dataset.light === 'red'", timeout=5000
    )
    assert page.evaluate("[window.__marker, window.__boardLoads]") == ["still here", 1]
    assert board.navigations == navigations
    api = Counter(lights(city).values())
    assert page.evaluate(COUNTS_JS, "#totals") == {c: api[c] for c in SYMBOL}
    page.wait_for_function("() => document.querySelector('[data-alert-grid=\"W1\"]') !== null", timeout=5000)


@browser_test
def test_silenced_alerts_are_marked(city, board):
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    body = json.dumps({"matchers": {"grid": "W2"}, "duration": "1h", "createdBy": "board test"}).encode()
    req = urllib.request.Request(
        city.base + "/api/v1/silences",
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201
    wait_for(
        lambda: any(a["silenced"] for a in city.json("/api/v1/alerts") if a["labels"].get("grid") == "W2"),
        10,
        "the silence",
    )
    page = board.open(city.base)
    item = page.locator('#alert-list [data-alert-grid="W2"]').first
    assert item.get_attribute("data-silenced") == "true"
    assert "已静默" in item.text_content()
    assert page.locator('#alert-list [data-alert-grid="W3"]').first.get_attribute("data-silenced") is None


@browser_test
def test_a_source_down_or_gridwatch_unreachable_shows_a_warning(city, city_db, board):
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    page = board.open(city.base)
    assert page.locator("#warning").is_hidden()
    away = city_db.with_name("city.db.away")
    city_db.rename(away)
    try:
        wait_for(lambda: not city.json("/api/v1/status")["sources"][0]["up"], 10, "the source to be down")
        page.wait_for_selector("#warning", state="visible", timeout=(2 * REFRESH + 1) * 1000)  # one refresh
        assert "数据源 data 不可用" in page.text_content("#warning")
        # the lights may no longer hold: every tile grey (which grids the source covers is not
        # known to the board), the last light kept as its symbol and in data-light, and said so
        assert "网格灯色已置灰" in page.text_content("#warning")
        assert page.get_attribute("#grids", "data-greyed") == "true"
        assert set(page.evaluate(GREY_JS)) == {"rgb(93, 109, 126)"}
        assert page.get_attribute('.tile[data-grid="E3"]', "data-light") == "red"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "board-greyed.png")
    finally:
        away.rename(city_db)
    wait_for(lambda: city.json("/api/v1/status")["sources"][0]["up"], 10, "the source to be back")
    page.wait_for_selector("#warning", state="hidden", timeout=(2 * REFRESH + 1) * 1000)
    assert page.get_attribute("#grids", "data-greyed") == "false"
    assert "rgb(93, 109, 126)" not in page.evaluate(GREY_JS)

    page.route("**/api/v1/**", lambda route: route.abort())  # gridwatch itself out of reach
    page.wait_for_selector("#warning", state="visible", timeout=(2 * REFRESH + 1) * 1000)
    assert "无法连接 gridwatch" in page.text_content("#warning")
    assert page.locator(".tile").count() == len(GRIDS)  # the last data stays on the wall, grey
    assert page.get_attribute("#grids", "data-greyed") == "true"


@browser_test
def test_a_state_database_that_cannot_be_written_shows_a_warning_until_it_can(city, city_db, board):
    """Alert state then lives in memory only: the people at the wall must know a restart loses it."""
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    page = board.open(city.base)
    assert page.locator("#warning").is_hidden()
    state = city_db.with_name("state.db")

    def writable() -> bool:
        return city.json("/api/v1/status")["state_database"]["writable"]

    with immutable(state, state.with_name("state.db-wal")):  # EPERM, as on a disk remounted read-only
        wait_for(lambda: not writable(), 10, "a check run's write to fail")
        page.wait_for_selector("#warning", state="visible", timeout=(2 * REFRESH + 1) * 1000)
        assert "状态数据库无法写入（disk I/O error）" in page.text_content("#warning")
    wait_for(writable, 10, "writes to succeed again")
    page.wait_for_selector("#warning", state="hidden", timeout=(2 * REFRESH + 1) * 1000)


@browser_test
def test_a_check_whose_rows_are_mostly_rejected_shows_on_the_banner_with_what_to_set(gridwatch_daemon, board):
    """DOMAIN.md §5: the check has failed, and the wall says so, naming the key to set."""
    from tests import test_rejected as rejected

    require("chromium", "chromium")  # fails under CI, skips elsewhere
    daemon = gridwatch_daemon(rejected.config(), tables={"grids": rejected.GRIDS, "incidents": rejected.INCIDENTS})
    page = board.open(daemon.base)
    page.wait_for_selector("#warning", state="visible", timeout=(2 * REFRESH + 1) * 1000)
    text = page.text_content("#warning") or ""
    assert re.search(r"检查 incidents 运行失败：11 of 1[25] rows rejected \((73|91)%\), most for unmapped_code", text)
    assert "(severity='一般事件' has no mapping in codes)" in text
    assert text.endswith("map the platform's codes with sources.data.codes.incidents.severity")


# -- the wall screen and the laptop ---------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """The demo city of `make run` (60 grids, three streets), for screenshots."""
    tmp = tmp_path_factory.mktemp("demo")
    subprocess.run(
        [sys.executable, "-m", "gridwatch", "demo", "--db", str(tmp / "demo.db"), "--grids", "60"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    checks = "".join(
        f'[[checks]]\nname = "{c}"\ntype = "{c}"\nsource = "demo"\ninterval = "1m"\n'
        for c in ("visits", "patrols", "incidents", "reports")
    )
    cfg = tmp / "gridwatch.toml"
    cfg.write_text(
        f'timezone = "Asia/Shanghai"\n[server]\nlisten = "127.0.0.1:{port}"\n[state]\npath = "state.db"\n'
        f'[grids]\nsource = "demo"\n[sources.demo]\ntype = "sqlite"\npath = "demo.db"\n{checks}',
        encoding="utf-8",
    )
    with DaemonProcess(cfg, port) as d:
        wait_for(lambda: d.get("/readyz")[0] == 200, 30, f"every check to run\n{d.log()}")
        yield d


@browser_test
@pytest.mark.parametrize("width, height", [(1920, 1080), (1366, 768)])
def test_the_board_fits_a_wall_screen_and_a_laptop(demo_city, city, chromium, width, height):
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    ARTIFACTS.mkdir(exist_ok=True)
    board = Board(chromium, width, height)
    try:
        page = board.open(demo_city.base)
        page.wait_for_function("() => document.querySelectorAll('#alert-list li').length > 0")
        assert page.locator(".tile").count() == 60
        assert no_sideways_scroll(page)
        page.screenshot(path=ARTIFACTS / f"board-{width}x{height}.png")
        page.locator('.tile[data-light="red"]').first.click()
        page.wait_for_function("() => document.querySelectorAll('#d-days li').length > 0")
        assert no_sideways_scroll(page)
        page.screenshot(path=ARTIFACTS / f"board-{width}x{height}-detail.png")
        board.open(city.base)  # long names and markup in names fit too
        assert no_sideways_scroll(page)
        page.screenshot(path=ARTIFACTS / f"board-{width}x{height}-test-city.png")
        board.assert_clean()
    finally:
        board.close()


@browser_test
def test_the_wall_says_red_yellow_and_green_lights_and_pages_its_alerts(demo_city, chromium):
    """The seeds' words on the wall (DOMAIN.md §3, §8), and an alert column that turns its pages
    by itself: nobody stands at a wall screen to scroll it."""
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    ARTIFACTS.mkdir(exist_ok=True)
    board = Board(chromium, 1366, 768)
    try:
        page = board.open(demo_city.base, "&page=1&group=1000")  # one alert after another, never grouped
        page.wait_for_function("() => document.querySelectorAll('#alert-list li').length > 0")
        page.screenshot(path=ARTIFACTS / "board-lights-words.png")
        shown = page.evaluate("document.body.innerText")
        for word in ("红灯", "黄灯", "绿灯", "严重", "一般"):
            assert word in shown, word
        assert page.text_content(".legend").split() == ["●", "绿灯", "▲", "黄灯", "■", "红灯"]
        for word in ("关注", "警告"):
            assert word not in shown, word
        # every summary on the wall names codes by their words, and no rule by its name
        for summary in page.locator("#alert-list .summary").all_text_contents():
            assert not re.search(r"[a-z]+_[a-z_]+|[A-Z][a-z]+[A-Z]\w+", summary), summary
        # the column is longer than the screen: it turns a page every second here
        assert page.evaluate("(l => l.scrollHeight > l.clientHeight)(document.querySelector('#alert-list'))")
        page.wait_for_function("() => document.querySelector('#alert-list').scrollTop > 0", timeout=5000)
        assert page.locator("#alert-page").is_visible()
        assert re.fullmatch(r"\d+/\d+ 页", page.text_content("#alert-page"))
        # ... to the last page, and from there back to the first
        wrapped = """() => {
            const l = document.querySelector('#alert-list');
            window.__far = Math.max(window.__far || 0, l.scrollTop);
            return window.__far >= l.scrollHeight - l.clientHeight - 2 && l.scrollTop < l.clientHeight;
        }"""
        page.wait_for_function(wrapped, polling=100, timeout=60000)
        board.assert_clean()
    finally:
        board.close()


@browser_test
def test_a_link_to_a_grid_opens_its_detail_with_codes_named(city, board):
    """The robots link to ``/?grid=ID``; a grid's series show their labels' display names."""
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    page = board.open(city.base, "&grid=E3")
    page.wait_for_function("() => document.querySelector('#d-metrics tr') !== null")
    assert page.locator("#detail").is_visible() and page.text_content("#d-name") == "新村社区第1网格"
    row = page.locator('#d-metrics tr[data-metric="gridwatch_incidents_open"] .lbl')
    assert row.text_content() == "重大 · 已上报"  # severity major, stage reported
    detail = city.json("/api/v1/grids/E3")
    [series] = [m for m in detail["metrics"] if m["metric"] == "gridwatch_incidents_open"]
    assert series["labels"] == {"grid": "E3", "severity": "major", "stage": "reported"}  # the API keeps codes
    assert series["label_titles"]["stage"] == {"zh": "已上报", "en": "reported"}
    page.click("#d-close")
    page.wait_for_function("() => !location.search.includes('grid=')")  # a reload shows the whole board
