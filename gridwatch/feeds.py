"""Following source tables between runs: what lets a check read only what changed.

A :class:`Feed` follows one table: its first read returns every row, later reads only the
rows appended since (the source's cursor), after the same bad-row rules as a full read. A
:class:`Tracker` decides when a check must start again from scratch — the first run, a stale
cursor, a changed grid registry, time going backwards, a source that cannot follow appends,
or the daily resync that picks up edits a source cannot report — so that every run gives
exactly what a full recomputation would.

A source that follows a table's edits too (a changed-since column, :attr:`gridwatch.api.Follow.edits`)
hands an edited row on again, marked :data:`gridwatch.api.ROW_EDITED`: a mutable table takes it
as the row's present version (nothing it keeps is read again to find edits), an append-only
table, whose folded state cannot take a row back, starts again from a full read. A check all of
whose tables are followed so needs no periodic resync.
"""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, time, timedelta, tzinfo
from typing import Any

from gridwatch.api import (
    ROW_EDITED,
    ROW_KEY,
    CheckError,
    GridSet,
    Latest,
    Options,
    Resync,
    RunContext,
    Source,
    SourceUnavailable,
)
from gridwatch.durations import Duration
from gridwatch.rows import clean, parse_ts
from gridwatch.schema import ISO

log = logging.getLogger(__name__)


