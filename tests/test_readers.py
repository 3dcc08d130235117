"""Each street sees its own: ``[[server.readers]]``, scoped read credentials.

A street office's credential (a bearer token, or basic auth with a bcrypt hash) reads the board,
the JSON API and ``/metrics`` as the district does, but only about its own grids: another
street's grid id, name, alert or series never appears in an answer (asserted on the raw bytes),
and another street's grid is "no such grid" (404). The district's credentials still see all;
writes stay with the write token. A schemathesis run fuzzes every read with the street's token,
and Debian's Chromium shows the board to a street office's screen.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from gridwatch import config
from gridwatch.api import Grid, Sample
from gridwatch.cli import main
from gridwatch.settings import ReaderSpec
from gridwatch.testing import DaemonProcess, free_port, wait_for, write_standard_db
from gridwatch.tokens import digest, password_digest
from gridwatch.web import access as access_module
from gridwatch.web import openapi
from gridwatch.web.access import Access
from gridwatch.web.scope import EVERYTHING, Scope
from tests.components import require
from tests.test_security import basic, bearer, request

EAST, WEST = "东街街道", "西街街道"
GRIDS = [  # id, name, community, street
    ("dongjie-01", "和平社区第一网格", "和平社区", EAST),
    ("dongjie-02", "新村社区第一网格", "新村社区", EAST),
    ("xijie-01", "幸福社区第一网格", "幸福社区", WEST),
    ("xijie-02", "光明社区第一网格", "光明社区", WEST),
    ("xijie-03", "西街和平网格", "和平社区", WEST),  # a community named like one in the east street
]
EAST_IDS = {g for g, *_ in GRIDS if g.startswith("dongjie")}
WEST_IDS = {g for g, *_ in GRIDS if g.startswith("xijie")}
# what must never reach an east reader: the west's grid ids, names, street and its own communities
WEST_WORDS = [*WEST_IDS, "幸福社区第一网格", "光明社区第一网格", "西街和平网格", WEST, "幸福社区", "光明社区"]

ADMIN_TOKEN = "adm1n-T0ken-for-writes"
DISTRICT_TOKEN = "d1strict-T0ken-sees-all"
DISTRICT_USER, DISTRICT_PASSWORD = "district", "D1strict-Passw0rd"
EAST_TOKEN = "ea5t-T0ken-of-the-street-office"
EAST_USER, EAST_PASSWORD = "dongjie", "Ea5t-Passw0rd-of-the-screen"
HEPING_TOKEN = "hep1ng-T0ken-of-a-community"
EAST_HASH = bcrypt.hashpw(EAST_PASSWORD.encode(), bcrypt.gensalt(4)).decode()  # cost 4: quick tests

READ_PATHS = [
    "/metrics",
    "/api/v1/status",
    "/api/v1/grids",
    "/api/v1/alerts",
    "/api/v1/silences",
    "/api/v1/openapi.json",
    *(f"/api/v1/grids/{g}" for g in EAST_IDS),
    "/",
    "/board/board.js",
]


def leaks(body: bytes, words: list[str] = WEST_WORDS) -> list[str]:
    """The words found in a raw answer, as UTF-8 or as JSON's \\u escapes."""
    escaped = [json.dumps(w)[1:-1] for w in words]
    return [w for w, e in zip(words, escaped, strict=True) if w.encode() in body or e.encode() in body]


def write_city(directory: Path) -> Path:
    """Every grid has four households and one visit: coverage 0.25, a critical alert on each grid."""
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    grids = [{"grid_id": g, "name": n, "community": c, "street": s} for g, n, c, s in GRIDS]
    households = [{"household_id": f"H-{g}-{n}", "grid_id": g} for g, *_ in GRIDS for n in range(4)]
    visits = [{"visit_id": f"V-{g}", "household_id": f"H-{g}-0", "grid_id": g, "visited_at": now} for g, *_ in GRIDS]
    return write_standard_db(directory / "city.db", {"grids": grids, "households": households, "visits": visits})


SERVER = f"""
token_sha256 = "{digest(ADMIN_TOKEN)}"
read_token_sha256 = "{digest(DISTRICT_TOKEN)}"
basic_auth_users = {{ {DISTRICT_USER} = "{password_digest(DISTRICT_PASSWORD)}" }}

[[server.readers]]
name = "东街街道办"
token_sha256 = "{digest(EAST_TOKEN)}"
user = "{EAST_USER}"
password_hash = "{EAST_HASH}"
streets = ["{EAST}"]

[[server.readers]]
name = "东街和平社区"
token_sha256 = "{digest(HEPING_TOKEN)}"
communities = ["{EAST}/和平社区"]
"""


