"""docs/plugins.md cannot rot: its walkthrough is run as written, its examples compile, and its
reference names every hook, run-context member and kit fixture that exists."""

from __future__ import annotations

import ast
import inspect
import json
import re
import shlex
import sqlite3
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from gridwatch import hookspecs, pytest_plugin
from gridwatch.api import RunContext

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
TITLE = re.compile(r'title="([^"]+)"')
WALKTHROUGH = "## Walkthrough"


@dataclass
class Block:
    lang: str
    title: str | None
    body: str
    walkthrough: bool
    line: int


def blocks() -> list[Block]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(WALKTHROUGH)
    end = text.find("\n## ", start + 1)
    end = len(text) if end == -1 else end
    out = []
    for m in FENCE.finditer(text):
        title = TITLE.search(m["attrs"])
        out.append(
            Block(
                m["lang"],
                title.group(1) if title else None,
                m["body"],
                start <= m.start() < end,
                text.count("\n", 0, m.start()) + 1,
            )
        )
    return out


def test_every_example_compiles_or_parses():
    seen = set()
    for b in blocks():
        where = f"{DOC.name}:{b.line}"
        seen.add(b.lang)
        if b.lang == "python":
            compile(b.body, where, "exec")
        elif b.lang == "toml":
            tomllib.loads(b.body)
        elif b.lang == "json":
            json.loads(b.body)
    assert {"python", "toml", "console", "sql"} <= seen


def test_the_hook_reference_documents_every_hook_and_no_other():
    text = DOC.read_text(encoding="utf-8")
    reference = text[text.index("## Hook reference") : text.index("## The check type API")]
    documented = set(re.findall(r"^### `(\w+)`$", reference, re.M))
    hooks = {name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "gridwatch_spec")}
    assert documented == hooks


def test_the_run_context_members_it_names_exist():
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("### The run context") : text.index("## Testing with the kit")]
    members = set(re.findall(r"`ctx\.(\w+)", table))
    assert members >= {"now", "tz", "deadline", "remaining", "registry", "reject", "state", "calendar"}
    fields = {f for f in RunContext.__dataclass_fields__} | {n for n in dir(RunContext) if not n.startswith("_")}
    assert members <= fields


def test_the_kit_fixtures_it_names_exist():
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("## Testing with the kit") : text.index(WALKTHROUGH)]
    named = set(re.findall(r"^\| `(gridwatch_\w+)", table, re.M))
    fixtures = {
        node.name
        for node in ast.parse(inspect.getsource(pytest_plugin)).body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(d).startswith("pytest.fixture") for d in node.decorator_list)
    }
    assert named == fixtures


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str] | None:
    """The walkthrough's shell commands, run the way a reader runs them."""
    if m := re.fullmatch(r"sqlite3 (\S+) < (\S+)", command):
        with sqlite3.connect(cwd / m[1]) as db:
            db.executescript((cwd / m[2]).read_text(encoding="utf-8"))
        db.close()
        return None
    program, *args = shlex.split(command)
    if program == "gridwatch":
        argv = [sys.executable, "-m", "gridwatch", *args]
    elif program == "pytest":
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    else:
        raise AssertionError(f"the walkthrough runs {program!r}: teach this test to run it, or leave it out")
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=180)


def test_the_walkthrough_runs_as_written(tmp_path):
    walkthrough = [b for b in blocks() if b.walkthrough]
    files = [b for b in walkthrough if b.title]
    assert {b.title for b in files} == {"grid.sql", "plugins/hydrants.py", "gridwatch.toml", "test_hydrants.py"}
    commands = 0
    for b in walkthrough:
        if b.title:  # a file the reader writes
            path = tmp_path / b.title
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(b.body, encoding="utf-8")
            continue
        if b.lang != "console":
            continue
        # "$ command" lines, each followed by the output it must print (if any is shown)
        for chunk in re.split(r"^\$ ", b.body, flags=re.M)[1:]:
            command, _, expected = chunk.partition("\n")
            res = _run(command, tmp_path)
            commands += 1
            if res is None:
                continue
            assert res.returncode == 0, f"$ {command}\n{res.stdout}\n{res.stderr}"
            if expected.strip():
                assert res.stdout.strip() == expected.strip(), f"$ {command}\n{res.stdout}\n{res.stderr}"
            if command.startswith("pytest"):
                assert re.search(r"\b5 passed\b", res.stdout) and "failed" not in res.stdout, res.stdout
    assert commands == 4