class Feed:
    """One table of one source, followed between runs; rows come out cleaned.

    A ``mutable`` table's rows may change after they were appended (an incident gets
    closed): the check re-reads the rows it keeps with :meth:`current`, and the feed keeps
    the keys of the rows it turned away, which an edit (or time: a case reported after now)
    may yet make good. A row read with a stage after now read as NULL (a case closed after now)
    reads differently once that time has come: it is cleaned again at every read until then.
    An immutable table's rows wait in :attr:`later` while their time is to come; give such a
    table no optional timestamps (a table whose rows gain times is mutable).
    """

    def __init__(
        self, source: Source, table: str, columns: Sequence[str], id_column: str | None, mutable: bool = False
    ) -> None:
        self.source, self.table, self.columns, self.id_column = source, table, tuple(columns), id_column
        self.mutable = mutable
        self.cursor: Any = None
        self.seen: set[Any] = set()  # ids met so far, unless the source guarantees them unique
        self.later: list[dict[str, Any]] = []  # rows dated after "now": they count once their time comes
        self.masked: set[Any] = set()  # keys of a mutable table's rows handed on with a stage after "now"
        self.refused: set[Any] = set()  # keys of a mutable table's rows turned away
        self.repeats: set[Any] = set()  # keys of a mutable table's rows that repeat an id
        self.appended: set[Any] = set()  # keys of a mutable table's rows read by the latest rows()
        # the hash of a mutable table's rows as they were when last handed on, by key: one read
        # again unchanged is not cleaned again, its key goes to ``unchanged`` instead
        self.handed: dict[Any, int] = {}
        self.unchanged: set[Any] = set()  # keys the latest current() found as they were handed on
        self.edited: list[dict[str, Any]] = []  # a mutable table's rows the latest rows() found edited
        self._raw: dict[Any, int | None] = {}
        self.dedupe: bool | None = None
        self._readers: list[Iterable[dict[str, Any]]] = []  # the source's reads begun since close()

    def reset(self) -> None:
        self.cursor, self.seen, self.later, self.refused, self.repeats = None, set(), [], set(), set()
        self.handed, self.unchanged, self.masked, self.edited = {}, set(), set(), []

    def _reader(self, raw: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        self._readers.append(raw)
        return raw

    def close(self) -> None:
        """End the source's reads the run left half-way (a :class:`Resync`, a bad row, a
        timeout): an abandoned reader keeps its snapshot open — on SQLite a read lock under
        which the platform cannot write — until the last reference to it goes, and a
        traceback kept anywhere (a log record holding the exception) keeps it."""
        readers, self._readers = self._readers, []
        for raw in readers:
            close = getattr(raw, "close", None)
            if close is not None:
                close()

    def follows_edits(self) -> bool:
        """Whether the source hands on the rows edited since the cursor (a changed-since column)."""
        return self.source.follows(self.table).edits

    def rows(self, ctx: RunContext, **rules: Any) -> Iterator[dict[str, Any]]:
        """The rows appended since the last read (all rows after a reset), cleaned by ``rules``
        (the keyword arguments of :func:`gridwatch.rows.clean`) and the source's ``formats``
        and ``codes`` for the table."""
        with self._reading(ctx):
            raw, cursor = self.source.read_since(self.table, self.columns, self.cursor, deadline=ctx.deadline)
            raw = self._reader(raw)
            if self.cursor is not None and self.follows_edits():
                raw = self._edits_aside(raw)
            yield from self._fresh(ctx, raw, rules)
        self.cursor = cursor  # only once every row was taken: a failed run reads them again

    def _edits_aside(self, raw: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows read since the cursor that are new; the edited ones wait for :meth:`current`
        (a mutable table), or start the check again from a full read (an append-only table's
        folded state cannot take a row back). A steady run's rows are few: they are taken whole
        first, so nothing is handed on before a full read turns out to be needed."""
        rows = list(raw)
        self.edited = [r for r in rows if r.get(ROW_EDITED)]
        if self.edited and not self.mutable:
            self.source.rows_read[self.table] += len(rows)
            raise Resync(f"{len(self.edited)} rows of {self.table} read before were edited")
        return [r for r in rows if not r.get(ROW_EDITED)] if self.edited else rows

    @contextmanager
    def _reading(self, ctx: RunContext) -> Iterator[None]:
        """Check the table and columns exist before reading (:meth:`Source.require`); after a
        read that failed, ask again next time, for the schema may have changed under it."""
        self.source.require(self.table, self.columns, deadline=ctx.deadline)
        try:
            yield
        except (CheckError, SourceUnavailable):
            self.source.forget_columns(self.table)
            raise

    def _declared(self) -> dict[str, Any]:
        """The source's ``formats`` and ``codes`` for the table, as :func:`clean` takes them."""
        return {"formats": self.source.time_formats(self.table), "codes": self.source.code_map(self.table)}

    def latest(
        self, ctx: RunContext, by: str, column: str, grids: Mapping[str, Any], split: str | None = None
    ) -> Iterator[tuple[Any, datetime, int]]:
        """What :meth:`rows` would give (timestamp ``column`` required, grids checked against
        ``grids``), folded: ``(by value, latest column, rows)`` per ``by`` value, possibly
        several times for one value. On a full read the source aggregates where it can vouch
        for every row of a value (:meth:`Source.read_latest`): a year of visits arrives as one
        line per household instead of one per visit. Every row counts as read. With ``split``
        the key is the pair ``(by value, split value)``: a grid's patrols told apart by role.

        The column's declared format goes to the source with the request (``Latest.format``),
        and the latest values come back parsed as rows are. A code mapping on one of the
        columns folded (``by``, ``split``, the id, the grid, ``column``) reads the rows
        instead: a value the mapping refuses must refuse its row."""
        return self._fold(ctx, by, column, grids, split, earliest=False)

    def spans(
        self, ctx: RunContext, by: str, column: str, grids: Mapping[str, Any], split: str | None = None
    ) -> Iterator[tuple[Any, datetime, int, datetime]]:
        """:meth:`latest` with each fold's earliest ``column`` last: ``(key, latest, rows,
        earliest)``, for a check that must know where the table's history starts (DOMAIN.md §5)."""
        return self._fold(ctx, by, column, grids, split, earliest=True)

    def _fold(
        self, ctx: RunContext, by: str, column: str, grids: Mapping[str, Any], split: str | None, earliest: bool
    ) -> Iterator[Any]:
        rules: dict[str, Any] = {"timestamps": (column,), "required": (column,), "grids": grids}
        plan = None
        # folding pays on a full read; the few rows appended since a cursor are read as they are
        since = _fixed_offset_since(ctx.now, ctx.tz) if self.cursor is None else None
        fmt = self.source.time_formats(self.table).get(column, ISO)
        folded = {by, column, self.id_column, "grid_id", *([split] if split else [])}
        coded = not set(self.source.code_map(self.table)).isdisjoint(folded)
        asks = {name for name, on in (("split", split), ("earliest", earliest)) if on}
        if (
            self.id_column is not None
            and not self.mutable
            and not self._dedupe()
            and since is not None
            and not coded
            and asks <= self.source.latest_fields
        ):
            until = ctx.now.astimezone(ctx.tz).replace(tzinfo=None)
            want = Latest(
                by, column, self.id_column, "grid_id", sorted(grids), since, until, fmt, split=split, earliest=earliest
            )
            with self._reading(ctx):
                plan = self.source.read_latest(self.table, self.columns, self.cursor, want, deadline=ctx.deadline)

        def folded_rows(rows: Iterable[dict[str, Any]]) -> Iterator[Any]:
            for row in rows:
                key = row.get(by) if split is None else (row.get(by), row.get(split))
                at = row[column]
                yield (key, at, 1, at) if earliest else (key, at, 1)

        if plan is None:
            yield from folded_rows(self.rows(ctx, **rules))
            return
        groups, odd, cursor = plan
        self._reader(odd)
        with self._reading(ctx):
            yield from folded_rows(self._fresh(ctx, odd, rules))
        vouched = sum(g[2] for g in groups)  # the source read them all, and they are good rows
        self.source.rows_read[self.table] += vouched
        ctx.read[self.source.name] += vouched
        for key, value, n, *first in groups:
            at = parse_ts(value, ctx.tz, fmt)
            assert at is not None  # the source vouched for it
            if earliest:
                yield key, at, n, parse_ts(first[0], ctx.tz, fmt)
            else:
                yield key, at, n
        self.cursor = cursor

    def _dedupe(self) -> bool:
        """Must ids be remembered to find repeats (the source does not guarantee them unique)?"""
        if self.dedupe is None:
            self.dedupe = self.id_column is not None and not self.source.unique(self.table, self.id_column)
        return self.dedupe

    def _fresh(self, ctx: RunContext, raw: Iterable[dict[str, Any]], rules: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Rows read since the last read, and those that waited for their time, cleaned."""
        dedupe = self._dedupe()
        waiting, self.later, self.appended = self.later, [], set()
        later = None if self.mutable else self.later  # a mutable row is re-read by key instead
        for rows in (waiting, self._counted(raw)):
            good = clean(
                ctx,
                self.source.name,
                self._watch(rows, first=True),
                id_column=self.id_column,
                seen=self.seen,
                unique=not dedupe,
                later=later,
                masked=self.masked if self.mutable else None,
                **self._declared(),
                **rules,
            )
            yield from self._taken(good)

    def current(
        self, ctx: RunContext, keys: Iterable[Any], *, open_column: str | None = None, **rules: Any
    ) -> Iterator[dict[str, Any]]:
        """The present version of rows read before: those with these :data:`ROW_KEY` values,
        those turned away before, and with ``open_column`` every row still open (a case
        reopened long after it closed). Rows :meth:`rows` has just read, and rows that repeat
        an id, are left out; ``rules`` as for :meth:`rows`.

        From a source that follows the table's edits, the rows :meth:`rows` found edited are
        handed on instead, and only the rows turned away and those handed on with a time after
        now read as NULL are read again by key: every other row of ``keys`` is as it was handed
        on, and goes to :attr:`unchanged` unread (``open_column`` is not needed: a reopened
        case is an edit).

        A row of ``keys`` read as it was handed on before is not handed on again: its key is in
        :attr:`unchanged` afterwards, and the check keeps what it made of it. (It would be
        cleaned the same: its times were all past then, and time only moves on, or the tracker
        starts from scratch. A row handed on with a time after now read as NULL is not kept
        so: it is cleaned again, until that time has come.) "As it was" compares a 64-bit hash
        of the row's values, not the values (a year of incidents would cost tens of megabytes);
        two versions of a row hashing alike is a chance of one in 2**64, and the resync re-reads
        everything anyway."""
        self.source.require(self.table, self.columns, deadline=ctx.deadline)
        done = self.appended | self.repeats
        kept = set(keys)
        self.handed = {k: v for k, v in self.handed.items() if k in kept or k in self.appended}
        self.unchanged = set()
        edits, self.edited = self.edited, []
        # a row turned away by this very run's rows() is not read again here (done): it stays in
        # sight, for an edit may mend it and close it before the next run, and then neither the
        # kept cases nor the open rows bring it back; the others are refused again if still bad
        refused, self.refused = self.refused, {k for k in self.refused if k in self.appended}
        if self.follows_edits():
            # a row held with a time still to come has no fingerprint in handed: read it again
            wanted = {*refused, *(k for k in kept if k not in self.handed)}
            yield from self._again(ctx, edits, done, kept, rules)
        else:
            wanted = {*kept, *refused}
            if open_column is not None:
                raw = self._reader(self.source.read_open(self.table, self.columns, open_column, deadline=ctx.deadline))
                yield from self._again(ctx, raw, done, kept, rules)
        keys = [k for k in wanted if k not in done]
        for i in range(0, len(keys), 10_000):
            raw = self._reader(
                self.source.read_keys(self.table, self.columns, keys[i : i + 10_000], deadline=ctx.deadline)
            )
            yield from self._again(ctx, raw, done, kept, rules)
        ctx.read[self.source.name] += len(self.unchanged)  # read, and good as they were
        if self.follows_edits():
            self.unchanged.update(k for k in kept if k not in done)  # not edited: as they were

    def _again(
        self, ctx: RunContext, raw: Iterable[dict[str, Any]], done: set[Any], kept: set[Any], rules: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        def fresh() -> Iterator[dict[str, Any]]:
            for row in self._counted(raw):
                key = row.get(ROW_KEY)
                if key not in done:
                    done.add(key)
                    if key in kept and key in self.handed and self.handed[key] == _fingerprint(row):
                        self.unchanged.add(key)
                        continue
                    yield row

        # a missing id is refused again; repeats were settled when the row was first read
        rows = self._watch(fresh(), first=False)
        good = clean(
            ctx,
            self.source.name,
            rows,
            id_column=self.id_column,
            unique=True,
            masked=self.masked,
            **self._declared(),
            **rules,
        )
        yield from self._taken(good)

    def refuse(self, row: Mapping[str, Any]) -> None:
        """The check turned this row away after cleaning: keep it in sight, an edit may mend it."""
        if self.mutable:
            self.refused.add(row.get(ROW_KEY))
            self.handed.pop(row.get(ROW_KEY), None)

    def _watch(self, rows: Iterable[dict[str, Any]], first: bool) -> Iterator[dict[str, Any]]:
        # a mutable row is refused until clean() hands it on; a row that repeats an id when
        # first read is out for good
        for row in rows:
            if self.mutable:
                self._raw[row.get(ROW_KEY)] = _fingerprint(row)
                if first:
                    self.appended.add(row.get(ROW_KEY))
                if first and self.dedupe and row.get(self.id_column or "") in self.seen:
                    self.repeats.add(row.get(ROW_KEY))
                else:
                    self.refused.add(row.get(ROW_KEY))
            yield row

    def _taken(self, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in rows:
            if self.mutable:
                key = row.get(ROW_KEY)
                self.refused.discard(key)
                raw = self._raw.pop(key, None)
                if key in self.masked:  # a stage still to come: this reading holds until then only
                    self.masked.discard(key)
                    self.handed.pop(key, None)
                elif key is not None and raw is not None:
                    self.handed[key] = raw
            yield row
        self._raw.clear()  # the rows clean() turned away

    def _counted(self, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        n = 0
        try:
            for row in rows:
                n += 1
                yield row
        finally:
            self.source.rows_read[self.table] += n

    def checkpoint(self) -> dict[str, Any]:
        """What this feed keeps between runs, as plain data, for a checkpoint: the cursor and
        the rows and keys held for later. The hashes of rows handed on are left out: a row's
        hash differs from one process to the next, so after a restart such rows are cleaned
        again, which gives the same rows."""
        return {
            "table": self.table,
            "columns": list(self.columns),
            "id_column": self.id_column,
            "mutable": self.mutable,
            "cursor": self.cursor,
            "seen": self.seen,
            "later": self.later,
            "masked": self.masked,
            "refused": self.refused,
            "repeats": self.repeats,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back what :meth:`checkpoint` gave; ValueError if it was another table's."""
        if (state["table"], tuple(state["columns"]), state["id_column"], state["mutable"]) != (
            self.table,
            self.columns,
            self.id_column,
            self.mutable,
        ):
            raise ValueError(f"the checkpoint follows another table than {self.table}")
        self.cursor, self.seen, self.later = state["cursor"], set(state["seen"]), list(state["later"])
        self.masked, self.refused, self.repeats = set(state["masked"]), set(state["refused"]), set(state["repeats"])
        self.handed, self.unchanged, self.appended = {}, set(), set()


def _settle() -> None:
    """A full read has just built state that lives until the next one (millions of objects for
    a city): freeze it out of the garbage collector's sight, so that the collections of later
    runs do not walk it again and again (at 2,000 grids one such walk cost a steady run more
    than its own work). What an earlier full read froze is unfrozen and collected first, so no
    garbage stays out of sight for longer than a resync period."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _fixed_offset_since(now: datetime, tz: tzinfo) -> datetime | None:
    """The earliest local time (naive) from which ``tz`` has kept its present UTC offset, looked
    for day by day over five years: in that span, local times sort as the instants they name, so
    a source may compare them as text. None when the offset changed within the last day."""
    offset, day = now.utcoffset(), now.astimezone(tz)
    for back in range(1, 5 * 366):
        if (day - timedelta(days=back)).utcoffset() != offset:
            return None if back == 1 else (day - timedelta(days=back - 1)).replace(tzinfo=None)
    return (day - timedelta(days=5 * 366)).replace(tzinfo=None)


def _fingerprint(row: Mapping[str, Any]) -> int | None:
    """A row's values as one hash; None for a value that cannot be hashed (a JSON list)."""
    try:
        return hash(tuple(row.values()))
    except TypeError:
        return None


class Tracker:
    """When a check's kept state is still good, and when it must start from scratch."""

    def __init__(self, resync: float | None, at: time | None = time(3, 0)) -> None:
        self.resync, self.at = resync, at
        self.feeds: list[Feed] = []
        self.fresh = False  # the kept state equals a full read up to the feeds' cursors
        self.grids: frozenset[str] | None = None
        self.last_now = -math.inf
        self.last_full = -math.inf
        self.resynced: str | None = None  # why the latest run started over after all (a Resync), if it did

    def feed(
        self, source: Source, table: str, columns: Sequence[str], id_column: str | None, mutable: bool = False
    ) -> Feed:
        feed = Feed(source, table, columns, id_column, mutable)
        self.feeds.append(feed)
        return feed

    def refresh(
        self, ctx: RunContext, grids: Mapping[str, Any], reset: Callable[[], None], update: Callable[[bool], None]
    ) -> None:
        """Bring the check's state up to ``ctx.now``: ``update(full)`` folds in what the feeds
        return; ``reset()`` first empties the state whenever the run must start from scratch."""
        now = ctx.now.timestamp()
        key = frozenset(grids) | (grids.elsewhere if isinstance(grids, GridSet) else frozenset())
        self.resynced = None
        for attempt in (1, 2):
            full = not self.fresh or key != self.grids or now < self.last_now or self._due(ctx)
            if full:
                reset()
                for feed in self.feeds:
                    feed.reset()
                self.last_full = now
            self.fresh = False  # until this update has gone through
            ctx.partial = not full and ctx.partial is not False  # (a check may follow several trackers)
            try:
                update(full)
            except Resync as exc:
                if attempt == 2:
                    raise
                log.warning("reading everything again, for what was read before no longer holds: %s", exc)
                self.fresh = False
                self.resynced = str(exc) or type(exc).__name__
                continue
            finally:  # before the read again, and before the error goes up with its traceback
                for feed in self.feeds:
                    feed.close()
            break
        self.grids, self.last_now = key, now
        self.fresh = all(feed.cursor is not None for feed in self.feeds)
        if full and self.resync != 0:  # with resync 0 the state lasts one run: nothing to settle
            _settle()

    def _due(self, ctx: RunContext) -> bool:
        """Is a periodic full read due? Every ``resync`` when set; else once a day at ``at`` (local
        time), unless every table is followed with its edits (nothing is left for it to find)."""
        if self.resync is not None:
            return ctx.now.timestamp() - self.last_full >= self.resync
        if self.at is None or all(feed.follows_edits() for feed in self.feeds):
            return False
        local = ctx.now.astimezone(ctx.tz)
        mark = datetime.combine(local.date(), self.at, tzinfo=ctx.tz)
        if mark > local:
            mark = datetime.combine(local.date() - timedelta(days=1), self.at, tzinfo=ctx.tz)
        return self.last_full < mark.timestamp()

    def checkpoint(self) -> dict[str, Any]:
        """What decides the next run and what the feeds keep, as plain data, for a checkpoint
        (:mod:`gridwatch.pipeline.checkpoint`). ``mark`` changes whenever the kept state may
        have: a cursor moved, or a full read started again."""
        feeds = [feed.checkpoint() for feed in self.feeds]
        return {
            "fresh": self.fresh,
            "grids": self.grids,
            "last_now": self.last_now,
            "last_full": self.last_full,
            "feeds": feeds,
            "mark": repr(([f["cursor"] for f in feeds], self.last_full)),
            "resynced": self.resynced,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back what :meth:`checkpoint` gave: the next run goes on from the saved cursors
        (or reads in full, by the same rules as in the process that saved it)."""
        if len(state["feeds"]) != len(self.feeds):
            raise ValueError("the checkpoint follows other tables")
        for feed, saved in zip(self.feeds, state["feeds"], strict=True):
            feed.restore(saved)
        self.fresh, self.grids = bool(state["fresh"]), state["grids"]
        self.last_now, self.last_full = float(state["last_now"]), float(state["last_full"])


class IncrementalOptions(Options):
    """Options of a check that keeps state between runs."""

    resync_at: time = time(3, 0)
    """the local time each day at which to start again from a full read: it picks up the edits a
    source cannot report (a household moved to another grid in place); not needed, and not done,
    where every table the check reads is followed with a changed-since column"""
    resync: Duration | None = None
    """an override of ``resync_at`` (it was the hourly default before): start again from a full
    read this often, whatever the source follows; 0 reads everything on every run"""
