"""Property-based tests of everything that parses what people and other systems write.

Config files, durations, rule templates, calendar arithmetic and ingest payloads take input
nobody at gridwatch controls. Examples written by hand cover the cases someone thought of;
these properties let hypothesis look for the ones nobody did, and pin down the invariants
(never a traceback, precise errors, round trips, monotonicity) the examples only illustrate.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from hypothesis import HealthCheck, Phase, assume, event, example, given, settings
from hypothesis import strategies as st

from gridwatch import config
from gridwatch.api import Grid, Sample
from gridwatch.calendar import (
    REPORT_KINDS,
    WorkCalendar,
    due_time,
    expected_periods,
    incident_deadline,
    latest_due_period,
    next_due_period,
    period_for,
)
from gridwatch.durations import MAX_SECONDS, format_duration, parse_duration
from gridwatch.rows import parse_ts
from gridwatch.rules import Rule, check_template, evaluate, render
from gridwatch.schema import INTEGER_COLUMNS, STANDARD_SCHEMA
from gridwatch.testing import DaemonProcess, free_port

# No per-example deadline (a shared two-core machine has pauses); the example counts keep the whole
# file well under a minute. GW_PROPERTY_EXAMPLES=5000 hunts longer.
HUNT = int(os.environ.get("GW_PROPERTY_EXAMPLES", 0))
IO = settings(max_examples=HUNT or 150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PURE = settings(max_examples=HUNT or 200, deadline=None)


# --------------------------------------------------------------------------- config loader


def toml_string(s: str) -> str:
    """A TOML basic string: control characters and DEL escaped, everything else as is."""
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return ("-inf" if v < 0 else "inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_string(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def toml_document(doc: dict[str, Any]) -> str:
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in doc.items())


NAMES = st.sampled_from(["griddb", "inbox", "a", "x.y", "bad name", "", "网格", "-lead", "ok_1"])
DURATIONS = st.sampled_from(["30s", "5m", "1h", "1d", "0s", "1h30m", "250ms", "-1s", "5 minutes", "9" * 400 + "s"])
TEMPLATES = st.sampled_from(
    ["{alert}", "{grid_name}覆盖率{value:.0%}", "{value:d}", "{value", "{grid!x}", "{0}", "{street}", "{value:{grid}}"]
)
SCALARS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["~", "~nosuchuser-gw/x", "a\x00b", "${GW_PROP_SET}", "${GW_PROP_UNSET}", "127.0.0.1:0"]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    st.dates(min_value=date(1, 1, 1)),
    st.times(),
)
GARBAGE = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


def maybe(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value for the key, sometimes anything at all."""
    return st.one_of(plausible, plausible, GARBAGE)


def section(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A table holding some of ``fields`` (each value through :func:`maybe`) and maybe a stray key."""
    return st.fixed_dictionaries({}, optional={**{k: maybe(v) for k, v in fields.items()}, "colour": GARBAGE})


SOURCE = st.one_of(
    section(
        {
            "type": st.sampled_from(["sqlite", "sql", "csv", "jsonl", "http", "ingest", "oracle"]),
            "path": st.sampled_from(["demo.db", "exports", "~nosuchuser-gw/d.db", ""]),
            "url": st.sampled_from(["sqlite:///x.db", "http://127.0.0.1:1/{table}", "https://h/{grid}", "not a url"]),
            "token": st.sampled_from(["t", "", "${GW_PROP_SET}"]),
            "token_sha256": st.sampled_from(["0" * 64, "abc"]),
            "tables": st.dictionaries(st.sampled_from(["visits", "grids", "x"]), st.text(max_size=5), max_size=2),
            "columns": st.dictionaries(st.sampled_from(["visits", "x"]), st.just({"visited_at": "t"}), max_size=2),
            "encoding": st.sampled_from(["utf-8", "gb18030", "no-such-codec", "\x00"]),
            "delimiter": st.sampled_from([",", ";", "", ",,"]),
            "timeout": DURATIONS,
            "busy_timeout": DURATIONS,
            "records": st.sampled_from(["data.list", ""]),
            "max_rows": st.integers(-1, 20_000),
            "pool_size": st.integers(-1, 50),
        }
    ),
    GARBAGE,
)
CHECK = st.one_of(
    section(
        {
            "name": NAMES,
            "type": st.sampled_from(["sql", "visits", "patrols", "incidents", "reports", "nope"]),
            "source": NAMES,
            "interval": DURATIONS,
            "timeout": DURATIONS,
            "metric": st.sampled_from(["gridwatch_custom_n", "bad metric", ""]),
            "value": st.sampled_from(["n", ""]),
            "query": st.sampled_from(["SELECT 1 AS n", ""]),
            "params": st.dictionaries(st.text(max_size=4), st.one_of(st.integers(), st.text(max_size=4)), max_size=2),
            "window": DURATIONS,
            "limits": st.dictionaries(
                st.sampled_from(["community", "special", "moon"]), st.sampled_from(["1d", "5wd", "0d", "x"]), max_size=2
            ),
            "cutoff": st.times(),
            "expect": st.lists(st.sampled_from(["daily", "weekly", "hourly"]), max_size=2),
            "work_start": st.times(),
            "zone_intervals": st.dictionaries(st.sampled_from(["red", "pink"]), DURATIONS, max_size=2),
            "key_intervals": st.dictionaries(st.text(max_size=4), DURATIONS, max_size=2),
            "re_report_after": DURATIONS,
            "supervise_after": DURATIONS,
        }
    ),
    GARBAGE,
)
LEVELS = st.fixed_dictionaries({}, optional={"warning": maybe(st.floats()), "critical": maybe(st.floats())})
RULE = st.one_of(
    section(
        {
            "alert": st.sampled_from(["VisitCoverageLow", "MyAlert", "bad alert", ""]),
            "metric": st.sampled_from(["gridwatch_visit_coverage_ratio", "gridwatch_custom_n", "gridwatch_nothing"]),
            "below": LEVELS,
            "above": LEVELS,
            "for": DURATIONS,
            "keep_firing_for": DURATIONS,
            "match": st.dictionaries(st.sampled_from(["grid", "severity"]), st.text(max_size=4), max_size=2),
            "labels": st.dictionaries(st.sampled_from(["team", "severity", "street"]), TEMPLATES, max_size=2),
            "summary": TEMPLATES,
            "description": TEMPLATES,
            "enabled": st.booleans(),
        }
    ),
    GARBAGE,
)
NOTIFIER = section(
    {
        "type": st.sampled_from(["webhook", "log", "alertmanager", "wecom", "dingtalk", "pager"]),
        "url": st.sampled_from(["http://127.0.0.1:1/hook", "ftp://x", ""]),
        "urls": st.lists(st.sampled_from(["http://127.0.0.1:1", "x"]), max_size=2),
        "min_severity": st.sampled_from(["warning", "critical", "info"]),
        "timeout": DURATIONS,
        "batch": st.integers(-1, 100),
    }
)
DOCUMENT = section(
    {
        "timezone": st.sampled_from(["Asia/Shanghai", "UTC", "Mars/Olympus", "", "../etc/passwd", "x" * 300, "Asia"]),
        "future_tolerance": DURATIONS,
        "server": section({"listen": st.sampled_from(["127.0.0.1:9477", "[::1]:80", "localhost", "h:0", "h:99999"])}),
        "state": section({"path": st.sampled_from(["state.db", "~nosuchuser-gw/s.db", ""]), "history": st.integers()}),
        "plugins": section(
            {"dirs": st.lists(st.sampled_from(["plugins.d", "~nosuchuser-gw/p", "a\x00b"]), max_size=2)}
        ),
        "grids": section(
            {
                "source": NAMES,
                "refresh": DURATIONS,
                "shard": st.sampled_from(["1/2", "3/2", "0/1", "1/0", "x"]),
                "shard_by": st.sampled_from(["hash", "street", "moon"]),
            }
        ),
        "calendar": section(
            {"holidays": st.lists(st.dates(), max_size=2), "workdays": st.lists(st.dates(), max_size=2)}
        ),
        "alerting": section(
            {"evaluation_interval": DURATIONS, "resolved_retention": DURATIONS, "history": st.integers()}
        ),
        "sources": st.dictionaries(NAMES, SOURCE, max_size=3),
        "checks": st.lists(CHECK, max_size=3),
        "rules": st.lists(RULE, max_size=3),
        "notifiers": st.dictionaries(NAMES, NOTIFIER, max_size=2),
    }
)
TOML_BITS = st.sampled_from(
    ["[", "]", "[[checks]]", "[sources.x]", "name = ", 'type = "sql"', "=", "{", "}", ",", "\n", '"""', "'", "#", " "]
)
TOML_ISH = st.lists(st.one_of(TOML_BITS, st.text(max_size=6)), max_size=12).map("".join)


