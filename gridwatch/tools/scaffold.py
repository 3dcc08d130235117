"""``gridwatch new-plugin NAME``: write a pip-installable check plugin to start from.

The package it writes works as written — ``pip install -e .`` and ``pytest`` pass, and the
daemon runs its check — so a team edits a working check into theirs instead of assembling one
from the docs: the distribution ``gridwatch-NAME`` holds the module ``gridwatch_NAME`` (a check
type ``NAME`` with typed options, a ``run`` that reads a table and yields per-grid samples, and a
default rule), its tests written with the gridwatch test kit, and a README.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from gridwatch import __version__
from gridwatch.api import PLUGIN_API_VERSION

NAME = re.compile(r"^[a-z][a-z0-9]*(?:[_-][a-z0-9]+)*$")
MAX_LENGTH = 40


class ScaffoldError(Exception):
    """NAME is not usable, or the target directory is taken."""


@dataclass
class Scaffold:
    name: str  # the check type and entry-point name: elderly_calls
    dist: str  # the distribution: gridwatch-elderly-calls
    module: str  # the import name: gridwatch_elderly_calls
    root: Path
    files: list[Path] = field(default_factory=list)


def names(raw: str) -> tuple[str, str, str]:
    """(check type, distribution, module) for NAME, or ScaffoldError saying what is wrong."""
    text = raw.strip()
    if not NAME.fullmatch(text):
        hint = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
        suggestion = f" (e.g. {hint!r})" if hint and NAME.fullmatch(hint) and hint[0].isalpha() else ""
        raise ScaffoldError(
            f"NAME {raw!r} is not a plugin name: use lowercase letters, digits and single underscores, "
            f"starting with a letter, like elderly_calls{suggestion}"
        )
    name = text.replace("-", "_")
    if len(name) > MAX_LENGTH:
        raise ScaffoldError(f"NAME {raw!r} is longer than {MAX_LENGTH} characters")
    if name == "gridwatch" or name.startswith("gridwatch_"):
        raise ScaffoldError(f"NAME {raw!r}: leave out the gridwatch prefix, it is added (gridwatch-{name})")
    taken = _taken()
    if name in taken:
        raise ScaffoldError(f"NAME {raw!r} is taken by a plugin or check type that ships with gridwatch")
    return name, "gridwatch-" + name.replace("_", "-"), "gridwatch_" + name


def _taken() -> set[str]:
    from gridwatch.plugins import PluginHost

    host = PluginHost.default(entry_points=False)
    return set(host.info) | set(host.types["check"])


def create(raw_name: str, directory: Path | None = None) -> Scaffold:
    """Write the package into ``directory`` (default ``./gridwatch-NAME``), which must not exist
    or be empty; return what was written."""
    name, dist, module = names(raw_name)
    root = directory if directory is not None else Path.cwd() / dist
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ScaffoldError(f"{root} already exists and is not an empty directory")
    words = name.split("_")
    subs = {
        "__NAME__": name,
        "__DIST__": dist,
        "__MODULE__": module,
        "__CLASS__": "".join(w.capitalize() for w in words) + "Check",
        "__OPTIONS__": "".join(w.capitalize() for w in words) + "Options",
        "__ALERT__": "".join(w.capitalize() for w in words) + "Overdue",
        "__TITLE__": " ".join(words),
        "__GRIDWATCH_MIN__": ".".join(__version__.split(".")[:2]),
        "__API__": str(PLUGIN_API_VERSION),
    }
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        ".gitignore": GITIGNORE,
        f"src/{module}/__init__.py": MODULE,
        f"tests/test_{name}.py": TESTS,
    }
    scaffold = Scaffold(name, dist, module, root)
    for rel, template in files.items():
        text = template
        for key, value in subs.items():
            text = text.replace(key, value)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip("\n"), encoding="utf-8")
        scaffold.files.append(path)
    return scaffold


def next_steps(s: Scaffold) -> str:
    listing = "\n".join(f"  {p.relative_to(s.root)}" for p in s.files)
    return (
        f"wrote {s.root}: the distribution {s.dist}, module {s.module}, check type {s.name!r}\n"
        f"{listing}\n"
        f"next:\n  cd {s.root}\n  pip install -e .\n  pytest\n"
        f'then add a [[checks]] entry with type = "{s.name}" to gridwatch.toml (see README.md)'
    )


# -- the templates ------------------------------------------------------------------------------
# Placeholders: __NAME__ (check type), __DIST__, __MODULE__, __CLASS__, __OPTIONS__, __ALERT__, __TITLE__.

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "__DIST__"
version = "0.1.0"
description = "gridwatch check: everyone on the __NAME__ register is followed up in time"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["gridwatch>=__GRIDWATCH_MIN__"]

[project.optional-dependencies]
test = ["pytest>=8"]

# gridwatch finds the plugin through this entry point; the name is the plugin's name
[project.entry-points.gridwatch]
__NAME__ = "__MODULE__"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-ra"

[tool.ruff]
line-length = 120
"""

