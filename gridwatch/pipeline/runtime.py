"""The runtime: sources and checks built from validated settings, and one run of a check.

Shared by the daemon and ``gridwatch once`` so both evaluate exactly the same way.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gridwatch.api import (
    Check,
    CheckError,
    Environment,
    Grid,
    GridSet,
    RunContext,
    Sample,
    Source,
    SourceUnavailable,
    validate_sample,
)
from gridwatch.calendar import WorkCalendar
from gridwatch.config import CheckSpec, Settings
from gridwatch.pipeline.checkpoint import Checkpoints
from gridwatch.pipeline.grids import COLUMNS as GRID_COLUMNS
from gridwatch.pipeline.grids import OPTIONAL as GRID_OPTIONAL
from gridwatch.pipeline.grids import GridRegistry, shard_selector
from gridwatch.pipeline.rejected import Tally
from gridwatch.pipeline.results import CheckState, Results, SourceState
from gridwatch.plugins import PluginHost
from gridwatch.store import PluginState, Store

log = logging.getLogger("gridwatch.pipeline.runtime")


@dataclass
class Runner:
    """One configured check, with what it needs to run and what it last did."""

    spec: CheckSpec
    check: Check
    source: Source | None
    state: CheckState
    busy: Future[Any] | None = None  # the worker still running this check, if any
    task: asyncio.Task[Any] | None = None
    tally: Tally = field(default_factory=Tally)  # the rows of its last full read, and those rejected
    restored: bool = False  # the check goes on from the state it saved before a restart

    @property
    def blocking(self) -> bool:
        """Run in a worker thread; the others are coroutines on the event loop."""
        return not inspect.iscoroutinefunction(self.check.run)


@dataclass
class Outcome:
    outcome: str  # success | failure | timeout | skipped
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None
    duration: float = 0.0


@dataclass
class Timing:
    """When a run began (wall clock and monotonic) and ended, as its worker saw it."""

    wall: float
    began: float
    ended: float | None = None


class NotStarted(Exception):
    """A run waiting for its time when the runtime halted (a reload, shutdown)."""


class BuildError(Exception):
    """A source or check could not be constructed from valid config (e.g. a bad driver)."""


class BadSample(CheckError):
    """A check yielded something that is not a well-formed sample: the plugin's fault."""


class PluginExit(Exception):
    """A check called ``sys.exit()`` (or raised KeyboardInterrupt): its failure, not the daemon's end."""


class RegistryUnavailable(SourceUnavailable):
    """The grid registry's source failed while another source's check needed the grids."""

    def __init__(self, source: str, error: str) -> None:
        super().__init__(error)
        self.source = source