@pytest.fixture(scope="module")
def config_env() -> Iterator[Path]:
    """A directory for the generated files, ``$HOME`` pointing into it (so ``~`` is harmless)
    and one set variable for ``${VAR}`` substitution."""
    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", d)
        mp.setenv("GW_PROP_SET", "from-env")
        mp.delenv("GW_PROP_UNSET", raising=False)
        yield Path(d)


def assert_loads_or_explains(path: Path, data: dict[str, Any] | None) -> config.Settings | None:
    """The loader's contract: Settings, or ConfigErrors whose every line is ``file: key: message``
    (``file: message`` for the file as a whole), naming a key the document has."""
    try:
        settings, _host = config.load(path)
    except config.ConfigErrors as exc:
        assert exc.errors
        for err in exc.errors:
            line = str(err)
            assert len(line.splitlines()) == 1, line
            assert err.message.strip(), line
            if err.path:
                assert line == f"{path}: {err.path}: {err.message}".translate(config._LINE_BREAKS)
                root = re.match(r'"[^"]*"|[^.\[]+', err.path)
                assert root is not None
                if data is not None:
                    assert root.group(0).strip('"') in data, f"{line} names a key the file does not have"
            else:
                assert line == f"{path}: {err.message}".translate(config._LINE_BREAKS)
        return None
    return settings


