"""Plugins from a directory and from an installed distribution provide working check types."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gridwatch import hookimpl
from gridwatch.api import Check, Options
from gridwatch.plugins import PluginError, PluginHost

FIXTURE_PLUGINS = Path(__file__).parent / "fixtures" / "plugins"


def gridwatch(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gridwatch", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_builtin_types_are_registered_through_the_hooks():
    host = PluginHost.default(entry_points=False)
    assert host.info["gridwatch.sources.sqlite"].types == {"source": ["sqlite"]}
    assert host.info["gridwatch.checks.sql"].hooks == ["register_check_types"]
    assert host.info["gridwatch.checks.sql"].origin == "built-in"


def test_a_directory_plugin_provides_a_check_type(tmp_path):
    (tmp_path / "gridwatch.toml").write_text(
        textwrap.dedent(f"""
        [plugins]
        dirs = ["{FIXTURE_PLUGINS}"]
        [[checks]]
        name = "c1"
        type = "constant"
        value = 3
        """)
    )
    listing = json.loads(gridwatch("plugins", "--json", cwd=tmp_path).stdout)
    faulty = next(p for p in listing["plugins"] if p["name"] == "faulty")
    assert faulty["origin"] == "directory" and faulty["location"] == str(FIXTURE_PLUGINS)
    assert faulty["types"] == {"check": ["boom", "sleepy", "constant"]}
    out = json.loads(gridwatch("once", "--json", cwd=tmp_path).stdout)
    assert out["samples"] == [
        {
            "check": "c1",
            "metric": "gridwatch_test_constant",
            "labels": {"check": "c1"},
            "value": 3.0,
        }
    ]


def test_a_plugin_that_fails_to_import_stops_startup_naming_it(tmp_path):
    plugdir = tmp_path / "plugins"
    plugdir.mkdir()
    (plugdir / "broken.py").write_text("import no_such_module_anywhere\n")
    (tmp_path / "gridwatch.toml").write_text('[plugins]\ndirs = ["plugins"]\n')
    res = gridwatch("check-config", cwd=tmp_path)
    assert res.returncode == 2
    assert "plugin 'broken'" in res.stderr and "no_such_module_anywhere" in res.stderr
    res = gridwatch("run", cwd=tmp_path)
    assert res.returncode == 2 and "plugin 'broken'" in res.stderr


def test_an_installed_distribution_provides_a_check_type(tmp_path):
    pkg = tmp_path / "src"
    (pkg / "gw_tiny").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "gw-tiny"
        version = "1.2.3"
        [project.entry-points.gridwatch]
        tiny = "gw_tiny"
        """)
    )
    (pkg / "gw_tiny" / "__init__.py").write_text(
        textwrap.dedent("""
        from gridwatch import hookimpl
        from gridwatch.api import Check, Sample

        class Tiny(Check):
            type = "tiny"
            needs_source = False
            metrics = {"gridwatch_tiny_answer": "The answer"}

            def run(self, ctx):
                yield Sample("gridwatch_tiny_answer", {}, 42)

        @hookimpl
        def register_check_types():
            return [Tiny]
        """)
    )
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(pkg),
        ],
        check=True,
        capture_output=True,
    )
    env = {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    (tmp_path / "gridwatch.toml").write_text('[[checks]]\nname = "t"\ntype = "tiny"\n')
    listing = json.loads(gridwatch("plugins", "--json", cwd=tmp_path, env=env).stdout)
    tiny = next(p for p in listing["plugins"] if p["name"] == "tiny")
    assert (tiny["origin"], tiny["location"], tiny["types"]) == (
        "distribution",
        "gw-tiny 1.2.3",
        {"check": ["tiny"]},
    )
    out = json.loads(gridwatch("once", "--json", cwd=tmp_path, env=env).stdout)
    assert [(s["metric"], s["value"]) for s in out["samples"]] == [("gridwatch_tiny_answer", 42.0)]


def test_two_plugins_may_not_claim_one_type_name():
    class A(Check):
        type = "sql"

    class Dup:
        @staticmethod
        @hookimpl
        def register_check_types():
            return [A]

    host = PluginHost.default(entry_points=False)
    with pytest.raises(PluginError, match=r"check type 'sql' is already provided by 'gridwatch\.checks\.sql'"):
        host.register(Dup, "dup", "directory")


def test_a_type_must_subclass_the_api():
    class NotACheck:
        type = "x"

    class Bad:
        @staticmethod
        @hookimpl
        def register_check_types():
            return [NotACheck]

    with pytest.raises(PluginError, match="is not a Check subclass"):
        PluginHost.default(entry_points=False).register(Bad, "bad", "directory")


def test_options_of_a_plugin_type_are_validated_like_the_core(tmp_path):
    from gridwatch import config

    (tmp_path / "gridwatch.toml").write_text(
        textwrap.dedent(f"""
        [plugins]
        dirs = ["{FIXTURE_PLUGINS}"]
        [[checks]]
        name = "c1"
        type = "constant"
        value = "lots"
        """)
    )
    with pytest.raises(config.ConfigErrors, match=r"checks\[0\]\.value: Input should be a valid number"):
        config.load(tmp_path / "gridwatch.toml")
    assert Options.model_config["extra"] == "forbid"
