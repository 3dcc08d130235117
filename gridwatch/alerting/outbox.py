"""The durable notification outbox: queued in the state database, delivered with retries.

A notification is deleted from the queue only after its receiver accepted it, so it survives
a receiver outage and a gridwatch restart (at least once). Each notifier's queue goes out in
order (a resolution never overtakes its firing); after a failure the queue waits, backing off
exponentially, except that a new notification retries it at once. A delivery whose "delivered"
mark the state database cannot take (a full disk) is remembered in memory, never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import aiohttp
import sqlite_utils

from gridwatch.alerting.engine import AlertEngine
from gridwatch.api import Notifier, NotifierOptions
from gridwatch.pipeline.scheduler import stop_tasks
from gridwatch.store import StateWriteError, Store, transaction

log = logging.getLogger("gridwatch.alerting.outbox")

RETRY_MIN, RETRY_MAX = 1.0, 15.0  # a receiver back after an outage gets its queue within 15 s
KEEP_DELIVERED = 7 * 86400  # seconds delivered notifications stay, for `gridwatch alerts --history`


def retry_delay(attempts: int) -> float:
    return min(RETRY_MAX, RETRY_MIN * 2 ** max(0, attempts - 1))


def _due(
    db: sqlite_utils.Database, notifier: str, now: float, limit: int, skip: list[int], retry: bool
) -> list[dict[str, Any]]:
    """The oldest waiting notifications, if the oldest is due (or ``retry``): the queue goes in order."""
    rows = list(
        db.query(
            "SELECT id, payload, attempts, next_attempt FROM outbox WHERE notifier = ? AND delivered_at IS NULL "
            f"AND id NOT IN ({','.join('?' * len(skip))}) ORDER BY id LIMIT ?",
            [notifier, *skip, limit],
        )
    )
    if rows and rows[0]["next_attempt"] > now and not retry:
        return []
    return rows


def _delivered(db: sqlite_utils.Database, ids: list[int], now: float) -> None:
    with transaction(db) as conn:
        conn.execute(
            f"UPDATE outbox SET delivered_at = ? WHERE id IN ({','.join('?' * len(ids))})",
            [now, *ids],
        )
        conn.execute("DELETE FROM outbox WHERE delivered_at < ?", [now - KEEP_DELIVERED])


def _failed(db: sqlite_utils.Database, rows: list[dict[str, Any]], now: float, error: str) -> None:
    with transaction(db) as conn:
        for r in rows:
            n = r["attempts"] + 1
            conn.execute(
                "UPDATE outbox SET attempts = ?, next_attempt = ?, last_error = ? WHERE id = ?",
                [n, now + retry_delay(n), error[:500], r["id"]],
            )


def queue_lengths(db: sqlite_utils.Database) -> dict[str, int]:
    return dict(
        db.execute("SELECT notifier, count(*) FROM outbox WHERE delivered_at IS NULL GROUP BY notifier").fetchall()
    )


class Outbox:
    def __init__(
        self,
        store: Store,
        engine: AlertEngine,
        notifiers: dict[str, Notifier],
        clock: Callable[[], float] = time.time,
        poll: float = 1.0,
    ) -> None:
        self.store = store
        self.engine = engine
        self.notifiers = notifiers
        self.clock = clock
        self.poll = poll
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.queue: dict[str, int] = {}
        self._sent: dict[str, deque[float]] = {n: deque() for n in notifiers}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._fresh: set[str] = set()  # notifiers with new notifications: retry their queue at once
        self.unrecorded: dict[int, tuple[str, float]] = {}  # id: (notifier, when) delivered, not yet marked

    def adopt(self, other: Outbox) -> None:
        """Take over deliveries another outbox could not mark yet (a reload while the disk is full)."""
        self.unrecorded.update(other.unrecorded)

    def start(self) -> None:
        self._session = aiohttp.ClientSession()
        for name, notifier in self.notifiers.items():
            self._tasks.append(asyncio.create_task(self._deliver_loop(name, notifier), name=f"notify:{name}"))
            if notifier.resend_interval:
                self._tasks.append(asyncio.create_task(self._resend_loop(name, notifier), name=f"resend:{name}"))

    def wake(self, fresh: set[str] | frozenset[str] = frozenset()) -> None:
        """Deliver now rather than at the next poll; ``fresh`` notifiers got new notifications,
        which retry a queue waiting after a failure at once."""
        self._fresh |= fresh
        self._wake.set()

    async def stop(self) -> None:
        await stop_tasks(self._tasks)
        if self._session is not None:
            await self._session.close()

    def _allowance(self, name: str, notifier: Notifier) -> int:
        limit = notifier.options.max_per_minute if isinstance(notifier.options, NotifierOptions) else 0
        if not limit:
            return 1_000_000
        sent, now = self._sent[name], time.monotonic()
        while sent and now - sent[0] > 60:
            sent.popleft()
        return max(0, limit - len(sent))

    async def _record_delivered(self) -> None:
        """Mark deliveries the state database could not take before; raises StateWriteError."""
        if self.unrecorded:
            marks = dict(self.unrecorded)
            when = max(t for _, t in marks.values())
            await self.store.awrite("delivered notifications", _delivered, list(marks), when)
            for i in marks:
                self.unrecorded.pop(i, None)

    async def deliver(self, name: str) -> int:
        """One delivery attempt for a notifier's due notifications; returns how many were sent."""
        notifier = self.notifiers[name]
        if self._allowance(name, notifier) == 0:
            return 0
        with contextlib.suppress(StateWriteError):  # still remembered in memory: not sent again
            await self._record_delivered()
        retry = name in self._fresh
        self._fresh.discard(name)
        skip = list(self.unrecorded)
        rows = await self.store.acall(_due, name, self.clock(), notifier.options.batch, skip, retry)
        if not rows:
            return 0
        assert self._session is not None
        try:
            await notifier.send(self._session, [json.loads(r["payload"]) for r in rows])
        except Exception as exc:
            self.outcomes[(name, "failure")] += 1
            attempt = rows[0]["attempts"] + 1
            log.log(
                logging.WARNING if attempt & (attempt - 1) == 0 else logging.DEBUG,  # 1, 2, 4, 8...: no flood
                "notifier %s: delivery of %d notification(s) failed (attempt %d): %s",
                name,
                len(rows),
                attempt,
                exc,
            )
            with contextlib.suppress(StateWriteError):  # then the queue is retried at the next poll
                await self.store.awrite("a failed delivery", _failed, rows, self.clock(), str(exc))
            return 0
        self._sent[name].append(time.monotonic())
        self.outcomes[(name, "success")] += 1
        now = self.clock()
        self.unrecorded.update((r["id"], (name, now)) for r in rows)
        self._fresh.add(name)  # the receiver takes deliveries again: the rest of its queue goes now
        with contextlib.suppress(StateWriteError):  # else remembered in memory, marked later
            await self._record_delivered()
        return len(rows)

    async def _deliver_loop(self, name: str, notifier: Notifier) -> None:
        while True:
            try:
                while await self.deliver(name):
                    pass
                queue = Counter(await self.store.acall(queue_lengths))
                queue.subtract(n for n, _ in self.unrecorded.values())  # delivered, only not marked yet
                self.queue = dict(queue)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notifier %s: delivery loop error", name)
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll)
                self._wake.clear()
            except TimeoutError:
                pass

    def _firing_for(self, db: sqlite_utils.Database, name: str, now: float, ends_in: float) -> list[dict[str, Any]]:
        """Announced, unsilenced firing alerts this notifier's route takes (store thread)."""
        route = next((r for r in self.engine.routes if r.notifier == name), None)
        return [
            self.engine.payload(a, now, "firing", ends_in=ends_in)
            for a in self.engine.firing(now)
            if a.notified_severity is not None and route is not None and route.accepts(a.labels, a.severity)
        ]

    async def _resend_loop(self, name: str, notifier: Notifier) -> None:
        interval = notifier.resend_interval or 60.0
        while True:
            await asyncio.sleep(interval)
            if self.queue.get(name):  # the queue goes first, in order: this tick retries it instead
                self.wake({name})
                continue
            now = self.clock()
            try:
                firing = await self.store.acall(self._firing_for, name, now, 4 * interval)
                assert self._session is not None
                await notifier.resend(self._session, firing)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notifier %s: re-sending firing alerts failed: %s", name, exc)