def write_config(directory: Path, port: int, server: str = SERVER) -> Path:
    write_city(directory)
    path = directory / "gridwatch.toml"
    path.write_text(
        f'timezone = "Asia/Shanghai"\n[server]\nlisten = "127.0.0.1:{port}"\n'
        + textwrap.dedent(server)
        + textwrap.dedent("""
        [state]
        path = "state.db"
        [grids]
        source = "city"
        [sources.city]
        type = "sqlite"
        path = "city.db"
        [[checks]]
        name = "visits"
        type = "visits"
        source = "city"
        interval = "1s"
        """),
        encoding="utf-8",
    )
    return path


def grids_of(d: DaemonProcess, creds: dict[str, str]) -> set[str]:
    status, _, body = request(d.base, "GET", "/api/v1/grids", creds)
    assert status == 200, body
    return {g["grid"] for g in json.loads(body)}


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """The two streets, with silences on a grid of each, a street and a regex."""
    directory = tmp_path_factory.mktemp("readers")
    port = free_port()
    with DaemonProcess(write_config(directory, port), port) as d:
        wait_for(lambda: request(d.base, "GET", "/readyz")[0] == 200, 20, "readiness")

        def all_alerts() -> bool:
            status, _, body = request(d.base, "GET", "/api/v1/alerts", bearer(DISTRICT_TOKEN))
            return status == 200 and {a["labels"].get("grid") for a in json.loads(body)} >= EAST_IDS | WEST_IDS

        wait_for(all_alerts, 20, "an alert on every grid")
        for matchers in (
            {"grid": "dongjie-01"},
            {"grid": "xijie-01"},
            {"street": WEST},
            [{"name": "grid", "value": "xijie-.*", "isRegex": True}],
        ):
            silence = {"matchers": matchers, "duration": "1h", "createdBy": "test", "comment": ""}
            assert request(d.base, "POST", "/api/v1/silences", bearer(ADMIN_TOKEN), silence)[0] == 201
        yield d
        log = d.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-5000:]
    assert EAST_PASSWORD not in log and EAST_HASH not in log


# -- a street's reader, against every read endpoint --------------------------------------------


@pytest.mark.parametrize("path", READ_PATHS)
@pytest.mark.parametrize("creds", [bearer(EAST_TOKEN), basic(EAST_USER, EAST_PASSWORD)], ids=["token", "basic"])
def test_a_street_reader_never_sees_another_streets_grid(city, path, creds):
    for accept in ("application/json", "application/openmetrics-text; version=1.0.0"):
        status, _, body = request(city.base, "GET", path, {**creds, "Accept": accept})
        assert status == 200, body
        assert leaks(body) == [], (path, body[:2000])


def test_a_street_reader_sees_its_own_street_whole(city):
    creds = bearer(EAST_TOKEN)
    assert grids_of(city, creds) == EAST_IDS
    _, _, body = request(city.base, "GET", "/api/v1/alerts", creds)
    alerts = json.loads(body)
    assert {a["labels"]["grid"] for a in alerts} == EAST_IDS  # every east alert, and only those
    _, _, body = request(city.base, "GET", "/metrics", creds)
    text = body.decode()
    for g in EAST_IDS:
        assert f'gridwatch_grid_light{{grid="{g}"}}' in text
        assert f'gridwatch_visit_coverage_ratio{{grid="{g}"}}' in text
    assert "gridwatch_check_runs_total" in text  # gridwatch's own health, which names no grid
    detail = json.loads(request(city.base, "GET", "/api/v1/grids/dongjie-01", creds)[2])
    assert detail["grid"] == "dongjie-01" and detail["alerts"] and detail["metrics"]
    silences = json.loads(request(city.base, "GET", "/api/v1/silences", creds)[2])
    assert [s["matchers"] for s in silences] == [[{"name": "grid", "value": "dongjie-01", "isRegex": False}]]
    status = json.loads(request(city.base, "GET", "/api/v1/status", creds)[2])
    assert [c["name"] for c in status["checks"]] == ["visits"]  # check and source health: no grid in it


