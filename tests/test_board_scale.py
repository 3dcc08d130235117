"""The board at city scale (issue 20): streets, then communities, then grids; the alerts grouped
by rule and street; names never cut; the 排名 view showing the API's numbers; a street's screen.

Debian's headless Chromium through Playwright, as in ``tests/test_board.py``, on a real daemon
reading a city of 66 grids in three streets: more than fit on a screen (60), so the board opens
on the streets. ``?fit=20`` makes a street (22 grids) too big as well, to reach its communities.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page

from gridwatch.testing import DaemonProcess, free_port, wait_for, write_standard_db
from gridwatch.tokens import digest
from tests.components import require
from tests.test_board import Board, Chromium, browser_test

TZ = ZoneInfo("Asia/Shanghai")
DISTRICT_TOKEN = "scale-district-token"
STREET_TOKEN = "scale-street-token"
STREETS = ["滨江街道", "湖滨街道", "望江街道"]
COMMUNITIES = ["花园社区", "新村社区"]  # in every street: a community is only one within its street
LONG = {  # two long names that differ only at the end: a cut name would make them read alike
    "A001": "花园小区北区第三居民片区网格100",
    "A002": "花园小区北区第三居民片区网格119",
}
LIGHTS = ("green", "yellow", "red")


def grid_rows() -> list[dict[str, str]]:
    rows = []
    for si, street in enumerate(STREETS):
        for ci, community in enumerate(COMMUNITIES):
            for n in range(1, 12):
                gid = f"{'ABC'[si]}{ci}{n:02d}"
                rows.append({"grid_id": gid, "name": LONG.get(gid, f"{community}第{n}网格"), "community": community})
                rows[-1]["street"] = street
    return rows


def city_tables(now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Every other grid has a case two days past its deadline (yellow: an overdue case, and its
    on-time closure 0 of 1: two alerts); two grids have a major case open (red); the others are green."""

    def case(gid: str, severity: str, age: timedelta) -> dict[str, Any]:
        reported = (now - age).astimezone(TZ).strftime("%Y-%m-%d %H:%M:%S")
        return {
            "incident_id": f"I-{gid}",
            "grid_id": gid,
            "category": "矛盾纠纷",
            "severity": severity,
            "tier": "community",  # one day to close it
            "reported_at": reported,
            "reopened_count": 0,
            "extended": 0,
        }

    grids = grid_rows()
    incidents = [case(g["grid_id"], "normal", timedelta(days=3)) for g in grids if int(g["grid_id"][2:]) % 2 == 0]
    incidents += [case(gid, "major", timedelta(hours=1)) for gid in ("A105", "B005")]
    return {"grids": grids, "incidents": incidents}


def city_config(path: Path, port: int) -> Path:
    path.write_text(
        textwrap.dedent(f"""
        timezone = "Asia/Shanghai"
        [server]
        listen = "127.0.0.1:{port}"
        read_token_sha256 = "{digest(DISTRICT_TOKEN)}"
        [[server.readers]]
        name = "湖滨街道办"
        token_sha256 = "{digest(STREET_TOKEN)}"
        streets = ["{STREETS[1]}"]
        [state]
        path = "state.db"
        [grids]
        source = "data"
        [sources.data]
        type = "sqlite"
        path = "city.db"
        [[checks]]
        name = "incidents"
        type = "incidents"
        source = "data"
        interval = "1h"
        """),
        encoding="utf-8",
    )
    return path


class City(DaemonProcess):
    """The daemon, asked with the district's token."""

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        return super().get(path, headers if headers is not None else {"Authorization": f"Bearer {DISTRICT_TOKEN}"})


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    d = tmp_path_factory.mktemp("scale")
    write_standard_db(d / "city.db", city_tables(datetime.now(TZ)))
    port = free_port()
    with City(city_config(d / "gridwatch.toml", port), port) as c:
        wait_for(lambda: c.get("/readyz")[0] == 200, 30, f"the check to run\n{c.log()}")
        wait_for(lambda: len(firing(c)) > 50, 20, f"the alerts to fire\n{c.log()}")
        yield c


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    launcher = Chromium()
    try:
        yield launcher
    finally:
        launcher.close()


def firing(c: DaemonProcess) -> list[dict[str, Any]]:
    return [a for a in c.json("/api/v1/alerts") if a["state"] == "firing"]