GITIGNORE = """
__pycache__/
*.egg-info/
build/
dist/
.venv/
.pytest_cache/
"""

MODULE = '''
"""gridwatch plugin ``__NAME__``:
everyone on a follow-up register is followed up in time.

The check type ``__NAME__``
reads the table ``__NAME__``,
one row per person (or thing) the grid must follow up regularly, with when that was last done:

    __NAME__(subject_id, grid_id, last_done_at)

— elderly people living alone (独居老人) and when a grid worker last phoned them, fire hydrants
and their last inspection, rental flats and their last safety visit. A source whose names differ
maps them with its ``tables`` / ``columns`` options. Per grid of the registry it yields:

- ``gridwatch___NAME___subjects{grid}``:
  subjects on the register (0 included);
- ``gridwatch___NAME___overdue{grid}``:
  subjects not followed up within ``max_age`` (one never followed up is overdue; exactly
  ``max_age`` ago is still in time);
- ``gridwatch___NAME___done_ratio{grid}``:
  subjects followed up in time / subjects; no sample for a grid with nobody on the register.

Rows with a NULL or repeated ``subject_id``, a NULL or unknown grid, or a ``last_done_at`` that
is not a timestamp or lies in the future are counted by reason
(``gridwatch_source_rows_rejected_total``) and left out. The default rule
``__ALERT__``
warns when a grid has anyone overdue and is critical above 5.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from gridwatch import hookimpl
from gridwatch.api import YELLOW, Check, Options, Reason, RunContext, Sample, Title
from gridwatch.durations import Duration
from gridwatch.rows import clean

GRIDWATCH_PLUGIN_API = __API__
"""The gridwatch plugin API this module is written for; gridwatch refuses it if that changes."""

DAY = 86400.0
TITLE = "__TITLE__"
TABLE = "__NAME__"
COLUMNS = ("subject_id", "grid_id", "last_done_at")

SUBJECTS = "gridwatch___NAME___subjects"
OVERDUE = "gridwatch___NAME___overdue"
DONE_RATIO = "gridwatch___NAME___done_ratio"


class __OPTIONS__(Options):
    """The options of a ``__NAME__`` check entry in gridwatch.toml."""

    max_age: Duration = 7 * DAY
    """follow everyone up at least this often (``7d``: weekly; ``30d``: monthly)"""


class __CLASS__(Check[__OPTIONS__]):
    type = "__NAME__"
    # the core validates each entry's options against it, so self.options is one
    Options = __OPTIONS__
    metrics: ClassVar[dict[str, str]] = {
        SUBJECTS: "Subjects on the register of the grid.",
        OVERDUE: "Subjects of the grid not followed up within max_age.",
        DONE_RATIO: "Share of the grid's subjects followed up within max_age.",
    }
    # what the status board calls each metric, and how its value reads
    titles: ClassVar[dict[str, Title]] = {
        SUBJECTS: Title("登记对象", "Subjects", "count"),
        OVERDUE: Title("超期未跟进", "Not followed up in time", "count"),
        DONE_RATIO: Title("按期跟进率", "Followed up in time", "ratio"),
    }

    def run(self, ctx: RunContext) -> Iterator[Sample]:
        opts = self.options
        assert self.source is not None
        grids = ctx.registry()  # the grids this gridwatch watches ([grids] source)
        cutoff = ctx.now - timedelta(seconds=opts.max_age)

        subjects: Counter[str] = Counter()
        overdue: Counter[str] = Counter()
        rows = self.source.read(TABLE, COLUMNS, deadline=ctx.deadline)
        # clean() parses timestamps (local time unless they carry an offset) and counts bad rows
        for row in clean(
            ctx, self.source.name, rows, id_column="subject_id", timestamps=("last_done_at",), grids=grids
        ):
            grid = row["grid_id"]
            subjects[grid] += 1
            last = row["last_done_at"]  # an aware datetime, or None: never followed up
            if last is None or last < cutoff:
                overdue[grid] += 1

        for grid in grids:
            labels = {"grid": grid}
            yield Sample(SUBJECTS, labels, subjects[grid])
            yield Sample(OVERDUE, labels, overdue[grid])
            if subjects[grid]:
                yield Sample(DONE_RATIO, labels, (subjects[grid] - overdue[grid]) / subjects[grid])

    def reasons(self, samples: Sequence[Sample]) -> Iterator[Reason]:
        # why a grid is not green, in words the command centre reads (its light and the board)
        for s in samples:
            if s.metric == OVERDUE and s.value > 0:
                text = f"{TITLE}：{s.value:.0f} 个对象超期未跟进"
                yield Reason(s.labels["grid"], YELLOW, "__NAME___overdue", text, OVERDUE)


@hookimpl
def register_check_types() -> list[type[Check]]:
    return [__CLASS__]


@hookimpl
def default_rules() -> list[dict[str, Any]]:
    # in force wherever a check of this type runs; a [[rules]] entry with the same alert
    # name overrides it (or disables it with enabled = false)
    return [
        {
            "alert": "__ALERT__",
            "metric": OVERDUE,
            "above": {"warning": 0, "critical": 5},
            "for": "0s",
            # what a duty officer reads: the grid named once ({grid_title}), a label's code by
            # its display name ({X_name}), never the rule's name
            "summary": "{grid_title}有{value:.0f}个对象超期未跟进",
            "description": "{grid_title}有{value:.0f}个对象超过规定周期未跟进（" + TITLE + "），请尽快安排。",
        }
    ]
'''

