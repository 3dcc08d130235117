"""The ``gridwatch`` command as a person types it: options in either place, one line per
problem and exit 2 instead of a traceback, times in the configured zone."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

GRIDWATCH = [sys.executable, "-m", "gridwatch"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, body: str, port: int | None = None) -> Path:
    path = tmp_path / "gridwatch.toml"
    head = f'[state]\npath = "state.db"\n[server]\nlisten = "127.0.0.1:{port or free_port()}"\n'
    path.write_text(head + textwrap.dedent(body), encoding="utf-8")
    return path


def gridwatch(
    *args: str, cwd: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GRIDWATCH, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


# --------------------------------------------------------------------------- missing drivers

SQL_SOURCE = """
[sources.platform]
type = "sql"
url = "{url}"

[[checks]]
name = "open_cases"
type = "sql"
source = "platform"
metric = "gridwatch_custom_open_cases"
value = "n"
query = "SELECT 1 AS n"
"""


@pytest.mark.parametrize(
    ("url", "module", "problem"),
    [
        (
            "mysql+pymysql://grid:hunter2@127.0.0.1/grid",
            "pymysql",
            "the database driver for mysql+pymysql is not installed (pymysql): pip install 'gridwatch[mysql]'",
        ),
        (
            "mysql+mysqldb://grid:hunter2@127.0.0.1/grid",
            "MySQLdb",
            "the database driver for mysql+mysqldb is not installed (MySQLdb): install it, "
            "or write mysql+pymysql:// and pip install 'gridwatch[mysql]'",
        ),
        (
            "postgresql+pg8000://grid:hunter2@127.0.0.1/grid",
            "pg8000",
            "the database driver for postgresql+pg8000 is not installed (pg8000): install it, "
            "or write postgresql+psycopg:// and pip install 'gridwatch[postgres]'",
        ),
    ],
)
def test_a_missing_database_driver_is_one_line_naming_the_extra(tmp_path, url, module, problem):
    # the test extra installs PyMySQL and psycopg: a module of that name that cannot be imported
    # stands for the driver not being there
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / f"{module}.py").write_text("raise ModuleNotFoundError(f'No module named {__name__!r}', name=__name__)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(hidden), os.environ.get("PYTHONPATH")]))}
    path = write_config(tmp_path, SQL_SOURCE.format(url=url))
    for command in ("check-config", "once", "run"):
        result = gridwatch(command, "-c", "gridwatch.toml", cwd=tmp_path, env=env)
        assert (result.returncode, result.stdout, result.stderr) == (
            2,
            "",
            f"gridwatch.toml: sources.platform: {problem}\n",
        ), command
    assert not (tmp_path / "state.db").exists()  # refused before anything was started
    assert path.exists()


def test_a_postgresql_url_without_a_driver_uses_the_one_the_extra_installs(tmp_path, capsys):
    """``postgresql://`` meant psycopg2 before SQLAlchemy 2.1; the ``postgres`` extra installs psycopg 3."""
    from gridwatch.cli import main

    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("psycopg is not installed here")
    path = write_config(tmp_path, SQL_SOURCE.format(url="postgresql://grid@127.0.0.1:1/grid"))
    assert main(["check-config", "-c", str(path)]) == 0, capsys.readouterr().err


# --------------------------------------------------------------------------- options in either place

ONE_CHECK = """
timezone = "Asia/Shanghai"

[sources.platform]
type = "sqlite"
path = "platform.db"

[[checks]]
name = "open_cases"
type = "sql"
source = "platform"
metric = "gridwatch_custom_open_cases"
value = "n"
query = "SELECT 2 AS n"
"""


@pytest.fixture
def one_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    sqlite3.connect(tmp_path / "platform.db").close()
    monkeypatch.chdir(tmp_path)  # no ./gridwatch.toml is found: only -c names the file
    monkeypatch.delenv("GRIDWATCH_CONFIG", raising=False)
    config = tmp_path / "conf" / "one.toml"
    config.parent.mkdir()
    config.write_text(ONE_CHECK.replace('"platform.db"', f'"{tmp_path / "platform.db"}"'), encoding="utf-8")
    return config


