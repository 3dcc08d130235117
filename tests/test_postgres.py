"""The same city in PostgreSQL, read through the `sql` source, gives exactly the same samples."""

from datetime import datetime

import pytest

from gridwatch.tools import demo
from tests.cities import NOW, assert_same_answers, copy_city, once, sql_source, sqlite_source

pytestmark = pytest.mark.component


def test_postgresql_gives_exactly_the_samples_sqlite_gives(postgres, tmp_path):
    demo.generate(tmp_path / "city.db", grids=24, days=45, now=datetime.fromisoformat(NOW))
    postgres.createdb("city")
    copy_city(tmp_path / "city.db", postgres.url_for("city"))

    lite = once(tmp_path, "lite", sqlite_source("city.db"))
    pg = once(tmp_path, "pg", sql_source(postgres.url_for("city")))

    assert len(lite["samples"]) > 24 * 8
    assert_same_answers(pg, lite)
