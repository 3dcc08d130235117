"""A real platform's database, read right or refused loudly (DOMAIN.md §5).

The platform below keeps the demo city's rows its own way: pinyin table and column names,
times as epoch seconds, epoch milliseconds and ``2026/09/24 11:31:13`` text, Chinese code
values. Mapped with ``tables``, ``columns``, ``formats`` and ``codes`` it must give exactly the
figures the standard-schema city built from the same rows gives; a mistyped name must fail
the check, in ``gridwatch once``, in the daemon and in ``check-config --connect``.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gridwatch.tools import demo

TZ = ZoneInfo("Asia/Shanghai")
NOW = "2026-10-13T20:30:00+08:00"  # as tests/test_postgres.py: the National Day cases are in every window
CHECKS = "".join(
    f'[[checks]]\nname = "{t}"\ntype = "{t}"\nsource = "city"\ntimeout = "60s"\n'
    for t in ("visits", "patrols", "incidents", "reports")
)

# ---------------------------------------------------------------------------- the platform

TABLES = {
    "grids": "wgxx",
    "households": "hjxx",
    "household_categories": "hjlb",
    "visits": "zfjl",
    "patrols": "xcjl",
    "incidents": "sjxx",
    "reports": "sbjl",
}
COLUMNS = {
    "grids": {
        "grid_id": "wgbh",
        "name": "wgmc",
        "community": "sqmc",
        "street": "jdmc",
        "zone": "qy",
        "since": "qysj",
    },
    "households": {"household_id": "hbh", "grid_id": "wgbh", "category": "lb"},
    "household_categories": {"household_id": "hbh", "category": "lb"},
    "visits": {"visit_id": "zfbh", "household_id": "hbh", "grid_id": "wgbh", "worker_id": "zfry", "visited_at": "zfsj"},
    "patrols": {"patrol_id": "xcbh", "grid_id": "wgbh", "worker_id": "xcry", "patrolled_at": "xcsj", "role": "js"},
    "incidents": {
        "incident_id": "sjbh",
        "grid_id": "wgbh",
        "category": "sjlb",
        "severity": "yzcd",
        "tier": "cjdj",
        "reported_at": "sbsj",
        "accepted_at": "slsj",
        "dispatched_at": "pqsj",
        "resolved_at": "czsj",
        "closed_at": "jasj",
        "reopened_count": "cfcs",
        "extended": "yq",
    },
    "reports": {
        "report_id": "bgbh",
        "grid_id": "wgbh",
        "kind": "bglx",
        "period": "bgzq",
        "submitted_at": "tjsj",
        "flag": "bj",
    },
}
PATTERN = "%Y/%m/%d %H:%M:%S"
FORMATS = {
    "grids": {"since": "%Y/%m/%d"},
    "visits": {"visited_at": "epoch_ms"},
    "patrols": {"patrolled_at": "epoch"},
    "incidents": {
        "reported_at": "epoch_ms",
        "accepted_at": "epoch_ms",
        "dispatched_at": "epoch",
        "resolved_at": PATTERN,
        "closed_at": PATTERN,
    },
    "reports": {"submitted_at": PATTERN},
}
CODES = {
    "grids": {"zone": {"红": "red", "黄": "yellow", "蓝": "blue"}},
    "households": {
        "category": {
            "独居老人": "elderly_alone",
            "流动人口": "floating",
            "孕妇": "pregnant",
            "残疾人": "disabled",
            "社区矫正人员": "community_correction",
        }
    },
    "patrols": {"role": {"网格员": "worker", "督导员": "supervisor", "网格长": "head"}},
    "incidents": {
        "severity": {"一般": "normal", "重大": "major"},
        "tier": {"社区": "community", "街道": "subdistrict", "部门": "department", "专项": "special"},
    },
    "reports": {
        "kind": {
            "日报": "daily",
            "周二报": "twice_weekly",
            "周报": "weekly",
            "月报": "monthly",
            "季报": "quarterly",
            "年报": "annual",
        },
        "flag": {"正常": "ok", "重大矛盾纠纷": "major_dispute", "预警": "early_warning", "信访": "petition"},
    },
}
CODES["household_categories"] = CODES["households"]


def city_rows(directory: Path, grids: int = 12, days: int = 40) -> dict[str, tuple[tuple[str, ...], list[tuple]]]:
    """The one list of rows both cities are built from: the demo city's, per table."""
    db = directory / "rows.db"
    demo.generate(db, grids=grids, days=days, now=datetime.fromisoformat(NOW))
    with sqlite3.connect(db) as conn:
        out = {
            t: (cols, conn.execute(f"SELECT {', '.join(cols)} FROM {t}").fetchall()) for t, cols in demo.SCHEMA.items()
        }
    conn.close()
    return out


