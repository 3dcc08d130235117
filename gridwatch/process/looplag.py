"""How late the event loop runs: the one symptom every blocking call on the loop shares.

A task sleeps for a short interval and notes how much later than asked it woke up. While the
loop is blocked (a synchronous query, a big render, a long GC pause) every HTTP answer, timer
and scheduled check waits just as long, and nothing else in the process can tell. The largest
delay of a recent window is served as ``gridwatch_event_loop_lag_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable

METRIC = "gridwatch_event_loop_lag_seconds"
HELP = "Largest event-loop delay seen in the last minute"


class LoopLagMonitor:
    """Sleeps ``interval`` seconds at a time on the running loop and keeps the largest
    oversleep of the last ``window`` seconds.

    :meth:`lag` may be called from any thread (``/metrics`` renders in a worker thread).
    """

    def __init__(
        self, interval: float = 0.05, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.window = window
        self.clock = clock
        # (when, lag) with lags strictly decreasing from left to right: the first entry still
        # inside the window is the window's maximum (the sliding-window-maximum queue)
        self._peaks: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    def record(self, lag: float, now: float | None = None) -> None:
        """Note a delay of ``lag`` seconds observed at ``now`` (default: the clock)."""
        now = self.clock() if now is None else now
        with self._lock:
            while self._peaks and self._peaks[-1][1] <= lag:
                self._peaks.pop()  # a later, larger delay outlives it in every window
            self._peaks.append((now, lag))
            while self._peaks and self._peaks[0][0] < now - self.window:
                self._peaks.popleft()

    def lag(self) -> float:
        """The largest delay seen in the last ``window`` seconds (0 when none)."""
        since = self.clock() - self.window
        with self._lock:
            return next((lag for when, lag in self._peaks if when >= since), 0.0)

    async def run(self) -> None:
        """Measure until cancelled."""
        while True:
            asked = self.clock()
            await asyncio.sleep(self.interval)
            woke = self.clock()
            self.record(max(0.0, woke - asked - self.interval), woke)

    def start(self) -> asyncio.Task[None]:
        """Start measuring on the running loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="loop-lag")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
