"""The plugin API version, and a plugin's failures reported with its name, never fatal to the daemon."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gridwatch.api import PLUGIN_API_VERSION
from gridwatch.plugins import PluginError, PluginHost, check_api_version
from gridwatch.testing import wait_for

FIXTURE_PLUGINS = Path(__file__).parent / "fixtures" / "plugins"

CONSTANT = """
from gridwatch import hookimpl
from gridwatch.api import Check, Sample
{declare}

class Const(Check):
    type = "{type}"
    needs_source = False
    metrics = {{"gridwatch_{type}_value": "a constant"}}

    def run(self, ctx):
        yield Sample("gridwatch_{type}_value", {{}}, 1)

@hookimpl
def register_check_types():
    return [Const]
"""


def plugin(directory: Path, name: str, declare: str = "", body: str | None = None) -> None:
    directory.mkdir(exist_ok=True)
    text = body if body is not None else CONSTANT.format(declare=declare, type=name)
    (directory / f"{name}.py").write_text(textwrap.dedent(text), encoding="utf-8")


def gridwatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridwatch", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_plugins_show_the_api_version_they_declare(tmp_path):
    plugin(tmp_path / "plugins", "declared", f"GRIDWATCH_PLUGIN_API = {PLUGIN_API_VERSION}")
    plugin(tmp_path / "plugins", "silent")
    (tmp_path / "gridwatch.toml").write_text('[plugins]\ndirs = ["plugins"]\n')

    listing = json.loads(gridwatch("plugins", "--json", cwd=tmp_path).stdout)
    versions = {p["name"]: p["api_version"] for p in listing["plugins"]}
    assert listing["api_version"] == PLUGIN_API_VERSION
    assert versions["declared"] == PLUGIN_API_VERSION
    assert versions["silent"] is None  # a third-party plugin that declares nothing
    assert versions["visits"] == versions["gridwatch.sources.sqlite"] == PLUGIN_API_VERSION  # ship with the core

    text = gridwatch("plugins", cwd=tmp_path).stdout.splitlines()
    assert any(line.startswith("declared  [directory") and f"api: {PLUGIN_API_VERSION}" in line for line in text)
    assert any(line.startswith("silent  [directory") and "api: undeclared" in line for line in text)


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (PLUGIN_API_VERSION + 1, f"is written for plugin API version {PLUGIN_API_VERSION + 1}, but this gridwatch "),
        (0, "is written for plugin API version 0, but this gridwatch supports"),
        ('"1"', "GRIDWATCH_PLUGIN_API must be an integer, got '1'"),
    ],
)
def test_a_plugin_of_another_api_version_is_refused_naming_it_and_both_versions(tmp_path, declared, message):
    plugin(tmp_path / "plugins", "future", f"GRIDWATCH_PLUGIN_API = {declared}")
    (tmp_path / "gridwatch.toml").write_text('[plugins]\ndirs = ["plugins"]\n')
    supported = f"supports{' plugin API' if isinstance(declared, str) else ''} version {PLUGIN_API_VERSION}"
    for command in ("plugins", "check-config", "run"):
        res = gridwatch(command, cwd=tmp_path)
        assert res.returncode == 2, (command, res.stderr)
        assert "plugin 'future'" in res.stderr and message in res.stderr and supported in res.stderr, res.stderr


def test_the_version_check_applies_to_every_origin():
    class Old:
        GRIDWATCH_PLUGIN_API = PLUGIN_API_VERSION + 5

    with pytest.raises(PluginError, match=r"plugin 'old' \(gw-old 2\.0\) is written for plugin API version"):
        PluginHost.default(entry_points=False).register(Old, "old", "distribution", "gw-old 2.0")
    assert check_api_version(object(), "x") is None
    assert check_api_version(type("M", (), {"GRIDWATCH_PLUGIN_API": PLUGIN_API_VERSION}), "x") == PLUGIN_API_VERSION


def test_a_failing_check_is_reported_with_its_plugin_by_once(tmp_path):
    (tmp_path / "gridwatch.toml").write_text(
        f'[plugins]\ndirs = ["{FIXTURE_PLUGINS}"]\n[[checks]]\nname = "raises"\ntype = "boom"\n'
        '[[checks]]\nname = "fine"\ntype = "constant"\n'
    )
    res = gridwatch("once", "--json", cwd=tmp_path)
    assert res.returncode == 1
    report = json.loads(res.stdout)
    assert report["errors"] == [{"check": "raises", "error": "boom (plugin faulty): RuntimeError: boom on purpose"}]
    assert [s["metric"] for s in report["samples"]] == ["gridwatch_test_constant"]  # the others still run


def test_a_failing_default_rules_hook_is_logged_and_skipped(tmp_path, caplog):
    from gridwatch import config

    plugin(
        tmp_path / "plugins",
        "badrules",
        body="""
        from gridwatch import hookimpl

        @hookimpl
        def default_rules():
            raise ValueError("no rules today")
        """,
    )
    (tmp_path / "gridwatch.toml").write_text(
        '[plugins]\ndirs = ["plugins"]\n[sources.d]\ntype = "sqlite"\npath = "d.db"\n'
        '[[checks]]\nname = "v"\ntype = "visits"\nsource = "d"\n'
    )
    with caplog.at_level("ERROR", logger="gridwatch.config"):
        settings, _ = config.load(tmp_path / "gridwatch.toml")
    assert "VisitCoverageLow" in settings.rules  # the other plugins' defaults are in force
    assert "plugin badrules: default_rules() failed" in caplog.text and "no rules today" in caplog.text
    res = gridwatch("check-config", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "plugin badrules: default_rules() failed" in res.stderr


def test_a_plugins_failures_never_take_down_the_daemon(gridwatch_daemon):
    hooks = """
    from gridwatch import hookimpl

    @hookimpl
    def startup(daemon):
        raise RuntimeError("startup went wrong")

    @hookimpl
    def default_rules():
        raise RuntimeError("rules went wrong")
    """
    daemon = gridwatch_daemon(
        """
        [state]
        path = "state.db"
        [plugins]
        dirs = ["plugins"]
        [[checks]]
        name = "raises"
        type = "boom"
        interval = "1s"
        [[checks]]
        name = "fine"
        type = "constant"
        interval = "1s"
        """.replace("\n        ", "\n"),
        files={
            "plugins/faulty.py": (FIXTURE_PLUGINS / "faulty.py").read_text(encoding="utf-8"),
            "plugins/hooks.py": textwrap.dedent(hooks),
        },
    )
    checks = {c["name"]: c for c in daemon.json("/api/v1/status")["checks"]}
    assert checks["raises"]["ok"] is False
    assert checks["raises"]["error"] == "boom (plugin faulty): RuntimeError: boom on purpose"
    assert checks["fine"]["ok"] is True
    assert daemon.metric("gridwatch_test_constant", check="fine") == 1
    wait_for(lambda: (daemon.metric("gridwatch_check_runs_total", check="raises", outcome="failure") or 0) >= 2)
    assert daemon.get("/healthz")[0] == 200
    log = daemon.log()
    assert "plugin hooks failed in startup" in log and "startup went wrong" in log
    assert "plugin hooks: default_rules() failed" in log


def test_a_check_option_named_like_a_core_key_is_refused_naming_it():
    """`interval` in a check's table is the core's: an option of that name could never be set."""
    from gridwatch import api

    class Shadowing(api.Check):
        type = "shadowing"

        class Options(api.Options):
            interval: int = 3

    class Module:
        GRIDWATCH_PLUGIN_API = PLUGIN_API_VERSION

        @staticmethod
        def register_check_types():
            return [Shadowing]

    with pytest.raises(PluginError, match=r"'shadowing' names option\(s\) interval, which the core takes"):
        PluginHost().register(Module(), "shadow", "directory")