def platform_value(table: str, column: str, value: Any) -> Any:
    """A standard value as the platform writes it."""
    if value is None or value == "":
        return value
    fmt = FORMATS.get(table, {}).get(column)
    if fmt in ("epoch", "epoch_ms"):
        seconds = int(datetime.fromisoformat(value).replace(tzinfo=TZ).timestamp())  # the demo has whole seconds
        return seconds * (1000 if fmt == "epoch_ms" else 1)
    if fmt is not None:
        return datetime.fromisoformat(value).strftime(fmt)
    codes = CODES.get(table, {}).get(column)
    if codes is not None:
        return {std: own for own, std in codes.items()}[value]
    return value


def platform_tables(
    rows: Mapping[str, tuple[tuple[str, ...], list[tuple]]],
) -> Iterator[tuple[str, list[str], list[tuple]]]:
    """(platform table, its columns, its rows) for every table of the city."""
    for table, (cols, values) in rows.items():
        names = [COLUMNS[table][c] for c in cols]
        yield (
            TABLES[table],
            names,
            [tuple(platform_value(table, c, v) for c, v in zip(cols, r, strict=True)) for r in values],
        )


def column_type(table: str, column: str, dialect: str) -> str:
    fmt = FORMATS.get(table, {}).get(column)
    if fmt in ("epoch", "epoch_ms"):
        return "BIGINT" if dialect == "postgresql" else "INTEGER"
    return "INTEGER" if column in ("reopened_count", "extended") else "TEXT"


def write_platform_sqlite(path: Path, rows: Mapping[str, tuple[tuple[str, ...], list[tuple]]]) -> Path:
    with sqlite3.connect(path) as conn:
        for (table, (cols, _)), (name, names, values) in zip(rows.items(), platform_tables(rows), strict=True):
            typed = ", ".join(f"{n} {column_type(table, c, 'sqlite')}" for c, n in zip(cols, names, strict=True))
            conn.execute(f"CREATE TABLE {name} ({typed})")
            conn.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(names))})", values)
        # the platform's primary keys, as the demo city has them: they let the source fold visits
        conn.execute("CREATE UNIQUE INDEX zfjl_id ON zfjl (zfbh)")
        conn.execute("CREATE UNIQUE INDEX xcjl_id ON xcjl (xcbh)")
    conn.close()
    return path


def write_standard_sqlite(path: Path, rows: Mapping[str, tuple[tuple[str, ...], list[tuple]]]) -> Path:
    with sqlite3.connect(path) as conn:
        for table, (cols, values) in rows.items():
            typed = ", ".join(f"{c} {'INTEGER' if c in ('reopened_count', 'extended') else 'TEXT'}" for c in cols)
            conn.execute(f"CREATE TABLE {table} ({typed})")
            conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(cols))})", values)
        conn.execute("CREATE UNIQUE INDEX visits_id ON visits (visit_id)")
        conn.execute("CREATE UNIQUE INDEX patrols_id ON patrols (patrol_id)")
    conn.close()
    return path