def test_another_streets_grid_is_no_such_grid(city):
    unknown = request(city.base, "GET", "/api/v1/grids/no-such-grid", bearer(EAST_TOKEN))
    for g in WEST_IDS:
        for creds in (bearer(EAST_TOKEN), basic(EAST_USER, EAST_PASSWORD)):
            status, _, body = request(city.base, "GET", f"/api/v1/grids/{g}", creds)
            assert (status, body) == (404, unknown[2]) and unknown[0] == 404
        assert request(city.base, "GET", f"/api/v1/grids/{g}", bearer(DISTRICT_TOKEN))[0] == 200


def test_a_community_reader_sees_that_community_of_that_street_only(city):
    creds = bearer(HEPING_TOKEN)
    assert grids_of(city, creds) == {"dongjie-01"}  # not xijie-03, the west's 和平社区
    for path in ("/metrics", "/api/v1/alerts", "/api/v1/silences"):
        body = request(city.base, "GET", path, creds)[2]
        assert leaks(body, [*WEST_WORDS, "dongjie-02", "新村社区"]) == [], path
    assert request(city.base, "GET", "/api/v1/grids/xijie-03", creds)[0] == 404


def test_the_districts_credentials_still_see_all(city):
    everything = EAST_IDS | WEST_IDS
    for creds in (bearer(DISTRICT_TOKEN), basic(DISTRICT_USER, DISTRICT_PASSWORD), bearer(ADMIN_TOKEN)):
        assert grids_of(city, creds) == everything
        metrics = request(city.base, "GET", "/metrics", creds)[2].decode()
        assert all(f'gridwatch_grid_light{{grid="{g}"}}' in metrics for g in everything)
        assert set(leaks(metrics.encode())) == set(WEST_WORDS)  # the same check finds what is there
        assert len(json.loads(request(city.base, "GET", "/api/v1/silences", creds)[2])) == 4


def test_a_wrong_password_or_token_reads_nothing(city):
    for wrong in (
        basic(EAST_USER, EAST_PASSWORD + "x"),
        basic(EAST_USER, ""),
        basic("nobody", EAST_PASSWORD),
        basic(DISTRICT_USER, EAST_PASSWORD),
        basic(EAST_USER, DISTRICT_PASSWORD),
        bearer(EAST_TOKEN + "x"),
        {"Authorization": EAST_TOKEN},
        {"Authorization": f"Basic {EAST_HASH}"},
    ):
        status, headers, body = request(city.base, "GET", "/api/v1/grids", wrong)
        assert status == 401 and json.loads(body)["error"] == "credentials are required to read", wrong
        assert "Basic" in headers["WWW-Authenticate"]
    assert request(city.base, "GET", "/api/v1/grids")[0] == 401


def test_writes_stay_with_the_write_token(city):
    silence = {"matchers": {"grid": "dongjie-02"}, "duration": "1m", "createdBy": "test"}
    for creds in (bearer(EAST_TOKEN), basic(EAST_USER, EAST_PASSWORD), bearer(HEPING_TOKEN)):
        assert request(city.base, "POST", "/api/v1/silences", creds, silence)[0] == 401
        assert request(city.base, "DELETE", "/api/v1/silences/any", creds)[0] == 401
        assert request(city.base, "POST", "/api/v1/reload", creds)[0] == 401


# -- schemathesis with the street's token ----------------------------------------------------------

FUZZ_EXAMPLES = 20
READER_SETTINGS = [  # what openapi.document reads of the readers
    ReaderSpec("东街街道办", digest(EAST_TOKEN), EAST_USER, EAST_HASH, frozenset([EAST]), frozenset()),
    ReaderSpec("东街和平社区", digest(HEPING_TOKEN), None, None, frozenset(), frozenset([f"{EAST}/和平社区"])),
]


class _Fuzzed:
    reads_protected = True
    read_token_sha256 = digest(DISTRICT_TOKEN)
    token_sha256 = digest(ADMIN_TOKEN)
    basic_auth_users = {DISTRICT_USER: password_digest(DISTRICT_PASSWORD)}
    readers = READER_SETTINGS


DOCUMENT = openapi.document(_Fuzzed())  # type: ignore[arg-type]
FUZZING = SchemathesisConfig.from_dict(
    {
        # only the street's credentials are given: every read goes out with the east token (or
        # the east user's password), and schemathesis also tries each without them
        "auth": {
            "openapi": {
                "readerToken": {"bearer": EAST_TOKEN},
                "readerBasic": {"username": EAST_USER, "password": EAST_PASSWORD},
            }
        },
        "generation": {"allow-extra-parameters": False},
    }
)
reader_schema = schemathesis.openapi.from_dict(DOCUMENT, config=FUZZING).include(method="GET")