@IO
@given(doc=DOCUMENT)
@example(doc={"plugins": {"dirs": ["p\x85q"]}})  # the directory named in the message split its line
@example(doc={"plugins": "x"})  # AttributeError once
@example(doc={"rules": [{"alert": []}]})  # TypeError: unhashable type once
@example(doc={"state": {"path": "~nosuchuser-gw/s.db"}})  # RuntimeError from expanduser once
def test_a_config_of_known_keys_with_any_values_loads_or_says_what_is_wrong(config_env: Path, doc: dict) -> None:
    path = config_env / "gridwatch.toml"
    text = toml_document(doc)
    path.write_text(text, encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        data = None
    settings = assert_loads_or_explains(path, data)
    if settings is not None:
        assert [c.name for c in settings.checks] == [c["name"] for c in doc.get("checks", [])]
        assert set(settings.sources) == set(doc.get("sources", {}))


@IO
@given(text=TOML_ISH)
def test_any_text_loads_or_says_what_is_wrong(config_env: Path, text: str) -> None:
    path = config_env / "gridwatch.toml"
    path.write_text(text, encoding="utf-8")
    assert_loads_or_explains(path, None)


BASE: dict[str, Any] = {
    "timezone": "Asia/Shanghai",
    "server": {"listen": "127.0.0.1:9477"},
    "state": {"path": "state.db", "history": 100},
    "grids": {"source": "griddb", "refresh": "30s"},
    "calendar": {"holidays": [date(2027, 1, 1)], "workdays": [date(2027, 2, 7)]},
    "alerting": {"evaluation_interval": "15s"},
    "sources": {"griddb": {"type": "sqlite", "path": "demo.db"}},
    "checks": [
        {"name": "visits", "type": "visits", "source": "griddb", "interval": "5m", "timeout": "60s", "window": "30d"},
        {"name": "incidents", "type": "incidents", "source": "griddb", "limits": {"special": "5wd"}},
        {"name": "reports", "type": "reports", "source": "griddb", "cutoff": time(20, 0), "expect": ["daily"]},
        {
            "name": "n",
            "type": "sql",
            "source": "griddb",
            "metric": "gridwatch_custom_n",
            "value": "n",
            "query": "SELECT 1 AS n",
        },
    ],
    "rules": [
        {"alert": "VisitCoverageLow", "below": {"warning": 0.95}, "for": "5m", "summary": "{grid_name} {value:.0%}"},
        {"alert": "Custom", "metric": "gridwatch_custom_n", "above": {"critical": 5}, "labels": {"street": "{street}"}},
    ],
    "notifiers": {"hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}, "log": {"type": "log"}},
}
KEY_PATHS = [
    ("timezone",),
    ("server", "listen"),
    ("state", "path"),
    ("state", "history"),
    ("plugins", "dirs"),
    ("grids", "source"),
    ("grids", "refresh"),
    ("grids", "shard"),
    ("calendar", "holidays"),
    ("alerting", "evaluation_interval"),
    ("sources", "griddb", "type"),
    ("sources", "griddb", "path"),
    ("sources", "griddb", "busy_timeout"),
    ("sources", "griddb", "tables"),
    ("checks", 0, "name"),
    ("checks", 0, "interval"),
    ("checks", 0, "window"),
    ("checks", 0, "key_intervals"),
    ("checks", 1, "limits"),
    ("checks", 2, "cutoff"),
    ("checks", 2, "expect"),
    ("checks", 3, "params"),
    ("checks", 3, "query"),
    ("rules", 0, "alert"),
    ("rules", 0, "below"),
    ("rules", 0, "for"),
    ("rules", 0, "summary"),
    ("rules", 1, "labels"),
    ("rules", 1, "match"),
    ("notifiers", "hook", "url"),
    ("notifiers", "log", "min_severity"),
]
VALUES = st.one_of(GARBAGE, DURATIONS, TEMPLATES, st.sampled_from(["5wd", "daily", "1/2", "", "{street}"]))


def test_the_base_config_loads(config_env: Path) -> None:
    """The document the next property spoils one key of is itself valid."""
    path = config_env / "base.toml"
    path.write_text(toml_document(BASE), encoding="utf-8")
    settings, _ = config.load(path)
    assert [c.name for c in settings.checks] == ["visits", "incidents", "reports", "n"]
    assert settings.rules["VisitCoverageLow"].below is not None and settings.rules["Custom"].labels


def key_path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for p in parts:
        out = config._join(out, p)
    return out


@IO
@given(where=st.sampled_from(KEY_PATHS), value=VALUES)
@example(where=("timezone",), value="Asia")  # a directory of zones: IsADirectoryError, once a traceback
@example(where=("timezone",), value="9" * 400 + "s")  # "File name too long", once a traceback
@example(where=("checks", 0, "interval"), value="0s")  # was blamed on checks[0] as a whole
def test_any_value_for_a_known_key_loads_or_is_blamed_on_that_key(config_env: Path, where: tuple, value: Any) -> None:
    doc = copy.deepcopy(BASE)
    node = doc
    for part in where[:-1]:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    node[where[-1]] = value
    path = config_env / "gridwatch.toml"
    path.write_text(toml_document(doc), encoding="utf-8")
    try:
        config.load(path)
    except config.ConfigErrors as exc:
        lines = [str(e) for e in exc.errors]
        blamed = key_path(where)
        # the key itself, or the table holding it when the problem is between keys (a rule renamed
        # away from the default it took its metric from has no metric: "rules[0]: `metric` is required")
        assert any(e.path.startswith(blamed) or blamed.startswith(f"{e.path}.") for e in exc.errors), (
            f"{blamed} not named in {lines}"
        )
        assert_loads_or_explains(path, doc)


# a second per example (a new process): no shrinking here, the in-process properties shrink the same documents
@settings(max_examples=4, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(doc=DOCUMENT)
@example(doc={"checks": [{"name": "a", "type": "sql", "interval": "5 minutes"}]})
@example(doc=BASE)
@example(doc={"notifiers": {"\x85\u2028": "x"}})  # line breaks in a key once split its problem in three
def test_check_config_exits_2_with_one_line_per_problem_or_0(config_env: Path, doc: dict) -> None:
    """The command operators run: the same verdict as the loader, as an exit code and stderr lines."""
    path = config_env / "cli.toml"
    path.write_text(toml_document(doc), encoding="utf-8")
    try:
        config.load(path)
        expected: list[str] = []
    except config.ConfigErrors as exc:
        expected = [str(e) for e in exc.errors]
    env = {**os.environ, "HOME": str(config_env), "GW_PROP_SET": "from-env"}
    env.pop("GW_PROP_UNSET", None)
    done = subprocess.run(
        [sys.executable, "-m", "gridwatch", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "Traceback" not in done.stderr
    if expected:
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == expected
    else:
        assert (done.returncode, done.stdout.strip()) == (0, f"{path}: ok"), done.stderr


# --------------------------------------------------------------------------- durations

UNIT_SECONDS = {"ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60), "h": Fraction(3600)}
UNIT_SECONDS |= {"d": Fraction(86400), "w": Fraction(604800)}
FRACTION = st.one_of(st.none(), st.from_regex(r"[0-9]{1,6}", fullmatch=True))
UNIT = st.sampled_from(list(UNIT_SECONDS))
PART = st.tuples(st.integers(0, 10**5), FRACTION, UNIT)  # sometimes past the century limit
SMALL_PART = st.tuples(st.integers(0, 500), FRACTION, UNIT)  # six of them stay within it
GRAMMAR = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d|w))+")


def spell(parts: list[tuple[int, str | None, str]]) -> tuple[str, Fraction]:
    """A duration text and its exact value in seconds."""
    text, total = "", Fraction(0)
    for whole, frac, unit in parts:
        number = f"{whole}.{frac}" if frac else str(whole)
        text += number + unit
        total += Fraction(number) * UNIT_SECONDS[unit]
    return text, total


@PURE
@given(parts=st.lists(PART, min_size=1, max_size=4), pad=st.sampled_from(["", " ", "\t", "\n "]))
def test_a_duration_reads_as_the_sum_of_its_parts(parts: list, pad: str) -> None:
    text, exact = spell(parts)
    if exact > MAX_SECONDS:
        with pytest.raises(ValueError, match="longer than 100 years"):
            parse_duration(text)
        return
    assert math.isclose(parse_duration(pad + text + pad), float(exact), rel_tol=1e-12, abs_tol=1e-12)


@PURE
@given(seconds=st.one_of(st.integers(0, int(MAX_SECONDS)), st.floats(0, MAX_SECONDS)))
def test_format_duration_reads_back_exactly(seconds: float) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    if seconds == int(seconds):
        assert len(text) <= len(f"{int(seconds)}s")  # never longer than plain seconds


@PURE
@given(text=st.one_of(st.text(), st.text(alphabet="0123456789.msdhw ٣３-+e_", max_size=12)))
@example(text="9" * 400 + "s")  # once read as infinity
@example(text="٣s")  # once read as 3 seconds: \d matches every script's digits
@example(text="100000000d")  # once accepted: now - window overflowed in the reports check at every run
def test_only_the_duration_grammar_is_accepted(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        assert "duration" in str(exc)
        return
    assert GRAMMAR.fullmatch(text.strip()), f"{text!r} was accepted as {seconds}"
    assert math.isfinite(seconds) and 0 <= seconds <= MAX_SECONDS


@given(value=st.one_of(st.none(), st.integers(), st.floats(), st.binary(), st.lists(st.text())))
def test_a_duration_is_always_text(value: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(value)


@PURE
@given(a=st.lists(SMALL_PART, min_size=1, max_size=3), b=st.lists(SMALL_PART, min_size=1, max_size=3))
def test_durations_are_monotonic_and_additive(a: list, b: list) -> None:
    (ta, xa), (tb, xb) = spell(a), spell(b)
    pa, pb, both = parse_duration(ta), parse_duration(tb), parse_duration(ta + tb)
    assert math.isclose(both, pa + pb, rel_tol=1e-12, abs_tol=1e-12)
    if xa < xb:
        assert pa <= pb
    assert parse_duration(ta + "1s") > pa


# --------------------------------------------------------------------------- rule templates

FIELD = st.one_of(
    st.sampled_from(["alert", "severity", "value", "grid", "grid_name", "community", "street", "stage", "category"]),
    st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True),
    st.sampled_from(["0", "", "grid.name", "grid[0]", " grid", "网格"]),
)
SPEC = st.one_of(
    st.sampled_from(["", ".0%", ".1f", ">10", "^5", ",", "d", "x", "=+8.2f", "05.1f", "999999", ".101f", "{grid}"]),
    st.sampled_from(["n", "e", "g", "s", "%", "<", "9>4", "_", ",.2f", "#x", "z.1f", ">100", ">101", "0" * 8 + "7"]),
    st.text(alphabet="0123456789.<>^=+-, #%_dfgsxXeEn{}z", max_size=5),
)
FIELD_TEXT = st.builds(
    lambda name, conv, spec: "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec is not None else "") + "}",
    FIELD,
    st.sampled_from([None, None, "r", "s", "a", "x"]),
    st.one_of(st.none(), SPEC),
)
TEMPLATE = st.lists(
    st.one_of(FIELD_TEXT, st.text(max_size=6), st.sampled_from(["{{", "}}", "{", "}", "网格", "%", "{}"])), max_size=5
).map("".join)
# what label values and grid names may hold: anything, including what looks like a template
LABEL_VALUE = st.one_of(
    st.text(max_size=12), st.sampled_from(["{grid}", "{value:.0%}", "{", "}}", "{0}", "%s", "张伟", "9" * 20, "\x00"])
)
VALUE = st.one_of(st.floats(min_value=1e-300, allow_nan=False), st.sampled_from([math.inf, 1e308, 0.5, 1.0]))


def templated_rule(summary: str = "{alert}", labels: dict[str, str] | None = None) -> Rule:
    return Rule.model_validate(
        {
            "alert": "Tpl",
            "metric": "gridwatch_t",
            "above": {"warning": 0},
            "summary": summary,
            "description": summary,
            "labels": labels or {},
        }
    )


def refused_at_load(config_env: Path, key: str, template: str) -> list[str]:
    """Load a config whose one rule has ``template`` at ``key``; return the errors (none if it loads)."""
    rule = {"alert": "Tpl", "metric": "gridwatch_custom_n", "above": {"warning": 0}}
    if key == "labels":
        rule["labels"] = {"team": template}
    else:
        rule[key] = template
    doc = {
        "sources": {"db": {"type": "sqlite", "path": "x.db"}},
        "checks": [
            {
                "name": "n",
                "type": "sql",
                "source": "db",
                "metric": "gridwatch_custom_n",
                "value": "n",
                "query": "SELECT 1 AS n",
            }
        ],
        "rules": [rule],
    }
    path = config_env / "tpl.toml"
    path.write_text(toml_document(doc), encoding="utf-8")
    try:
        config.load(path)
    except config.ConfigErrors as exc:
        return [f"{e.path}: {e.message}" for e in exc.errors]
    return []


@IO
@given(
    template=TEMPLATE,
    labels=st.dictionaries(st.sampled_from(["grid", "stage", "category", "kind", "value", "alert"]), LABEL_VALUE),
    names=st.tuples(LABEL_VALUE, LABEL_VALUE, LABEL_VALUE),
    value=VALUE,
)
@example(template="{grid:{value}}", labels={"grid": "G1"}, names=("", "", ""), value=1e20)  # the value chose the format
@example(template="{grid:>99999999}", labels={"grid": "G1"}, names=("", "", ""), value=1.0)  # a 100 MB summary
def test_a_summary_that_passed_validation_renders_for_any_labels(
    config_env: Path, template: str, labels: dict[str, str], names: tuple[str, str, str], value: float
) -> None:
    try:
        rule = templated_rule(template)
    except ValueError:  # pydantic's ValidationError is one
        with pytest.raises(ValueError, match="bad template"):
            check_template(template)
        errors = refused_at_load(config_env, "summary", template)
        assert errors and all(e.startswith("rules[0].summary: bad template") for e in errors), errors
        return
    grid_id = labels.get("grid", "G1")
    labels = {**labels, "grid": grid_id}
    grids = {grid_id: Grid(grid_id, *names)}
    [hit] = evaluate([rule], [Sample("gridwatch_t", labels, value)], grids)
    fields = {**labels, "grid_name": names[0], "community": names[1], "street": names[2]}
    fields |= {"alert": "Tpl", "severity": "warning", "value": value}
    # the template itself renders (not render()'s fallback to the raw text)
    assert hit.summary == template.format_map(rules_fields(fields)) == hit.description
    event("accepted")


def rules_fields(fields: dict[str, Any]) -> dict[str, Any]:
    from gridwatch.rules import _Fields

    return _Fields(fields)


@IO
@given(template=TEMPLATE, labels=st.dictionaries(st.sampled_from(["grid", "stage", "street"]), LABEL_VALUE))
@example(template="{value:.0%}", labels={})  # a label has no value: this fell back to the raw template
def test_a_label_template_that_passed_validation_renders_for_any_labels(
    config_env: Path, template: str, labels: dict[str, str]
) -> None:
    try:
        rule = templated_rule(labels={"team": template})
    except ValueError:
        errors = refused_at_load(config_env, "labels", template)
        assert errors and all(e.startswith("rules[0].labels: bad template") for e in errors), errors
        return
    [hit] = evaluate([rule], [Sample("gridwatch_t", labels, 1.0)], {})
    assert hit.labels["team"] == (template.format_map(rules_fields(labels)) if "{" in template else template)


@PURE
@given(text=LABEL_VALUE, literal=st.text(max_size=8))
def test_a_label_value_is_never_read_as_a_template(text: str, literal: str) -> None:
    """A grid called "{value:.0%}" is shown as written; braces doubled in a template are literal."""
    escaped = literal.replace("{", "{{").replace("}", "}}")
    assert render("{grid}" + escaped, {"grid": text}) == text + literal
    check_template("{grid}" + escaped)


# --------------------------------------------------------------------------- calendar

ZONES = st.sampled_from(
    [
        "Asia/Shanghai",
        "UTC",
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",  # a half-hour DST shift
        "America/Santiago",  # DST changes at midnight: some days have no 00:00
        "America/Havana",
        "Pacific/Chatham",  # +12:45 / +13:45
        "Asia/Kathmandu",
    ]
).map(ZoneInfo)
DAYS = st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31))
STATUTORY = st.dates(min_value=date(2004, 1, 1), max_value=date(2026, 12, 31))
BEYOND = st.one_of(
    st.dates(min_value=date(1990, 1, 1), max_value=date(2003, 12, 31)),
    st.dates(min_value=date(2027, 1, 1), max_value=date(2100, 12, 31)),
)


@st.composite
def aware(draw: st.DrawFn, tz: ZoneInfo | None = None) -> datetime:
    zone = tz or draw(ZONES)
    naive = draw(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 12, 31)))
    return naive.replace(tzinfo=zone, fold=draw(st.integers(0, 1))).astimezone(UTC).astimezone(zone)