def toml_value(value: Any) -> str:
    """TOML for the mapping options: inline tables with quoted keys, strings, numbers."""
    if isinstance(value, Mapping):
        return (
            "{ " + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    return json.dumps(value, ensure_ascii=False)


def platform_source(body: str, **changes: Any) -> str:
    """``[sources.city]`` for the platform: ``body`` (type and path or url) and the mapping."""
    options = {"tables": TABLES, "columns": COLUMNS, "formats": FORMATS, "codes": CODES, **changes}
    return "[sources.city]\n" + body + "\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in options.items())


def gridwatch(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridwatch", *args], cwd=directory, capture_output=True, text=True, timeout=300
    )


def write_config(directory: Path, name: str, source: str) -> Path:
    cfg = directory / f"{name}.toml"
    cfg.write_text(f'[state]\npath = "{name}-state.db"\n[grids]\nsource = "city"\n{source}\n{CHECKS}', encoding="utf-8")
    return cfg


def once(directory: Path, name: str, source: str) -> tuple[int, dict[str, Any]]:
    out = gridwatch(directory, "once", "-c", str(write_config(directory, name, source)), "--json", "--now", NOW)
    return out.returncode, json.loads(out.stdout)


def by_key(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(samples, key=lambda s: (s["check"], s["metric"], sorted(s["labels"].items())))


# ---------------------------------------------------------------------------- same figures


@pytest.fixture(scope="module")
def cities(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Any]:
    """The standard city's ``once --json``, from the rows the platform is built from too."""
    directory = tmp_path_factory.mktemp("cities")
    rows = city_rows(directory)
    write_standard_sqlite(directory / "standard.db", rows)
    code, standard = once(directory, "standard", '[sources.city]\ntype = "sqlite"\npath = "standard.db"')
    assert code == 0 and standard["errors"] == []
    return directory, standard, rows


def test_epoch_pattern_times_and_chinese_codes_in_sqlite_give_the_standard_citys_figures(cities):
    directory, standard, rows = cities
    write_platform_sqlite(directory / "platform.db", rows)
    with sqlite3.connect(directory / "platform.db") as conn:  # it is what it claims to be
        assert {r[0] for r in conn.execute("SELECT DISTINCT typeof(zfsj) FROM zfjl")} == {"integer"}
        assert {r[0] for r in conn.execute("SELECT DISTINCT yzcd FROM sjxx")} == {"一般", "重大"}
    conn.close()
    code, platform = once(directory, "platform", platform_source('type = "sqlite"\npath = "platform.db"'))
    assert code == 0, platform["errors"]
    assert len(standard["samples"]) > 12 * 8
    assert by_key(platform["samples"]) == by_key(standard["samples"])
    assert platform["grids"] == standard["grids"]
    assert platform["alerts"] == standard["alerts"]


@pytest.mark.component
def test_the_platform_in_postgresql_gives_the_standard_citys_figures(cities, postgres):
    import psycopg

    directory, standard, rows = cities
    dsn = postgres.createdb("platform")
    with psycopg.connect(dsn) as pg, pg.cursor() as cur:
        for (table, (cols, _)), (name, names, values) in zip(rows.items(), platform_tables(rows), strict=True):
            typed = ", ".join(f"{n} {column_type(table, c, 'postgresql')}" for c, n in zip(cols, names, strict=True))
            cur.execute(f"CREATE TABLE {name} ({typed})")
            with cur.copy(f"COPY {name} ({', '.join(names)}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
    code, platform = once(directory, "pg", platform_source(f'type = "sql"\nurl = "{postgres.url_for("platform")}"'))
    assert code == 0, platform["errors"]
    assert by_key(platform["samples"]) == by_key(standard["samples"])
    assert platform["grids"] == standard["grids"]


# ---------------------------------------------------------------------------- refused loudly

SMALL = {  # a platform of two grids, by hand; a visit at 2026-10-13 09:00 local
    "wgxx": (
        ("wgbh", "wgmc", "sqmc", "jdmc", "qy", "qysj"),
        [
            ("g1", "东湖网格", "和平社区", "东街街道", "红", "2025/01/01"),
            ("g2", "西湖网格", "和平社区", "东街街道", None, None),
        ],
    ),
    "hjxx": (("hbh", "wgbh", "lb"), [("h1", "g1", None), ("h2", "g2", "独居老人")]),
    # 2026-10-13 01:00 UTC: 20,739 days after 1970-01-01 (56 years, 14 of them leap, and 285
    # days of 2026), 1 hour: (20739 * 86400 + 3600) * 1000
    "zfjl": (("zfbh", "hbh", "wgbh", "zfry", "zfsj"), [("v1", "h1", "g1", "w1", 1_791_853_200_000)]),
}
DATABASES = itertools.count(1)  # PostgreSQL databases live for the session: one name each
VISITS_ONLY = '[[checks]]\nname = "visits"\ntype = "visits"\nsource = "city"\n'
TYPO_COLUMN = (
    "column 'visited_at' of table 'visits' (mapped to 'zfsj_typo' in 'zfjl') not found in source city;"
    " the table has: hbh, wgbh, zfbh, zfry, zfsj; map it with columns.visits.visited_at"
)
TYPOS = {  # the mistake -> (the key to fix, what the check says, who reads it)
    "column": (
        {"columns": {**COLUMNS, "visits": {**COLUMNS["visits"], "visited_at": "zfsj_typo"}}},
        "columns.visits.visited_at",
        TYPO_COLUMN,
        "check visits",
    ),
    "table": (
        {"tables": {**TABLES, "visits": "zfjl_x"}},
        "tables.visits",
        "table 'visits' (mapped to 'zfjl_x') not found in source city; map it with tables.visits",
        "check visits",
    ),
    "grid name": (  # the defect: every grid was named "wgmc_x"
        {"columns": {**COLUMNS, "grids": {**COLUMNS["grids"], "name": "wgmc_x"}}},
        "columns.grids.name",
        "column 'name' of table 'grids' (mapped to 'wgmc_x' in 'wgxx') not found in source city;"
        " the table has: jdmc, qy, qysj, sqmc, wgbh, wgmc; map it with columns.grids.name",
        "the grid registry",
    ),
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.component)])
def small(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The small platform in SQLite or PostgreSQL; returns the source's type and location."""
    if request.param == "sqlite":
        with sqlite3.connect(tmp_path / "small.db") as conn:
            for name, (cols, values) in SMALL.items():
                conn.execute(f"CREATE TABLE {name} ({', '.join(cols)})")
                conn.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(cols))})", values)
        conn.close()
        return 'type = "sqlite"\npath = "small.db"'
    import psycopg

    postgres = request.getfixturevalue("postgres")
    db = f"small{next(DATABASES)}"
    with psycopg.connect(postgres.createdb(db)) as pg, pg.cursor() as cur:
        for name, (cols, values) in SMALL.items():
            typed = ", ".join(f"{c} {'BIGINT' if c == 'zfsj' else 'TEXT'}" for c in cols)
            cur.execute(f"CREATE TABLE {name} ({typed})")
            cur.executemany(f"INSERT INTO {name} VALUES ({', '.join(['%s'] * len(cols))})", values)
    return f'type = "sql"\nurl = "{postgres.url_for(db)}"'


