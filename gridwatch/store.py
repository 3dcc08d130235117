"""The state database: what must survive a restart, in SQLite through sqlite-utils.

One connection, used from one dedicated thread, so the event loop never waits on disk and
writes never interleave. The schema is versioned; ``MIGRATIONS[i]`` takes version i to i+1.

A write can fail while the daemon runs (the disk is full, the file system went read-only):
writers go through :meth:`Store.awrite`, which says so loudly once (an ERROR log, the
``gridwatch_state_db_*`` metrics, ``/readyz``) and lets the writer keep what it could not
write in memory and try again, instead of crashing or silently losing alert state.

One process owns a state database at a time (:class:`StateLock`): two daemons on one file would
deliver every notification twice. Each write first makes sure the file at the path is still the
one open: a deleted file is written again from the open one, a replaced one refuses writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
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


def _wal(conn: sqlite3.Connection, wait: float = 10.0) -> None:
    """WAL mode. Switching answers "database is locked" at once, without the busy timeout, while
    another process creates the file's tables: try again for up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class StoreError(Exception):
    pass


class StateWriteError(StoreError):
    """A write to the state database failed for a storage fault; the writer keeps its data and retries."""


class StateInUse(StoreError):
    """Another gridwatch process owns the state database (or it went missing under one)."""


class StateFileGone(sqlite3.OperationalError):
    """The file at the state database's path is no longer the one open: a storage fault."""


def lock_path(db_path: Path) -> Path:
    """``.NAME.lock`` beside the database: hidden, so ``rm state.db*`` (or ``rm *``) leaves it."""
    return db_path.with_name(f".{db_path.name}.lock")


