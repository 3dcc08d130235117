"""``gridwatch once``: every check run a single time, as of a given instant."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from gridwatch.alerting.service import stateless_views
from gridwatch.config import Settings
from gridwatch.pipeline import light
from gridwatch.pipeline.runtime import assemble
from gridwatch.plugins import PluginHost
from gridwatch.store import Store


async def run_once(settings: Settings, host: PluginHost, now: datetime, only: list[str] | None) -> dict[str, Any]:
    store = Store(settings.state_path, settings.history)
    store.open(exclusive=True)  # its checks write their own state: not beside a running daemon
    try:
        runtime, results = assemble(settings, host, store, asyncio.get_running_loop())
    except BaseException:
        store.close()
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
        alerts = stateless_views(settings, results.all_samples(), grids, now.timestamp())
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
