"""``gridwatch run`` with its clock stopped at ``--now``: the bench's daemon.

The real command (``gridwatch run``: the same ``Daemon``, web server, scheduler and state
database, the same start-up and shutdown), but every run evaluates the city as of the bench's
steady run instead of the wall clock, as the test kit injects time. So its samples can be
compared with the other implementations', and those before a restart with those after it: a
wall clock would move figures such as the oldest open case's age and the 30-day coverage
window in between. A run still starts when the scheduler has it due (the first ones spread
over a few seconds); it waits for that time in the event loop instead of its worker, so that
it is as of the fixed time exactly.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import Any

from gridwatch import cli
from gridwatch.pipeline.runtime import Outcome, Runner
from gridwatch.process import daemon


def at_fixed_time(now: datetime) -> type[daemon.Daemon]:
    class AtFixedTime(daemon.Daemon):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs, clock=lambda: now)

        async def run_check(self, runner: Runner, at: float | None = None) -> Outcome:
            loop = asyncio.get_running_loop()
            while at is not None and at > loop.time():  # the runtime would add this wait to the run's time
                assert self.runtime is not None
                if self.runtime.halt.is_set():  # shutting down: let the runtime give the run up
                    return await super().run_check(runner, at)
                await asyncio.sleep(min(0.2, at - loop.time()))
            return await super().run_check(runner, None)

    return AtFixedTime


def main(argv: list[str]) -> int:
    """``python -m bench.clocked ISO8601 [gridwatch arguments…]``."""
    daemon.Daemon = at_fixed_time(datetime.fromisoformat(argv[0]))  # type: ignore[misc]
    return cli.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
