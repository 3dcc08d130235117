"""The ``gridwatch`` command as a person types it: options in either place, one line per
problem and exit 2 instead of a traceback, times in the configured zone."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import textwrap
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


def gridwatch(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GRIDWATCH, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


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
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    path = write_config(tmp_path, SQL_SOURCE.format(url=url))
    for command in ("check-config", "once", "run"):
        result = gridwatch(command, "-c", "gridwatch.toml", cwd=tmp_path)
        assert (result.returncode, result.stdout, result.stderr) == (
            2,
            "",
            f"gridwatch.toml: sources.platform: {problem}\n",
        ), command
    assert not (tmp_path / "state.db").exists()  # refused before anything was started
    assert path.exists()
