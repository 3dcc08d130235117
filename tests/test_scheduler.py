"""The schedule: each check runs on its own grid of times, and a busy event loop does not move it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from gridwatch import config
from gridwatch.pipeline.results import Results
from gridwatch.pipeline.runtime import Runner, Runtime
from gridwatch.pipeline.scheduler import Scheduler, backoff_delay, next_due
from gridwatch.testing import write_standard_db


def test_backoff_doubles_and_is_capped():
    assert [backoff_delay(10, n) for n in range(6)] == [10, 20, 40, 80, 160, 300]
    assert backoff_delay(3600, 5) == 3600  # never shorter than the interval


def test_lateness_does_not_add_up_and_missed_ticks_are_dropped():
    # on time: the next tick is one interval after the last one was due, not after it ran
    assert next_due(100.0, 5.0, 5.0, now=100.4) == 105.0
    # a run that ended after its successor was due: that one starts at once, still on the grid
    assert next_due(100.0, 5.0, 5.0, now=106.0) == 105.0
    # a run that overran three ticks: the latest tick past is kept, the two before it dropped
    assert next_due(100.0, 5.0, 5.0, now=117.0) == 115.0
    # backoff: the delay is longer than the interval, the grid's step stays the interval
    assert next_due(100.0, 20.0, 5.0, now=101.0) == 120.0


def test_a_blocking_check_starts_on_time_while_the_event_loop_is_busy(tmp_path: Path):
    """The second run is due one second after the first; the event loop is then held for 1.5 s
    (as 200 clients can hold it). The run must start at its time, not when the loop is free."""
    write_standard_db(tmp_path / "city.db", {"grids": [{"grid_id": "G1", "name": "一网格"}]})
    cfg = tmp_path / "gridwatch.toml"
    cfg.write_text(
        'timezone = "Asia/Shanghai"\n[state]\npath = "state.db"\n[grids]\nsource = "city"\n'
        '[sources.city]\ntype = "sqlite"\npath = "city.db"\n'
        '[[checks]]\nname = "patrols"\ntype = "patrols"\nsource = "city"\ninterval = "1s"\n',
        encoding="utf-8",
    )
    settings, host = config.load(cfg)

    async def go() -> list[float]:
        runtime = Runtime(settings, host, asyncio.get_running_loop())
        results = Results()
        results.replace(*runtime.states())
        starts: list[float] = []
        ran = asyncio.Event()

        async def run(runner: Runner, at: float) -> object:
            outcome = await runtime.run(runner, datetime.now(UTC), results, at)
            assert outcome.outcome == "success", outcome.error
            assert runner.state.last_run is not None
            starts.append(runner.state.last_run.timestamp())
            ran.set()
            return outcome

        scheduler = Scheduler(runtime, run, jitter=False)
        try:
            scheduler.start()  # the first run is due now, the second in a second
            # half a second in, the loop is kept busy: nothing on it runs for 1.5 s
            asyncio.get_running_loop().call_later(0.5, time.sleep, 1.5)
            while len(starts) < 2:
                ran.clear()
                await ran.wait()
        finally:
            await scheduler.stop()
            runtime.close()
        return starts

    first, second = asyncio.run(go())
    assert 0.95 <= second - first <= 1.2, second - first
