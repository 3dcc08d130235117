"""``gridwatch new-plugin``: the package it writes installs, tests and runs like any Python package."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gridwatch.api import PLUGIN_API_VERSION
from gridwatch.testing import DaemonProcess, free_port, wait_for
from gridwatch.tools import scaffold

REPO = Path(__file__).resolve().parents[1]
GRIDS = [
    {"grid_id": "G1", "name": "一网格", "community": "东湖社区", "street": "城关街道"},
    {"grid_id": "G2", "name": "二网格", "community": "东湖社区", "street": "城关街道"},
]


def gridwatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridwatch", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("elderly_calls", ("elderly_calls", "gridwatch-elderly-calls", "gridwatch_elderly_calls")),
        ("fire-hydrants", ("fire_hydrants", "gridwatch-fire-hydrants", "gridwatch_fire_hydrants")),
        ("h2o", ("h2o", "gridwatch-h2o", "gridwatch_h2o")),
    ],
)
def test_a_name_gives_the_check_type_distribution_and_module(raw, expected):
    assert scaffold.names(raw) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "not a plugin name"),
        ("Elderly_Calls", "e.g. 'elderly_calls'"),
        ("elderly calls", "e.g. 'elderly_calls'"),
        ("1st_check", "starting with a letter"),
        ("_private", "not a plugin name"),
        ("double__underscore", "not a plugin name"),
        ("trailing_", "not a plugin name"),
        ("独居老人", "not a plugin name"),
        ("a" * 41, "longer than 40"),
        ("gridwatch_calls", "leave out the gridwatch prefix"),
        ("visits", "taken"),  # bundled: its entry point would be shadowed
        ("sql", "taken"),  # a built-in check type
    ],
)
def test_bad_names_are_refused_saying_why(raw, why):
    with pytest.raises(scaffold.ScaffoldError, match="NAME") as err:
        scaffold.names(raw)
    assert why in str(err.value)


def test_the_command_writes_the_package_and_refuses_to_overwrite(tmp_path):
    res = gridwatch("new-plugin", "elderly_calls", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    root = tmp_path / "gridwatch-elderly-calls"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        ".gitignore",
        "README.md",
        "pyproject.toml",
        "src/gridwatch_elderly_calls/__init__.py",
        "tests/test_elderly_calls.py",
    ]
    assert "pip install -e ." in res.stdout and "pytest" in res.stdout

    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "gridwatch-elderly-calls"
    assert project["entry-points"]["gridwatch"] == {"elderly_calls": "gridwatch_elderly_calls"}
    assert any(d.startswith("gridwatch>=") for d in project["dependencies"])
    module = (root / "src/gridwatch_elderly_calls/__init__.py").read_text(encoding="utf-8")
    assert f"GRIDWATCH_PLUGIN_API = {PLUGIN_API_VERSION}\n" in module
    assert "self.source.read(TABLE, COLUMNS, deadline=ctx.deadline)" in module

    again = gridwatch("new-plugin", "elderly_calls", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = gridwatch("new-plugin", "Elderly Calls", "--dir", str(tmp_path / "x"), cwd=tmp_path)
    assert bad.returncode == 2 and "not a plugin name" in bad.stderr and not (tmp_path / "x").exists()
    into = gridwatch("new-plugin", "hydrants", "--dir", str(tmp_path / "empty"), cwd=tmp_path)
    assert into.returncode == 0 and (tmp_path / "empty/src/gridwatch_hydrants/__init__.py").is_file()


@pytest.mark.parametrize("name", ["elderly_calls", "a_long_name_of_forty_characters_exactly"])
def test_the_package_is_lint_clean(tmp_path, name):
    scaffold.create(name, tmp_path / "pkg")
    for args in (["check", "--select", "E,F,W,I,B,UP,SIM,RUF", "--ignore", "RUF001,RUF002,RUF003"], ["format"]):
        res = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "--check" if args == ["format"] else "--no-fix", "."],
            cwd=tmp_path / "pkg",
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stdout + res.stderr


def test_the_check_passes_a_strict_type_check(tmp_path):
    """``Check[Options]`` types ``self.options`` as the check's own options: no ignores needed."""
    s = scaffold.create("elderly_calls", tmp_path / "pkg")
    module = (s.root / "src/gridwatch_elderly_calls/__init__.py").read_text(encoding="utf-8")
    assert "type: ignore" not in module
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "src"],
        cwd=s.root,
        env={**os.environ, "MYPYPATH": str(REPO)},  # gridwatch as an installed, typed package is
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_scaffolded_check_works_as_a_loose_module(tmp_path, gridwatch_check, gridwatch_alerts):
    """The generated check, loaded from a plugin directory: fast feedback without installing."""
    s = scaffold.create("elderly_calls", tmp_path / "pkg")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(s.root / "src/gridwatch_elderly_calls/__init__.py", plugins / "elderly_calls.py")
    rows = [
        {"subject_id": "p1", "grid_id": "G1", "last_done_at": "2026-03-24 12:00:00"},  # exactly 7d: in time
        {"subject_id": "p2", "grid_id": "G1", "last_done_at": "2026-03-24 11:59:59"},  # overdue
        {"subject_id": "p3", "grid_id": "G1", "last_done_at": None},  # never: overdue
    ]
    result = gridwatch_check(
        "elderly_calls", {"grids": GRIDS, "elderly_calls": rows}, now="2026-03-31 12:00:00", plugin_dirs=[plugins]
    )
    assert result.error is None
    result.assert_value("gridwatch_elderly_calls_overdue", 2, grid="G1")
    result.assert_value("gridwatch_elderly_calls_done_ratio", 1 / 3, grid="G1")
    result.assert_value("gridwatch_elderly_calls_subjects", 0, grid="G2")
    result.assert_absent("gridwatch_elderly_calls_done_ratio", grid="G2")
    assert gridwatch_alerts(result) == [("ElderlyCallsOverdue", "warning", {"grid": "G1"})]
    # its light reason: G1 has 2 overdue (p2, p3) → yellow; G2 none
    assert [(r.grid, r.light, r.code) for r in result.reasons] == [("G1", "yellow", "elderly_calls_overdue")]
    assert result.reasons[0].text.endswith("：2 个对象超期未跟进")