def utc(value: datetime) -> datetime:
    """The instant: aware datetimes sharing a zone compare and subtract by wall clock in Python."""
    return value.astimezone(UTC)


def workdays_between(cal: WorkCalendar, after: date, upto: date) -> int:
    """Working days in (after, upto], counted one day at a time."""
    n, d = 0, after
    while d < upto:
        d += timedelta(days=1)
        n += cal.is_workday(d)
    return n


def day_boundary(instant: datetime, tz: ZoneInfo) -> date:
    """The local date that ends at ``instant`` (which must be the first instant of the next date)."""
    before = (utc(instant) - timedelta(microseconds=1)).astimezone(tz).date()
    assert instant.astimezone(tz).date() == before + timedelta(days=1), f"{instant} is not the start of a day in {tz}"
    return before


@PURE
@given(d=STATUTORY)
def test_working_days_follow_the_statutory_calendar(d: date) -> None:
    assert WorkCalendar().is_workday(d) == chinese_calendar.is_workday(d)


@PURE
@given(d=BEYOND)
def test_a_year_without_statutory_data_counts_monday_to_friday(d: date) -> None:
    cal = WorkCalendar()
    assert cal.is_workday(d) == (d.weekday() < 5)
    assert d.year in cal.missing_years


@PURE
@given(
    d=st.one_of(STATUTORY, BEYOND),
    holidays=st.sets(st.one_of(STATUTORY, BEYOND), max_size=5),
    workdays=st.sets(st.one_of(STATUTORY, BEYOND), max_size=5),
)
def test_operator_overrides_win(d: date, holidays: set[date], workdays: set[date]) -> None:
    if holidays & workdays:
        with pytest.raises(ValueError, match="both holiday and workday"):
            WorkCalendar(holidays, workdays)
        return
    cal = WorkCalendar(holidays, workdays)
    expected = d in workdays or (d not in holidays and WorkCalendar().is_workday(d))
    assert cal.is_workday(d) == expected