@pytest.fixture(scope="module")
def served(city: DaemonProcess) -> DaemonProcess:
    doc = json.loads(request(city.base, "GET", "/api/v1/openapi.json", bearer(EAST_TOKEN))[2])
    assert doc == json.loads(json.dumps(DOCUMENT))  # what is fuzzed is what is published
    return city


@reader_schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_fuzzing_every_read_with_a_streets_token_shows_nothing_of_another_street(case: Any, served) -> None:
    response = case.call(base_url=served.base)
    case.validate_response(response)
    assert leaks(response.content) == [], (case.path, response.content[:2000])
    if response.status_code == 200 and case.path == "/api/v1/grids":
        assert {g["grid"] for g in response.json()} <= EAST_IDS


# -- the board at a street office's screen ---------------------------------------------------------


@pytest.mark.component
def test_the_board_with_a_streets_password_shows_only_its_street(city):
    from playwright.sync_api import sync_playwright

    from tests.test_board import CHROMIUM_FLAGS, TILES_JS

    executable = require("chromium", "chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        try:
            for creds in ({"username": EAST_USER, "password": EAST_PASSWORD}, None):
                context = browser.new_context(
                    viewport={"width": 1366, "height": 768},
                    locale="zh-CN",
                    timezone_id="Asia/Shanghai",
                    http_credentials=creds,  # the browser answers the Basic challenge, as a screen's would
                    extra_http_headers=None if creds else bearer(EAST_TOKEN),  # or a kiosk's header
                )
                page = context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
                page.goto(f"{city.base}/?refresh=1")
                page.wait_for_function("() => window.__boardRefreshes >= 1")
                tiles = page.evaluate(TILES_JS)
                assert {t["grid"] for t in tiles} == EAST_IDS
                assert {t["street"] for t in tiles} == {EAST}
                assert leaks(page.content().encode()) == []
                page.click('.tile[data-grid="dongjie-01"]')  # the detail view fetches the grid
                page.wait_for_selector("text=和平社区第一网格")
                assert leaks(page.content().encode()) == [] and errors == []
                context.close()
        finally:
            browser.close()


# -- the pieces, without a daemon ------------------------------------------------------------------

REGISTRY = {g: Grid(g, n, c, s) for g, n, c, s in GRIDS}
EAST_SCOPE = Scope.of(READER_SETTINGS[0])
HEPING_SCOPE = Scope.of(READER_SETTINGS[1])


@pytest.mark.parametrize(
    ("labels", "east", "heping"),
    [
        ({"grid": "dongjie-01"}, True, True),
        ({"grid": "dongjie-02"}, True, False),
        ({"grid": "xijie-03"}, False, False),  # the west's 和平社区
        ({"grid": "unknown"}, False, False),  # a grid the registry does not know
        ({"grid": "xijie-01", "street": EAST}, False, False),  # the registry, not the label, says where
        ({"street": EAST}, True, False),  # street-wide: not a community's to see
        ({"street": WEST}, False, False),
        ({"street": EAST, "community": "和平社区"}, True, True),
        ({"street": WEST, "community": "和平社区"}, False, False),
        ({"community": "新村社区"}, False, False),
        ({}, False, False),  # about gridwatch itself, or the whole district
        ({"check": "visits"}, False, False),
    ],
)
def test_what_a_scope_sees_by_labels(labels, east, heping):
    assert EAST_SCOPE.allows_labels(labels, REGISTRY) is east
    assert HEPING_SCOPE.allows_labels(labels, REGISTRY) is heping
    assert EVERYTHING.allows_labels(labels, REGISTRY)


def test_the_filters_one_call_each():
    assert set(EAST_SCOPE.filter_grids(REGISTRY)) == EAST_IDS
    assert EVERYTHING.filter_grids(REGISTRY) is REGISTRY
    samples = [Sample("m", {"grid": g}, 1) for g in REGISTRY] + [Sample("gridwatch_x", {}, 1)]
    assert {s.labels["grid"] for s in EAST_SCOPE.filter_samples(samples, REGISTRY)} == EAST_IDS
    assert len(EVERYTHING.filter_samples(samples, REGISTRY)) == len(samples)
    alerts = [{"alert": "A", "labels": {"grid": g}} for g in REGISTRY] + [{"alert": "CheckFailing", "labels": {}}]
    assert [a["labels"]["grid"] for a in HEPING_SCOPE.filter_alerts(alerts, REGISTRY)] == ["dongjie-01"]
    rows = [{"street": EAST, "ratio": 0.5}, {"street": WEST, "ratio": 0.4}, {"ratio": 0.45}]  # a roll-up
    assert EAST_SCOPE.filter_rows(rows, REGISTRY) == [rows[0]]
    regex = [{"name": "grid", "value": "dongjie-.*", "isRegex": True}]
    assert not EAST_SCOPE.allows_matchers(regex, REGISTRY) and EVERYTHING.allows_matchers(regex, REGISTRY)


def _settings(tmp_path: Path) -> Any:
    path = write_config(tmp_path, free_port())
    return config.load(path)[0]


def test_a_password_is_checked_once_per_header_and_never_on_the_event_loop(tmp_path, monkeypatch):
    calls: list[str] = []
    real = access_module.password_hash_matches

    def counted(password: str, hashed: str) -> bool:
        calls.append(threading.current_thread().name)
        return real(password, hashed)

    monkeypatch.setattr(access_module, "password_hash_matches", counted)
    access = Access(_settings(tmp_path))
    header = basic(EAST_USER, EAST_PASSWORD)["Authorization"]

    async def run() -> None:
        scopes = await asyncio.gather(*(access.scope(header) for _ in range(5)))  # at once: one check
        assert scopes == [EAST_SCOPE] * 5 and len(calls) == 1
        assert await access.scope(header) == EAST_SCOPE and len(calls) == 1
        assert await access.scope(basic(EAST_USER, "wrong")["Authorization"]) is None
        assert await access.scope(basic(EAST_USER, "wrong")["Authorization"]) is None
        assert len(calls) == 3  # a wrong password is not remembered: each try costs bcrypt's time
        assert await access.scope(basic("nobody", EAST_PASSWORD)["Authorization"]) is None
        assert len(calls) == 4  # an unknown user costs the same
        assert await access.scope(bearer(EAST_TOKEN)["Authorization"]) == EAST_SCOPE
        assert await access.scope(bearer(DISTRICT_TOKEN)["Authorization"]) is EVERYTHING
        assert await access.scope(None) is None

    asyncio.run(run())
    assert threading.main_thread().name not in calls  # the event loop's thread never waits for bcrypt


# -- config validation -------------------------------------------------------------------------------

TOKEN_A = digest("a-token")


@pytest.mark.parametrize(
    ("readers", "path", "message"),
    [
        (
            f'[[server.readers]]\nname = "a"\ntoken_sha256 = "{TOKEN_A}"\nstreets = []',
            "server.readers[0].streets",
            "a reader sees at least one street or community",
        ),
        (
            f'[[server.readers]]\nname = "a"\ntoken_sha256 = "{TOKEN_A}"\nstreets = ["x"]\n'
            f'[[server.readers]]\nname = "b"\nuser = "u"\npassword_hash = "not-a-hash"\ncommunities = ["y"]',
            "server.readers[1].password_hash",
            "expected a bcrypt hash",
        ),
        (
            f'[[server.readers]]\nname = "a"\nuser = "u"\npassword_hash = "{password_digest("pw")}"\nstreets = ["x"]',
            "server.readers[0].password_hash",
            "expected a bcrypt hash",  # an unsalted SHA-256 is not enough here
        ),
        (
            f'[[server.readers]]\nname = "a"\ntoken_sha256 = "{TOKEN_A}"\nstreets = ["x"]\n'
            f'[[server.readers]]\nname = "a"\ntoken_sha256 = "{digest("b")}"\nstreets = ["y"]',
            "server.readers[1].name",
            "duplicate reader name 'a' (also server.readers[0])",
        ),
        (
            f'[[server.readers]]\nname = "a"\ntoken_sha256 = "{TOKEN_A}"\nstreets = ["x"]\n'
            f'[[server.readers]]\nname = "b"\ntoken_sha256 = "{TOKEN_A.upper()}"\nstreets = ["y"]',
            "server.readers[1].token_sha256",
            "the same token as server.readers[0]",
        ),
        (
            f'[[server.readers]]\nname = "a"\ntoken_sha256 = "{digest("district")}"\nstreets = ["x"]',
            "server.readers[0].token_sha256",
            "the same token as server.read_token",
        ),
        (
            f'[[server.readers]]\nname = "a"\nuser = "district"\npassword_hash = "{EAST_HASH}"\nstreets = ["x"]',
            "server.readers[0].user",
            "user 'district' is also server.basic_auth_users",
        ),
        (
            f'[[server.readers]]\nname = "a"\nuser = "u"\npassword_hash = "{EAST_HASH}"\nstreets = ["x"]\n'
            f'[[server.readers]]\nname = "b"\nuser = "u"\npassword_hash = "{EAST_HASH}"\nstreets = ["y"]',
            "server.readers[1].user",
            "user 'u' is also server.readers[0]",
        ),
        ('[[server.readers]]\nname = "a"\nstreets = ["x"]', "server.readers[0]", "a reader needs a credential"),
        (
            '[[server.readers]]\nname = "a"\nuser = "u"\nstreets = ["x"]',
            "server.readers[0].password_hash",
            "set user and password_hash together",
        ),
        (
            f'[[server.readers]]\nname = "a"\ntoken_sha256 = "{TOKEN_A}"\nstreets = ["x", " "]',
            "server.readers[0].streets",
            "entry 1 is empty",
        ),
        (
            f'[[server.readers]]\nname = "a"\ntoken_sha256 = "{TOKEN_A}"\ncommunities = ["x/"]',
            "server.readers[0].communities[0]",
            "expected a community, or street/community",
        ),
        (
            f'[[server.readers]]\nname = "a"\ntoken_sha256 = "{TOKEN_A}"\nstreet = ["x"]',
            "server.readers[0].street",
            "unknown key",
        ),
        (
            '[[server.readers]]\nname = "a"\ntoken_sha256 = "abc"\nstreets = ["x"]',
            "server.readers[0].token_sha256",
            "String should match pattern",
        ),
    ],
    ids=[
        "empty-scope",
        "bad-hash",
        "unsalted-hash",
        "duplicate-name",
        "duplicate-token",
        "token-of-the-district",
        "user-of-the-district",
        "duplicate-user",
        "no-credential",
        "user-without-hash",
        "empty-street",
        "half-qualified-community",
        "unknown-key",
        "token-not-a-digest",
    ],
)
def test_a_bad_reader_is_a_config_error_naming_file_key_and_problem(tmp_path, capsys, readers, path, message):
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        f'[server]\nread_token_sha256 = "{digest("district")}"\n'
        f'basic_auth_users = {{ district = "{password_digest("pw")}" }}\n' + readers + "\n",
        encoding="utf-8",
    )
    assert main(["check-config", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: {path}: {message}" in err, err
    assert "not-a-hash" not in err and password_digest("pw") not in err and TOKEN_A not in err


def test_a_valid_reader_loads(tmp_path):
    s = _settings(tmp_path)
    east, heping = s.readers
    assert (east.name, east.user, east.streets, east.communities) == ("东街街道办", EAST_USER, {EAST}, frozenset())
    assert Scope.of(heping).places == {(EAST, "和平社区")} and not Scope.of(heping).communities
    assert s.reads_protected


def test_a_scopes_metrics_are_rendered_once_per_change_and_shared():
    from concurrent.futures import ThreadPoolExecutor

    from gridwatch.pipeline.results import CheckState
    from gridwatch.web.views import Inputs, Pages

    state = CheckState("visits", "visits", "city", 60.0, samples=[Sample("m", {"grid": g}, 1) for g in REGISTRY])
    with ThreadPoolExecutor(2) as pool:
        checks, rules = [state], {}  # inputs are compared by identity: the same objects until they change
        pages = Pages(Inputs(lambda: checks, lambda: REGISTRY, lambda: rules, lambda: ()), pool)

        async def run() -> None:
            first = await pages.exposition(False, EAST_SCOPE)
            again = await asyncio.gather(*(pages.exposition(False, Scope.of(READER_SETTINGS[0])) for _ in range(3)))
            assert all(body is first for body in again)  # an equal scope shares the same body
            assert {f'm{{grid="{g}"}} 1.0' in first.decode() for g in EAST_IDS} == {True}
            assert leaks(first) == [] and leaks(await pages.exposition(False))  # the district's has the west
            state.samples = [Sample("m", {"grid": g}, 2) for g in REGISTRY]  # a check run: replaced whole
            changed = await pages.exposition(False, EAST_SCOPE)
            assert changed is not first and 'm{grid="dongjie-01"} 2.0' in changed.decode()
            lights = await pages.lights_in(HEPING_SCOPE)
            assert list(lights.by_grid) == ["dongjie-01"] and await pages.lights_in(HEPING_SCOPE) is lights

        asyncio.run(run())