def small_config(directory: Path, source: str, **changes: Any) -> Path:
    cfg = directory / "gridwatch.toml"
    body = platform_source(source, **changes)
    cfg.write_text(f'[state]\npath = "state.db"\n[grids]\nsource = "city"\n{body}\n{VISITS_ONLY}', encoding="utf-8")
    return cfg


def test_the_small_platform_mapped_right_is_read(small, tmp_path):
    cfg = small_config(tmp_path, small)
    checked = gridwatch(tmp_path, "check-config", "--connect", "-c", str(cfg))
    # then how each table is read between runs: by rowid on SQLite; in full on a sql source
    # without cursor columns, saying which key would change that
    if 'type = "sqlite"' in small:
        follow = "each run reads the appended rows since the last, by rowid"
    else:
        follow = "read in full on every run: no cursor column configured (sources.city.cursors.{})"
    said = "".join(f"sources.city: {t}: {follow.format(t)}\n" for t in ("households", "visits"))
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, f"{cfg}: ok\n{said}", "")
    out = gridwatch(tmp_path, "once", "-c", str(cfg), "--json", "--now", NOW)
    assert out.returncode == 0, out.stderr
    coverage = {
        s["labels"]["grid"]: s["value"]
        for s in json.loads(out.stdout)["samples"]
        if s["metric"] == "gridwatch_visit_coverage_ratio"
    }
    assert coverage == {"g1": 1.0, "g2": 0.0}  # h1 visited this morning, h2 never