LIMIT_N = st.integers(1, 40)


@PURE
@given(reported=aware(), n=LIMIT_N, extended=st.booleans())
def test_a_limit_in_days_is_n_times_24_hours(reported: datetime, n: int, extended: bool) -> None:
    deadline = incident_deadline(reported, f"{n}d", WorkCalendar(), extended)
    # same-zone subtraction is wall-clock arithmetic in Python: compare instants
    assert deadline.astimezone(UTC) - reported.astimezone(UTC) == timedelta(hours=24 * n * (2 if extended else 1))
    assert deadline.tzinfo is reported.tzinfo


@PURE
@given(reported=aware(), n=LIMIT_N, extended=st.booleans())
@example(reported=datetime(2026, 9, 18, 17, 0, tzinfo=ZoneInfo("Asia/Shanghai")), n=5, extended=False)
def test_a_limit_in_working_days_ends_at_midnight_after_the_nth_working_day(
    reported: datetime, n: int, extended: bool
) -> None:
    cal = WorkCalendar()
    tz = reported.tzinfo
    assert isinstance(tz, ZoneInfo)
    deadline = incident_deadline(reported, f"{n}wd", cal, extended)
    assert utc(deadline) > utc(reported)
    last = day_boundary(deadline, tz)
    assert cal.is_workday(last)
    assert workdays_between(cal, reported.date(), last) == n * (2 if extended else 1)


@PURE
@given(
    a=aware(ZoneInfo("Asia/Shanghai")), b=aware(ZoneInfo("Asia/Shanghai")), n=LIMIT_N, unit=st.sampled_from(["d", "wd"])
)
def test_deadlines_are_monotonic(a: datetime, b: datetime, n: int, unit: str) -> None:
    a, b = sorted((a, b), key=utc)
    cal = WorkCalendar()
    first = utc(incident_deadline(a, f"{n}{unit}", cal))
    assert first <= utc(incident_deadline(b, f"{n}{unit}", cal))
    assert first <= utc(incident_deadline(a, f"{n + 1}{unit}", cal))
    assert first <= utc(incident_deadline(a, f"{n}{unit}", cal, extended=True))


@PURE
@given(limit=st.text(max_size=6), reported=aware())
def test_a_malformed_limit_or_a_naive_time_is_a_value_error(limit: str, reported: datetime) -> None:
    assume(not re.fullmatch(r"0*[1-9][0-9]*(wd|d)", limit))
    with pytest.raises(ValueError):
        incident_deadline(reported, limit, WorkCalendar())
    with pytest.raises(ValueError, match="timezone-aware"):
        incident_deadline(reported.replace(tzinfo=None), "1d", WorkCalendar())


def named_due_date(kind: str, first: date, last: date) -> date:
    """The day the rule book names for a period's report (DOMAIN.md §3), derived independently."""
    if kind in ("daily", "twice_weekly"):
        return last
    if kind == "weekly":
        return first + timedelta(days=4)  # Friday of the ISO week
    if kind == "monthly":
        return date(last.year + (last.month == 12), last.month % 12 + 1, 5)
    if kind == "quarterly":
        return date(last.year + (last.month == 12), last.month % 12 + 1, 15)
    return date(last.year + 1, 1, 31)


def span(kind: str, period: str) -> tuple[date, date]:
    """The dates a period covers, found by walking days (not by parsing the period)."""
    from gridwatch.calendar import _span

    first, last = _span(kind, period)
    assert period_for(kind, first) == period == period_for(kind, last)
    if date.min < first and last < date.max:
        assert period_for(kind, first - timedelta(days=1)) != period != period_for(kind, last + timedelta(days=1))
    return first, last


