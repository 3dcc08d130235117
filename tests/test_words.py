"""Every word a person reads names the codes, in Chinese (DOMAIN.md §8).

On the demo city, with every periodic report expected: every default rule's summary and
description for every code its labels can take, every light reason, and both robots' messages
hold no code value (``elderly_alone``, ``monthly``, ``dispatched``…), no English word and no rule
name. Labels and the JSON API keep the codes. Then the pieces: ``[display_names]`` in the config,
the grid named once (``{grid_title}``), the robots' colours, times, links and escaping, and the
alert labels ``street`` and ``community``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gridwatch import config
from gridwatch.alerting.engine import AlertEngine, Route
from gridwatch.api import Check, Grid, Sample
from gridwatch.config import ConfigErrors
from gridwatch.names import DisplayNames, grid_title
from gridwatch.notifiers.robots import DINGTALK_COLOURS, WECOM_COLOURS, escape, markdown
from gridwatch.pipeline.runtime import Runtime
from gridwatch.process.once import run_once
from gridwatch.rules import Rule, evaluate
from gridwatch.store import Store
from gridwatch.tools import demo

BOARD = "https://grids.example.org"
CODE = re.compile(r"[a-z]+_[a-z_]+")
ENGLISH = re.compile(r"[A-Za-z]{2,}")  # a grid id (G0005) has one letter; a code or a rule's name more
CODE_WORDS = (
    "monthly",
    "weekly",
    "quarterly",
    "annual",
    "daily",
    "dispatched",
    "reported",
    "accepted",
    "resolved",
    "major",
    "normal",
    "community",
    "subdistrict",
    "department",
    "special",
    "warning",
    "critical",
    "supervised",
    "overdue",
    "petition",
    "floating",
    "pregnant",
    "disabled",
)


def assert_natural(text: str, where: str, rule_names: set[str]) -> None:
    """No code value, no English word, no rule name: what a duty officer reads."""
    assert not CODE.search(text), f"{where}: a code in {text!r}"
    assert not ENGLISH.search(text), f"{where}: an English word in {text!r}"
    lowered = text.lower()
    assert not [w for w in CODE_WORDS if w in lowered], f"{where}: {text!r}"
    assert not [r for r in rule_names if r in text], f"{where}: a rule's name in {text!r}"


def visible(message: str) -> str:
    """What a robot's Markdown shows: its tags and link targets are not read."""
    text = re.sub(r"</?font[^>]*>", "", message)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return text.replace("### ", "").replace("> ", "")


# -- the demo city ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo city up to now, every check on it, every periodic report expected, run once."""
    d = tmp_path_factory.mktemp("words")
    demo.generate(d / "demo.db")
    kinds = '["daily", "twice_weekly", "weekly", "monthly", "quarterly", "annual"]'
    checks = "".join(
        f'[[checks]]\nname = "{c}"\ntype = "{c}"\nsource = "demo"\n' + (f"expect = {kinds}\n" if c == "reports" else "")
        for c in ("visits", "patrols", "incidents", "reports")
    )
    path = d / "gridwatch.toml"
    path.write_text(
        f'timezone = "Asia/Shanghai"\n[server]\nexternal_url = "{BOARD}"\n[state]\npath = "state.db"\n'
        f'[grids]\nsource = "demo"\n[sources.demo]\ntype = "sqlite"\npath = "demo.db"\n{checks}',
        encoding="utf-8",
    )
    settings, host = config.load(path)
    now = datetime.now(settings.timezone)
    once = asyncio.run(run_once(settings, host, now, None))
    assert once["errors"] == [] and once["alerts"]
    samples = [Sample(s["metric"], s["labels"], s["value"]) for s in once["samples"]]
    grids = {g["grid"]: Grid(g["grid"], g["name"], g["community"], g["street"]) for g in once["grids"]}
    return {"dir": d, "settings": settings, "host": host, "once": once, "samples": samples, "grids": grids}


