"""The in-process runs, in a process of their own so its peak memory is gridwatch's alone.

Builds the runtime the way ``gridwatch once`` does, runs the four checks as of ``--now`` (the
first, full run), makes bench/changes.py's planned changes in the source database (an SQLite
file or a PostgreSQL DSN), and runs them again on the same
``Runtime`` as of ``--later`` (the steady run: whatever state the checks keep between runs is
there). Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import changes
from bench.probe import TICK, status_kb, tree_ticks
from gridwatch import config
from gridwatch.pipeline.results import Results
from gridwatch.pipeline.runtime import Runtime, assemble
from gridwatch.store import Store


def rows_read(runtime: Runtime) -> dict[str, int] | None:
    """The sources' ``rows_read`` counters summed by table; None while sources have none."""
    counters = [getattr(s, "rows_read", None) for s in runtime.sources.values()]
    if all(c is None for c in counters):
        return None
    out: dict[str, int] = {}
    for c in counters:
        for table, n in (c or {}).items():
            out[table] = out.get(table, 0) + int(n)
    return out


def _delta(after: Mapping[str, int] | None, before: Mapping[str, int] | None) -> dict[str, int] | None:
    if after is None:
        return None
    return {t: n - (before or {}).get(t, 0) for t, n in after.items() if n - (before or {}).get(t, 0)}


async def one_pass(
    runtime: Runtime, results: Results, now: datetime, server: int | None
) -> tuple[dict[str, Any], list[Any]]:
    """Every check once, one after the other: wall and CPU time (all threads) per check, and
    the database server's CPU (process ``server`` and its children) over the pass."""
    checks: dict[str, Any] = {}
    samples: list[Any] = []
    first = rows_read(runtime)
    ticks0 = tree_ticks(server) if server else 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for name, runner in runtime.runners.items():
        before = rows_read(runtime)
        wall, cpu = time.perf_counter(), time.process_time()
        outcome = await runtime.run(runner, now, results)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        read = _delta(rows_read(runtime), before)
        checks[name] = {
            "wall": wall,
            "cpu": cpu,
            "rows_read": None if read is None else sum(read.values()),
            "outcome": outcome.outcome,
            "error": outcome.error,
        }
        samples += [[s.metric, dict(s.labels), s.value] for s in outcome.samples]
    total = _delta(rows_read(runtime), first)
    summary = {
        "wall": time.perf_counter() - wall0,
        "cpu": time.process_time() - cpu0,
        "server_cpu": (tree_ticks(server) - ticks0) * TICK if server else None,
        "checks": checks,
        "rows_read": None if total is None else sum(total.values()),
        "rows_read_by_table": total,
    }
    return summary, samples


async def main(args: argparse.Namespace) -> dict[str, Any]:
    settings, host = config.load(Path(args.config))
    tz = settings.timezone
    now, later = (datetime.fromisoformat(t).astimezone(tz) for t in (args.now, args.later))
    store = Store(settings.state_path, settings.history)
    store.open()
    runtime, results = assemble(settings, host, store, asyncio.get_running_loop())
    try:
        full, full_samples = await one_pass(runtime, results, now, args.server_pid)
        hwm_full = status_kb("VmHWM")
        changed = changes.apply(args.target, json.loads(Path(args.changes).read_text(encoding="utf-8")))
        steady, steady_samples = await one_pass(runtime, results, later, args.server_pid)
        return {
            "full": full,
            "steady": steady,
            "changed": changed,
            "vmhwm_full_kb": hwm_full,
            "vmhwm_end_kb": status_kb("VmHWM"),
            "samples_full": full_samples,
            "samples_steady": steady_samples,
        }
    finally:
        runtime.close()
        store.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--target", required=True, help="the source database changed between the runs: a path or a DSN")
    p.add_argument("--changes", required=True, help="the changes to make (JSON, bench/changes.py's plan)")
    p.add_argument("--now", required=True)
    p.add_argument("--later", required=True)
    p.add_argument("--server-pid", type=int, help="the database server's main process, for its CPU")
    json.dump(asyncio.run(main(p.parse_args())), sys.stdout)