TESTS = '''
"""Tests of the ``__NAME__`` check,
written with the gridwatch test kit.

The kit is a pytest plugin that comes with gridwatch: the fixtures ``gridwatch_check``,
``gridwatch_alerts`` and ``gridwatch_daemon`` need no import and no conftest.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from gridwatch.plugins import PluginHost
from gridwatch.testing import wait_for

TYPE = TABLE = "__NAME__"
ALERT = "__ALERT__"
SUBJECTS = "gridwatch___NAME___subjects"
OVERDUE = "gridwatch___NAME___overdue"
DONE_RATIO = "gridwatch___NAME___done_ratio"
GRIDS = [
    {"grid_id": "G1", "name": "一网格", "community": "东湖社区", "street": "城关街道"},
    {"grid_id": "G2", "name": "二网格", "community": "东湖社区", "street": "城关街道"},
]


@pytest.fixture
def gridwatch_now() -> str:
    return "2026-03-31 12:00:00"  # every run is as of this time (Asia/Shanghai): 7 days ago is 03-24 12:00


def subject(sid: str | None, grid: str | None, last: str | None) -> dict[str, Any]:
    return {"subject_id": sid, "grid_id": grid, "last_done_at": last}


def test_overdue_is_older_than_max_age_or_never(gridwatch_check):
    rows = [
        subject("s1", "G1", "2026-03-24 12:00:00"),  # exactly 7 days ago: in time
        subject("s2", "G1", "2026-03-24 11:59:59"),  # a second more: overdue
        subject("s3", "G1", None),  # never: overdue
        subject("s4", "G2", "2026-03-30T09:00:00+08:00"),
    ]
    result = gridwatch_check(TYPE, {"grids": GRIDS, TABLE: rows})
    assert result.error is None
    result.assert_value(SUBJECTS, 3, grid="G1")
    result.assert_value(OVERDUE, 2, grid="G1")
    result.assert_value(DONE_RATIO, 1 / 3, grid="G1")
    result.assert_value(OVERDUE, 0, grid="G2")
    result.assert_value(DONE_RATIO, 1, grid="G2")


def test_max_age_is_an_option(gridwatch_check):
    rows = [subject("s1", "G1", "2026-03-10 12:00:00")]  # 21 days ago
    result = gridwatch_check(TYPE, {"grids": GRIDS, TABLE: rows}, options={"max_age": "30d"})
    result.assert_value(OVERDUE, 0, grid="G1")
    result = gridwatch_check(TYPE, {"grids": GRIDS, TABLE: rows}, options={"max_age": "14d"})
    result.assert_value(OVERDUE, 1, grid="G1")


def test_a_grid_with_nobody_on_the_register_has_no_ratio(gridwatch_check):
    result = gridwatch_check(TYPE, {"grids": GRIDS, TABLE: [subject("s1", "G1", None)]})
    result.assert_value(SUBJECTS, 0, grid="G2")
    result.assert_absent(DONE_RATIO, grid="G2")


def test_bad_rows_are_counted_and_left_out(gridwatch_check):
    rows = [
        subject("s1", "G1", "2026-03-30 10:00:00"),  # good
        subject("s1", "G1", None),  # duplicate_id
        subject("s2", "G9", None),  # unknown_grid
        subject("s3", "G1", "last Tuesday"),  # bad_timestamp
        subject("s4", "G1", "2026-04-02 10:00:00"),  # future_timestamp
    ]
    # four bad rows of five: a run whose rows are mostly bad fails (the next test); the bound is
    # off here, to see each rule at work
    result = gridwatch_check(TYPE, {"grids": GRIDS, TABLE: rows}, options={"max_rejected_ratio": 1})
    assert result.rejected == {
        ("data", "duplicate_id"): 1,
        ("data", "unknown_grid"): 1,
        ("data", "bad_timestamp"): 1,
        ("data", "future_timestamp"): 1,
    }
    result.assert_value(SUBJECTS, 1, grid="G1")
    result.assert_value(OVERDUE, 0, grid="G1")


def test_a_run_whose_rows_are_mostly_bad_fails(gridwatch_check):
    rows = [subject("s1", "G1", "2026-03-30 10:00:00"), *(subject(f"b{i}", "G1", "last Tuesday") for i in range(4))]
    result = gridwatch_check(TYPE, {"grids": GRIDS, TABLE: rows})
    # 4 bad of the 5 rows and the 2 grids read: more than half, and the figures are dropped
    assert result.error.startswith("4 of 7 rows rejected (57%), most for bad_timestamp")
    assert result.samples == []


def test_the_default_rule_fires_for_a_grid_with_anyone_overdue(gridwatch_check, gridwatch_alerts):
    rows = [subject(f"s{i}", "G1", None) for i in range(6)] + [subject("s9", "G2", None)]
    result = gridwatch_check(TYPE, {"grids": GRIDS, TABLE: rows})
    fired = gridwatch_alerts(result)  # the check type's default rules
    assert fired == [
        (ALERT, "critical", {"grid": "G1"}),  # 6 > 5
        (ALERT, "warning", {"grid": "G2"}),  # 1 > 0
    ]
    assert "一网格" in fired[0].summary


def test_the_plugin_is_installed_with_its_api_version():
    info = PluginHost.default().info[TYPE]
    assert (info.origin, info.types, info.api_version) == ("distribution", {"check": [TYPE]}, __API__)


CONFIG = """
[state]
path = "state.db"
[grids]
source = "data"
[sources.data]
type = "sqlite"
path = "data.db"
[[checks]]
name = "__NAME__"
type = "__NAME__"
source = "data"
interval = "1m"
"""


def test_the_daemon_serves_the_metric_and_the_alert(gridwatch_daemon):
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    rows = [
        subject("s1", "G1", (now - timedelta(days=1)).isoformat()),
        subject("s2", "G1", (now - timedelta(days=10)).isoformat()),  # overdue
    ]
    daemon = gridwatch_daemon(CONFIG, tables={"grids": GRIDS, TABLE: rows})
    assert daemon.metric(OVERDUE, grid="G1") == 1
    assert daemon.metric(OVERDUE, grid="G2") == 0
    firing = wait_for(lambda: [a for a in daemon.json("/api/v1/alerts") if a["state"] == "firing"], what=ALERT)
    assert [(a["alert"], a["labels"]["grid"], a["severity"]) for a in firing] == [(ALERT, "G1", "warning")]
'''

