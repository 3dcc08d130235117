"""Runs every check on its interval: random start offset, timeout, no overlap, backoff.

One asyncio task per check, so a slow or failing check delays nothing but itself. Each check
keeps a grid of times (start + k × interval), so a late run does not push the ones after it;
a blocking check waits for its time in its own worker thread, so an event loop busy with
clients does not delay its start either.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from gridwatch.pipeline.runtime import Outcome, Runner, Runtime

log = logging.getLogger("gridwatch.pipeline.scheduler")

MAX_BACKOFF = 300.0  # seconds: a failing check is retried at least this often (or its interval)
SETTLE = 0.5  # seconds a run may take past its interval to record itself (a timeout equal to the interval)


def backoff_delay(interval: float, failures: int) -> float:
    """Double the wait after each consecutive failure, capped so recovery is noticed soon."""
    if failures <= 0:
        return interval
    return max(interval, min(interval * 2 ** min(failures, 16), MAX_BACKOFF))


def next_due(due: float, delay: float, interval: float, now: float) -> float:
    """The next run's time on the check's own grid of times, so that lateness does not add up from
    run to run; a time already past is kept (the run starts at once) unless a later one on the
    grid is past too: ticks missed while a run overran are dropped, not made up in a burst."""
    due += delay
    if due < now:
        due += (now - due) // interval * interval
    return due


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait until they have ended, cancelling again as long as one runs: on
    Python 3.11 ``asyncio.wait_for`` swallows a cancellation that arrives just as the future it
    waits for completes (a poke at the moment of a reload), and a single ``cancel()`` then
    leaves a loop running forever and whoever waits for it hanging."""
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    for t in tasks:
        if not t.cancelled() and t.exception() is not None:
            log.error("task %s ended with an error", t.get_name(), exc_info=t.exception())


class Scheduler:
    def __init__(
        self,
        runtime: Runtime,
        run: Callable[[Runner, float], Coroutine[Any, Any, Outcome]],  # (runner, when it is due: loop.time())
        jitter: bool = True,
    ) -> None:
        self.runtime = runtime
        self._run = run
        self.jitter = jitter
        self.tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[Outcome]] = set()
        self._stopping = asyncio.Event()

    def start(self) -> None:
        for runner in self.runtime.runners.values():
            self.tasks.append(asyncio.create_task(self._loop(runner), name=f"check:{runner.spec.name}"))

    async def _loop(self, runner: Runner) -> None:
        loop = asyncio.get_running_loop()
        interval = runner.spec.interval
        # spread first runs so checks on one source do not all start at once; a check going on
        # from its saved state reads only what was appended meanwhile: it runs at once
        spread = self.jitter and not runner.restored
        due = loop.time() + (random.uniform(0, min(interval, 10.0)) / 2 if spread else 0.0)
        while not self._stopping.is_set():
            if runner.task is not None and not runner.task.done():
                if await self._sleep(due - loop.time()):
                    return
                if not runner.task.done():
                    runner.state.runs["skipped"] += 1
                    log.info("check %s skipped: the previous run is still going", runner.spec.name)
                    due = next_due(due, interval, interval, loop.time())
                    continue
            # a blocking check waits for its time in its worker, where a loop busy with clients
            # cannot delay it; a coroutine check waits here
            if not runner.blocking and await self._sleep(due - loop.time()):
                return
            runner.task = asyncio.create_task(self._run(runner, due), name=f"run:{runner.spec.name}")
            self._inflight.add(runner.task)
            runner.task.add_done_callback(self._inflight.discard)
            # a run that timed out at the interval is still being recorded: wait for that, or the
            # next tick would count a spurious "skipped" and the backoff would not apply
            await asyncio.wait([runner.task], timeout=max(0.0, due - loop.time()) + interval + SETTLE)
            if await self._sleep(due - loop.time()):  # a run skipped ahead of its time
                return
            failures = runner.state.consecutive_failures if runner.task.done() else 0
            due = next_due(due, backoff_delay(interval, failures), interval, loop.time())

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True when the scheduler is stopping."""
        if seconds <= 0:
            return self._stopping.is_set()
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
            return True
        except TimeoutError:
            return False

    async def stop(self, grace: float = 5.0) -> None:
        """Stop scheduling, let in-flight runs finish within ``grace``, then cancel them."""
        self._stopping.set()
        self.runtime.halt.set()  # runs waiting in their workers for their time give up
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            if pending:
                log.warning("cancelled %d check run(s) still going at reload or shutdown", len(pending))
                await stop_tasks(pending)
