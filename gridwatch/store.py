"""The state database: what must survive a restart, in SQLite through sqlite-utils.

One connection, used from one dedicated thread, so the event loop never waits on disk and
writes never interleave. The schema is versioned; ``MIGRATIONS[i]`` takes version i to i+1.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

T = TypeVar("T")


def _v1(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["check_runs"].create(
        {
            "id": int,
            "check_name": str,
            "started_at": float,
            "duration": float,
            "outcome": str,
            "error": str,
        },
        pk="id",
    )
    db["check_runs"].create_index(["check_name", "id"])


def _v2(db: sqlite_utils.Database) -> None:
    """Alerting: alert state, its history, silences and the notification outbox."""
    db["alerts"].create(
        {
            "id": str,
            "alert": str,
            "labels": str,
            "state": str,
            "severity": str,
            "value": float,
            "active_since": float,
            "fired_at": float,
            "last_true": float,
            "resolved_at": float,
            "summary": str,
            "description": str,
            "notified_severity": str,
        },
        pk="id",
    )
    db["alert_history"].create(
        {
            "id": int,
            "alert_id": str,
            "alert": str,
            "labels": str,
            "at": float,
            "from_state": str,
            "to_state": str,
            "severity": str,
            "value": float,
        },
        pk="id",
    )
    db["silences"].create(
        {
            "id": str,
            "matchers": str,
            "starts_at": float,
            "ends_at": float,
            "created_by": str,
            "comment": str,
            "created_at": float,
        },
        pk="id",
    )
    db["outbox"].create(
        {
            "id": int,
            "notifier": str,
            "payload": str,
            "created_at": float,
            "attempts": int,
            "next_attempt": float,
            "delivered_at": float,
            "last_error": str,
        },
        pk="id",
    )
    db["outbox"].create_index(["notifier", "delivered_at", "next_attempt"])


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2]


class StoreError(Exception):
    pass


class Store:
    """Owns the state database; every method runs on the store's own thread."""

    def __init__(self, path: Path, history: int = 1000) -> None:
        self.path = path
        self.history = history
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridwatch-store")
        self.db: sqlite_utils.Database | None = None
        self._inserts = 0

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        self._pool.submit(self._open).result()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        self.db = sqlite_utils.Database(conn)
        self.migrate()

    @property
    def version(self) -> int:
        assert self.db is not None
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        db = self.db
        assert db is not None
        current = self.version
        if current > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} has schema version {current}, newer than this gridwatch knows "
                f"({len(MIGRATIONS)}): refusing to downgrade"
            )
        for version in range(current, len(MIGRATIONS)):
            with db.conn:
                MIGRATIONS[version](db)
                db.execute(f"PRAGMA user_version = {version + 1}")

    def close(self) -> None:
        def _close() -> None:
            if self.db is not None:
                self.db.conn.close()
                self.db = None

        self._pool.submit(_close).result()
        self._pool.shutdown(wait=True)

    # -- running work on the store thread ---------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` on the store thread and wait (for CLI and start-up)."""
        return self._pool.submit(lambda: fn(self._db(), *args)).result()

    async def acall(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db, *args)`` on the store thread without blocking the event loop."""
        return await asyncio.wrap_future(self._pool.submit(lambda: fn(self._db(), *args)))

    def _db(self) -> sqlite_utils.Database:
        if self.db is None:
            raise StoreError("the state database is closed")
        return self.db

    # -- check run history ------------------------------------------------------------------
    def record_run(
        self,
        db: sqlite_utils.Database,
        check: str,
        started: float,
        duration: float,
        outcome: str,
        error: str | None,
    ) -> None:
        with db.conn:
            db["check_runs"].insert(
                {
                    "check_name": check,
                    "started_at": started,
                    "duration": duration,
                    "outcome": outcome,
                    "error": error,
                }
            )
            self._inserts += 1
            if self._inserts % 100 == 0:  # keep history bounded without paying on every insert
                db.execute(
                    "DELETE FROM check_runs WHERE id IN (SELECT id FROM (SELECT id, "
                    "row_number() OVER (PARTITION BY check_name ORDER BY id DESC) AS n "
                    "FROM check_runs) WHERE n > ?)",
                    [self.history],
                )


def recent_runs(db: sqlite_utils.Database, check: str, limit: int = 20) -> list[dict[str, Any]]:
    return list(
        db.query(
            "SELECT started_at, duration, outcome, error FROM check_runs WHERE check_name = ? ORDER BY id DESC LIMIT ?",
            [check, limit],
        )
    )


class PluginState:
    """A check's access to the state database, for what it keeps between runs.

    ``call(fn)`` runs ``fn(db)`` on the store thread (checks run on worker threads, and the
    state database has one writer). Name your tables after your check type.
    """

    def __init__(self, store: Store, check: str) -> None:
        self.store = store
        self.check = check

    def call(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        return self.store.call(fn)
