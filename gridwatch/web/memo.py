"""A value derived from the daemon's state, computed off the event loop once per change.

The lights of 2,000 grids, their JSON and the exposition of tens of thousands of series take
tens to hundreds of milliseconds to compute: on the event loop that delays every answer and
every check's start, and computed per request it multiplies by the number of clients. A
:class:`Memo` computes in a worker thread, keeps the result until its inputs change, and lets
every request that arrives meanwhile wait for the one computation under way (single flight).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class Memo(Generic[T]):
    """``compute(*inputs())``, recomputed only when an input is no longer the same object.

    Inputs are compared by identity, so they must be replaced, never changed in place, when what
    they hold changes (check samples, the grid registry, the firing alerts all are). Computations
    run one at a time, so ``compute`` may keep caches of its own.
    """

    def __init__(self, inputs: Callable[[], tuple[Any, ...]], compute: Callable[..., T], pool: Executor | None = None):
        self._inputs, self._compute, self._pool = inputs, compute, pool
        self._lock = threading.Lock()
        self._done: tuple[tuple[Any, ...], T] | None = None
        self._flight: tuple[tuple[Any, ...], asyncio.Future[T]] | None = None

    @property
    def value(self) -> T | None:
        """The last value computed (None before the first), whatever its inputs."""
        return self._done[1] if self._done is not None else None

    async def get(self) -> T:
        args = self._inputs()
        done = self._done
        if done is not None and _same(done[0], args):
            return done[1]
        flight = self._flight
        if flight is None or not _same(flight[0], args):
            fut = asyncio.get_running_loop().run_in_executor(self._pool, self._run, args)
            flight = self._flight = (args, fut)
        return await asyncio.shield(flight[1])  # a client that goes away cancels only its wait

    def _run(self, args: tuple[Any, ...]) -> T:
        with self._lock:
            value = self._compute(*args)
            self._done = (args, value)
            return value