def open_board(chromium: Chromium, city: City, query: str = "", token: str = DISTRICT_TOKEN, **size: int) -> Board:
    board = Board(chromium, size.get("width", 1366), size.get("height", 768), {"Authorization": f"Bearer {token}"})
    board.open(city.base, query)
    return board


UNITS_JS = """() => [...document.querySelectorAll('#units .unit')].map(u => ({
    kind: u.dataset.unit, street: u.dataset.unitStreet, community: u.dataset.unitCommunity,
    light: u.dataset.light, name: u.querySelector('.uname').innerText,
    counts: Object.fromEntries([...u.querySelectorAll('[data-count]')]
        .map(c => [c.dataset.count, Number(c.querySelector('b').textContent)])),
}))"""
VISIBLE_TILES_JS = """() => [...document.querySelectorAll('.tile')]
    .filter(t => t.offsetParent !== null).map(t => t.dataset.grid)"""
ALERT_GRIDS_JS = "[...document.querySelectorAll('#alert-list [data-alert-grid]')].map(l => l.dataset.alertGrid)"


def worst(lights: dict[str, int]) -> str:
    return "red" if lights["red"] else "yellow" if lights["yellow"] else "green"


def shown(page: Page) -> set[str]:
    return set(page.evaluate(VISIBLE_TILES_JS))


def crumbs(page: Page) -> list[str]:
    return [c.strip() for c in page.locator("#crumbs").inner_text().split("›") if c.strip()]


# -- the overview -----------------------------------------------------------------------------


@browser_test
def test_a_city_opens_on_its_streets_and_drills_down_to_communities_and_grids(city, chromium):
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    board = open_board(chromium, city, "&fit=20")
    try:
        page = board.page
        assert shown(page) == set()  # no grid tile: the streets
        streets = {u["street"]: u for u in city.json("/api/v1/summary?by=street")["units"]}
        units = page.evaluate(UNITS_JS)
        assert [u["street"] for u in units] == STREETS and {u["kind"] for u in units} == {"street"}
        for u in units:  # a tile's counts are the roll-up's; its colour is its worst light
            assert u["name"] == u["street"]
            assert u["counts"] == streets[u["street"]]["lights"]
            assert u["light"] == worst(u["counts"])
        assert [u["light"] for u in units] == ["red", "red", "yellow"]
        assert crumbs(page) == ["全区"]

        page.click(f'.unit[data-unit-street="{STREETS[0]}"]')  # 22 grids: more than fit (20)
        page.wait_for_function("() => location.search.includes('street=')")
        communities = {
            u["community"]: u for u in city.json("/api/v1/summary?by=community")["units"] if u["street"] == STREETS[0]
        }
        units = page.evaluate(UNITS_JS)
        assert [u["community"] for u in units] == COMMUNITIES and {u["kind"] for u in units} == {"community"}
        for u in units:
            assert u["counts"] == communities[u["community"]]["lights"] and u["light"] == worst(u["counts"])
        assert crumbs(page) == ["全区", STREETS[0]]
        # the alert column follows: the street's alerts only
        in_street = [a for a in firing(city) if a["labels"]["street"] == STREETS[0]]
        assert page.locator("#alert-count").inner_text() == str(len(in_street))

        page.click(f'.unit[data-unit-community="{COMMUNITIES[1]}"]')
        grids = city.json("/api/v1/grids")
        want = {g["grid"] for g in grids if (g["street"], g["community"]) == (STREETS[0], COMMUNITIES[1])}
        page.wait_for_function("() => document.querySelector('#units').hidden")
        assert shown(page) == want
        assert crumbs(page) == ["全区", STREETS[0], COMMUNITIES[1]]
        assert page.evaluate("new URLSearchParams(location.search).get('community')") == COMMUNITIES[1]

        page.go_back()  # the browser's Back: the street's communities again
        page.wait_for_function("() => !document.querySelector('#units').hidden")
        assert [u["community"] for u in page.evaluate(UNITS_JS)] == COMMUNITIES
        page.click("#crumbs button.crumb")  # 全区
        page.wait_for_function("() => document.querySelectorAll('#units .unit[data-unit=street]').length === 3")
        assert shown(page) == set()
        assert page.evaluate("window.__boardLoads") == 1  # never a reload
        board.assert_clean()
    finally:
        board.close()


