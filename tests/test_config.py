"""Config validation: every problem is one line naming file, key path and what is wrong."""

import textwrap
from pathlib import Path

import pytest

from gridwatch import config
from gridwatch.cli import main

GOOD = """
[sources.griddb]
type = "sqlite"
path = "demo.db"

[[checks]]
name = "open_cases"
type = "sql"
source = "griddb"
interval = "1m"
timeout = "10s"
metric = "gridwatch_custom_open_cases"
value = "n"
query = "SELECT 1 AS n"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gridwatch.toml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def test_a_valid_config_loads_with_defaults(tmp_path):
    settings, _host = config.load(write(tmp_path, GOOD))
    assert (settings.host, settings.port) == ("127.0.0.1", 9477)
    assert str(settings.timezone) == "Asia/Shanghai"
    assert settings.state_path == tmp_path / "var" / "gridwatch-state.db"
    [check] = settings.checks
    assert (check.interval, check.timeout, check.options.metric) == (
        60,
        10,
        "gridwatch_custom_open_cases",
    )


def test_check_config_reports_each_problem_with_file_and_key_path(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GW_TEST_MISSING", raising=False)
    path = write(
        tmp_path,
        """
        [sources.griddb]
        type = "sqlite"
        path = "${GW_TEST_MISSING}"

        [[checks]]
        name = "a"
        type = "sql"
        source = "griddb"
        metric = "m"
        value = "n"
        query = "SELECT 1 AS n"
        colour = "red"

        [[checks]]
        name = "b"
        type = "sql"
        source = "griddb"
        interval = "5 minutes"
        metric = "m"
        value = "n"
        query = "SELECT 1 AS n"

        [[checks]]
        name = "c"
        type = "sql"
        source = "nowhere"
        metric = "m"
        value = "n"
        query = "SELECT 1 AS n"
        """,
    )
    assert main(["check-config", "-c", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"{path}: sources.griddb.path: environment variable ${{GW_TEST_MISSING}} is not set",
        f"{path}: checks[0].colour: unknown key",
        f"{path}: checks[1].interval: expected a duration like 30s, 5m, 1h or 1d, got '5 minutes'",
        f"{path}: checks[2].source: unknown source 'nowhere'",
    ]


def test_env_vars_are_substituted(tmp_path, monkeypatch):
    monkeypatch.setenv("GW_TEST_DB", "from-env.db")
    settings, _ = config.load(write(tmp_path, GOOD.replace('"demo.db"', '"${GW_TEST_DB}"')))
    assert settings.sources["griddb"].options.path == "from-env.db"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('timezone = "Mars/Olympus"\n', "timezone: unknown timezone 'Mars/Olympus'"),
        ('[server]\nlisten = "localhost"\n', "server.listen: expected HOST:PORT, got 'localhost'"),
        ("[server]\nport = 1\n", "server.port: unknown key"),
        (
            '[sources.x]\ntype = "oracle"\n',
            "sources.x.type: unknown source type 'oracle' (known: csv, http, ingest, jsonl, sql, sqlite)",
        ),
        ('[sources.x]\ntype = "sqlite"\n', "sources.x.path: required key is missing"),
    ],
)
def test_top_level_problems(tmp_path, snippet, expected):
    with pytest.raises(config.ConfigErrors) as err:
        config.load(write(tmp_path, snippet))
    assert [str(e) for e in err.value.errors] == [f"{tmp_path / 'gridwatch.toml'}: {expected}"]


def test_duplicate_check_names_and_bad_toml(tmp_path):
    with pytest.raises(config.ConfigErrors, match=r"checks\[1\]\.name: duplicate check name 'open_cases'"):
        config.load(write(tmp_path, GOOD + GOOD.split("\n", 5)[-1]))
    with pytest.raises(config.ConfigErrors, match="not valid TOML"):
        config.load(write(tmp_path, "[[checks]\n"))


def test_config_path_precedence(monkeypatch):
    monkeypatch.setenv("GRIDWATCH_CONFIG", "/etc/gridwatch/gridwatch.toml")
    assert config.config_path("x.toml") == Path("x.toml")
    assert config.config_path(None) == Path("/etc/gridwatch/gridwatch.toml")
    monkeypatch.delenv("GRIDWATCH_CONFIG")
    assert config.config_path(None) == Path("gridwatch.toml")


def test_check_config_ok_exits_zero(tmp_path, capsys):
    assert main(["check-config", "-c", str(write(tmp_path, GOOD))]) == 0
    assert "ok" in capsys.readouterr().out


def test_every_problem_of_one_check_is_reported(tmp_path, capsys):
    """One wrong key never hides another: an unknown source is named next to a bad interval, an
    unknown type or missing options, and a zero timeout next to a bad option."""
    path = write(
        tmp_path,
        """
        [[checks]]
        name = "a"
        type = "sql"
        source = "nowhere"
        interval = "often"
        metric = "m"
        value = "n"
        query = "SELECT 1 AS n"

        [[checks]]
        name = "b"
        type = "no_such_type"
        source = "nowhere"

        [[checks]]
        name = "c"
        type = "sql"
        source = "nowhere"
        timeout = "0s"
        value = "n"

        [[checks]]
        name = "c"
        type = "sql"
        interval = "0s"
        metric = "m"
        value = "n"
        query = "SELECT 1 AS n"
        """,
    )
    assert main(["check-config", "-c", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}: checks[0].interval: expected a duration like 30s, 5m, 1h or 1d, got 'often'",
        f"{path}: checks[0].source: unknown source 'nowhere'",
        f"{path}: checks[1].type: unknown check type 'no_such_type' (known: incidents, patrols, reports, sql, visits)",
        f"{path}: checks[1].source: unknown source 'nowhere'",
        f"{path}: checks[2].timeout: timeout must be longer than zero",
        f"{path}: checks[2].metric: required key is missing",
        f"{path}: checks[2].query: required key is missing",
        f"{path}: checks[2].source: unknown source 'nowhere'",
        f"{path}: checks[3].interval: interval must be longer than zero",
        f"{path}: checks[3].name: duplicate check name 'c'",
        f"{path}: checks[3].source: check type 'sql' needs a source",
    ]
