"""Scale-out: shards of one city, together, are exactly the unsharded city."""

import json
import subprocess
import sys
from collections import Counter
from datetime import datetime

import pytest

from gridwatch.api import Grid
from gridwatch.pipeline.grids import shard_of
from gridwatch.tools import demo

NOW = "2026-11-21T21:00:00+08:00"


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    demo.generate(d / "demo.db", grids=60, now=datetime.fromisoformat(NOW), days=40)
    return d


def once(d, shard: str | None, by: str = "hash") -> dict:
    name = f"gw-{(shard or 'all').replace('/', '-')}-{by}.toml"
    shard_line = f'shard = "{shard}"\nshard_by = "{by}"\n' if shard else ""
    (d / name).write_text(
        f'[state]\npath = "{name}.state.db"\n[grids]\nsource = "demo"\n{shard_line}'
        '[sources.demo]\ntype = "sqlite"\npath = "demo.db"\n'
        + "".join(
            f'[[checks]]\nname = "{t}"\ntype = "{t}"\nsource = "demo"\n'
            for t in ("visits", "patrols", "incidents", "reports")
        ),
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, "-m", "gridwatch", "once", "-c", name, "--json", "--now", NOW],
        cwd=d,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def series(report: dict) -> Counter:
    return Counter((s["metric"], tuple(sorted(s["labels"].items())), s["value"]) for s in report["samples"])


@pytest.mark.parametrize("by", ["hash", "street"])
def test_three_shards_add_up_to_the_whole_city_with_no_grid_twice(city, by):
    whole = once(city, None)
    parts = [once(city, f"{k}/3", by) for k in (1, 2, 3)]
    grids = [{g["grid"] for g in p["grids"]} for p in parts]
    assert set.union(*grids) == {g["grid"] for g in whole["grids"]}
    assert sum(len(g) for g in grids) == 60  # disjoint
    assert all(grids), "every shard got some grids"
    union = Counter()
    for p in parts:
        union += series(p)
    assert union == series(whole)
    # rows of other shards' grids are not bad rows
    assert all(not p["errors"] for p in parts)


def test_shard_assignment_is_stable_and_street_sharding_keeps_streets_whole():
    a, b = Grid("G0001", "n", "c", "东街街道"), Grid("G0002", "n", "c", "东街街道")
    # the assignment is a pure function of the id (or street): the same on every machine
    assert shard_of(a, 3) == shard_of(Grid("G0001", "other", "x", "y"), 3)
    assert shard_of(a, 3, "street") == shard_of(b, 3, "street")
    assert {shard_of(Grid(f"G{i:04d}", "", "", ""), 4) for i in range(200)} == {1, 2, 3, 4}