@browser_test
def test_a_street_that_fits_shows_its_grids_and_a_red_filter_shows_the_streets_with_red(city, chromium):
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    board = open_board(chromium, city)  # fit 60: the district (66) is too big, a street (22) is not
    try:
        page = board.page
        grids = city.json("/api/v1/grids")
        page.select_option("#f-light", "red")
        red_streets = {g["street"] for g in grids if g["light"] == "red"}
        assert {u["street"] for u in page.evaluate(UNITS_JS)} == red_streets and len(red_streets) == 2
        page.select_option("#f-light", "")
        page.click(f'.unit[data-unit-street="{STREETS[2]}"]')
        page.wait_for_function("() => document.querySelector('#units').hidden")
        assert shown(page) == {g["grid"] for g in grids if g["street"] == STREETS[2]}
        page.fill("#f-search", "第3网格")  # a search looks for grids, whatever the level
        assert shown(page) == {g["grid"] for g in grids if g["street"] == STREETS[2] and g["name"].endswith("第3网格")}
        board.assert_clean()
    finally:
        board.close()


@browser_test
def test_a_street_office_screen_opens_on_its_street(city, chromium):
    """The per-street entry point: ``/?street=…`` for a district credential, and a street's own
    credential sees its street only, whatever the address says."""
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    grids = city.json("/api/v1/grids")
    mine = {g["grid"] for g in grids if g["street"] == STREETS[1]}
    board = open_board(chromium, city, f"&street={STREETS[1]}")
    try:
        page = board.page
        assert shown(page) == mine
        listed = page.evaluate(ALERT_GRIDS_JS)
        assert sorted(listed) == sorted(a["labels"]["grid"] for a in firing(city) if a["labels"]["grid"] in mine)
        board.assert_clean()
    finally:
        board.close()

    board = open_board(chromium, city, token=STREET_TOKEN)  # 22 grids: the street's own screen
    try:
        page = board.page
        assert shown(page) == mine
        text = page.evaluate("document.body.innerText")
        for other in (STREETS[0], STREETS[2]):
            assert other not in text
        page.click("#v-rank")
        page.wait_for_selector("#ranking[data-period]")
        assert page.evaluate("[...document.querySelectorAll('#rank-streets tbody tr')].map(r => r.dataset.street)") == [
            STREETS[1]
        ]
        assert (
            set(page.evaluate("[...document.querySelectorAll('#rank-grids tbody tr')].map(r => r.dataset.grid)"))
            == mine
        )
        board.assert_clean()
    finally:
        board.close()


# -- names ------------------------------------------------------------------------------------


@browser_test
@pytest.mark.parametrize("width", [1366, 1024])
def test_long_names_with_a_shared_prefix_show_in_full(city, chromium, width):
    """网格100 and 网格119 must not both read 花园小区北区…: a tile's name wraps, never cut."""
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    board = open_board(chromium, city, f"&street={STREETS[0]}&community={COMMUNITIES[0]}", width=width)
    try:
        page = board.page
        for gid, name in LONG.items():
            got = page.evaluate(
                """(gid) => {
                    const n = document.querySelector(`.tile[data-grid="${gid}"] .name`);
                    return {text: n.innerText, fits: n.scrollWidth <= n.clientWidth, visible: n.offsetParent !== null};
                }""",
                gid,
            )
            assert got == {"text": name, "fits": True, "visible": True}, gid
        board.assert_clean()
    finally:
        board.close()


# -- the alert column -------------------------------------------------------------------------


