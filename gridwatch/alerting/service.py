"""Alerting wired for one config: rules → alert engine → outbox → notifiers.

Evaluation runs after every check run (debounced) and on a fixed interval, so ``for`` timers
fire on time even when the checks behind them run rarely. While the state database cannot be
written, evaluation goes on in memory and what it changed is written by the next evaluation
that can (see :meth:`gridwatch.store.Store.awrite`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gridwatch.alerting.engine import AlertEngine, Route
from gridwatch.alerting.outbox import Outbox
from gridwatch.alerting.silences import delete_expired_silences
from gridwatch.api import Environment, Grid, Notifier, NotifierOptions, Sample
from gridwatch.config import Settings
from gridwatch.pipeline.scheduler import stop_tasks
from gridwatch.plugins import PluginHost
from gridwatch.rules import Hit, evaluate
from gridwatch.store import StateWriteError, Store

log = logging.getLogger("gridwatch.alerting.service")
SWEEP_INTERVAL = 60.0  # seconds between deletions of long-expired silences


class Alerting:
    def __init__(
        self,
        settings: Settings,
        host: PluginHost,
        store: Store,
        env: Environment,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.notifiers: dict[str, Notifier] = {}
        routes = []
        for name, spec in settings.notifiers.items():
            cls = host.notifier_type(spec.type)
            assert cls is not None
            opts = spec.options
            assert isinstance(opts, NotifierOptions)  # validated against cls.Options, a NotifierOptions
            self.notifiers[name] = cls(name, opts, env)
            routes.append(Route(name, opts.min_severity, opts.match))
        a = settings.alerting
        self.engine = AlertEngine(routes, a.resolved_retention, a.history, settings.external_url)
        self.outbox = Outbox(store, self.engine, self.notifiers, clock)
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._silences_swept = -math.inf  # when expired silences were last deleted

    async def start(
        self,
        inputs: Callable[[], tuple[list[Sample], dict[str, Grid]] | None],
        previous: Alerting | None = None,
    ) -> None:
        """Evaluate rules on what ``inputs()`` returns; None means "not yet" (checks still to run).

        ``previous`` is the alerting a reload replaces: what it could not write yet carries over.
        """
        if previous is not None and previous.engine.unwritten:
            self.engine.adopt(previous.engine)
        else:
            await self.store.acall(self.engine.load)
        if previous is not None:
            self.outbox.adopt(previous.outbox)
        self.outbox.start()
        self._task = asyncio.create_task(self._loop(inputs), name="alerting")

    def poke(self) -> None:
        """Samples changed: evaluate soon."""
        self._poke.set()

    async def silences_changed(self) -> None:
        """A silence was added or expired outside an evaluation: show it now, notify soon."""
        await self.store.acall(self.engine.reload_silences)
        self.poke()

    async def _loop(self, inputs: Callable[[], tuple[list[Sample], dict[str, Grid]] | None]) -> None:
        while True:
            try:
                got = inputs()
                if got is not None:
                    await self.evaluate(*got, self.clock())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rule evaluation failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.settings.alerting.evaluation_interval)
            self._poke.clear()
            await asyncio.sleep(0.2)  # let a burst of check runs land before evaluating again

    async def evaluate(self, samples: list[Sample], grids: dict[str, Grid], now: float) -> None:
        rules = self.settings.rules
        # tens of thousands of samples against every rule: in a worker, not on the event loop
        hits: list[Hit] = await asyncio.get_running_loop().run_in_executor(
            None, evaluate, rules.values(), samples, grids, self.settings.names
        )
        try:
            fresh = await self.store.awrite("alert state", self.engine.step, now, hits, rules, samples)
        except StateWriteError:
            return  # the engine keeps the changes; the next evaluation writes them
        self.outbox.wake(fresh)
        await self._sweep_silences(now)

    async def _sweep_silences(self, now: float) -> None:
        """Delete the silences expired longer than ``silence_retention`` ago, at most once a
        minute (the first evaluation after a start does it at once)."""
        if now - self._silences_swept < SWEEP_INTERVAL:
            return
        self._silences_swept = now
        with contextlib.suppress(StateWriteError):  # reported by the store; the next sweep retries
            before = now - self.settings.alerting.silence_retention
            if await self.store.awrite("silences", delete_expired_silences, before):
                await self.store.acall(self.engine.reload_silences)

    async def stop(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])
        await self.outbox.stop()

    def views(self) -> list[dict[str, Any]]:
        return self.engine.views(self.clock())

    def metric_families(self) -> Iterator[Metric]:
        alerts = GaugeMetricFamily("gridwatch_alerts", "Alerts by state and severity", labels=["state", "severity"])
        counts = self.engine.tally  # counted once per evaluation, not per scrape
        for state in ("pending", "firing", "resolved"):
            for severity in ("warning", "critical"):
                alerts.add_metric([state, severity], counts.get((state, severity), 0))
        yield alerts
        sent = CounterMetricFamily(
            "gridwatch_notifications", "Notification deliveries by outcome", labels=["notifier", "outcome"]
        )
        queue = GaugeMetricFamily(
            "gridwatch_notification_queue_length", "Notifications waiting in the outbox", labels=["notifier"]
        )
        for name in self.notifiers:
            for outcome in ("success", "failure"):
                sent.add_metric([name, outcome], self.outbox.outcomes.get((name, outcome), 0))
            queue.add_metric([name], self.outbox.queue.get(name, 0))
        yield sent
        yield queue


def stateless_views(settings: Settings, samples: list[Sample], grids: dict[str, Grid], now: float) -> list[dict]:
    """Alerts as one evaluation sees them, without history (``gridwatch once``): a hit whose
    rule has no ``for`` is firing, any other pending."""
    from gridwatch.alerting.alert import Alert, fingerprint

    out = []
    for h in evaluate(settings.rules.values(), samples, grids, settings.names):
        state = "firing" if h.rule.for_ == 0 else "pending"
        a = Alert(
            fingerprint(h.labels),
            h.rule.alert,
            h.labels,
            state,
            h.severity,
            h.value,
            now,
            now,
            h.summary,
            h.description,
        )
        out.append(a.view())
    return out