@PURE
@given(kind=st.sampled_from(REPORT_KINDS), d=DAYS, tz=ZONES, cutoff=st.times())
@example(kind="daily", d=date(2038, 3, 14), tz=ZoneInfo("America/Havana"), cutoff=time(0, 0, fold=1))  # was 03-13 23:00
def test_a_report_is_due_when_the_rule_book_says(kind: str, d: date, tz: ZoneInfo, cutoff: time) -> None:
    period = period_for(kind, d)
    first, last = span(kind, period)
    assert first <= d <= last
    if kind == "twice_weekly":
        assert last.weekday() in (1, 4) and (last - first).days in (2, 3)  # Sat-Tue or Wed-Fri
    due = due_time(kind, period, tz, cutoff)
    named = named_due_date(kind, first, last)
    if kind in ("daily", "twice_weekly"):
        wall = datetime.combine(named, cutoff)
        local = due.astimezone(tz)
        # the cutoff on the named day; a wall time that does not exist (DST) moves forward by the gap
        assert timedelta(0) <= local.replace(tzinfo=None) - wall <= timedelta(hours=1), (due, wall)
    else:
        assert day_boundary(due, tz) == named  # 24:00 of the named day
    assert utc(due) >= datetime.combine(first, time(0), tz).astimezone(UTC) - timedelta(hours=1)


@PURE
@given(kind=st.sampled_from(REPORT_KINDS), a=DAYS, b=DAYS, tz=ZONES)
def test_later_days_belong_to_the_same_or_a_later_period(kind: str, a: date, b: date, tz: ZoneInfo) -> None:
    a, b = min(a, b), max(a, b)
    pa, pb = period_for(kind, a), period_for(kind, b)
    assert utc(due_time(kind, pa, tz)) <= utc(due_time(kind, pb, tz))
    assert (pa == pb) == (span(kind, pa) == span(kind, pb))


@PURE
@given(
    kind=st.sampled_from(REPORT_KINDS),
    period=st.one_of(st.text(max_size=10), st.from_regex(r"[0-9]{4}(-(W|Q)?[0-9]{1,2}(-[0-9]{2})?)?", fullmatch=True)),
    tz=ZONES,
)
@example(kind="monthly", period="9999-12", tz=ZoneInfo("UTC"))
@example(kind="weekly", period="2026-W53", tz=ZoneInfo("UTC"))
def test_a_malformed_period_is_a_value_error(kind: str, period: str, tz: ZoneInfo) -> None:
    try:
        due = due_time(kind, period, tz)
    except ValueError as exc:
        assert period in str(exc) or repr(period) in str(exc)
        return
    assert period_for(kind, span(kind, period)[0]) == period  # only canonical periods are accepted
    assert due.tzinfo is not None


@PURE
@given(kind=st.sampled_from(REPORT_KINDS), now=aware(), cutoff=st.times())
def test_the_latest_and_next_due_periods_bracket_now(kind: str, now: datetime, cutoff: time) -> None:
    period, due = latest_due_period(kind, now, cutoff)
    nxt, next_due = next_due_period(kind, now, cutoff)
    assert utc(due) <= utc(now) < utc(next_due)
    assert due == due_time(kind, period, now.tzinfo, cutoff)
    assert next_due == due_time(kind, nxt, now.tzinfo, cutoff)
    first, _ = span(kind, nxt)
    assert period_for(kind, first - timedelta(days=1)) == period  # consecutive periods
    # and nothing is due in between
    for d in range(1, 40):
        earlier = period_for(kind, first - timedelta(days=d))
        assert earlier == period or not utc(due) < utc(due_time(kind, earlier, now.tzinfo, cutoff)) <= utc(now)


@PURE
@given(kind=st.sampled_from(REPORT_KINDS), a=aware(ZoneInfo("Asia/Shanghai")), b=aware(ZoneInfo("Asia/Shanghai")))
def test_the_latest_due_period_never_goes_back(kind: str, a: datetime, b: datetime) -> None:
    a, b = sorted((a, b), key=utc)
    assert utc(latest_due_period(kind, a)[1]) <= utc(latest_due_period(kind, b)[1])
    assert utc(next_due_period(kind, a)[1]) <= utc(next_due_period(kind, b)[1])


@PURE
@given(
    kind=st.sampled_from(REPORT_KINDS),
    start=aware(),
    length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=100)),
    cutoff=st.times(),
)
def test_expected_periods_are_exactly_those_due_in_the_window(
    kind: str, start: datetime, length: timedelta, cutoff: time
) -> None:
    tz = start.tzinfo
    assert isinstance(tz, ZoneInfo)
    end = (start + length).astimezone(tz)
    got = expected_periods(kind, start, end, cutoff)
    # brute force: every period some day from 13 months before to a day after the window falls in
    days = (end.date() - start.date()).days + 400
    candidates = {period_for(kind, end.date() + timedelta(days=1) - timedelta(days=i)) for i in range(days)}
    want = sorted(
        (utc(due), due, p) for p in candidates if utc(start) <= utc(due := due_time(kind, p, tz, cutoff)) <= utc(end)
    )
    assert got == [(p, due) for _, due, p in want]
    if kind == "daily":
        assert len(got) <= length.days + 2


# --------------------------------------------------------------------------- timestamps SQLite vouches for

_VOUCH_TZ = ZoneInfo("Asia/Shanghai")
_SINCE, _UNTIL = datetime(2022, 1, 1), datetime(2026, 11, 20, 15)  # the window: +08:00 throughout


def _vouched(value: Any) -> tuple[bool, Any]:
    """Whether SQLite vouches for ``value`` as an ISO time in the window, and the text it returns."""
    from gridwatch.sources.sqlite import _time_sql

    sure, key, _ = _time_sql("iso") or ("", "", 0)
    with sqlite3.connect(":memory:") as conn:
        row = conn.execute(
            f"SELECT ({sure.format(col=':v')}) IS 1, {key.format(col=':v')}",
            {"v": value, "since": str(_SINCE), "until": str(_UNTIL), "shift": "+28800 seconds", "own": "+08:00"},
        ).fetchone()
    conn.close()
    return bool(row[0]), row[1]


