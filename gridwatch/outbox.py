"""The durable notification outbox: queued in the state database, delivered with retries.

A notification is deleted from the queue only after its receiver accepted it, so it survives
a receiver outage and a gridwatch restart (at least once). Retries back off exponentially.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import aiohttp
import sqlite_utils

from gridwatch.alerts import AlertEngine
from gridwatch.api import Notifier
from gridwatch.store import Store

log = logging.getLogger("gridwatch.outbox")

RETRY_MIN, RETRY_MAX = 1.0, 300.0
KEEP_DELIVERED = 7 * 86400  # seconds delivered notifications stay, for `gridwatch alerts --history`


def retry_delay(attempts: int) -> float:
    return min(RETRY_MAX, RETRY_MIN * 2 ** max(0, attempts - 1))


def _due(db: sqlite_utils.Database, notifier: str, now: float, limit: int) -> list[dict[str, Any]]:
    return list(
        db.query(
            "SELECT id, payload, attempts FROM outbox WHERE notifier = ? AND delivered_at IS NULL "
            "AND next_attempt <= ? ORDER BY id LIMIT ?",
            [notifier, now, limit],
        )
    )


def _delivered(db: sqlite_utils.Database, ids: list[int], now: float) -> None:
    with db.conn:
        db.execute(
            f"UPDATE outbox SET delivered_at = ? WHERE id IN ({','.join('?' * len(ids))})",
            [now, *ids],
        )
        db.execute("DELETE FROM outbox WHERE delivered_at < ?", [now - KEEP_DELIVERED])


def _failed(db: sqlite_utils.Database, rows: list[dict[str, Any]], now: float, error: str) -> None:
    with db.conn:
        for r in rows:
            n = r["attempts"] + 1
            db.execute(
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

    def start(self) -> None:
        self._session = aiohttp.ClientSession()
        for name, notifier in self.notifiers.items():
            self._tasks.append(asyncio.create_task(self._deliver_loop(name, notifier), name=f"notify:{name}"))
            if notifier.resend_interval:
                self._tasks.append(asyncio.create_task(self._resend_loop(name, notifier), name=f"resend:{name}"))

    def wake(self) -> None:
        """New notifications were queued: deliver now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _allowance(self, name: str, notifier: Notifier) -> int:
        limit = getattr(notifier.options, "max_per_minute", 0)
        if not limit:
            return 1_000_000
        sent, now = self._sent[name], time.monotonic()
        while sent and now - sent[0] > 60:
            sent.popleft()
        return max(0, limit - len(sent))

    async def deliver(self, name: str) -> int:
        """One delivery attempt for a notifier's due notifications; returns how many were sent."""
        notifier = self.notifiers[name]
        if self._allowance(name, notifier) == 0:
            return 0
        rows = await self.store.acall(_due, name, self.clock(), notifier.options.batch)
        if not rows:
            return 0
        assert self._session is not None
        try:
            await notifier.send(self._session, [json.loads(r["payload"]) for r in rows])
        except Exception as exc:
            self.outcomes[(name, "failure")] += 1
            log.warning(
                "notifier %s: delivery of %d notification(s) failed (attempt %d): %s",
                name,
                len(rows),
                rows[0]["attempts"] + 1,
                exc,
            )
            await self.store.acall(_failed, rows, self.clock(), str(exc))
            return 0
        self._sent[name].append(time.monotonic())
        self.outcomes[(name, "success")] += 1
        await self.store.acall(_delivered, [r["id"] for r in rows], self.clock())
        return len(rows)

    async def _deliver_loop(self, name: str, notifier: Notifier) -> None:
        while True:
            try:
                while await self.deliver(name):
                    pass
                self.queue = await self.store.acall(queue_lengths)
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
            now = self.clock()
            try:
                firing = await self.store.acall(self._firing_for, name, now, 4 * interval)
                assert self._session is not None
                await notifier.resend(self._session, firing)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notifier %s: re-sending firing alerts failed: %s", name, exc)
