"""Checkpoints: what a check keeps between runs, saved in the state database, so that a restart
(after SIGTERM or SIGKILL) or a reload goes on from the saved cursors instead of a full read.

A check takes part by having a method pair: ``checkpoint()`` returns its kept state as plain
data (dicts, lists, tuples, sets, text, numbers, dates: its feeds' tracker included, under
``"tracker"``, from :meth:`gridwatch.feeds.Tracker.checkpoint`), or None when there is nothing to
keep; ``restore(state)`` takes it back, or raises and leaves the check to read in full. State and
cursors are taken together, in the check's worker, right after a run, so a checkpoint is always a
state some full read up to those cursors would have built.

A checkpoint is written after a run that changed the state (its tracker's ``mark`` moved), at
most once every :data:`EVERY` seconds per check, and at every stop and reload; one row per check,
replaced in one transaction. After a SIGKILL the check goes on from the last one and catches up
from its cursors. It is used only when everything it was made under still holds — the format,
gridwatch's and Python's versions, the check's type and options, its source's and the grid
registry's configuration, the timezone and calendar, and the source's ``schema_token()`` (a
replaced SQLite file) — else it is ignored, said in the log, and the check reads in full. A
cursor the source no longer honours (rows deleted) makes the tracker read in full as it always
did; that too is said in the log.

The body is pickled, but read back only through an unpickler that builds plain data and nothing
else (:class:`_Plain`), after its SHA-256 matched: a damaged or forged row is ignored, never run.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import logging
import pickle
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gridwatch import __version__
from gridwatch.store import Store, storage_fault, transaction

if TYPE_CHECKING:
    from gridwatch.config import Settings
    from gridwatch.pipeline.runtime import Runner

log = logging.getLogger("gridwatch.pipeline.checkpoint")

FORMAT = 2  # the layout of a row; a change makes older rows be ignored
EVERY = 300.0  # seconds: at most one checkpoint per check in this time while it runs
CHUNK = 50_000  # entries of a big dict or set pickled at a time, so the event loop gets its turns
TABLE = "gridwatch_checkpoints"

_PLAIN = {
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("datetime", "time"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("zoneinfo", "ZoneInfo"),  # by key, from the system's time zone database (see _Pickler)
    ("decimal", "Decimal"),
}


class _Pickler(pickle.Pickler):
    """Pickles a time zone as the call ``ZoneInfo(key)``: its own way goes through ``getattr``,
    which :class:`_Plain` must not call."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is ZoneInfo:
            if obj.key is None:
                raise pickle.PicklingError("a time zone read from a file has no key")
            return ZoneInfo, (obj.key,)
        return NotImplemented


def _dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