@pytest.mark.parametrize("typo", TYPOS)
def test_a_mistyped_table_or_column_fails_in_once_and_in_check_config_connect(small, tmp_path, typo):
    changes, key, message, reader = TYPOS[typo]
    cfg = small_config(tmp_path, small, **changes)
    offline = gridwatch(tmp_path, "check-config", "-c", str(cfg))
    assert offline.returncode == 0  # the file is fine; only the source can tell
    checked = gridwatch(tmp_path, "check-config", "--connect", "-c", str(cfg))
    assert checked.returncode == 2
    assert checked.stderr.splitlines() == [f"{cfg}: sources.city.{key}: {message} (read by {reader})"]
    out = gridwatch(tmp_path, "once", "-c", str(cfg), "--json", "--now", NOW)
    assert out.returncode == 1
    assert json.loads(out.stdout)["errors"] == [{"check": "visits", "error": message}]


def test_a_mistyped_column_fails_the_check_in_the_daemon(small, tmp_path, gridwatch_daemon):
    changes = TYPOS["column"][0]
    db = tmp_path / "small.db"  # (the PostgreSQL one is reached by its URL)
    daemon = gridwatch_daemon(
        f'[state]\npath = "state.db"\n[grids]\nsource = "city"\n{platform_source(small, **changes)}\n{VISITS_ONLY}',
        files={"small.db": db.read_bytes()} if db.exists() else None,
    )
    [check] = daemon.json("/api/v1/status")["checks"]
    assert (check["name"], check["ok"], check["error"]) == ("visits", False, TYPO_COLUMN)


# ---------------------------------------------------------------------------- the pieces

SEP24 = datetime(2026, 9, 24, 11, 31, 13, tzinfo=TZ)  # 2026-09-24 03:31:13 UTC: 20,720 days, 12,673 s
SEP24_EPOCH = 20_720 * 86_400 + 3 * 3600 + 31 * 60 + 13  # 1,790,220,673


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        (SEP24_EPOCH, "epoch", SEP24),
        (str(SEP24_EPOCH), "epoch", SEP24),
        (f" {SEP24_EPOCH}.25 ", "epoch", SEP24.replace(microsecond=250_000)),
        (SEP24_EPOCH * 1000 + 7, "epoch_ms", SEP24.replace(microsecond=7000)),
        (float(SEP24_EPOCH * 1000), "epoch_ms", SEP24),
        ("2026/09/24 11:31:13", PATTERN, SEP24),
        ("2026/9/24 11:31:13", PATTERN, SEP24),  # strptime takes a month without its zero
        ("24.09.2026 04:31 +0100", "%d.%m.%Y %H:%M %z", SEP24.replace(second=0)),  # an offset is kept
        ("2026-09-24 11:31:13", "iso", SEP24),
        (datetime(2026, 9, 24, 11, 31, 13), "epoch", SEP24),  # what a driver typed is taken as it is
        (None, "epoch_ms", None),
        ("", PATTERN, None),
    ],
)
def test_timestamps_are_read_in_their_columns_format(value, fmt, expected):
    from gridwatch.rows import parse_ts

    got = parse_ts(value, TZ, fmt)
    assert got == expected
    if got is not None:
        assert got.utcoffset() is not None


