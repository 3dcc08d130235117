"""The state database: versioned schema, bounded history, no downgrades."""

import sqlite3

import pytest

from gridwatch.store import MIGRATIONS, Store, StoreError, recent_runs


def test_a_new_database_is_migrated_to_the_latest_version_in_wal_mode(tmp_path):
    store = Store(tmp_path / "state.db")
    store.open()
    try:
        assert store.call(lambda db: store.version) == len(MIGRATIONS)
        assert store.call(lambda db: db.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
    finally:
        store.close()


def test_history_is_bounded_per_check(tmp_path):
    store = Store(tmp_path / "state.db", history=10)
    store.open()
    try:
        for i in range(250):
            store.call(store.record_run, "a", float(i), 0.1, "success", None)
        store.call(store.record_run, "b", 0.0, 0.1, "failure", "boom")
        # pruning runs every 100 inserts: after 251 inserts the last prune (at 200) left 10 of "a"
        # and 50 more have come since
        counts = dict(
            store.call(
                lambda db: db.execute("SELECT check_name, count(*) FROM check_runs GROUP BY check_name").fetchall()
            )
        )
        assert counts == {"a": 60, "b": 1}
        last = store.call(recent_runs, "a", 1)
        assert last == [{"started_at": 249.0, "duration": 0.1, "outcome": "success", "error": None}]
    finally:
        store.close()


def test_a_database_from_a_newer_gridwatch_is_refused(tmp_path):
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StoreError, match="refusing to downgrade"):
        Store(path).open()