class StateLock:
    """An exclusive ``flock`` on :func:`lock_path`, held while a daemon (or ``gridwatch once``) runs,
    as Prometheus locks its data directory. The kernel drops it when the process ends, however it
    ends, so a killed daemon leaves no stale lock; the file holds the owner's pid for the message."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.path = lock_path(db_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            raise StoreError(f"cannot lock the state database {self.db_path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(fd)
            os.close(fd)
            owner = f" (pid {pid})" if pid else ""
            raise StateInUse(
                f"the state database {self.db_path} is in use by another gridwatch process{owner}: "
                "one gridwatch per state database"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def keep(self) -> None:
        """Take the lock again if its file was deleted: a process started later must still find
        this one's lock."""
        if self._fd is None:
            return
        try:
            st = os.stat(self.path)
            held = os.fstat(self._fd)
            if (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino):
                return
        except FileNotFoundError:
            pass
        old, self._fd = self._fd, None
        try:
            self.acquire()
        except (StoreError, OSError) as exc:
            self._fd = old
            log.error("cannot lock the state database again after its lock file went: %s", exc)
            return
        os.close(old)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def owner(db_path: Path) -> int | None:
        """The pid of the process holding the lock, or None when none does (0 when unknown)."""
        try:
            fd = os.open(lock_path(db_path), os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid_in(fd) or 0
        finally:
            os.close(fd)  # (a shared lock taken just now goes with it)
        return None


def _pid_in(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    return None


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
        self._lock: StateLock | None = None
        self._file: tuple[int, int] | None = None  # (device, inode) of the file the connection has open
        self._opened = False  # until close()

    # -- lifecycle -------------------------------------------------------------------------
    def open(self, exclusive: bool = False) -> None:
        """Open (and create or migrate) the database. ``exclusive``: the daemon and ``once``, which
        write alert state and the checks' own: refused while another process holds it. Without,
        (the CLI's silences and alerts, beside a running daemon) a missing file is created only
        when no process holds the lock: one that does lost its file and will write it again."""
        if exclusive:
            lock = StateLock(self.path)
            lock.acquire()
            self._lock = lock
        elif not self.path.exists():
            pid = StateLock.owner(self.path)
            if pid is not None:
                raise StateInUse(
                    f"the state database {self.path} is missing while a gridwatch process"
                    f"{f' (pid {pid})' if pid else ''} runs on it: it writes it again at its next write; "
                    "try again then"
                )
        try:
            self._pool.submit(self._open).result()
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10)
        if self.journal == "WAL":
            _wal(conn)
        else:
            conn.execute(f"PRAGMA journal_mode = {self.journal}")
        conn.execute("PRAGMA synchronous = NORMAL")
        self.db = sqlite_utils.Database(conn)
        st = os.stat(self.path)
        self._file = (st.st_dev, st.st_ino)
        self._opened = True
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
        while current < len(migrations):
            with transaction(db):  # a kill half-way must not leave tables without their version
                current = self.version  # again, under the write lock: another process may have migrated
                if current < len(migrations):
                    migrations[current](db)
                    db.execute(f"PRAGMA user_version = {current + 1}")
                    current += 1

    def close(self) -> None:
        def _close() -> None:
            self._opened = False
            if self.db is not None:
                self.db.conn.close()
                self.db = None

        self._pool.submit(_close).result()
        self._pool.shutdown(wait=True)
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- the file under the connection -----------------------------------------------------
    def _verify_file(self) -> None:
        """Before a write: is the file at the path still the one open? Deleted (``rm``), it is
        written again from the open one, which still holds everything (alert state, outbox,
        silences, history, the checks' tables); replaced by another file (a backup restored under
        the running daemon), writes are refused until a restart rather than go where nobody reads.
        """
        if self._file is None:
            return
        if self._lock is not None:
            self._lock.keep()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._rewrite()
            return
        if (st.st_dev, st.st_ino) != self._file:
            raise StateFileGone(
                f"the file {self.path} was replaced while gridwatch ran: gridwatch keeps its state in memory "
                "and writes nothing there; restart it to use the new file"
            )

    def _rewrite(self) -> None:
        """The open (deleted) database, copied back to its path and opened there."""
        db = self._db()
        tmp = self.path.with_name(self.path.name + ".rewrite")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.unlink(missing_ok=True)
            copy = sqlite3.connect(str(tmp))
            try:
                db.conn.backup(copy)  # what the open file and its WAL hold, consistently
            finally:
                copy.close()
            os.replace(tmp, self.path)
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise StateFileGone(
                f"the file {self.path} was deleted while gridwatch ran and cannot be written again: {exc}"
            ) from None
        db.conn.close()  # its WAL and shared memory were the deleted file's: they go with it
        self.db, self._file = None, None
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(OSError):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        log.error(
            "the state database %s was deleted while gridwatch ran: written again from the open database, nothing lost",
            self.path,
        )
        self._reopen()

    def _reopen(self) -> None:
        """Open the file at the path after :meth:`_rewrite` (again at each write until it opens)."""
        try:
            self._open()
        except (sqlite3.Error, OSError) as exc:
            if self.db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self.db.conn.close()
            self.db = None
            raise StateFileGone(
                f"the state database {self.path} was written again but cannot be opened: {exc}"
            ) from None

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

    def call_write(self, fn: Callable[..., T], *args: Any) -> T:
        """``call`` for a write: on the file at the path, or a :class:`StateFileGone`."""
        return self._pool.submit(self._checked, fn, *args).result()

    def _checked(self, fn: Callable[..., T], *args: Any) -> T:
        if self.db is None and self._opened:  # written again, not opened yet
            self._reopen()
        self._verify_file()
        return fn(self._db(), *args)

    async def awrite(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """``acall`` for a write: a storage fault is reported and raised as StateWriteError."""
        try:
            result = await asyncio.wrap_future(self._pool.submit(self._checked, fn, *args))
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
            return self.store.call_write(fn)
        except sqlite3.Error as exc:  # a full disk fails the check; the operator hears of it once
            if storage_fault(exc):
                self.store.write_failed(f"the state of check {self.check}", exc)
            raise
