"""Digests in the daemon: each made once when due, then delivered with retries, once per period.

Every ``poll`` seconds (and when woken) the service asks, per ``[[digests]]`` entry, which period
is due by the clock (:func:`~gridwatch.digests.periods.latest_due`). A period the ledger does not
have yet is made, once every check has run since the start (so a digest never counts the empty
samples of a fresh start), and recorded with its rendered messages in one transaction; then the
deliveries go out, each claimed for a lease first (see :mod:`gridwatch.digests.ledger`).

Only the latest period of each digest is made: after a week down, the daily digest of yesterday
goes out, not seven stale ones. A period due before the digest was first configured is not owed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import socket
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime

import aiohttp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gridwatch.api import Check, Grid, Notifier, NotifierOptions, Sample
from gridwatch.digests import ledger, render
from gridwatch.digests.content import Inputs, RankingsProvider, build, read_lights
from gridwatch.digests.periods import latest_due
from gridwatch.pipeline.scheduler import stop_tasks
from gridwatch.plugins import PluginHost
from gridwatch.settings import Settings
from gridwatch.store import StateWriteError, Store

log = logging.getLogger("gridwatch.digests")

RETRY_MIN, RETRY_MAX = 1.0, 60.0
LEASE_MARGIN = 5.0  # seconds a claim outlasts the notifier's timeout (a send ends by then)

Sources = Callable[[], tuple[Mapping[str, Grid], Sequence[tuple[Check, Sequence[Sample]]]] | None]
"""What the daemon hands over: the grids and every check with its latest samples, or None
until every check has run once."""


def replica_id(settings: Settings) -> str:
    """Who claims a delivery: the same after a restart (it takes its own claims back at once),
    different for another replica (its own state database, or another machine)."""
    return f"{socket.gethostname()}:{settings.state_path}"


def retry_delay(attempts: int) -> float:
    return min(RETRY_MAX, RETRY_MIN * 2 ** max(0, attempts - 1))


class Digests:
    def __init__(
        self,
        settings: Settings,
        host: PluginHost,
        notifiers: Mapping[str, Notifier],
        state: Store,
        ledger_store: Store,
        clock: Callable[[], datetime],
        rankings: RankingsProvider | None = None,
        poll: float = 1.0,
    ) -> None:
        """``state``: the state database, for the kept daily lights; ``ledger_store``: where digests
        are recorded (the state database, or ``[state] shared_path``)."""
        self.settings = settings
        self.host = host
        self.notifiers = {n: notifiers[n] for d in settings.digests for n in d.notifiers if n in notifiers}
        self.state = state
        self.ledger = ledger_store
        self.clock = clock
        self.rankings = rankings
        self.poll = poll
        self.me = replica_id(settings)
        self.outcomes: Counter[tuple[str, str, str]] = Counter()  # (digest, notifier, outcome)
        self.waiting: dict[str, int] = {}  # digest -> deliveries not yet made
        self._settled: set[tuple[str, str]] = set()  # (digest, period) made, by us or another replica
        self._unrecorded: dict[int, float] = {}  # delivered, the ledger not told yet (a full disk)
        self._wake = asyncio.Event()
        self._round = asyncio.Lock()  # one round at a time: two would both claim as this replica
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, sources: Sources) -> None:
        if not self.settings.digests:
            return
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._loop(sources), name="digests")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])
        if self._session is not None:
            await self._session.close()

    async def _loop(self, sources: Sources) -> None:
        while True:
            try:
                await self.tick(sources)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("digests: a round failed; the next one tries again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)
            self._wake.clear()

    async def tick(self, sources: Sources) -> None:
        """One round: make what is due, then deliver what waits."""
        async with self._round:
            await self._tick(sources)

    async def _tick(self, sources: Sources) -> None:
        # a write the state database refuses is reported by the store; the next round retries it,
        # and what waits is still delivered meanwhile
        with contextlib.suppress(StateWriteError):
            await self._make_due(sources)
        with contextlib.suppress(StateWriteError):
            await self._deliver()
        self.waiting = await self.ledger.acall(ledger.undelivered, list(self.notifiers))

    async def _make_due(self, sources: Sources) -> None:
        tz = self.settings.timezone
        for spec in self.settings.digests:
            now = self.clock().astimezone(tz)
            period = latest_due(spec, now, tz)
            key = (spec.name, period.key)
            if key in self._settled:
                continue
            owed = await self.ledger.awrite(
                "the digests", ledger.owed, spec.name, period.key, period.due.timestamp(), now.timestamp()
            )
            if not owed:
                self._settled.add(key)
                continue
            got = sources()
            if got is None:
                return  # not every check has run since the start: wait for them
            grids, checks = got
            make = functools.partial(
                build, spec, period, self._inputs(grids, checks), now, self.settings.external_url, self.rankings
            )
            digest = await asyncio.get_running_loop().run_in_executor(None, make)
            messages = {
                n: render.message(digest, fmt, self.notifiers[n].digest_bytes)
                for n in spec.notifiers
                if n in self.notifiers and (fmt := self.notifiers[n].digest_format) is not None
            }
            row = {
                "name": spec.name,
                "period": period.key,
                "kind": spec.kind,
                "due_at": period.due.timestamp(),
                "made_by": self.me,
            }
            made = await self.ledger.awrite("a digest", ledger.make, row, messages, now.timestamp())
            self._settled.add(key)
            if made:
                log.info("digest %s for %s made for %s", spec.name, period.key, ", ".join(messages) or "no notifier")

    def _inputs(self, grids: Mapping[str, Grid], checks: Sequence[tuple[Check, Sequence[Sample]]]) -> Inputs:
        hook = self.host.pm.hook.daily_lights

        def lights(ids: Sequence[str], since: date) -> dict[str, list[tuple[date, str]]]:
            return self.state.call(read_lights, hook, ids, since)  # from a worker: waits for the store

        return Inputs(grids, checks, lights)

    async def _record(self) -> None:
        if self._unrecorded:
            marks = dict(self._unrecorded)
            await self.ledger.awrite("delivered digests", ledger.delivered, marks)
            for i in marks:
                self._unrecorded.pop(i, None)

    async def _deliver(self) -> None:
        with contextlib.suppress(StateWriteError):  # still remembered in memory: not sent again
            await self._record()
        now = self.clock().timestamp()
        rows = await self.ledger.acall(ledger.waiting, list(self.notifiers), self.me, now)
        assert self._session is not None
        for r in rows:
            if r["id"] in self._unrecorded:
                continue
            notifier = self.notifiers[r["notifier"]]
            timeout = notifier.options.timeout if isinstance(notifier.options, NotifierOptions) else 10.0
            now = self.clock().timestamp()
            if not await self.ledger.awrite(
                "a digest claim", ledger.claim, r["id"], self.me, now, timeout + LEASE_MARGIN
            ):
                continue  # delivered meanwhile, or another replica is on it
            what = (r["name"], r["notifier"])
            try:
                await notifier.send_digest(self._session, json.loads(r["payload"]))
            except Exception as exc:
                attempt = r["attempts"] + 1
                self.outcomes[(*what, "failure")] += 1
                log.log(
                    logging.WARNING if attempt & (attempt - 1) == 0 else logging.DEBUG,  # 1, 2, 4, 8...: no flood
                    "digest %s for %s: delivery to %s failed (attempt %d): %s",
                    r["name"],
                    r["period"],
                    r["notifier"],
                    attempt,
                    exc,
                )
                later = self.clock().timestamp() + retry_delay(attempt)
                with contextlib.suppress(StateWriteError):
                    await self.ledger.awrite("a failed digest", ledger.failed, r["id"], attempt, later, str(exc))
                continue
            self.outcomes[(*what, "success")] += 1
            self._unrecorded[r["id"]] = self.clock().timestamp()
            log.info("digest %s for %s delivered to %s", r["name"], r["period"], r["notifier"])
            with contextlib.suppress(StateWriteError):
                await self._record()

    def metric_families(self) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            "gridwatch_digest_deliveries", "Digest deliveries by outcome", labels=["digest", "notifier", "outcome"]
        )
        for (digest, notifier, outcome), n in sorted(self.outcomes.items()):
            sent.add_metric([digest, notifier, outcome], n)
        yield sent
        waiting = GaugeMetricFamily(
            "gridwatch_digests_undelivered", "Digest deliveries made and not yet delivered", labels=["digest"]
        )
        for spec in self.settings.digests:
            waiting.add_metric([spec.name], self.waiting.get(spec.name, 0))
        yield waiting