README = """
# __DIST__

A gridwatch check plugin: everyone on the __TITLE__
register is followed up within a set time — e.g. elderly people living alone phoned weekly,
fire hydrants inspected monthly.

## What it reads

The table `__NAME__` of a gridwatch source, one row per subject to follow up:

| column | meaning |
| --- | --- |
| `subject_id` | the subject (a person, a hydrant…); never shown in metrics or alerts |
| `grid_id` | the grid it belongs to (must be in the grid registry) |
| `last_done_at` | when it was last followed up, ISO 8601; NULL if never |

If your platform names them differently, map them on the source:
`tables = { __NAME__ = "your_table" }`, `columns = { __NAME__ = { last_done_at = "your_column" } }`.

## What it produces

| metric | meaning |
| --- | --- |
| `gridwatch___NAME___subjects{grid}` | subjects on the register |
| `gridwatch___NAME___overdue{grid}` | subjects not followed up within `max_age` (never counts) |
| `gridwatch___NAME___done_ratio{grid}` | followed up in time / subjects (absent with no subjects) |

Default rule `__ALERT__`: warning when a grid has anyone overdue, critical above 5. Override it
with a `[[rules]]` entry of the same `alert` name, or switch it off with `enabled = false`.

## Install and test

```sh
pip install -e .
pytest
```

The tests use the gridwatch test kit (fixtures `gridwatch_check`, `gridwatch_alerts`,
`gridwatch_daemon`), which comes with gridwatch as a pytest plugin.

## Configure

```toml
[grids]
source = "griddb"

[sources.griddb]
type = "sqlite"
path = "grid.db"

[[checks]]
name = "__NAME__"
type = "__NAME__"
source = "griddb"
interval = "5m"
max_age = "7d"
```

`gridwatch plugins` lists `__NAME__` with its plugin API version (__API__);
`gridwatch once --check __NAME__` runs it once and prints its samples and alerts.
"""
