"""``gridwatch once``: every check run a single time, as of a given instant.

It shows what a daemon would have shown at that instant (``--now`` replays a past day for an
audit) and leaves no trace: its state database is a temporary one of its own, never the daemon's
(whose daily lights and alert history a replay must not overwrite).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from gridwatch.alerting.service import stateless_views
from gridwatch.config import Settings
from gridwatch.pipeline import light
from gridwatch.pipeline.runtime import assemble
from gridwatch.plugins import PluginHost
from gridwatch.store import Store


async def run_once(
    settings: Settings,
    host: PluginHost,
    now: datetime,
    only: list[str] | None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Run the checks (``only`` these, if given) as of ``now``; ``clock`` is the wall clock."""
    scratch = tempfile.TemporaryDirectory(prefix="gridwatch-once-")
    store = Store(Path(scratch.name) / "state.db", settings.history)
    store.open()
    try:
        runtime, results = assemble(settings, host, store, asyncio.get_running_loop(), clock=clock)
    except BaseException:
        store.close()
        scratch.cleanup()
        raise
    try:
        unknown = sorted(set(only or ()) - set(runtime.runners))
        errors = [{"check": n, "error": "no such check"} for n in unknown]
        samples = []
        for name, runner in runtime.runners.items():
            if only and name not in only:
                continue
            outcome = await runtime.run(runner, now, results)
            if outcome.error:
                errors.append({"check": name, "error": outcome.error})
            samples += [
                {"check": name, "metric": s.metric, "labels": dict(s.labels), "value": s.value} for s in outcome.samples
            ]
        grids = runtime.registry.cached() if runtime.registry else {}
        if runtime.registry is not None and not grids:
            grids = runtime.load_grids(now, results)
        alerts = settings.names.titled(stateless_views(settings, results.all_samples(), grids, now.timestamp()))
        rule_metrics = {name: r.metric for name, r in settings.rules.items()}
        lights = [gl.as_dict() for gl in light.compute(grids, results.all_reasons(), alerts, rule_metrics)]
        return {
            "now": now.isoformat(),
            "samples": samples,
            "alerts": alerts,
            "grids": lights,
            "errors": errors,
        }
    finally:
        runtime.close()
        store.close()
        scratch.cleanup()