class Runtime:
    def __init__(
        self,
        settings: Settings,
        host: PluginHost,
        loop: asyncio.AbstractEventLoop | None = None,
        state: Store | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.host = host
        self.clock = clock  # the wall clock the runs see (RunContext.clock): injectable for tests
        self.env = Environment(
            base_dir=settings.base_dir,
            tz=settings.timezone,
            state_dir=settings.state_path.parent,
            loop=loop,
            names=settings.names,
        )
        # a stuck query must not starve the others: each check gets a worker of its own
        self.pool = ThreadPoolExecutor(
            max_workers=max(4, len(settings.checks) + 2), thread_name_prefix="gridwatch-check"
        )
        self.sources: dict[str, Source] = {}
        self.runners: dict[str, Runner] = {}
        self.extras: dict[str, Any] = {}
        self.registry: GridRegistry | None = None
        self.calendar = WorkCalendar(settings.holidays, settings.workdays)
        self.state = state  # the state database checks keep tables in (RunContext.state)
        self.halt = threading.Event()  # set when the scheduler stops: runs waiting for their time give up
        # the checks' saved state (the daemon's; None: every start reads in full, as ``once`` does)
        self.checkpoints: Checkpoints | None = None
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def _build(self) -> None:
        s = self.settings
        for name, source_spec in s.sources.items():
            source_type = self.host.source_type(source_spec.type)
            assert source_type is not None
            try:
                self.sources[name] = source_type(name, source_spec.options, self.env)
            except Exception as exc:
                raise BuildError(f"source {name!r} ({source_spec.type}): {exc}") from exc
        for spec in s.checks:
            cls = self.host.check_type(spec.type)
            assert cls is not None
            source = self.sources.get(spec.source) if spec.source else None
            try:
                check = cls(spec.name, spec.options, source, self.env)
                help_ = check.metric_help()
            except Exception as exc:
                raise BuildError(f"check {spec.name!r} ({self._by(spec.type)}): {exc}") from exc
            state = CheckState(
                spec.name, spec.type, spec.source, spec.interval, help=help_, explain=check.reasons, titles=check.titles
            )
            self.runners[spec.name] = Runner(spec, check, source, state)
        if s.grids_source:
            select = shard_selector(s.shard, s.shard_by)
            self.registry = GridRegistry(self.sources[s.grids_source], ttl=s.grids_refresh, select=select)

    def keep_grids(self, old: Runtime) -> bool:
        """After a reload, take the grids ``old`` loaded when this registry reads the same source the
        same way: rules evaluated against a registry not read yet would resolve every alert that
        matches on a grid's street or community, and fire it again once it is read."""
        a, b = self.settings, old.settings
        if self.registry is None or old.registry is None or a.grids_source is None:
            return False
        if (a.grids_source, a.shard, a.shard_by) != (b.grids_source, b.shard, b.shard_by):
            return False
        if a.sources.get(a.grids_source) != b.sources.get(a.grids_source):
            return False
        self.registry.adopt(old.registry)
        return True

    def resume(self) -> int:
        """Keep the checks' state in the state database from now on, and take back what was
        saved there: the first runs go on from the saved cursors (blocking: call it off the loop).
        Returns the number of checks restored."""
        if self.state is None:
            return 0
        self.checkpoints = Checkpoints(self.state, self.settings)
        return self.checkpoints.restore(self.runners.values())

    def save_state(self) -> None:
        """Save the checks' state that changed since its last checkpoint (at a stop or a reload,
        once the scheduler stopped; blocking: call it off the loop)."""
        if self.checkpoints is not None:
            self.checkpoints.save_all(self.runners.values())

    def grids_settled(self) -> bool:
        """Whether the registry has been read (or failed to be) since this runtime began."""
        return self.registry is None or self.registry.attempted

    def states(self) -> tuple[dict[str, CheckState], dict[str, SourceState]]:
        return (
            {n: r.state for n, r in self.runners.items()},
            {n: SourceState(n, s.type, tables=self.following(n)) for n, s in self.sources.items()},
        )

    def following(self, source: str) -> list[dict[str, Any]]:
        """How each table the checks read from ``source`` is followed between runs (the status API)."""
        src = self.sources[source]
        tables = sorted({t for r in self.runners.values() if r.spec.source == source for t in self._reads(r)})
        return [src.follows(t).as_dict(t) for t in tables]

    @staticmethod
    def _reads(runner: Runner) -> Sequence[str]:
        try:
            return list(runner.check.reads(runner.spec.options))
        except Exception:  # a plugin's bug: its tables go unlisted
            return []

    def close(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.closed = True
        for runner in self.runners.values():
            _quietly(runner.check.close)
        for source in self.sources.values():
            _quietly(source.close)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- running -----------------------------------------------------------------------------
    async def run(self, runner: Runner, now: datetime, results: Results, at: float | None = None) -> Outcome:
        """Run a check once, bounded by its timeout, and record the outcome in ``results``.

        ``at`` (a ``time.monotonic()`` value) is when the run is due. A blocking check waits for
        it in its own worker rather than on the event loop: however busy the loop is answering
        clients, the read starts on time, and the run is recorded as starting when it did.
        """
        busy = runner.busy
        if busy is not None and not busy.done() and at is not None:  # it may yet end before this run is due
            await asyncio.wait([asyncio.wrap_future(busy)], timeout=max(0.0, at - time.monotonic()))
        if busy is not None and not busy.done():
            outcome = Outcome("skipped", error="the previous run is still going")
            runner.state.runs["skipped"] += 1
            return outcome
        wait = 0.0 if at is None else max(0.0, at - time.monotonic())
        timing = Timing(time.time() + wait, time.monotonic() + wait)  # the plan, until the run begins
        ctx = self.context(
            now + timedelta(seconds=wait),
            timing.began + runner.spec.timeout,
            runner.spec.name,
            results,
            runner.spec.source,
        )
        try:
            samples = await self._execute(runner, ctx, timing, wait)
            outcome = Outcome("success", samples)
        except NotStarted:  # the scheduler stopped before the run's time came: nothing ran
            return Outcome("skipped", error="stopped before its time")
        except TimeoutError:
            outcome = Outcome("timeout", error=f"timed out after {runner.spec.timeout:g}s")
        except SourceUnavailable as exc:
            down = exc.source if isinstance(exc, RegistryUnavailable) else runner.spec.source
            outcome = Outcome("failure", error=f"source {down} unavailable: {exc}")
            self._source_up(results, down, False, str(exc))
        except BadSample as exc:  # garbage: name the plugin that yielded it
            outcome = Outcome("failure", error=f"{self._by(runner.spec.type)}: {exc}")
        except CheckError as exc:
            outcome = Outcome("failure", error=str(exc))
        except Exception as exc:  # a plugin's bug must never reach the scheduler
            by = self._by(runner.spec.type)
            log.warning("check %s (%s) raised", runner.spec.name, by, exc_info=True)
            outcome = Outcome("failure", error=f"{by}: {type(exc).__name__}: {exc}")
        else:
            if runner.source is not None:
                self._source_status(results, runner, True, None)
        outcome.duration = (timing.ended or time.monotonic()) - timing.began
        if outcome.outcome == "success":
            outcome = self._judge(runner, ctx, outcome)
        self._drain(ctx, runner.source)
        results.count_rejected(ctx.rejected, ctx.examples)
        self._record(runner, outcome, timing.wall)
        return outcome

    def _judge(self, runner: Runner, ctx: RunContext, outcome: Outcome) -> Outcome:
        """A run whose rows were mostly rejected failed (DOMAIN.md §5): its samples are dropped,
        and the check keeps its last good ones, as after any failed run. (Judged before the
        records its source skipped itself are drained: those are the source's since its last
        drain, whichever check read them, not this run's.)"""
        runner.tally.add(ctx)
        runner.state.rejected_ratio = runner.tally.ratio()
        error = runner.tally.verdict(runner.spec.max_rejected_ratio, lambda source: self._tables(runner, source))
        return outcome if error is None else Outcome("failure", error=error, duration=outcome.duration)

    def _tables(self, runner: Runner, source: str) -> dict[str, Sequence[str]]:
        """The tables ``runner``'s check reads from ``source`` (the registry's included), with
        their columns."""
        tables: dict[str, Sequence[str]] = {}
        if source == runner.spec.source:
            try:
                tables.update(runner.check.reads(runner.spec.options))
            except Exception:  # a plugin's bug: the error then names the source's whole mapping
                log.debug("check %s cannot tell what it reads", runner.spec.name, exc_info=True)
        if self.registry is not None and source == self.registry.source.name:
            tables["grids"] = (*GRID_COLUMNS, *GRID_OPTIONAL)
        return tables

    def _by(self, check_type: str) -> str:
        """``TYPE (plugin NAME)``: who to blame for a check type's unexpected failure."""
        return f"{check_type} (plugin {self.host.owner('check', check_type) or '?'})"

    def _drain(self, ctx: RunContext, *sources: Source | None) -> None:
        """Fold file-level rejections a source counted itself (bad encoding...) into ``ctx``."""
        if self.registry is not None:
            sources = (*sources, self.registry.source)
        for source in {id(s): s for s in sources if s is not None}.values():
            for reason, n in (source.drain_rejected() or {}).items():
                ctx.rejected[(source.name, reason)] += n

    def load_grids(self, now: datetime, results: Results) -> dict[str, Grid]:
        """Load the registry outside a check run (start-up, the API); failures leave it empty."""
        if self.registry is None:
            return {}
        ctx = self.context(now, time.monotonic() + 30, "grids")
        try:
            grids: dict[str, Grid] = self.registry.load(ctx)
        except Exception as exc:
            log.warning("cannot load the grid registry from %s: %s", self.registry.source.name, exc)
            grids = {}
        self._drain(ctx)
        results.count_rejected(ctx.rejected, ctx.examples)
        return grids

    def context(
        self, now: datetime, deadline: float, check: str, results: Results | None = None, source: str | None = None
    ) -> RunContext:
        ctx = RunContext(
            now=now,
            tz=self.settings.timezone,
            deadline=deadline,
            extras=self.extras,
            calendar=self.calendar,
            clock=self.clock,
            future_tolerance=self.settings.future_tolerance,
        )
        if self.registry is not None:
            registry = self.registry

            def grids() -> GridSet:
                """The registry; when its source is down, a check on another source goes on with
                the grids last read (the registry's source is reported down), or fails naming it."""
                name = registry.source.name
                before = registry.cached()
                try:
                    loaded = registry.load(ctx)
                except SourceUnavailable as exc:
                    if name == source:  # the check's own source: its reads would fail next
                        raise
                    if results is not None:
                        self._source_up(results, name, False, str(exc))
                    if registry.cached():
                        return registry.cached()
                    raise RegistryUnavailable(name, str(exc)) from None
                if results is not None and loaded is not before:  # read just now, not from the cache
                    self._source_up(results, name, True, None)
                return loaded

            ctx.grids = grids
        if self.state is not None:
            ctx.state = PluginState(self.state, check)
        return ctx

    async def _execute(self, runner: Runner, ctx: RunContext, timing: Timing, wait: float) -> list[Sample]:
        timeout = runner.spec.timeout
        if not runner.blocking:  # (the scheduler waited for its time)
            return await asyncio.wait_for(_collect_async(runner.check, ctx, runner.state.samples), timeout)
        fut = self.pool.submit(self._on_time, wait > 0, timing, ctx, timeout, runner, runner.state.samples)
        runner.busy = fut
        return await asyncio.wait_for(asyncio.wrap_future(fut), wait + timeout)

    def _on_time(
        self, wait: bool, timing: Timing, ctx: RunContext, timeout: float, runner: Runner, previous: list[Sample]
    ) -> list[Sample]:
        """In the check's worker: wait for the run's time (unless the runtime halts), then run;
        then, still in the worker, save the check's state if it is due (:attr:`checkpoints`)."""
        if wait and self.halt.wait(max(0.0, timing.began - time.monotonic())):
            raise NotStarted
        timing.wall, timing.began = time.time(), time.monotonic()
        ctx.deadline = timing.began + timeout
        try:
            samples = _collect(runner.check, ctx, previous)
        finally:
            timing.ended = time.monotonic()
        if self.checkpoints is not None:
            self.checkpoints.after_run(runner)
        return samples

    def _source_status(self, results: Results, runner: Runner, up: bool, error: str | None) -> None:
        self._source_up(results, runner.spec.source, up, error)
        st = results.sources.get(runner.spec.source or "")
        if st is not None and runner.spec.source in self.sources:  # a cursor's kind is known once read
            st.tables = self.following(runner.spec.source)

    def _source_up(self, results: Results, source: str | None, up: bool, error: str | None) -> None:
        st = results.sources.get(source or "")
        if st is not None:
            if st.up is not False and not up:
                log.warning("source %s is down: %s", st.name, error)
            elif st.up is False and up:
                log.info("source %s is back up", st.name)
            st.up, st.error = up, error

    def _record(self, runner: Runner, outcome: Outcome, started_wall: float) -> None:
        st = runner.state
        st.runs[outcome.outcome] += 1
        st.last_run = datetime.fromtimestamp(started_wall, self.settings.timezone)
        st.duration = outcome.duration
        st.ok = outcome.outcome == "success"
        st.error = outcome.error
        if st.ok:
            st.samples = outcome.samples
            st.last_success = started_wall + outcome.duration
            st.consecutive_failures = 0
        else:
            st.consecutive_failures += 1
            if st.consecutive_failures == 1:
                log.warning("check %s %s: %s", st.name, outcome.outcome, outcome.error)

    def ping_sources(self, results: Results) -> None:
        """Learn whether each source is reachable before any check has used it."""
        for name, source in self.sources.items():
            st = results.sources.get(name)
            if st is None or st.up is not None:  # gone with a reload, or a check got there first
                continue
            try:
                source.ping()
                up, error = True, None
            except Exception as exc:
                up, error = False, str(exc)
            if st.up is None:  # a check that ran meanwhile knows better (pings run in the background)
                st.up, st.error = up, error
                if not up:
                    log.warning("source %s is down: %s", name, error)


def _collect(check: Check, ctx: RunContext, previous: list[Sample]) -> list[Sample]:
    """Run a blocking check in its worker; an endless generator stops at the deadline, so the
    worker is freed instead of filling memory after the run timed out. Samples equal to the
    previous run's come back as the previous list itself: what is derived from them (lights,
    the exposition) stays valid without being computed again."""
    out = []
    try:
        for s in check.run(ctx) or ():
            out.append(_valid(s))
            if time.monotonic() > ctx.deadline:
                raise TimeoutError(f"still yielding samples ({len(out)}) at the deadline")
    except (SystemExit, KeyboardInterrupt) as exc:
        raise PluginExit(f"the check raised {type(exc).__name__}({exc})") from None
    return previous if out == previous else out


async def _collect_async(check: Check, ctx: RunContext, previous: list[Sample]) -> list[Sample]:
    try:  # caught here, inside the task: SystemExit escaping a task would stop the event loop
        result = await check.run(ctx)  # type: ignore[misc]
    except (SystemExit, KeyboardInterrupt) as exc:
        raise PluginExit(f"the check raised {type(exc).__name__}({exc})") from None
    out = [_valid(s) for s in result or ()]
    return previous if out == previous else out


def _valid(obj: object) -> Sample:
    try:
        return validate_sample(obj)
    except CheckError as exc:
        raise BadSample(str(exc)) from None


def _quietly(fn: Any) -> None:
    try:
        fn()
    except Exception:
        log.debug("ignored error while closing", exc_info=True)


def assemble(
    settings: Settings,
    host: PluginHost,
    state: Store | None,
    loop: asyncio.AbstractEventLoop | None = None,
    results: Results | None = None,
    clock: Callable[[], float] = time.time,
) -> tuple[Runtime, Results]:
    """The one way to put a pipeline together: the runtime built from settings and the plugin
    host, on its state database, and the results it reports into (new, or the daemon's after a
    reload: what survives by name is kept)."""
    runtime = Runtime(settings, host, loop, state, clock)
    results = results if results is not None else Results()
    results.replace(*runtime.states())
    return runtime, results