class _Plain(pickle.Unpickler):
    """An unpickler of plain data: any other class or function in the stream is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PLAIN:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


def encode(state: Mapping[str, Any]) -> bytes:
    """The state's pickle, with every big dict or set — at the top, or in a small record or list
    of records inside it (a tracker's feeds: the ids a feed has seen) — in pieces of
    :data:`CHUNK` entries, each pickled on its own: pickling holds the interpreter lock, and a
    city's households at once would stall the event loop for seconds."""
    return pickle.dumps(_pack(dict(state), 0), pickle.HIGHEST_PROTOCOL)


def _pack(value: Any, depth: int) -> tuple[Any, ...]:
    if isinstance(value, dict | set | frozenset) and len(value) > CHUNK:
        kind = "dict" if isinstance(value, dict) else type(value).__name__
        items = iter(value.items()) if isinstance(value, dict) else iter(value)
        make = dict if kind == "dict" else set
        return ("chunks", kind, [_dumps(make(islice(items, CHUNK))) for _ in range(0, len(value), CHUNK)])
    if depth < 4 and isinstance(value, dict) and len(value) <= 32 and all(type(k) is str for k in value):
        return ("record", {k: _pack(v, depth + 1) for k, v in value.items()})
    if depth < 4 and isinstance(value, list) and len(value) <= 32 and any(isinstance(v, dict) for v in value):
        return ("list", [_pack(v, depth + 1) for v in value])
    return ("whole", _dumps(value))


def decode(body: bytes) -> dict[str, Any]:
    """What :func:`encode` made, as plain data; ``pickle.UnpicklingError`` (or another
    ``Exception``) for anything else."""
    state = _unpack(_load(body))
    if not isinstance(state, dict):
        raise pickle.UnpicklingError("not a checkpoint")
    return state


def _unpack(part: Any) -> Any:
    tag = part[0]
    if tag == "whole":
        return _load(part[1])
    if tag == "chunks":
        whole: dict[Any, Any] | set[Any] = {} if part[1] == "dict" else set()
        for piece in part[2]:
            whole.update(_load(piece))
        return frozenset(whole) if part[1] == "frozenset" else whole
    if tag == "record":
        return {k: _unpack(v) for k, v in part[1].items()}
    if tag == "list":
        return [_unpack(v) for v in part[1]]
    raise pickle.UnpicklingError("not a checkpoint")


def _load(data: bytes) -> Any:
    return _Plain(io.BytesIO(data)).load()


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()


def _dump(model: Any) -> Any:
    return model.model_dump_json() if hasattr(model, "model_dump_json") else repr(model)


class Checkpoints:
    """Saves and restores the checks of one runtime on its state database."""

    def __init__(self, store: Store, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._saved: dict[str, tuple[str | None, float]] = {}  # check -> (mark saved, when)
        self._restored: dict[str, dict[str, Any]] = {}  # check -> its tracker as restored, until its first run
        self._lock = threading.Lock()  # a stop's save and a worker's save of one check: one after the other
        self.closed = False  # the runtime was replaced (a reload): a run it left behind saves nothing

    # -- what a checkpoint was made under ------------------------------------------------------
    def header(self, runner: Runner) -> dict[str, Any]:
        s, spec = self.settings, runner.spec
        source = s.sources.get(spec.source or "")
        registry = s.sources.get(s.grids_source or "")
        try:
            schema = repr(runner.source.schema_token()) if runner.source is not None else None
        except Exception:  # a source that cannot tell: the cursors decide
            schema = None
        return {
            "format": FORMAT,
            "gridwatch": __version__,
            "python": list(sys.version_info[:2]),
            "check": _digest(spec.type, spec.source, _dump(spec.options)),
            "source": _digest(source.type, _dump(source.options)) if source is not None else None,
            "registry": _digest(s.grids_source, s.shard, s.shard_by, registry and _dump(registry.options)),
            "settings": _digest(str(s.timezone), s.future_tolerance, s.holidays, s.workdays),
            "schema": schema,
        }

    @staticmethod
    def _mismatch(saved: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
        """Why a checkpoint made under ``saved`` does not apply now, in plain words; None if it does."""
        if any(saved.get(k) != now[k] for k in ("format", "gridwatch", "python")):
            return "it was saved by another version of gridwatch"
        if saved.get("check") != now["check"]:
            return "the check's configuration changed since"
        if saved.get("source") != now["source"]:
            return "the source's configuration changed since"
        if saved.get("registry") != now["registry"] or saved.get("settings") != now["settings"]:
            return "the grid registry, timezone or calendar configuration changed since"
        if saved.get("schema") != now["schema"]:
            return "the source's database was replaced since (another file)"
        return None

    # -- restoring ------------------------------------------------------------------------------
    def restore(self, runners: Iterable[Runner]) -> int:
        """Restore every check that takes part from its checkpoint; the number restored."""
        restored = 0
        for runner in runners:
            if hasattr(runner.check, "restore") and hasattr(runner.check, "checkpoint"):
                restored += self._restore(runner)
        if restored:
            gc.collect()  # as after a full read (gridwatch.feeds): the state lives long, keep it
            gc.freeze()  # out of the collector's walks
        return restored

    def _restore(self, runner: Runner) -> bool:
        name = runner.spec.name
        try:
            row = self.store.call(_read, name)
        except sqlite3.Error as exc:
            log.warning("check %s: cannot read its saved state (%s); its tables are read in full", name, exc)
            return False
        if row is None:
            return False
        header_text, body = row
        try:
            header = json.loads(header_text)
            why = self._mismatch(header, self.header(runner))
        except (ValueError, TypeError, AttributeError):
            why = "it is damaged"
        if why is None and hashlib.sha256(body).hexdigest() != header.get("sha256"):
            why = "it is damaged"
        if why is not None:
            log.warning("check %s: its saved state is not used: %s; its tables are read in full", name, why)
            return False
        try:
            state = decode(body)
            runner.check.restore(state)  # type: ignore[attr-defined]
        except Exception as exc:
            log.warning(
                "check %s: its saved state cannot be read (%s); its tables are read in full",
                name,
                type(exc).__name__,
            )
            return False
        self._saved[name] = (state.get("tracker", {}).get("mark"), self.clock())
        self._restored[name] = state.get("tracker", {})
        runner.restored = True
        log.info("check %s: going on from its saved state", name)
        return True

    # -- saving ---------------------------------------------------------------------------------
    def after_run(self, runner: Runner) -> None:
        """In the check's worker, right after a run: say how a restored check's first run went,
        and save a checkpoint if the state changed and the last one is :data:`EVERY` old."""
        try:
            self._after_run(runner)
        except Exception:  # a checkpoint is an optimisation: it never fails a run
            log.warning("check %s: cannot save its state", runner.spec.name, exc_info=True)

    def _after_run(self, runner: Runner) -> None:
        name = runner.spec.name
        take = getattr(runner.check, "checkpoint", None)
        if take is None or not hasattr(runner.check, "restore"):
            return
        before = self._restored.pop(name, None)
        last = self._saved.get(name)
        if before is None and last is not None and self.clock() - last[1] < EVERY:
            return  # not due: the state is not even looked at (a steady run pays nothing)
        state = take()
        tracker = state.get("tracker", {}) if state else {}
        if before is not None and tracker and tracker.get("last_full") != before.get("last_full"):
            if tracker.get("resynced"):
                why = f"the saved position no longer applies ({tracker['resynced']})"
            elif tracker.get("grids") != before.get("grids"):
                why = "the grid registry changed since"
            elif tracker.get("last_full", 0) - before.get("last_full", 0) >= getattr(runner.spec.options, "resync", 0):
                why = "its periodic full read was due"
            else:
                why = "the tables it reads changed shape (a column or table came or went)"
            level = logging.INFO if why == "its periodic full read was due" else logging.WARNING
            log.log(level, "check %s: its tables are read in full although it had a saved state: %s", name, why)
        self._save(runner, state, force=False)

    def save_all(self, runners: Iterable[Runner]) -> None:
        """Save every check whose state changed since its last checkpoint and is not running (at a
        stop or reload, after the scheduler stopped)."""
        for runner in runners:
            if runner.busy is not None and not runner.busy.done():
                continue  # cancelled mid-run: its state is half-way; the last checkpoint stands
            take = getattr(runner.check, "checkpoint", None)
            if take is None or not hasattr(runner.check, "restore"):
                continue
            try:
                self._save(runner, take(), force=True)
            except Exception:
                log.warning("check %s: cannot save its state", runner.spec.name, exc_info=True)

    def _save(self, runner: Runner, state: dict[str, Any] | None, force: bool) -> None:
        name = runner.spec.name
        tracker = state.get("tracker", {}) if state else {}
        if state is None or not tracker.get("fresh", True):
            return  # nothing kept yet, or a run failed half-way: the last checkpoint stands
        mark = tracker.get("mark")
        with self._lock:
            if self.closed:
                return  # the new runtime's checks own the row now
            last = self._saved.get(name)
            if last is not None and mark is not None and last[0] == mark:
                return  # unchanged since saved
            if last is not None and not force and self.clock() - last[1] < EVERY:
                return
            header = self.header(runner)
            body = encode(state)
            header["sha256"] = hashlib.sha256(body).hexdigest()
            try:
                self.store.call_write(_write, name, json.dumps(header), body)
            except sqlite3.Error as exc:
                if not storage_fault(exc):
                    raise
                self.store.write_failed(f"the saved state of check {name}", exc)
                return
            self._saved[name] = (mark, self.clock())


def _table(db: Any) -> None:
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (check_name TEXT PRIMARY KEY, header TEXT NOT NULL, "
        "body BLOB NOT NULL, saved_at REAL NOT NULL)"
    )


def _read(db: Any, name: str) -> tuple[str, bytes] | None:
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [TABLE]).fetchone() is None:
        return None
    row = db.execute(f"SELECT header, body FROM {TABLE} WHERE check_name = ?", [name]).fetchone()
    return None if row is None else (row[0], bytes(row[1]))


def _write(db: Any, name: str, header: str, body: bytes) -> None:
    with transaction(db) as conn:
        _table(conn)
        conn.execute(
            f"INSERT OR REPLACE INTO {TABLE} (check_name, header, body, saved_at) VALUES (?, ?, ?, ?)",
            [name, header, body, time.time()],
        )
