"""The state database: what must survive a restart, in SQLite through sqlite-utils.

One connection, used from one dedicated thread, so the event loop never waits on disk and
writes never interleave. The schema is versioned; ``MIGRATIONS[i]`` takes version i to i+1.

A write can fail while the daemon runs (the disk is full, the file system went read-only):
writers go through :meth:`Store.awrite`, which says so loudly once (an ERROR log, the
``gridwatch_state_db_*`` metrics, ``/readyz``) and lets the writer keep what it could not
write in memory and try again, instead of crashing or silently losing alert state.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

T = TypeVar("T")

log = logging.getLogger("gridwatch.store")


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite3.Connection]:
    """One atomic write: what the block does is committed whole or not at all, even on SIGKILL.

    ``with db.conn:`` is not enough: sqlite-utils commits each ``insert_all``/``upsert_all`` on its
    own when no transaction is open. Inside this block one is, so they join it (as savepoints).
    """
    conn = db.conn
    if conn.in_transaction:  # a statement left an implicit transaction open: finish it first
        conn.commit()
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        if conn.in_transaction:  # (an old sqlite-utils may have committed it already)
            conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def insert_rows(conn: sqlite3.Connection, table: str, rows: Sequence[Mapping[str, Any]], replace: bool = False) -> None:
    """Insert rows that share their keys (``replace``: by primary key), in plain SQL so they stay
    inside the caller's transaction."""
    if not rows:
        return
    cols = list(rows[0])
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    conn.executemany(
        f"{verb} INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        [[r[c] for c in cols] for r in rows],
    )


def storage_fault(exc: BaseException) -> bool:
    """True for an error of the database file or the disk under it (full, read-only, I/O, locked),
    as opposed to a bug in a statement."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


def _v1(db: sqlite_utils.Database) -> None:
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("check_runs").create(
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
    db.table("check_runs").create_index(["check_name", "id"])


def _v2(db: sqlite_utils.Database) -> None:
    """Alerting: alert state, its history, silences and the notification outbox."""
    db.table("alerts").create(
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
    db.table("alert_history").create(
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
    db.table("silences").create(
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
    db.table("outbox").create(
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
    db.table("outbox").create_index(["notifier", "delivered_at", "next_attempt"])


def _v3(db: sqlite_utils.Database) -> None:
    """Digests (通报): one row per digest and period, made once; one delivery per notifier.

    The same tables make up the shared ledger of ``[state] shared_path`` (:data:`SHARED_MIGRATIONS`).
    """
    db.execute(
        "CREATE TABLE digests (id INTEGER PRIMARY KEY, name TEXT NOT NULL, period TEXT NOT NULL, "
        "kind TEXT NOT NULL, due_at REAL NOT NULL, made_at REAL NOT NULL, made_by TEXT NOT NULL, "
        "UNIQUE (name, period))"
    )
    db.execute(
        "CREATE TABLE digest_deliveries (id INTEGER PRIMARY KEY, "
        "digest_id INTEGER NOT NULL REFERENCES digests (id) ON DELETE CASCADE, notifier TEXT NOT NULL, "
        "payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL, "
        "claimed_by TEXT, claimed_until REAL, delivered_at REAL, last_error TEXT, UNIQUE (digest_id, notifier))"
    )
    db.execute("CREATE INDEX digest_deliveries_waiting ON digest_deliveries (delivered_at, next_attempt)")
    # when a digest was first configured: periods due before it were never owed (a new install
    # does not send last month's digest), those due after it are sent, late if need be
    db.execute("CREATE TABLE digest_watch (name TEXT PRIMARY KEY, since REAL NOT NULL)")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3]
SHARED_MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v3]
"""The schema of a ledger the replicas of a shard share (``[state] shared_path``): digests only."""


class StoreError(Exception):
    pass


class StateWriteError(StoreError):
    """A write to the state database failed for a storage fault; the writer keeps its data and retries."""


class Store:
    """Owns the state database; every method runs on the store's own thread."""

    def __init__(
        self,
        path: Path,
        history: int = 1000,
        *,
        journal: str = "WAL",
        migrations: Sequence[Callable[[sqlite_utils.Database], None]] = MIGRATIONS,
    ) -> None:
        """``journal`` and ``migrations`` differ for a ledger other processes open too (see
        :data:`SHARED_MIGRATIONS`): a rollback journal needs no shared memory between them."""
        self.path = path
        self.history = history
        self.journal = journal
        self.migrations = migrations
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridwatch-store")
        self.db: sqlite_utils.Database | None = None
        self._inserts = 0
        self.write_error: str | None = None  # why the last write failed; None while writes succeed
        self.write_errors = 0  # failed writes since start (gridwatch_state_db_write_errors_total)
        self._runs_unwritten: list[dict[str, Any]] = []  # run history waiting for a writable disk

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        self._pool.submit(self._open).result()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10)
        conn.execute(f"PRAGMA journal_mode = {self.journal}")
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
        current, migrations = self.version, self.migrations
        if current > len(migrations):
            raise StoreError(
                f"{self.path} has schema version {current}, newer than this gridwatch knows "
                f"({len(migrations)}): refusing to downgrade"
            )
        for version in range(current, len(migrations)):
            with transaction(db):  # a kill half-way must not leave tables without their version
                migrations[version](db)
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

    # -- writes that may fail --------------------------------------------------------------
    @property
    def writable(self) -> bool:
        return self.write_error is None

    async def awrite(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """``acall`` for a write: a storage fault is reported and raised as StateWriteError."""
        try:
            result = await self.acall(fn, *args)
        except sqlite3.Error as exc:
            if not storage_fault(exc):
                raise
            self.write_failed(what, exc)
            raise StateWriteError(f"cannot write {what} to the state database: {exc}") from exc
        self.wrote()
        return result

    def write_failed(self, what: str, exc: BaseException) -> None:
        """Count a failed write; the first of an outage is an ERROR, the rest only count."""
        self.write_errors += 1
        if self.write_error is None:
            log.error(
                "cannot write the state database %s (%s): %s; gridwatch keeps what it could not write "
                "in memory and retries",
                self.path,
                what,
                exc,
            )
        self.write_error = str(exc) or type(exc).__name__

    def wrote(self) -> None:
        if self.write_error is not None:
            self.write_error = None
            log.warning("the state database %s is writable again", self.path)

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
        """Append a run; runs a full disk kept from being written go in with it (the latest
        ``history`` of them)."""
        run = {"check_name": check, "started_at": started, "duration": duration, "outcome": outcome, "error": error}
        self._runs_unwritten.append(run)
        del self._runs_unwritten[: -self.history]
        with transaction(db) as conn:
            insert_rows(conn, "check_runs", self._runs_unwritten)
            self._inserts += 1
            if self._inserts % 100 == 0:  # keep history bounded without paying on every insert
                db.execute(
                    "DELETE FROM check_runs WHERE id IN (SELECT id FROM (SELECT id, "
                    "row_number() OVER (PARTITION BY check_name ORDER BY id DESC) AS n "
                    "FROM check_runs) WHERE n > ?)",
                    [self.history],
                )
        self._runs_unwritten.clear()  # only once committed: a commit can fail too


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
        try:
            return self.store.call(fn)
        except sqlite3.Error as exc:  # a full disk fails the check; the operator hears of it once
            if storage_fault(exc):
                self.store.write_failed(f"the state of check {self.check}", exc)
            raise