@pytest.mark.parametrize(
    "argv",
    [
        ["once", "-c", "{c}", "--json", "--now", "2026-11-20T17:45:00"],
        ["-c", "{c}", "once", "--json", "--now", "2026-11-20T17:45:00"],
        ["--json", "-c", "{c}", "--now", "2026-11-20T17:45:00", "once"],
        ["--now", "2026-11-20T17:45:00", "once", "--config={c}", "--json"],
        ["--log-level", "warning", "once", "--json", "-c", "{c}", "--now", "2026-11-20T17:45:00"],
        ["once", "--json", "-c", "{c}", "--now", "2026-11-20T17:45:00", "--log-level", "warning"],
    ],
)
def test_global_options_before_or_after_the_command(one_check, capsys, argv):
    from gridwatch.cli import main

    assert main([a.format(c=one_check) for a in argv]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["now"] == "2026-11-20T17:45:00+08:00"
    assert out["samples"] == [
        {"check": "open_cases", "metric": "gridwatch_custom_open_cases", "labels": {}, "value": 2}
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["check-config", "-c", "{c}"],
        ["-c", "{c}", "check-config"],
        ["-c", "{c}", "alerts", "--json"],
        ["--json", "alerts", "-c", "{c}"],
        ["-c", "{c}", "silence", "list"],
        ["silence", "-c", "{c}", "list"],
        ["silence", "list", "-c", "{c}"],
        ["--json", "plugins", "-c", "{c}"],
    ],
)
def test_the_config_option_before_or_after_every_command_that_reads_one(one_check, capsys, argv):
    from gridwatch.cli import main

    assert main([a.format(c=one_check) for a in argv]) == 0, capsys.readouterr().err
    assert capsys.readouterr().err == ""


def test_demo_takes_now_before_or_after(tmp_path):
    from gridwatch.cli import main

    main(["--now", "2026-11-20T17:45:00", "demo", "--db", str(tmp_path / "a.db"), "--grids", "2", "--days", "2"])
    main(["demo", "--db", str(tmp_path / "b.db"), "--grids", "2", "--days", "2", "--now", "2026-11-20T17:45:00"])
    for table in ("visits", "reports"):
        assert rows(tmp_path / "a.db", table) == rows(tmp_path / "b.db", table) != []


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--json", "run"], "--json does not apply to run"),
        (["--now", "2026-11-20T17:45:00", "alerts"], "--now does not apply to alerts"),
        (["-c", "x.toml", "demo"], "--config does not apply to demo"),
        (["run", "--json"], "unrecognized arguments: --json"),
    ],
)
def test_a_global_option_where_it_does_not_apply_is_a_usage_error(capsys, argv, problem):
    from gridwatch.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"gridwatch: error: {problem}"