@pytest.mark.parametrize(
    ("value", "fmt"),
    [
        ("2026-09-24 11:31:13", "epoch"),
        ("1790220673x", "epoch"),
        (True, "epoch"),
        (float("nan"), "epoch"),
        (10**30, "epoch_ms"),
        ("2026-09-24 11:31:13", PATTERN),
        ("2026/09/24", PATTERN),
        (1790220673, "iso"),
        (1790220673, PATTERN),
    ],
)
def test_a_value_its_format_does_not_read_is_an_error(value, fmt):
    from gridwatch.rows import parse_ts

    with pytest.raises((ValueError, OverflowError)):
        parse_ts(value, TZ, fmt)


def test_formats_and_codes_are_checked_when_the_config_loads(tmp_path):
    from gridwatch import config

    def problems(options: str) -> list[str]:
        cfg = tmp_path / "gridwatch.toml"
        cfg.write_text(f'[sources.city]\ntype = "sqlite"\npath = "city.db"\n{options}\n', encoding="utf-8")
        return [line.split(": ", 1)[1] for line in config.problems(cfg)]

    assert problems('formats = { visits = { visited_at = "epoch_ms" }, reports = { submitted_at = "%Y%m%d" } }') == []
    assert problems('formats = { visits = { visited_at = "epoch_s" } }') == [
        "sources.city.formats.visits.visited_at: unknown timestamp format 'epoch_s': expected iso, epoch,"
        " epoch_ms or a strptime pattern such as '%Y/%m/%d %H:%M:%S'"
    ]
    [bad] = problems('formats = { reports = { submitted_at = "%Y/%m/%d %Q" } }')
    assert bad.startswith("sources.city.formats.reports.submitted_at: not a usable strptime pattern '%Y/%m/%d %Q'")
    assert problems('formats = { reports = { submitted_at = "%H:%M" } }') == [
        "sources.city.formats.reports.submitted_at: the pattern '%H:%M' does not give a whole date"
        " (%Y, %m and %d, or the like)"
    ]
    assert problems('codes = { incidents = { severity = { "重大" = "mjaor", "一般" = "normal" } } }') == [
        "sources.city.codes: codes.incidents.severity maps onto 'mjaor': the standard values of"
        " incidents.severity are normal, major"
    ]
    assert problems('codes = { households = { category = { "吸毒人员" = "drug_rehab" } } }') == []  # open


def test_code_values_are_mapped_per_column_and_an_unmapped_one_is_a_bad_row():
    from gridwatch.api import RunContext
    from gridwatch.rows import clean

    ctx = RunContext(now=SEP24, tz=TZ)
    rows = [
        {"incident_id": "i1", "grid_id": "g1", "severity": "重大", "tier": "社区"},
        {"incident_id": "i2", "grid_id": "g1", "severity": " 一般 ", "tier": None},  # NULL stays NULL
        {"incident_id": "i3", "grid_id": "g1", "severity": "特别重大事件报告", "tier": "社区"},
        {"incident_id": "i4", "grid_id": "g1", "severity": 2, "tier": ""},  # a number maps as its text
    ]
    codes = {"severity": {"重大": "major", "一般": "normal", "2": "major"}, "tier": {"社区": "community"}}
    got = list(clean(ctx, "city", rows, id_column="incident_id", codes=codes))
    assert [(r["incident_id"], r["severity"], r["tier"]) for r in got] == [
        ("i1", "major", "community"),
        ("i2", "normal", None),
        ("i4", "major", ""),
    ]
    assert ctx.rejected == {("city", "unmapped_code"): 1}
    assert ctx.examples[("city", "unmapped_code")] == "severity='特别重大事件报告' has no mapping in codes"
    # an id column's value is never shown
    ctx = RunContext(now=SEP24, tz=TZ)
    list(clean(ctx, "city", [{"grid_id": "13800138000"}], id_column=None, codes={"grid_id": {"g": "g1"}}))
    assert ctx.examples[("city", "unmapped_code")] == "grid_id has no mapping in codes"


