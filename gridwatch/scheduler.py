"""Runs every check on its interval: random start offset, timeout, no overlap, backoff.

One asyncio task per check, so a slow or failing check delays nothing but itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from gridwatch.runtime import Outcome, Runner, Runtime

log = logging.getLogger("gridwatch.scheduler")

MAX_BACKOFF = 300.0  # seconds: a failing check is retried at least this often (or its interval)


def backoff_delay(interval: float, failures: int) -> float:
    """Double the wait after each consecutive failure, capped so recovery is noticed soon."""
    if failures <= 0:
        return interval
    return max(interval, min(interval * 2 ** min(failures, 16), MAX_BACKOFF))


class Scheduler:
    def __init__(
        self,
        runtime: Runtime,
        run: Callable[[Runner], Awaitable[Outcome]],
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
        # spread first runs so checks on one source do not all start at once
        offset = random.uniform(0, min(interval, 10.0)) / 2 if self.jitter else 0.0
        if await self._sleep(offset):
            return
        while not self._stopping.is_set():
            tick = loop.time()
            if runner.task is not None and not runner.task.done():
                runner.state.runs["skipped"] += 1
                log.info("check %s skipped: the previous run is still going", runner.spec.name)
            else:
                runner.task = asyncio.create_task(self._run(runner), name=f"run:{runner.spec.name}")
                self._inflight.add(runner.task)
                runner.task.add_done_callback(self._inflight.discard)
                await asyncio.wait([runner.task], timeout=interval)
            failures = runner.state.consecutive_failures if runner.task.done() else 0
            delay = backoff_delay(interval, failures)
            if await self._sleep(max(0.0, tick + delay - loop.time())):
                return

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True when the scheduler is stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
            return True
        except TimeoutError:
            return False

    async def stop(self, grace: float = 5.0) -> None:
        """Stop scheduling, let in-flight runs finish within ``grace``, then cancel them."""
        self._stopping.set()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._inflight:
            _done, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("cancelled %d check run(s) still going at shutdown", len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