def every_code(samples: list[Sample], names: DisplayNames) -> list[Sample]:
    """One series of each metric and label set of the city, again with each combination of the
    codes its labels can take (every category, stage and severity, kind, level…), whatever the
    city happens to hold."""
    table = names.as_dict()
    seen: dict[tuple[str, tuple[str, ...]], Sample] = {}
    for s in samples:
        seen.setdefault((s.metric, tuple(sorted(s.labels))), s)
    out = []
    for s in seen.values():
        named = [k for k in s.labels if k != "grid" and k in table]
        for codes in itertools.product(*(list(table[k]) for k in named)):
            out.append(Sample(s.metric, {**s.labels, **dict(zip(named, codes, strict=True))}, s.value))
    return out


def at(samples: list[Sample], values: tuple[float, ...]) -> list[Sample]:
    return [Sample(s.metric, s.labels, v) for s in samples for v in values]


def test_every_default_rule_reads_naturally_for_every_code(city):
    settings = city["settings"]
    rules = settings.rules
    series = every_code(city["samples"], settings.names)
    # gridwatch's own rule watches a self-metric: a check (named 走访 here) that read mostly bad rows
    series.append(Sample("gridwatch_check_rejected_ratio", {"check": "走访"}, 0.0))
    # values that cross every default rule at each of its levels
    hits = evaluate(rules.values(), at(series, (0.5, 0.85, 1, 2, 3)), city["grids"], settings.names)
    assert {h.rule.alert for h in hits} == set(rules)  # every default rule rendered
    assert {h.severity for h in hits} == {"warning", "critical"}
    rendered = set()
    for h in hits:
        for text in (h.summary, h.description):
            assert_natural(text, h.rule.alert, set(rules))
        assert "-" not in h.summary  # the registry's 东街街道-和平社区-第5网格 is named once, naturally
        rendered |= {(h.rule.alert, k, v) for k, v in h.labels.items() if k not in ("grid", "street", "community")}
    # the codes themselves stay in the labels, for machines
    assert ("MajorIncidentOpen", "stage", "accepted") in rendered
    assert ("KeyHouseholdOverdue", "category", "left_behind_child") in rendered
    assert ("PeriodicReportOverdue", "kind", "annual") in rendered
    coverage = next(h for h in hits if h.rule.alert == "VisitCoverageLow")
    g = city["grids"][coverage.labels["grid"]]
    assert g.name == f"{g.street}-{g.community}-{g.name.rsplit('-', 1)[1]}"  # 东街街道-和平社区-第5网格
    assert coverage.summary.startswith(f"{g.street}{g.community}{g.name.rsplit('-', 1)[1]}走访覆盖率")


def test_every_light_reason_reads_naturally(city):
    settings, host = city["settings"], city["host"]
    runtime = Runtime(settings, host)
    try:
        series = every_code(city["samples"], settings.names)
        texts: set[str] = set()
        for runner in runtime.runners.values():
            mine = [s for s in series if s.metric in runner.check.metric_help()]
            texts |= {r.text for r in runner.check.reasons(at(mine, (0.5, 1, 2, 3)))}
    finally:
        runtime.close()
    for g in city["once"]["grids"]:  # the city's own: the checks' reasons and the alerts' summaries
        texts |= set(g["reasons"])
    assert len(texts) > 20
    for text in texts:
        assert_natural(text, "reason", set(settings.rules))
    assert "重点人群（留守儿童）超期未走访 2 户" in texts
    # the report's reason names the oldest missing period (here from synthetic due times)
    assert any("年报" in t and t.endswith("逾期未报") for t in texts)