def test_sqlite_never_reads_an_unknown_column_as_a_string(tmp_path):
    from gridwatch.api import CheckError, Environment
    from gridwatch.sources.sql import SqlSource
    from gridwatch.sources.sqlite import SqliteSource

    with sqlite3.connect(tmp_path / "p.db") as conn:
        conn.execute('CREATE TABLE zfjl (zfbh TEXT, "走访 时间" TEXT)')
        conn.execute("INSERT INTO zfjl VALUES ('v1', '2026-10-13 09:00:00')")
    conn.close()
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path)
    mapping = {"tables": {"visits": "zfjl"}, "columns": {"visits": {"visit_id": "zfbh", "visited_at": "走访 时闻"}}}
    lite = SqliteSource("city", SqliteSource.Options(path="p.db", **mapping), env)
    with pytest.raises(CheckError, match="no such column: 走访 时闻"):  # not the text '走访 时闻' in every row
        list(lite.read("visits", ["visit_id", "visited_at"]))
    sql = SqlSource("city", SqlSource.Options(url=f"sqlite:///{tmp_path / 'p.db'}", **mapping), env)
    try:
        with pytest.raises(CheckError, match="column 'visited_at' of table 'visits' not found"):
            sql.read("visits", ["visit_id", "visited_at"])
    finally:
        sql.close()
    right = {**mapping, "columns": {"visits": {"visit_id": "zfbh", "visited_at": "走访 时间"}}}
    lite = SqliteSource("city", SqliteSource.Options(path="p.db", **right), env)
    assert list(lite.read("visits", ["visit_id", "visited_at"])) == [
        {"visit_id": "v1", "visited_at": "2026-10-13 09:00:00"}
    ]


def test_columns_are_asked_once_per_table_until_the_file_is_replaced_or_a_read_fails(tmp_path):
    from gridwatch.api import CheckError, Environment
    from gridwatch.sources.sqlite import SqliteSource

    class Counting(SqliteSource):
        asked = 0

        def columns(self, table: str, *, deadline: float = float("inf")) -> frozenset[str]:
            Counting.asked += 1
            return super().columns(table, deadline=deadline)

    def write(path: Path, column: str) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute(f"CREATE TABLE zfjl (zfbh TEXT, {column} TEXT)")
        conn.close()

    write(tmp_path / "p.db", "zfsj")
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path)
    options = {"tables": {"visits": "zfjl"}, "columns": {"visits": {"visit_id": "zfbh", "visited_at": "zfsj"}}}
    source = Counting("city", SqliteSource.Options(path="p.db", **options), env)
    for _ in range(3):
        source.require("visits", ["visit_id", "visited_at"])
    assert Counting.asked == 1
    write(tmp_path / "q.db", "sj")  # the platform's file replaced by one where the column is renamed
    (tmp_path / "q.db").replace(tmp_path / "p.db")
    with pytest.raises(
        CheckError, match=r"\(mapped to 'zfsj' in 'zfjl'\) not found in source city; the table has: sj, zfbh"
    ):
        source.require("visits", ["visit_id", "visited_at"])
    assert Counting.asked == 2
    source.forget_columns("visits")
    source.require("visits", ["visit_id"])
    assert Counting.asked == 3


