"""A full read folded in the database leaves a cursor (issue 19): visits and patrols, whose ids
are declared unique and whose tables have a cursor column, are folded on the first run and then
followed, so a steady run reads only what was appended — on a SQLite file through the ``sql``
source, on PostgreSQL and on MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from gridwatch import config
from gridwatch.api import ROW_KEY, Latest
from gridwatch.pipeline.runtime import Runtime
from gridwatch.testing import write_standard_db
from tests.cities import copy_city
from tests.test_sql_cursors import _figures, _samples

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 10, 13, 20, 30, tzinfo=TZ)  # a Tuesday evening, the day's working hours over
CHECKS = ("visits", "patrols")
CURSORS = '[sources.db.cursors]\nhouseholds = "id"\nvisits = "id"\npatrols = "id"\n'
# the same ids taken for changed-since values: the other kind of cursor, on the same city
CHANGED = "".join(f'{t} = {{ column = "id", kind = "changed" }}\n' for t in ("households", "visits", "patrols"))
SERVERS = [pytest.param(name, marks=pytest.mark.component) for name in ("postgres", "mariadb")]
BACKENDS = ["sqlite", *SERVERS]


class City:
    """Two grids, three households; visits and patrols with an auto-increment ``id`` (the cursor)
    and their own ids declared unique, as a platform's schema has them. Times are text."""

    def __init__(self, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        seed = write_standard_db(
            tmp_path / "seed.db",
            {
                "grids": [{"grid_id": g, "name": g, "community": "C", "street": "S"} for g in ("G1", "G2")],
                "households": [
                    {"household_id": "H1", "grid_id": "G1"},
                    {"household_id": "H2", "grid_id": "G1"},
                    {"household_id": "H3", "grid_id": "G2"},
                ],
                "visits": [
                    {"visit_id": "V1", "household_id": "H1", "grid_id": "G1", "visited_at": "2026-10-10 09:00:00"},
                    # a time no one can read: H3's rows are handed on, row by row
                    {"visit_id": "V2", "household_id": "H3", "grid_id": "G2", "visited_at": "garbage"},
                ],
                "patrols": [
                    {"patrol_id": "P1", "grid_id": "G1", "patrolled_at": "2026-10-13 08:00:00"},
                    {"patrol_id": "P2", "grid_id": "G2", "patrolled_at": "2026-10-12 10:00:00"},
                ],
            },
        )
        name = f"fc_{tmp_path.name.lower().replace('-', '_')}"[:60]
        if backend == "sqlite":
            self.url = f"sqlite:///{tmp_path / 'city.db'}"
        elif backend == "postgres":
            server = request.getfixturevalue("postgres")
            server.createdb(name)
            self.url = server.url_for(name)
        else:
            self.url = request.getfixturevalue("mariadb").createdb(name)
        copy_city(seed, self.url, timestamps="TEXT")
        self.engine = sa.create_engine(self.url)
        with self.engine.begin() as db:
            for table, key in (("visits", "visit_id"), ("patrols", "patrol_id")):
                db.exec_driver_sql(f"CREATE UNIQUE INDEX {table}_key ON {table} ({key})")

    def write(self, sql: str) -> None:
        with self.engine.begin() as db:
            db.exec_driver_sql(sql)


@pytest.fixture(params=BACKENDS)
def city(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[City]:
    made = City(request.param, tmp_path, request)
    yield made
    made.engine.dispose()


def _config(tmp_path: Path, name: str, url: str, cursors: str, resync: str | None = None) -> Path:
    extra = f'resync = "{resync}"\n' if resync is not None else ""
    checks = "".join(f'[[checks]]\nname = "{c}"\ntype = "{c}"\nsource = "db"\n{extra}' for c in CHECKS)
    path = tmp_path / f"{name}.toml"
    path.write_text(
        'timezone = "Asia/Shanghai"\nmax_rejected_ratio = 1\n'
        f'[state]\npath = "{name}-state.db"\n[grids]\nsource = "db"\n'
        f'[sources.db]\ntype = "sql"\nurl = "{url}"\n{cursors}\n{checks}',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("cursors", [CURSORS, "[sources.db.cursors]\n" + CHANGED], ids=["appended", "changed"])
def test_a_folded_full_read_leaves_a_cursor_and_the_next_run_reads_the_appended_rows(
    tmp_path: Path, city: City, monkeypatch: pytest.MonkeyPatch, cursors: str
) -> None:
    settings, host = config.load(_config(tmp_path, "kept", city.url, cursors))
    kept = Runtime(settings, host, clock=lambda: now.timestamp())
    source = kept.sources["db"]
    folds: list[Any] = []  # the cursor each fold handed back
    real = type(source).read_latest

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        plan = real(self, *args, **kwargs)
        if self is source:  # not the full recomputation's
            folds.append(None if plan is None else plan[2])
        return plan

    monkeypatch.setattr(type(source), "read_latest", spy)

    def step(at: datetime) -> dict[str, Any]:
        got = _samples(kept, at, CHECKS)
        full_settings, _ = config.load(_config(tmp_path, f"full{at:%H%M}", city.url, "", "0s"), host)
        full = Runtime(full_settings, host, clock=at.timestamp)
        try:
            assert got == _samples(full, at, CHECKS)  # as a full recomputation, row by row
        finally:
            full.close()
        return got

    try:
        now = T0
        got = step(now)
        # G1: H1 visited (10-10, in the 30 days), H2 not; G2: H3 by an unreadable visit only.
        # G1 patrolled today at 08:00; G2 last on 10-12, and today's working hours are over
        assert _figures(got["visits"], "gridwatch_visit_coverage_ratio") == {("G1",): 0.5, ("G2",): 0.0}
        assert _figures(got["patrols"], "gridwatch_patrol_overdue") == {("G1",): 0, ("G2",): 1}
        last = _figures(got["patrols"], "gridwatch_patrol_last_timestamp_seconds")
        assert last == {("G1",): datetime(2026, 10, 13, 0, 0, tzinfo=UTC).timestamp(),
                        ("G2",): datetime(2026, 10, 12, 2, 0, tzinfo=UTC).timestamp()}  # fmt: skip
        # both tables folded (visits by household, patrols by grid), each handing back a cursor
        assert len(folds) == 2 and None not in folds, folds
        assert dict(source.rows_read) == {"households": 3, "visits": 2, "patrols": 2}
        source.rows_read.clear()
        folds.clear()

        # H2 visited at 20:35, G2 patrolled at 20:36: the run reads these two rows, nothing else
        now = T0 + timedelta(minutes=10)
        city.write(
            "INSERT INTO visits (visit_id, household_id, grid_id, visited_at)"
            " VALUES ('V3', 'H2', 'G1', '2026-10-13 20:35:00')"
        )
        city.write("INSERT INTO patrols (patrol_id, grid_id, patrolled_at) VALUES ('P3', 'G2', '2026-10-13 20:36:00')")
        got = step(now)
        assert _figures(got["visits"], "gridwatch_visit_coverage_ratio") == {("G1",): 1.0, ("G2",): 0.0}
        assert _figures(got["patrols"], "gridwatch_patrol_overdue") == {("G1",): 0, ("G2",): 0}
        last = _figures(got["patrols"], "gridwatch_patrol_last_timestamp_seconds")
        assert last[("G2",)] == datetime(2026, 10, 13, 12, 36, tzinfo=UTC).timestamp()
        assert folds == []  # nothing folded again: the cursors held
        assert dict(source.rows_read) == {"households": 0, "visits": 1, "patrols": 1}
    finally:
        kept.close()


def _latest() -> Latest:
    return Latest(
        "household_id", "visited_at", "visit_id", "grid_id", ["G1", "G2"],
        datetime(2022, 1, 1), datetime(2026, 10, 13, 20, 30),
    )  # fmt: skip


@pytest.mark.parametrize("backend", SERVERS)
def test_a_row_committed_during_the_fold_waits_for_the_next_read(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """The cursor is taken in the fold's snapshot: a row committed between the groups and the
    odd rows is in neither, and the read since the cursor hands it on. The odd rows carry their
    key as rows read since a cursor do."""
    city = City(backend, tmp_path, request)
    settings, _ = config.load(_config(tmp_path, "src", city.url, CURSORS))
    runtime = Runtime(settings, _, clock=T0.timestamp)
    source = runtime.sources["db"]
    try:
        plan = source.read_latest("visits", ("visit_id", "household_id", "grid_id", "visited_at"), None, _latest())
        assert plan is not None
        groups, odd, cursor = plan
        assert [g[0] for g in groups] == ["H1"]
        city.write(
            "INSERT INTO visits (visit_id, household_id, grid_id, visited_at)"
            " VALUES ('V3', 'H3', 'G2', '2026-10-13 20:00:00')"
        )
        odd_rows = list(odd)
        assert [(r["visit_id"], r[ROW_KEY]) for r in odd_rows] == [("V2", 2)]  # V2 is the second row
        since, _cursor = source.read_since("visits", ("visit_id",), cursor)
        assert [r["visit_id"] for r in since] == ["V3"]
    finally:
        runtime.close()
        city.engine.dispose()
