"""The event-loop lag monitor: a blocked loop shows, and only for the window it is kept."""

import asyncio
import time

from gridwatch.process.looplag import LoopLagMonitor


def test_a_blocked_loop_shows_as_lag_at_least_as_long_as_the_block():
    block = 0.3

    async def go() -> float:
        monitor = LoopLagMonitor(interval=0.01)
        monitor.start()
        await asyncio.sleep(0.05)
        before = monitor.lag()
        time.sleep(block)  # what a synchronous query on the loop does
        await asyncio.sleep(0.05)
        await monitor.stop()
        assert before < block / 2
        return monitor.lag()

    lag = asyncio.run(go())
    # the sleeper asked to wake at most one interval after the block began
    assert lag >= block - 0.01
    assert lag < block + 1.0


def test_the_largest_delay_of_the_window_is_kept_then_forgotten():
    now = [0.0]
    monitor = LoopLagMonitor(window=60.0, clock=lambda: now[0])
    assert monitor.lag() == 0.0
    monitor.record(0.5, 0.0)
    monitor.record(0.1, 30.0)
    monitor.record(0.2, 40.0)
    now[0] = 59.0
    assert monitor.lag() == 0.5
    now[0] = 61.0  # the 0.5 s delay has left the window; the later 0.2 s outlives the 0.1 s one
    assert monitor.lag() == 0.2
    now[0] = 101.0
    assert monitor.lag() == 0.0


def test_stop_without_start_is_harmless():
    asyncio.run(LoopLagMonitor().stop())


def test_the_daemon_serves_the_gauge(gridwatch_daemon):
    daemon = gridwatch_daemon('[state]\npath = "state.db"\n')
    value = daemon.metric("gridwatch_event_loop_lag_seconds")
    assert value is not None and 0.0 <= value < 5.0