def test_sqlite_folds_epoch_and_pattern_times_and_hands_on_what_it_cannot_vouch_for(tmp_path):
    from gridwatch.api import Environment, Latest
    from gridwatch.sources.sqlite import SqliteSource

    ms = SEP24_EPOCH * 1000
    rows = [  # (id, household, grid, epoch ms, pattern text, day first)
        ("v1", "h1", "g1", ms, "2026/09/24 11:31:13", "24.09.2026 11:31"),
        ("v2", "h1", "g1", ms + 3_600_000, "2026/09/24 12:31:13", "30.08.2026 12:31"),  # latest / first
        ("v3", "h2", "g1", "2026-09-24 11:31:13", "2026/9/24 11:31:13", "24.9.2026 11:31"),  # handed on
        ("v4", "h3", "g1", ms + 86_400_000, "2026/09/25 11:31:13", "25.09.2026 11:31"),  # after "until"
        ("v5", "h4", "g1", ms - 1, "2026/09/24 11:31:12", "31.08.2026 11:31"),
    ]
    with sqlite3.connect(tmp_path / "p.db") as conn:
        conn.execute("CREATE TABLE zfjl (zfbh TEXT UNIQUE, hbh TEXT, wgbh TEXT, ms INTEGER, txt TEXT, dmy TEXT)")
        conn.executemany("INSERT INTO zfjl VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.close()
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path)
    cols = ("visit_id", "household_id", "grid_id", "visited_at")

    def fold(column: str, fmt: str) -> tuple[list[tuple], list[str]] | None:
        mapping = {"visit_id": "zfbh", "household_id": "hbh", "grid_id": "wgbh", "visited_at": column}
        source = SqliteSource(
            "city", SqliteSource.Options(path="p.db", tables={"visits": "zfjl"}, columns={"visits": mapping}), env
        )
        until = datetime(2026, 9, 24, 20, 0, 0)  # naive local, as Feed.latest gives it
        want = Latest("household_id", "visited_at", "visit_id", "grid_id", ["g1"], datetime(2020, 1, 1), until, fmt)
        plan = source.read_latest("visits", cols, None, want)
        if plan is None:
            return None
        groups, odd, _ = plan
        return sorted(groups), [r["visit_id"] for r in odd]

    assert fold("ms", "epoch_ms") == (
        [("h1", ms + 3_600_000, 2), ("h4", ms - 1, 1)],
        ["v3", "v4"],
    )
    assert fold("txt", PATTERN) == (
        [("h1", "2026/09/24 12:31:13", 2), ("h4", "2026/09/24 11:31:12", 1)],
        ["v3", "v4"],
    )
    # day first: the text does not sort as the times, their ISO text does; the text comes back
    assert fold("dmy", "%d.%m.%Y %H:%M") == (
        [("h1", "24.09.2026 11:31", 2), ("h4", "31.08.2026 11:31", 1)],
        ["v3", "v4"],
    )
    assert fold("txt", "%Y/%m/%d %I:%M:%S %p") is None  # a 12-hour clock: read one by one


def test_a_csv_header_names_what_is_missing_and_json_lines_cannot_tell(tmp_path):
    from gridwatch.api import Environment, SourceUnavailable
    from gridwatch.sources.files import CsvSource, JsonlSource

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "zfjl.csv").write_text("zfbh,hbh,wgbh,zfsj\nv1,h1,g1,1790220673000\n", encoding="utf-8")
    (tmp_path / "data" / "zfjl.jsonl").write_text('{"zfbh": "v1"}\n', encoding="utf-8")
    env = Environment(base_dir=tmp_path, tz=TZ, state_dir=tmp_path)
    mapping = {"tables": {"visits": "zfjl"}, "columns": {"visits": {"visit_id": "zfbh", "visited_at": "zfsj_typo"}}}
    csv = CsvSource("files", CsvSource.Options(path="data", **mapping), env)
    assert csv.missing("visits", ["visit_id", "visited_at"]) == [
        (
            "columns.visits.visited_at",
            "column 'visited_at' of table 'visits' (mapped to 'zfsj_typo' in 'zfjl') not found in source files;"
            " the table has: hbh, wgbh, zfbh, zfsj; map it with columns.visits.visited_at",
        )
    ]
    assert csv.missing("patrols", ["patrol_id"]) == [
        ("tables.patrols", "table 'patrols' not found in source files; map it with tables.patrols")
    ]
    jsonl = JsonlSource("files", JsonlSource.Options(path="data", **mapping), env)
    assert jsonl.missing("visits", ["visit_id", "visited_at"]) == []  # a line's keys say nothing of the next
    assert [k for k, _ in jsonl.missing("patrols", ["patrol_id"])] == ["tables.patrols"]  # but a file is there or not
    gone = CsvSource("files", CsvSource.Options(path="nowhere", **mapping), env)
    with pytest.raises(SourceUnavailable):  # a missing directory is the source down, not a missing table
        gone.require("visits", ["visit_id"])