_NUMBER = st.one_of(st.integers(1, 12), st.integers(0, 99)).map(lambda n: f"{n:02d}")  # mostly valid
_ISO_LIKE = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, zone, pad: f"{pad}{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{zone}",
    st.sampled_from(["2026", "2026", "2025", "2022", "2021", "0001", "9999", "20x6"]),
    _NUMBER,
    _NUMBER,
    st.sampled_from(["T", " ", "T", " ", "t", "_", "  ", ""]),
    _NUMBER,
    _NUMBER,
    _NUMBER,
    st.one_of(st.just(""), st.from_regex(r"[.,][0-9]{0,8}", fullmatch=True), st.just(".5x")),
    st.one_of(
        st.sampled_from(["", "Z", "z", "+08:00", "-00:00", "+0800", "+08"]),
        st.builds(lambda sign, hh, mm: f"{sign}{hh}:{mm}", st.sampled_from("+-"), _NUMBER, _NUMBER),
    ),
    st.sampled_from(["", "", " "]),
)


_ISO_REAL = st.builds(  # real times, written in any of the forms, in the window or about it
    lambda m, zone, sep, spec: m.replace(tzinfo=_VOUCH_TZ).astimezone(zone).isoformat(sep, spec),
    st.datetimes(datetime(2021, 12, 31), datetime(2026, 11, 21)),
    st.sampled_from([_VOUCH_TZ, UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kathmandu")]),
    st.sampled_from("T "),
    st.sampled_from(["seconds", "milliseconds", "microseconds", "auto", "minutes"]),
)


@PURE
@given(
    st.one_of(
        _ISO_LIKE,
        _ISO_REAL,
        _ISO_REAL.map(lambda v: v[:19] + v[26:] if len(v) > 26 else v[:19]),  # local, or cut short
        _ISO_LIKE.map(lambda v: v[: len(v) // 2]),
        st.text(max_size=40),
        st.integers(-(2**63), 2**63 - 1),
    )
)
@example("2025-12-19 02:03:42.163001+08:00")
@example("2026-11-20T06:59:59.999999Z")
@example("2026-02-29 10:00:00")
def test_sqlite_vouches_only_for_times_parse_ts_reads_and_to_the_same_instant(value: Any) -> None:
    """The aggregated path is as exact as the row-by-row one: a time SQLite vouches for reads
    with parse_ts, lies in the window, and the text SQLite returns for it reads to the same
    instant; whatever it does not vouch for goes to Python (never a wrong figure, only slower)."""
    sure, key = _vouched(value)
    if not sure:
        event("handed on")
        return
    event("vouched")
    at = parse_ts(value, _VOUCH_TZ)
    assert at is not None
    assert parse_ts(key, _VOUCH_TZ) == at
    assert _SINCE.replace(tzinfo=_VOUCH_TZ) <= at < _UNTIL.replace(tzinfo=_VOUCH_TZ) + timedelta(seconds=1)
    assert key <= str(_UNTIL) or key.startswith(str(_UNTIL))


@PURE
@given(st.lists(st.datetimes(datetime(2022, 1, 2), datetime(2026, 11, 19)), min_size=2, max_size=6), st.data())
def test_sqlite_orders_times_of_any_form_as_the_instants_they_name(moments: list[datetime], data: Any) -> None:
    """Written with a `T` or a space, microseconds or none, Z, +08:00 or another offset, or none
    (local): the greatest text SQLite returns is the latest instant."""
    texts = []
    for m in moments:
        at = m.replace(tzinfo=_VOUCH_TZ)
        zone = data.draw(st.sampled_from([None, _VOUCH_TZ, UTC, ZoneInfo("America/New_York")]))
        local = at.replace(tzinfo=None) if zone is None else at.astimezone(zone)
        text = local.isoformat(data.draw(st.sampled_from("T ")))
        texts.append(text.replace("+00:00", "Z") if data.draw(st.booleans()) else text)
    keys = []
    for text in texts:
        sure, key = _vouched(text)
        assert sure, text
        keys.append(key)
    assert parse_ts(max(keys), _VOUCH_TZ) == max(m.replace(tzinfo=_VOUCH_TZ) for m in moments)


_PATTERNS = ["%Y/%m/%d %H:%M:%S", "%Y%m%d%H%M%S", "%d.%m.%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%d%m%Y", "%H:%M %d/%m/%Y"]


@PURE
@given(
    st.sampled_from(_PATTERNS),
    st.lists(st.datetimes(datetime(2021, 12, 1), datetime(2026, 12, 1)), min_size=1, max_size=5),
    st.lists(st.text("0123456789/.: ", max_size=3), max_size=5),
)
def test_sqlite_vouches_for_a_declared_pattern_only_as_strptime_reads_it(fmt: str, moments: list, junk: list) -> None:
    """A pattern's fields in any order: a text SQLite vouches for is one the pattern reads, in
    the window, and the greatest of what SQLite compares, cut as it says, is the latest time."""
    from gridwatch.sources.sqlite import _time_sql

    sure, key, cut = _time_sql(fmt) or ("", "", 0)
    assert sure
    texts = [m.strftime(fmt) for m in moments]
    texts += [t[: len(t) - len(j)] + j for t, j in zip(texts, junk, strict=False)]  # some spoilt
    vouched = []
    with sqlite3.connect(":memory:") as conn:
        for text in texts:
            ok, k = conn.execute(
                f"SELECT ({sure.format(col=':v')}) IS 1, {key.format(col=':v')}",
                {"v": text, "since": str(_SINCE), "until": str(_UNTIL)},
            ).fetchone()
            if ok:
                at = parse_ts(text, _VOUCH_TZ, fmt)
                assert at is not None and _SINCE <= at.replace(tzinfo=None) <= _UNTIL
                vouched.append((k, at))
    conn.close()
    if vouched:
        latest = max(k for k, _ in vouched)[cut:]
        assert parse_ts(latest, _VOUCH_TZ, fmt) == max(at for _, at in vouched)


# --------------------------------------------------------------------------- ingest payloads

INGEST_TOKEN = "property-token"


class Inbox:
    """A real daemon with an ``ingest`` source, and a read-only look at the file it writes."""

    def __init__(self, daemon: DaemonProcess, db: Path) -> None:
        self.daemon = daemon
        self.db = db

    def post(self, table: str, body: bytes) -> tuple[int, Any]:
        req = urllib.request.Request(
            f"{self.daemon.base}/api/v1/ingest/{table}",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {INGEST_TOKEN}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def rows(self, table: str, ids: list[Any]) -> dict[Any, dict[str, Any]]:
        """The stored rows of ``table`` with these ids, by id."""
        id_column = STANDARD_SCHEMA[table][0]
        with sqlite3.connect(f"{self.db.as_uri()}?mode=ro", uri=True) as conn:
            conn.row_factory = sqlite3.Row
            marks = ", ".join("?" * len(ids))
            found = conn.execute(f"SELECT * FROM {table} WHERE {id_column} IN ({marks})", ids).fetchall()
        conn.close()
        return {r[id_column]: dict(r) for r in found}


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inbox]:
    d = tmp_path_factory.mktemp("inbox")
    port = free_port()
    cfg = d / "gridwatch.toml"
    cfg.write_text(
        textwrap.dedent(f"""
        [server]
        listen = "127.0.0.1:{port}"
        [state]
        path = "state.db"
        [sources.inbox]
        type = "ingest"
        token = "{INGEST_TOKEN}"
        max_rows = 50
        """),
        encoding="utf-8",
    )
    with DaemonProcess(cfg, port) as daemon:
        yield Inbox(daemon, d / "ingest.db")
        assert "Traceback" not in daemon.log(), daemon.log()


JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)
JSON = st.recursive(
    JSON_SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
TABLE_NAME = st.one_of(st.sampled_from(list(STANDARD_SCHEMA)), st.from_regex(r"[A-Za-z_%.-]{1,12}", fullmatch=True))


@st.composite
def row_like(draw: st.DrawFn) -> dict[str, Any]:
    """Objects that are nearly rows: standard column names, now and then a stray one or a nested value."""
    table = draw(st.sampled_from(list(STANDARD_SCHEMA)))
    keys = st.one_of(st.sampled_from(STANDARD_SCHEMA[table]), st.text(max_size=6))
    return draw(st.dictionaries(keys, st.one_of(JSON_SCALAR, JSON_SCALAR, JSON), max_size=6))


BODY = st.one_of(
    JSON.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    st.lists(row_like(), max_size=5).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),
    st.sampled_from(
        [
            b'[{"visit_id": "v", "grid_id": "\\ud800"}]',  # a lone surrogate: valid JSON, not valid Unicode
            b'{"visit_id": "\\udfff"}',
            b'[{"visit_id": NaN}]',
            b'[{"visit_id": 1e999}]',
            b"[" * 5000 + b"]" * 5000,
            b"\xff\xfe[]",
            b'[{"visit_id": "v", "visit_id": "w"}]',
            b"",
        ]
    ),
)


@IO
@given(table=TABLE_NAME, body=BODY)
def test_any_body_is_stored_or_refused_with_a_message_never_a_500(inbox: Inbox, table: str, body: bytes) -> None:
    status, answer = inbox.post(table, body)
    assert status in (200, 201, 400, 404, 413), (status, answer)
    if status >= 400:
        assert isinstance(answer.get("error"), str) and answer["error"].strip(), answer
    else:
        assert answer["table"] == table and answer["stored"] >= 0


def text_value(value: Any) -> Any:
    """How a JSON scalar reads back from a text column: as the text the client wrote."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def integer_value(value: Any) -> Any:
    return None if value is None else int(value)


@st.composite
def batch(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]]]:
    """A valid batch of one standard table: ids from a small pool (so some repeat), any scalars."""
    table = draw(st.sampled_from(list(STANDARD_SCHEMA)))
    id_column, *columns = STANDARD_SCHEMA[table]
    tag = draw(st.uuids()).hex[:8]
    ids = st.one_of(
        st.integers(1, 4).map(lambda i: f"{tag}-{i}"),
        st.text(min_size=1, max_size=6).map(lambda s: f"{tag}{s}"),
        st.integers(10**12, 10**12 + 3),
    )
    text_scalar = st.one_of(
        st.none(),
        st.text(max_size=10),
        st.sampled_from(["张伟", "\x00", "13800138000", "{grid}", "'; DROP TABLE"]),
        st.integers(-(2**63), 2**63 - 1),
        st.booleans(),
        # the published row schema (OpenAPI) takes numbers within the 64-bit integer range
        st.floats(min_value=-(2.0**62), max_value=2.0**62, allow_nan=False),
    )
    int_scalar = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.booleans())
    fields = {c: int_scalar if c in INTEGER_COLUMNS else text_scalar for c in columns}
    rows = draw(
        st.lists(
            st.fixed_dictionaries({id_column: ids}, optional=fields),
            min_size=1,
            max_size=12,
        )
    )
    return table, rows


def expected_rows(table: str, rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """The last row per id, every column present (an absent one NULL), values as they read back."""
    id_column = STANDARD_SCHEMA[table][0]
    out = {}
    for row in rows:
        key = text_value(row[id_column])
        out[key] = {
            c: integer_value(row.get(c)) if c in INTEGER_COLUMNS else text_value(row.get(c))
            for c in STANDARD_SCHEMA[table]
        } | {id_column: key}
    return out


@IO
@given(data=batch())
@example(data=("visits", [{"visit_id": "f1", "grid_id": 0.30000000000000004}, {"visit_id": "f2", "grid_id": 0.3}]))
@example(data=("grids", [{"grid_id": 1e16}, {"grid_id": 10**16}]))  # "1e+16" and "10000000000000000"
def test_a_valid_batch_is_stored_exactly(inbox: Inbox, data: tuple[str, list[dict[str, Any]]]) -> None:
    table, rows = data
    status, answer = inbox.post(table, json.dumps(rows).encode())
    assert (status, answer) == (201, {"stored": len(rows), "table": table}), (rows, answer)
    want = expected_rows(table, rows)
    assert inbox.rows(table, list(want)) == want


BAD_ROW = {
    "an unknown column": lambda row, col, id_col: row.update(colour="red"),
    "a nested object": lambda row, col, id_col: row.update({col: {"n": 1}}),
    "a list": lambda row, col, id_col: row.update({col: [1]}),
    "an integer beyond 64 bits": lambda row, col, id_col: row.update({col: 2**64}),
    "a lone surrogate": lambda row, col, id_col: row.update({col: "\ud800"}),
    "no id": lambda row, col, id_col: row.pop(id_col),
    "an empty id": lambda row, col, id_col: row.update({id_col: ""}),
}


@IO
@given(data=batch(), where=st.integers(0, 11), bad=st.sampled_from(sorted(BAD_ROW)))
def test_a_batch_with_one_bad_row_stores_nothing_and_names_the_row(
    inbox: Inbox, data: tuple[str, list[dict[str, Any]]], where: int, bad: str
) -> None:
    table, rows = data
    id_column, column = STANDARD_SCHEMA[table][:2]
    rows = [dict(r) for r in rows]
    i = where % len(rows)
    ids = [text_value(r[id_column]) for r in rows]
    before = inbox.rows(table, ids)
    BAD_ROW[bad](rows[i], column, id_column)
    status, answer = inbox.post(table, json.dumps(rows).encode())  # a lone surrogate travels as \ud800
    assert status == 400, answer
    assert answer["error"].startswith(f"row {i}"), answer
    assert inbox.rows(table, ids) == before