@pytest.mark.parametrize("palette", [WECOM_COLOURS, DINGTALK_COLOURS], ids=["wecom", "dingtalk"])
def test_both_robots_messages_read_naturally(city, tmp_path, palette):
    settings = city["settings"]
    samples, grids = city["samples"], city["grids"]
    store = Store(tmp_path / "state.db")
    store.open()
    try:
        engine = AlertEngine([Route("robot")], external_url=settings.external_url)
        now = datetime.now(UTC).timestamp()
        hits = evaluate(settings.rules.values(), samples, grids, settings.names)
        store.call(engine.step, now, hits, settings.rules, samples)
        store.call(engine.step, now + 60, [], settings.rules, samples)  # everything resolves
        rows = store.call(lambda db: [json.loads(r["payload"]) for r in db.query("SELECT payload FROM outbox")])
    finally:
        store.close()
    assert {p["status"] for p in rows} == {"firing", "resolved"}
    names = settings.names
    for p in rows:
        title, body = markdown([p], palette, settings.timezone, names)
        shown = visible(body)
        assert_natural(shown, p["labels"]["alertname"], set(settings.rules))
        labels = p["labels"]
        assert f"{labels['street']} · {labels['community']}" in shown  # where the grid is
        assert f"[查看网格]({BOARD}/?grid={labels['grid']})" in body  # and a link to it on the board
        if p["status"] == "resolved":
            assert "已恢复，当前值 " in shown and p["valueText"]
    # one message for a batch, cut to fit the robot
    title, body = markdown(rows, palette, settings.timezone, names)
    assert title.startswith("网格监测：") and len(body.encode()) <= 4096
    assert_natural(visible(body), "batch", set(settings.rules))


# -- display names in the config -----------------------------------------------------------------

VISITS_CITY = {
    "grids": [{"grid_id": "G1", "name": "东湖一网格", "community": "东湖社区", "street": "东街街道"}],
    "households": [
        {"household_id": "H1", "grid_id": "G1", "category": "drug_rehab"},
        {"household_id": "H2", "grid_id": "G1", "category": "dangerous_goods"},
        {"household_id": "H3", "grid_id": "G1", "category": "elderly_alone"},
    ],
    "visits": [],
}


def test_the_operator_names_a_platforms_codes_and_renames_the_bundled_ones(gridwatch_check):
    config_text = textwrap.dedent("""
        [display_names.category]
        dangerous_goods = "危化品从业人员"
        elderly_alone = { zh = "独居老年人", en = "older people living alone" }
        [display_names.severity]
        warning = "提示"
    """)
    r = gridwatch_check("visits", VISITS_CITY, now="2026-03-31 12:00:00", config=config_text)
    names = r.names
    assert names.name("category", "drug_rehab") == "吸毒人员"  # a default the visits check gives
    assert names.name("category", "dangerous_goods") == "危化品从业人员"
    assert names.name("category", "elderly_alone", "en") == "older people living alone"
    assert names.name("category", "floating", "en") == "floating population"  # the others keep theirs
    reasons = {x.text for x in r.reasons}
    assert reasons == {
        "重点人群（吸毒人员）超期未走访 1 户",
        "重点人群（危化品从业人员）超期未走访 1 户",
        "重点人群（独居老年人）超期未走访 1 户",
    }
    summaries = {f.labels["category"]: f.summary for f in r.alerts() if f.alert == "KeyHouseholdOverdue"}
    assert summaries["dangerous_goods"] == "东街街道东湖社区东湖一网格有1户危化品从业人员超期未走访"
    assert summaries["elderly_alone"] == "东街街道东湖社区东湖一网格有1户独居老年人超期未走访"
    rule = Rule.model_validate({"alert": "T", "metric": "m", "above": {"warning": 0}, "summary": "{severity_name}"})
    [hit] = evaluate([rule], [Sample("m", {"grid": "G1"}, 1)], {}, names)
    assert hit.summary == "提示"


@pytest.mark.parametrize(
    "table, where, problem",
    [
        ('[display_names.category]\nx = ""', "display_names.category.x", "the name is empty"),
        ("[display_names.category]\nx = 3", "display_names.category.x", "expected a name"),
        ('[display_names.category]\nx = { zh = "甲", fr = "a" }', "display_names.category.x", "zh and/or en"),
        ('[display_names.category]\nx = "甲\\n【已恢复】"', "display_names.category.x", "one line"),
        (f'[display_names.category]\nx = "{"长" * 65}"', "display_names.category.x", "at most 64"),
        ('[display_names.grid]\nG1 = "一网格"', "display_names.grid", "grid registry"),
        ('[display_names."bad-label"]\nx = "甲"', 'display_names."bad-label"', "not a label name"),
        ('[display_names]\ncategory = "甲"', "display_names.category", "expected a table"),
    ],
)
def test_a_wrong_display_name_is_a_config_error_naming_its_key(tmp_path, table, where, problem):
    path = tmp_path / "gridwatch.toml"
    path.write_text(table + "\n", encoding="utf-8")
    with pytest.raises(ConfigErrors) as exc:
        config.load(path)
    [error] = exc.value.errors
    assert error.path.replace('"', "") == where.replace('"', "") and problem in error.message, str(error)