def _clean_env(venv: Path) -> dict[str, str]:
    """The environment of a shell in which only the new virtual environment is active."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"} and not k.startswith("PYTEST_")
    }
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    return env


def _run(args: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    res = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, args))} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def test_new_plugin_installs_passes_its_tests_and_runs_in_the_daemon(tmp_path, record_property):
    """The whole promise: scaffold, ``pip install -e .``, ``pytest``, and the daemon runs the check,
    in a fresh virtual environment (no system site-packages) holding gridwatch from this tree."""
    timings: dict[str, float] = {}

    def timed(what: str, fn, *args, **kwargs):
        t0 = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            timings[what] = round(time.monotonic() - t0, 1)

    # gridwatch as a user gets it: built from this tree (a copy, so the build leaves it untouched)
    src = tmp_path / "gridwatch-src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("gridwatch", "plugins"):
        shutil.copytree(REPO / d, src / d, ignore=ignore)
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)

    venv = tmp_path / "venv"
    timed("create the venv", subprocess.run, [sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python, env = venv / "bin" / "python", _clean_env(venv)
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    timed("pip install gridwatch and pytest", _run, [*pip, src, "pytest>=8"], tmp_path, env)
    where = _run([python, "-c", "import gridwatch; print(gridwatch.__file__)"], tmp_path, env)
    assert where.startswith(str(venv)), where  # this tree is not on the new environment's path

    pkg = tmp_path / "work" / "gridwatch-elderly-calls"
    pkg.parent.mkdir()
    timed("gridwatch new-plugin", _run, [venv / "bin" / "gridwatch", "new-plugin", "elderly_calls"], pkg.parent, env)
    timed("pip install -e .", _run, [*pip, "-e", "."], pkg, env)
    out = timed("pytest in the package", _run, [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], pkg, env)
    assert "8 passed" in out, out

    listing = json.loads(_run([venv / "bin" / "gridwatch", "plugins", "--json"], tmp_path, env))
    [plugin] = [p for p in listing["plugins"] if p["name"] == "elderly_calls"]
    assert (plugin["origin"], plugin["location"], plugin["api_version"], plugin["types"]) == (
        "distribution",
        "gridwatch-elderly-calls 0.1.0",
        PLUGIN_API_VERSION,
        {"check": ["elderly_calls"]},
    )

    # the daemon from the new environment, on a database of ours: G1 has one subject never phoned
    site = tmp_path / "site"
    site.mkdir()
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    with sqlite3.connect(site / "grid.db") as db:
        db.execute("CREATE TABLE grids (grid_id TEXT, name TEXT, community TEXT, street TEXT, zone TEXT)")
        db.executemany("INSERT INTO grids VALUES (:grid_id, :name, :community, :street, NULL)", GRIDS)
        db.execute("CREATE TABLE elderly_calls (subject_id TEXT, grid_id TEXT, last_done_at TEXT)")
        db.executemany(
            "INSERT INTO elderly_calls VALUES (?, ?, ?)",
            [
                ("p1", "G1", None),
                ("p2", "G1", (now - timedelta(days=1)).isoformat()),
                ("p3", "G2", (now - timedelta(days=2)).isoformat()),
            ],
        )
    db.close()
    port = free_port()
    config = site / "gridwatch.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[state]\npath = "state.db"\n[grids]\nsource = "griddb"\n'
        '[sources.griddb]\ntype = "sqlite"\npath = "grid.db"\n'
        '[[checks]]\nname = "phoned_weekly"\ntype = "elderly_calls"\nsource = "griddb"\ninterval = "1m"\n'
        'max_age = "7d"\n',
        encoding="utf-8",
    )
    t0 = time.monotonic()
    with DaemonProcess(config, port, env=env, python=python) as daemon:
        wait_for(lambda: daemon.get("/readyz")[0] == 200, 30, f"the check to run\n{daemon.log()}")
        assert daemon.metric("gridwatch_elderly_calls_overdue", grid="G1") == 1
        assert daemon.metric("gridwatch_elderly_calls_overdue", grid="G2") == 0
        assert daemon.metric("gridwatch_elderly_calls_subjects", grid="G1") == 2
        # the plugin's own light reason: G1 has 1 overdue subject → yellow, said in its words
        lights = {g["grid"]: g for g in daemon.json("/api/v1/grids")}
        assert (lights["G1"]["light"], lights["G2"]["light"]) == ("yellow", "green")
        assert [d["code"] for d in lights["G1"]["details"]] == ["elderly_calls_overdue"]
        assert lights["G1"]["reasons"][0].endswith("：1 个对象超期未跟进")
        [check] = daemon.json("/api/v1/status")["checks"]
        assert (check["name"], check["type"], check["ok"]) == ("phoned_weekly", "elderly_calls", True)
        assert daemon.stop() == 0
    timings["gridwatch run"] = round(time.monotonic() - t0, 1)

    report = json.loads(_run([venv / "bin" / "gridwatch", "once", "-c", config, "--json"], site, env))
    assert report["errors"] == []
    assert [(a["alert"], a["labels"]["grid"], a["severity"], a["state"]) for a in report["alerts"]] == [
        ("ElderlyCallsOverdue", "G1", "warning", "firing")
    ]
    assert "一网格" in report["alerts"][0]["summary"]

    for what, seconds in timings.items():
        record_property(f"seconds: {what}", seconds)
    print("timings (s):", timings)