@browser_test
def test_many_alerts_are_grouped_by_rule_then_street_with_counts(city, chromium):
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    alerts = firing(city)
    by_rule = Counter(a["alert"] for a in alerts)
    titles = {a["alert"]: a["title"]["zh"] for a in alerts}
    assert len(alerts) > 50 and len(by_rule) == 3  # IncidentsOverdue, OnTimeClosureLow, MajorIncidentOpen
    board = open_board(chromium, city)
    try:
        page = board.page
        assert page.get_attribute("#alert-list", "data-grouped") == "true"
        assert page.locator("#alert-count").inner_text() == str(len(alerts))
        groups = page.evaluate(
            """() => [...document.querySelectorAll('#alert-list > li.agroup')].map(g => ({
                rule: g.dataset.group, name: g.querySelector('.gname').innerText,
                count: Number(g.querySelector('.gcount').innerText)}))"""
        )
        assert {g["rule"]: g["count"] for g in groups} == dict(by_rule)
        assert {g["rule"]: g["name"] for g in groups} == titles
        assert groups[0]["rule"] == "MajorIncidentOpen"  # critical first
        column = page.locator(".alerts").inner_text()
        for rule in by_rule:  # words, never the rule's code (DOMAIN.md §8)
            assert rule not in column
        assert "重大案件未结" in column and "事件超期未办结" in column

        page.click('#alert-list > li[data-group="IncidentsOverdue"] > .agroup-head')
        per_street = Counter(a["labels"]["street"] for a in alerts if a["alert"] == "IncidentsOverdue")
        sub = page.evaluate(
            """() => [...document.querySelectorAll('li[data-group="IncidentsOverdue"] li.agroup')].map(g =>
                [g.querySelector('.gname').innerText, Number(g.querySelector('.gcount').innerText)])"""
        )
        assert dict(sub) == dict(per_street) and len(sub) == 3
        street = STREETS[1]
        page.click(f'li[data-group="IncidentsOverdue:{street}"] > .agroup-head')
        singles = page.locator(f'li[data-group="IncidentsOverdue:{street}"] li.alert')
        assert singles.count() == per_street[street]
        want = {
            a["labels"]["grid"] for a in alerts if a["alert"] == "IncidentsOverdue" and a["labels"]["street"] == street
        }
        assert {singles.nth(i).get_attribute("data-alert-grid") for i in range(singles.count())} == want
        page.wait_for_function("() => window.__boardRefreshes >= 3")  # a refresh keeps the groups open
        assert singles.count() == per_street[street]
        singles.first.click()  # one click more: the grid's detail
        page.wait_for_function("() => document.querySelector('#detail').open")
        board.assert_clean()
    finally:
        board.close()


def test_every_alert_of_the_bundled_rules_has_a_title_in_words(city):
    """/api/v1/alerts names each alert's rule ([display_names.alertname]); the code stays in ``alert``."""
    for a in firing(city):
        assert a["title"]["zh"] and re.search(r"[\u4e00-\u9fff]", a["title"]["zh"]), a
        assert a["title"]["en"] and a["alert"] not in (a["title"]["zh"], a["title"]["en"])


# -- 排名 -------------------------------------------------------------------------------------


def number(text: str) -> float | None:
    return None if text.strip() == "—" else float(text)


ROWS_JS = """(sel) => [...document.querySelectorAll(sel + ' tbody tr')].map(r =>
    [r.dataset.street ?? r.dataset.grid, ...[...r.children].map(c => c.innerText)])"""


@browser_test
def test_the_ranking_shows_the_apis_numbers_for_today_this_week_and_this_month(city, chromium):
    require("chromium", "chromium")  # fails under CI, skips elsewhere
    today = date.fromisoformat(city.json("/api/v1/assessment")["today"])
    year, week, _ = today.isocalendar()
    periods = {"day": today.isoformat(), "week": f"{year}-W{week:02d}", "month": today.isoformat()[:7]}
    board = open_board(chromium, city)
    try:
        page = board.page
        page.click("#v-rank")
        assert page.locator("#wall").is_hidden()
        for which in ("day", "week", "month"):
            page.click(f'.period[data-period="{which}"]')
            name = periods[which]
            page.wait_for_selector(f'#ranking[data-period="{name}"]')
            summary = city.json(f"/api/v1/summary?by=street&period={name}")["units"]
            assessed = city.json(f"/api/v1/assessment?period={name}")["grids"]
            streets = page.evaluate(ROWS_JS, "#rank-streets")
            assert {s: (int(p), who, number(sc), int(n)) for s, p, who, sc, n in streets} == {
                u["street"]: (u["rank"], u["street"], u["score"], u["grids"]) for u in summary
            }
            assert [int(row[1]) for row in streets] == sorted(u["rank"] for u in summary)  # best first
            grids = {row[0]: row[1:] for row in page.evaluate(ROWS_JS, "#rank-grids")}
            assert len(grids) == len(assessed) == 66
            for r in assessed:
                place, name_shown, street, score, in_street, yellow, red = grids[r["grid"]]
                assert (int(place), name_shown, street, number(score), int(in_street)) == (
                    r["rank"]["district"],
                    r["name"],
                    r["street"],
                    r["score"],
                    r["rank"]["street"],
                )
                assert (int(yellow), int(red)) == (r["days"]["yellow"], r["days"]["red"])
            places = [int(row[1]) for row in page.evaluate(ROWS_JS, "#rank-grids")]
            assert places == sorted(places)  # best first
            assert page.evaluate("new URLSearchParams(location.search).get('view')") == "rank"
        page.click("#v-wall")
        assert page.locator("#ranking").is_hidden() and page.locator("#wall").is_visible()
        board.assert_clean()
    finally:
        board.close()