def test_a_plugins_malformed_display_names_are_left_out(tmp_path, caplog):
    from gridwatch.plugins import PluginHost

    class Odd(Check):
        type = "odd"
        needs_source = False
        display_names = {"category": {"x": "甲"}}  # type: ignore[dict-item]  # not (中文, English)

    host = PluginHost.default(entry_points=False)
    host.types["check"]["odd"] = Odd
    path = tmp_path / "gridwatch.toml"
    path.write_text("", encoding="utf-8")
    with caplog.at_level(logging.ERROR, "gridwatch.config"):
        settings, _ = config.load(path, host)
    assert settings.names.get("category", "x") is None
    assert settings.names.name("category", "elderly_alone") == "独居老人"
    assert "check type 'odd': display_names" in caplog.text


# -- the grid named once -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, community, street, title",
    [
        ("东街街道-和平社区-第5网格", "和平社区", "东街街道", "东街街道和平社区第5网格"),
        ("和平社区第1网格", "和平社区", "东街街道", "东街街道和平社区第1网格"),
        ("第1网格", "和平社区", "东街街道", "东街街道和平社区第1网格"),
        ("东湖一网格", "东湖社区", "东街街道", "东街街道东湖社区东湖一网格"),
        ("5号", "和平社区", "东街街道", "东街街道和平社区5号网格"),  # 网格 said when the name does not
        ("东街街道 和平社区 A01", "东街街道和平社区", "东街街道", "东街街道和平社区A01网格"),
        ("和平社区", "和平社区", "东街街道", "东街街道和平社区网格"),
        ("一网格", "", "", "一网格"),
    ],
)
def test_a_grid_is_named_once_street_community_and_name(name, community, street, title):
    assert grid_title(name, community, street) == title


# -- robots --------------------------------------------------------------------------------------


def payload(status: str, severity: str, summary: str, **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "VisitCoverageLow", "grid": "G5", **labels, "severity": severity},
        "annotations": {"summary": summary},
        "startsAt": "2026-09-24T02:31:00Z",
        "endsAt": "2026-09-24T03:45:00Z" if status == "resolved" else None,
        "generatorURL": BOARD + "/",
        "valueText": "92%" if status == "resolved" else "30%",
    }


PLACE = {"street": "东街街道", "community": "和平社区"}