def rows(db: Path, table: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()


# --------------------------------------------------------------------------- times in the configured zone

FIRED = datetime(2026, 11, 20, 9, 45, tzinfo=UTC).timestamp()  # 17:45 in Shanghai, 15:15 in Kolkata


def test_alerts_and_silences_print_times_in_the_configured_zone(tmp_path, capsys):
    from gridwatch.alerting.engine import AlertEngine
    from gridwatch.alerting.silences import add_silence
    from gridwatch.api import Grid, Sample
    from gridwatch.cli import main
    from gridwatch.rules import Rule, evaluate
    from gridwatch.store import Store

    config = tmp_path / "gridwatch.toml"
    config.write_text('timezone = "Asia/Shanghai"\n[state]\npath = "state.db"\n', encoding="utf-8")
    rule = Rule.model_validate(
        {"alert": "TestValueHigh", "metric": "gridwatch_test_value", "above": {"critical": 8}, "summary": "high"}
    )
    hits = evaluate([rule], [Sample("gridwatch_test_value", {"grid": "G1"}, 9)], {"G1": Grid("G1", "一网格", "c", "s")})
    store = Store(tmp_path / "state.db")
    store.open()
    try:
        store.call(AlertEngine().step, FIRED, hits, {rule.alert: rule})
        matchers = [{"name": "grid", "value": "G1", "isRegex": False}]
        silence = store.call(add_silence, matchers, FIRED, FIRED + 2 * 3600, "ops", "repair", FIRED)
    finally:
        store.close()

    silenced = " (silenced)" if time.time() < FIRED + 7200 else ""  # the silence ends 19:45
    assert main(["alerts", "-c", str(config), "--history", "5"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        # every grid alert names the grid's community and street (c, s), for routing by street
        f"firing   critical TestValueHigh {{community=c,grid=G1,street=s}} high{silenced} "
        "since 2026-11-20T17:45:00+08:00",
        '2026-11-20T17:45:00+08:00 TestValueHigh {"street": "s", "community": "c", "grid": "G1", '
        '"alertname": "TestValueHigh"} pending -> firing (critical)',
        '2026-11-20T17:45:00+08:00 TestValueHigh {"street": "s", "community": "c", "grid": "G1", '
        '"alertname": "TestValueHigh"} inactive -> pending (critical)',
    ]
    assert main(["silence", "list", "-c", str(config)]) == 0
    state = "active" if time.time() < FIRED + 7200 else "expired"
    assert capsys.readouterr().out.splitlines() == [
        f"{silence.id} {state:<8} grid=G1 until 2026-11-20T19:45:00+08:00 by ops: repair"
    ]


def test_text_log_lines_carry_the_configured_zone_and_its_offset(tmp_path):
    (tmp_path / "gridwatch.toml").write_text(
        'timezone = "Asia/Kolkata"\n' + ONE_CHECK.split("\n", 2)[2].replace("SELECT 2 AS n", "SELECT nothing"),
        encoding="utf-8",
    )
    sqlite3.connect(tmp_path / "platform.db").close()
    before = time.time()
    result = gridwatch("once", "-c", "gridwatch.toml", cwd=tmp_path)
    assert result.returncode == 1  # the check failed, and said so in the log
    [line] = [x for x in result.stderr.splitlines() if " WARNING " in x]
    stamp, level, logger = line.split(" ")[:3]
    assert (level, logger) == ("WARNING", "gridwatch.pipeline.runtime:")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+05:30", stamp), stamp
    assert before - 1 <= datetime.fromisoformat(stamp).timestamp() <= time.time()


BROKEN_PLUGIN = """
from gridwatch import hookimpl
from gridwatch.api import Check


class Unmakeable(Check):
    type = "unmakeable"
    needs_source = False

    def __init__(self, name, options, source, env):
        raise RuntimeError("cannot be made on purpose")

    def run(self, ctx):
        return []


@hookimpl
def register_check_types():
    return [Unmakeable]
"""


def test_a_check_its_plugin_cannot_make_stops_run_and_once_with_one_line(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "unmakeable.py").write_text(BROKEN_PLUGIN, encoding="utf-8")
    write_config(tmp_path, '[plugins]\ndirs = ["plugins"]\n[[checks]]\nname = "u"\ntype = "unmakeable"\n')
    for command in ("once", "run"):
        result = gridwatch(command, "-c", "gridwatch.toml", cwd=tmp_path)
        expected = "gridwatch: check 'u' (unmakeable (plugin unmakeable)): cannot be made on purpose\n"
        assert (result.returncode, result.stderr) == (2, expected), command


def test_once_gives_each_alert_its_rules_name_in_words_as_the_api_does(tmp_path, capsys):
    """``once --json`` alerts are documented as /api/v1/alerts shows them: with ``title``."""
    import shutil

    from gridwatch.cli import main

    now = "2026-11-20T17:45:00+08:00"
    main(["demo", "--db", str(tmp_path / "var" / "demo.db"), "--grids", "12", "--days", "40", "--now", now])
    shutil.copy(Path(__file__).parent.parent / "gridwatch.toml", tmp_path / "gridwatch.toml")
    capsys.readouterr()
    main(["once", "-c", str(tmp_path / "gridwatch.toml"), "--json", "--now", now])
    alerts = json.loads(capsys.readouterr().out)["alerts"]
    assert alerts  # the demo city always has work behind
    for a in alerts:
        assert re.search(r"[\u4e00-\u9fff]", a["title"]["zh"]) and a["alert"] not in a["title"].values(), a
