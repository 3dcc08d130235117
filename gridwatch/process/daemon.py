"""Wiring: config → runtime → scheduler → web; signals, reload and shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.core import Metric

from gridwatch import __version__, config
from gridwatch.alerting.service import Alerting
from gridwatch.api import Check, Grid, Sample
from gridwatch.assessment import rollup, scorecard
from gridwatch.config import ConfigErrors, Settings
from gridwatch.digests.content import Ranked, Ranking
from gridwatch.digests.periods import Period as DigestPeriod
from gridwatch.digests.service import Digests
from gridwatch.pipeline.grids import EMPTY
from gridwatch.pipeline.results import Results
from gridwatch.pipeline.runtime import BuildError, Outcome, Runner, Runtime, assemble
from gridwatch.pipeline.scheduler import Scheduler
from gridwatch.plugins import PluginHost
from gridwatch.process import logs, systemd
from gridwatch.process.looplag import LoopLagMonitor
from gridwatch.store import SHARED_MIGRATIONS, StateWriteError, Store
from gridwatch.web.app import make_app, server_options, server_tls
from gridwatch.web.readmodel import ReadModel
from gridwatch.web.selfmetrics import (
    GridwatchCollector,
    calendar_families,
    loop_lag_families,
    registry,
    rows_read_families,
    state_db_families,
)
from gridwatch.web.server import Gate, GatedSite, descriptors
from gridwatch.web.views import Inputs, Pages

log = logging.getLogger("gridwatch.process.daemon")

SHUTDOWN_GRACE = 5.0  # seconds in-flight runs get to finish on SIGTERM before being cancelled


class Daemon:
    def __init__(
        self, config_path: Path, settings: Settings, host: PluginHost, clock: Callable[[], datetime] | None = None
    ) -> None:
        """``settings`` and ``host`` as :func:`gridwatch.config.load` made them from ``config_path``
        (read again on reload)."""
        self.config_path = config_path
        self.clock = clock or (lambda: datetime.now(UTC))
        self.settings, self.host = settings, host
        self.results = Results()
        self.collector = GridwatchCollector(lambda: self.results, __version__)
        self.collector.extra.append(self._live_families)
        self.collector.extra.append(lambda: state_db_families(self.store))
        self.loop_lag = LoopLagMonitor()
        self.collector.extra.append(lambda: loop_lag_families(self.loop_lag))
        self.collector.extra.append(lambda: self.digests.metric_families() if self.digests is not None else iter(()))
        self.registry = registry(self.collector)
        self.web_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gridwatch-web")
        self.pages = Pages(
            Inputs(
                checks=lambda: list(self.results.checks.values()),
                grids=lambda: self.runtime.registry.cached() if self.runtime and self.runtime.registry else EMPTY,
                rules=lambda: self.settings.rules,
                lit=lambda: self.alerting.engine.lit if self.alerting is not None else (),
            ),
            self.web_pool,
        )
        self.started_at = datetime.now(self.settings.timezone)
        self.store = Store(self.settings.state_path, self.settings.history)
        self.runtime: Runtime | None = None
        self.scheduler: Scheduler | None = None
        self.alerting: Alerting | None = None
        self.digests: Digests | None = None
        self.shared: Store | None = None  # [state] shared_path: the digest ledger the replicas share
        self.view: ReadModel | None = None  # what the web layer reads; replaced whole on reload
        self._web: web.AppRunner | None = None
        self.gate: Gate | None = None  # the open connections (made in start)
        self._tls: ssl.SSLContext | None = None
        self._background: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._ran = asyncio.Event()  # a check run ended: the pages may have changed
        self._reload_lock = asyncio.Lock()  # one reload at a time (SIGHUP and the API may overlap)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._background.append(self.loop_lag.start())  # from the start: start-up work blocks the loop too
        await loop.run_in_executor(None, lambda: self.store.open(exclusive=True))  # one daemon per database
        self.runtime, _ = assemble(self.settings, self.host, self.store, loop, self.results, clock=self._wall)
        await loop.run_in_executor(None, self.runtime.resume)
        self._look_around(self.runtime, grids=True)
        self.alerting = self._alerting(self.settings, self.runtime)
        await self.alerting.start(self._rule_inputs)
        if self.settings.shared_path is not None:
            self.shared = Store(self.settings.shared_path, journal="DELETE", migrations=SHARED_MIGRATIONS)
            await loop.run_in_executor(None, self.shared.open)
        self.digests = self._digests(self.settings, self.alerting)
        await self.digests.start(self._digest_sources)
        self.view = self._view()
        self._call_hook("startup")
        self._web = web.AppRunner(
            make_app(self._read), access_log=None, handle_signals=False, **server_options(self.settings)
        )
        await self._web.setup()
        self._tls = server_tls(self.settings)
        assert self._web.server is not None
        self.gate = Gate(self._web.server, descriptors(self.settings.max_connections), self.settings.client_timeout)
        site = GatedSite(
            self._web, self.settings.host, self.settings.port, self.gate, reuse_address=True, ssl_context=self._tls
        )
        await site.start()
        self._background.append(asyncio.create_task(self.gate.sweeping(), name="connections"))
        log.info(
            "gridwatch %s listening on %s://%s:%d with %d check(s)",
            __version__,
            "https" if self._tls else "http",
            self.settings.host,
            self.settings.port,
            len(self.runtime.runners),
        )
        self._start_scheduler()
        self._background.append(asyncio.create_task(self._announce_ready(), name="ready"))
        self._background.append(asyncio.create_task(self.pages.keep_warm(self._ran), name="pages"))
        interval = systemd.watchdog_interval()
        if interval:
            self._background.append(asyncio.create_task(systemd.watchdog(interval), name="watchdog"))

    def _look_around(self, runtime: Runtime, grids: bool = False) -> None:
        """Ping the sources (and load the grids) in the background: a source that hangs must not
        hold up start-up or a reload, nor the checks of the other sources."""

        def work() -> None:
            runtime.ping_sources(self.results)
            if grids:
                runtime.load_grids(self.clock(), self.results)

        async def look() -> None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, work)
            except Exception:
                log.exception("could not look at the sources")

        def forget(task: asyncio.Task[None]) -> None:  # one per reload: do not keep them all
            if task in self._background:
                self._background.remove(task)

        task = asyncio.create_task(look(), name="sources")
        self._background.append(task)
        task.add_done_callback(forget)

    async def _announce_ready(self) -> None:
        """READY=1 to systemd once the config is loaded and every check has run once."""
        while self._waiting():
            await asyncio.sleep(0.1)
        systemd.notify(f"READY=1\nSTATUS=watching {len(self.results.checks)} check(s)")
        log.info("ready: every check has run once")

    def _wall(self) -> float:
        """The daemon's clock in epoch seconds: what alerting and the checks' runs take for now."""
        return self.clock().timestamp()

    def _alerting(self, settings: Settings, runtime: Runtime) -> Alerting:
        return Alerting(settings, self.host, self.store, runtime.env, clock=self._wall)

    def _digests(self, settings: Settings, alerting: Alerting) -> Digests:
        return Digests(
            settings,
            self.host,
            alerting.notifiers,
            self.store,
            self.shared or self.store,
            self.clock,
            rankings=self._rankings,
        )

    def _rankings(self, period: DigestPeriod, grids: Mapping[str, Grid]) -> list[Ranking]:
        """The period's scorecard as a digest shows it: the streets by their grids' mean score, and
        the grids of each street (called from a worker while a digest is made). A daily digest has
        none: the rankings are the week's and the month's (DOMAIN.md §7)."""
        view = self.view
        if view is None or period.kind == "daily":
            return []
        every = list(view.grids().values())
        assessed_period = scorecard.Period(period.key, period.start, period.end)
        hook = self.host.pm.hook.daily_lights
        today = self.clock().astimezone(self.settings.timezone).date()
        days = self.store.call(lambda db: scorecard.light_days(db, hook, every, assessed_period, today))
        samples, ratios, _ = view.figures()
        items = self.settings.assessment
        assessed = scorecard.assess(every, items, days, scorecard.figures(samples, items, ratios))
        rows = [r for r in assessed if r["grid"] in grids]
        streets: dict[str, list[float]] = {}
        for r in rows:
            streets.setdefault(r["street"], []).append(r["score"])
        means = {street: sum(v) / len(v) for street, v in streets.items()}
        street_rank = {s: r or 0 for s, r in rollup.rank(means).items()}
        order = sorted(means, key=lambda s: street_rank[s])
        out = [Ranking("街道得分排名", [Ranked(street_rank[s], s, round(means[s], 1), street=s) for s in order])]
        for street in order:
            mine = sorted((r for r in rows if r["street"] == street), key=lambda r: r["rank"]["street"] or 0)
            entries = [
                Ranked(r["rank"]["street"] or 0, r["name"], r["score"], street=street, grid=r["grid"]) for r in mine
            ]
            out.append(Ranking(f"{street}网格得分排名", entries))
        return out

    def _digest_sources(self) -> tuple[dict[str, Grid], list[tuple[Check, list[Sample]]]] | None:
        """The grids and each check with its latest samples, for a digest; None until every check
        has run once (a digest made on the empty samples of a fresh start would count nothing)."""
        runtime = self.runtime
        if self._waiting() or runtime is None:
            return None
        grids = runtime.registry.cached() if runtime.registry is not None else {}
        return grids, [(r.check, r.state.samples) for r in runtime.runners.values()]

    def _rule_inputs(self) -> tuple[list[Sample], dict[str, Grid]] | None:
        """Samples and grids for the rules; None until every check has run once (or kept its
        samples through a reload) and the grid registry has been read (or kept), lest samples or
        grids not read yet look like cleared conditions (resolving firing alerts only to fire them
        again, and restarting ``for`` timers)."""
        runtime = self.runtime
        if self._waiting() or runtime is None or not runtime.grids_settled():
            return None
        grids = runtime.registry.cached() if runtime.registry is not None else {}
        return self.results.all_samples(), grids

    def _start_scheduler(self) -> None:
        assert self.runtime is not None
        self.scheduler = Scheduler(self.runtime, self.run_check)
        self.scheduler.start()

    async def run_check(self, runner: Runner, at: float | None = None) -> Outcome:
        assert self.runtime is not None
        outcome = await self.runtime.run(runner, self.clock(), self.results, at)
        if outcome.outcome != "skipped":
            try:
                await self.store.awrite(
                    "check run history",
                    self.store.record_run,
                    runner.spec.name,
                    runner.state.last_run.timestamp() if runner.state.last_run else 0.0,
                    outcome.duration,
                    outcome.outcome,
                    outcome.error,
                )
            except StateWriteError:
                pass  # reported by the store; the run is kept and written with the next one
            except Exception:
                log.exception("could not record the run of %s in the state database", runner.spec.name)
            if self.alerting is not None:
                self.alerting.poke()
            self._ran.set()
        return outcome

    async def reload(self) -> bool:
        """Apply a changed config; an invalid one leaves the running one untouched."""
        async with self._reload_lock:  # SIGHUPs and API calls in a burst: one after the other
            return await self._reload()

    async def _reload(self) -> bool:
        loop = asyncio.get_running_loop()
        try:
            settings, _ = config.load(self.config_path, host=self.host)
            runtime = Runtime(settings, self.host, loop, self.store, clock=self._wall)
            alerting = self._alerting(settings, runtime)
        except (ConfigErrors, BuildError) as exc:
            for line in str(exc).splitlines():
                log.error("reload rejected: %s", line)
            self.results.reload_ok = False
            return False
        if (settings.host, settings.port, settings.state_path, settings.tls_cert is None, settings.client_timeout) != (
            self.settings.host,
            self.settings.port,
            self.settings.state_path,
            self.settings.tls_cert is None,
            self.settings.client_timeout,
        ) or settings.shared_path != self.settings.shared_path:
            log.warning(
                "server.listen, tls on/off, client_timeout, state.path and state.shared_path changes take effect "
                "on restart"
            )
        if self.gate is not None:
            self.gate.limit = descriptors(settings.max_connections)
        if self._tls is not None and settings.tls_cert is not None and settings.tls_key is not None:
            try:  # a renewed certificate: new connections get it, open ones keep theirs
                self._tls.load_cert_chain(settings.tls_cert, settings.tls_key, password=lambda: b"")
            except (ssl.SSLError, OSError) as exc:
                log.error("reload: the TLS certificate could not be loaded, the old one stays: %s", exc)
        assert self.scheduler is not None and self.runtime is not None
        systemd.notify("RELOADING=1")
        await self.scheduler.stop(SHUTDOWN_GRACE)
        if self.digests is not None:
            await self.digests.stop()
        if self.alerting is not None:
            await self.alerting.stop()
        old, self.runtime, self.settings = self.runtime, runtime, settings
        await loop.run_in_executor(None, old.save_state)  # the new checks go on from the old ones' state
        await loop.run_in_executor(None, runtime.resume)
        for name, runner in runtime.runners.items():  # a run cancelled at reload still holds its worker:
            was = old.runners.get(name)  # the new check waits for it rather than run beside it
            if was is not None and was.busy is not None and not was.busy.done():
                runner.busy = was.busy
        self.results.replace(*runtime.states())
        runtime.keep_grids(old)
        old.close()
        previous, self.alerting = self.alerting, alerting
        await alerting.start(self._rule_inputs, previous)
        self.digests = self._digests(settings, alerting)  # shared_path changes take effect on restart
        await self.digests.start(self._digest_sources)
        self.view = self._view()
        self._start_scheduler()
        self._look_around(runtime, grids=True)  # a new registry is read now, a kept one when due
        self.results.reload_ok = True
        systemd.notify("READY=1")
        logs.use_timezone(settings.timezone)  # the text log's times follow a changed timezone
        log.info("config reloaded: %d check(s)", len(runtime.runners))
        return True

    async def stop(self) -> None:
        systemd.notify("STOPPING=1")
        for task in self._background:
            task.cancel()
        if self.scheduler is not None:
            await self.scheduler.stop(SHUTDOWN_GRACE)
        if self.digests is not None:
            await self.digests.stop()
        if self.alerting is not None:
            await self.alerting.stop()
            if self.alerting.engine.unwritten:
                log.error("stopping while the state database cannot be written: the latest alert changes are lost")
        if self.runtime is not None:  # the next start goes on from here (after the alerts' last write)
            await asyncio.get_running_loop().run_in_executor(None, self.runtime.save_state)
        self._call_hook("shutdown")
        if self._web is not None:
            await self._web.cleanup()
        if self.runtime is not None:
            self.runtime.close()
        if self.shared is not None:
            self.shared.close()
        self.store.close()
        self.web_pool.shutdown(wait=False, cancel_futures=True)
        log.info("gridwatch stopped")

    def _call_hook(self, hook: str) -> None:
        for plugin, result in self.host.call(hook, daemon=self):
            if isinstance(result, Exception):
                log.error("plugin %s failed in %s: %r", plugin, hook, result)

    async def serve(self) -> None:
        """Run until SIGTERM or SIGINT; SIGHUP reloads the config."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        reloads: set[asyncio.Task[Any]] = set()

        def on_hup() -> None:
            task = loop.create_task(self.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        async with self._reload_lock:  # a SIGHUP during start-up reloads once start-up is done
            await self.start()
        try:
            await self._stop.wait()
        finally:
            log.info("stopping")
            for task in reloads:
                task.cancel()
            await self.stop()

    # -- what the web layer reads --------------------------------------------------------------
    def _live_families(self) -> Iterator[Metric]:
        """The few families rendered on every scrape; the grids' are in :attr:`pages`."""
        if self.runtime is not None:
            yield from calendar_families(self.runtime.calendar)
            yield from rows_read_families(self.runtime.sources)
        if self.alerting is not None:
            yield from self.alerting.metric_families()

    def _waiting(self) -> list[str]:
        """What has not happened yet since start: the config, each check's first run."""
        return ["config"] if self.view is None else self.view.waiting()

    def _view(self) -> ReadModel:
        assert self.runtime is not None and self.alerting is not None
        return ReadModel(
            settings=self.settings,
            host=self.host,
            runtime=self.runtime,
            alerting=self.alerting,
            results=self.results,
            pages=self.pages,
            store=self.store,
            registry=self.registry,
            pool=self.web_pool,
            started_at=self.started_at,
            reload=self.reload,
        )

    def _read(self) -> ReadModel:
        assert self.view is not None, "the web layer starts after the read model"
        return self.view