def test_critical_is_red_warning_orange_and_what_recovered_green_with_local_times():
    now = datetime(2026, 9, 24, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
    alerts = [
        payload("resolved", "critical", "东街街道和平社区第7网格走访覆盖率30%", **PLACE),
        payload("firing", "warning", "东街街道和平社区第6网格走访覆盖率85%", **PLACE),
        payload("firing", "critical", "东街街道和平社区第5网格走访覆盖率30%", **PLACE),
    ]
    title, body = markdown(alerts, DINGTALK_COLOURS, now=now)
    assert title == "网格监测：2 条告警（严重 1 条），1 条已恢复"
    entries = body.split("\n\n")[1:]
    assert entries == [
        '<font color="#E53935">【严重】</font>东街街道和平社区第5网格走访覆盖率30%\n'
        f"> 东街街道 · 和平社区 · 10:31 起 · [查看网格]({BOARD}/?grid=G5)",
        '<font color="#FB8C00">【一般】</font>东街街道和平社区第6网格走访覆盖率85%\n'
        f"> 东街街道 · 和平社区 · 10:31 起 · [查看网格]({BOARD}/?grid=G5)",
        '<font color="#43A047">【已恢复·严重】</font>东街街道和平社区第7网格走访覆盖率30%\n'
        f"> 东街街道 · 和平社区 · 11:45 已恢复，当前值 92% · [查看网格]({BOARD}/?grid=G5)",
    ]
    _, wecom = markdown(alerts, WECOM_COLOURS, now=now)
    assert [re.match(r'<font color="(\w+)">', e).group(1) for e in wecom.split("\n\n")[1:]] == [
        "warning",  # WeCom's 橙红: it has no red
        "comment",
        "info",
    ]
    # another day's time says its date
    _, later = markdown(alerts[2:], DINGTALK_COLOURS, now=datetime(2026, 9, 26, 4, 0, tzinfo=UTC))
    assert "09-24 10:31 起" in later


FORGED = [
    "第5网格\n【已恢复·严重】全部告警已解除",
    "第5网格\r\n### 全部告警已解除",
    "第5网格\u2028【已恢复·一般】误报",
    "[点此处理](http://evil.example/x)",
    "<@all> 请注意",
    '<font color="info">已恢复</font>',
    "**加粗** _斜体_ `代码` ![图](http://evil.example/p.png)",
    "&lt;@all&gt;",
]


@pytest.mark.parametrize("forged", FORGED)
@pytest.mark.parametrize("palette", [WECOM_COLOURS, DINGTALK_COLOURS], ids=["wecom", "dingtalk"])
def test_a_value_from_data_adds_no_markdown_to_a_robots_message(palette, forged):
    """A grid's name, a community or a summary carrying a link, an ``<@all>``, a forged line or
    tags reads as text: the message has exactly its own lines, tags and link (issue 18, item 10)."""
    alerts = [
        payload("firing", "critical", f"{forged}走访覆盖率30%", street=forged, community=forged),
        payload("resolved", "warning", forged, street="东街街道", community=forged),
    ]
    alerts[1]["valueText"] = forged
    _, body = markdown(alerts, palette)
    lines = body.split("\n")
    assert len(lines) == 1 + 2 * 3  # the title, a blank line and two lines per alert
    assert [line[:6] for line in lines[2::3]] == ["<font "] * 2
    assert all(line.startswith("> ") for line in lines[3::3])
    assert body.count("<") == 2 * 2 and body.count("](") == 2  # its own tags and links only
    assert "@all" not in body and body.count("【") == 2  # only its own two status tags
    for line in lines:
        assert not line.startswith(("#", "【")) or line.startswith("### 网格监测")
    assert escape("a\nb") == "a b"


def test_the_link_to_a_grid_is_quoted(tmp_path):
    p = payload("firing", "critical", "x", grid="G 5)(x", **PLACE)
    _, body = markdown([p], DINGTALK_COLOURS)
    assert f"[查看网格]({BOARD}/?grid=G%205%29%28x)" in body


# -- alert labels and the engine -----------------------------------------------------------------

GRIDS = {"G1": Grid("G1", "东街街道-东湖社区-一网格", "东湖社区", "东街街道")}
COVERAGE = "gridwatch_visit_coverage_ratio"
RULE_DICT = {
    "alert": "VisitCoverageLow",
    "metric": COVERAGE,
    "below": {"warning": 0.9, "critical": 0.8},
    "summary": "{grid_title}走访覆盖率{value:.0%}",
}
RULE = Rule.model_validate(RULE_DICT)


def test_a_grid_alert_carries_its_street_and_community_for_routing():
    [hit] = evaluate([RULE], [Sample(COVERAGE, {"grid": "G1"}, 0.5)], GRIDS)
    assert hit.labels == {"alertname": "VisitCoverageLow", "grid": "G1", "street": "东街街道", "community": "东湖社区"}
    assert hit.summary == "东街街道东湖社区一网格走访覆盖率50%"
    # a rule may still set them, and a series without a grid gets none
    own = Rule.model_validate({**RULE_DICT, "labels": {"street": "区中心"}})
    [hit] = evaluate([own], [Sample(COVERAGE, {"grid": "G1"}, 0.5)], GRIDS)
    assert hit.labels["street"] == "区中心" and hit.labels["community"] == "东湖社区"
    [hit] = evaluate([RULE], [Sample(COVERAGE, {"street": "东街街道"}, 0.5)], GRIDS)
    assert set(hit.labels) == {"alertname", "street"}


def test_an_alert_kept_without_street_and_community_is_taken_over_not_fired_again(tmp_path, caplog):
    """A state database from before the labels: the firing alert goes on under its new labels,
    and nobody is told again (neither that it resolved nor that it fires)."""
    from gridwatch.alerting.alert import FIRING, Alert, fingerprint

    store = Store(tmp_path / "state.db")
    store.open()
    old_labels = {"grid": "G1", "alertname": "VisitCoverageLow"}
    old = Alert(fingerprint(old_labels), "VisitCoverageLow", old_labels, FIRING, "critical", 0.5, 1000.0, 1000.0)
    old.notified_severity = "critical"
    store.call(lambda db: db["alerts"].insert(old.row()))
    engine = AlertEngine([Route("robot")])
    samples = [Sample(COVERAGE, {"grid": "G1"}, 0.5)]
    try:
        with caplog.at_level(logging.INFO, "gridwatch.alerting.engine"):
            store.call(engine.step, 2000.0, evaluate([RULE], samples, GRIDS), {RULE.alert: RULE}, samples)
        [a] = engine.snapshot
        assert a.labels["street"] == "东街街道" and a.state == FIRING and a.active_since == 1000.0
        assert store.call(lambda db: db["outbox"].count) == 0
        # it resolves with the value its series has now, and the log names the alert and the grid
        better = [Sample(COVERAGE, {"grid": "G1"}, 0.92)]
        with caplog.at_level(logging.INFO, "gridwatch.alerting.engine"):
            store.call(engine.step, 3000.0, [], {RULE.alert: RULE}, better)
        [row] = store.call(lambda db: [json.loads(r["payload"]) for r in db.query("SELECT payload FROM outbox")])
        assert (row["status"], row["value"], row["valueText"]) == ("resolved", 0.92, "92%")
        assert "alert VisitCoverageLow grid G1 firing → resolved (critical)" in caplog.text
        assert store.call(lambda db: db["alerts"].count) == 1
    finally:
        store.close()


def test_the_state_of_a_vanished_series_resolves_without_a_value(tmp_path):
    store = Store(tmp_path / "state.db")
    store.open()
    engine = AlertEngine([Route("robot")])
    samples = [Sample(COVERAGE, {"grid": "G1"}, 0.5)]
    try:
        store.call(engine.step, 1000.0, evaluate([RULE], samples, GRIDS), {RULE.alert: RULE}, samples)
        store.call(engine.step, 2000.0, [], {RULE.alert: RULE}, [])
        rows = store.call(lambda db: [json.loads(r["payload"]) for r in db.query("SELECT payload FROM outbox")])
    finally:
        store.close()
    assert [(r["status"], r["value"], r["valueText"]) for r in rows] == [
        ("firing", 0.5, "50%"),
        ("resolved", None, ""),
    ]
    _, body = markdown(rows[1:])
    assert "已恢复" in body and "当前值" not in body


def test_display_names_reach_the_board_and_keep_codes_in_labels(city):
    from gridwatch.pipeline.results import CheckState
    from gridwatch.web.views import describe_metrics

    state = CheckState("visits", "visits", None, 60.0)
    state.samples = [Sample("gridwatch_visit_key_households_overdue", {"grid": "G1", "category": "floating"}, 2)]
    [m] = describe_metrics([state], "G1", city["settings"].names)
    assert m["labels"] == {"grid": "G1", "category": "floating"}
    assert m["label_titles"] == {"category": {"zh": "流动人口", "en": "floating population"}}


def test_the_docs_name_the_display_names_table():
    text = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert "[display_names.category]" in text and "{category_name}" in text and "{grid_title}" in text
