"""``gridwatch digest daily|weekly|monthly``: a digest as of a moment, printed or sent by hand.

The checks run once as of ``--now`` (as ``gridwatch once`` runs them) on a scratch copy of the
daemon's state database: the kept daily lights older than the checks' windows come from the
daemon's record, the newer ones are worked out as of ``--now``, and the daemon's own database is
left as it was. ``--send`` delivers through the notifiers of the matching ``[[digests]]`` entries
and records nothing in the ledger: the daemon's scheduled digest still goes out.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

import aiohttp

from gridwatch.api import Notifier, NotifierOptions
from gridwatch.digests import render
from gridwatch.digests.content import Inputs, RankingsProvider, build, read_lights
from gridwatch.digests.periods import latest_due
from gridwatch.pipeline.runtime import assemble
from gridwatch.plugins import PluginHost
from gridwatch.settings import DigestSpec, Settings
from gridwatch.store import Store, StoreError

EXIT_SEND_FAILED, EXIT_USAGE = 1, 2


def _copy_state(src: Path, dst: Path) -> None:
    """An online, consistent copy (SQLite's backup), read-only on the daemon's file."""
    source = sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


async def replay(
    settings: Settings,
    host: PluginHost,
    kind: str,
    now: datetime,
    send: bool = False,
    clock: Callable[[], float] = time.time,
    rankings: RankingsProvider | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Print (or ``send``) the ``kind`` digests of the config as of ``now``; the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    specs = [d for d in settings.digests if d.kind == kind]
    if send and not specs:
        print(f"gridwatch digest: no [[digests]] entry of kind {kind!r} to send through", file=err)
        return EXIT_USAGE
    if not specs:  # printing only: the default digest of that kind, every grid
        specs = [DigestSpec.model_validate({"kind": kind, "notifiers": ["-"]})]
    with tempfile.TemporaryDirectory(prefix="gridwatch-digest-") as scratch:
        path = Path(scratch) / "state.db"
        try:
            if settings.state_path.exists():
                _copy_state(settings.state_path, path)
            store = Store(path, settings.history)
            store.open()
        except (sqlite3.Error, StoreError, OSError) as exc:
            print(f"gridwatch digest: cannot read the state database {settings.state_path}: {exc}", file=err)
            return EXIT_USAGE
        try:
            return await _replay(settings, host, specs, now, send, clock, rankings, store, out, err)
        finally:
            store.close()


async def _replay(
    settings: Settings,
    host: PluginHost,
    specs: Sequence[DigestSpec],
    now: datetime,
    send: bool,
    clock: Callable[[], float],
    rankings: RankingsProvider | None,
    store: Store,
    out: IO[str],
    err: IO[str],
) -> int:
    runtime, results = assemble(settings, host, store, asyncio.get_running_loop(), clock=clock)
    try:
        for name, runner in runtime.runners.items():
            outcome = await runtime.run(runner, now, results)
            if outcome.error:
                print(f"gridwatch digest: check {name} failed, its counts are missing: {outcome.error}", file=err)
        grids = runtime.registry.cached() if runtime.registry else {}
        if runtime.registry is not None and not grids:
            grids = runtime.load_grids(now, results)
        hook = host.pm.hook.daily_lights

        def lights(ids: Sequence[str], since: date) -> dict[str, list[tuple[date, str]]]:
            return store.call(read_lights, hook, ids, since)

        inputs = Inputs(grids, [(r.check, r.state.samples) for r in runtime.runners.values()], lights)
        tz = settings.timezone
        failed = False
        async with aiohttp.ClientSession() as session:
            for spec in specs:
                period = latest_due(spec, now, tz)
                digest = await asyncio.get_running_loop().run_in_executor(
                    None, build, spec, period, inputs, now.astimezone(tz), settings.external_url, rankings
                )
                if not send:
                    print(render.markdown(digest)["text"], file=out, end="\n\n" if len(specs) > 1 else "\n")
                    continue
                for name in spec.notifiers:
                    notifier = _notifier(settings, host, name, runtime.env)
                    fmt = notifier.digest_format or "markdown"
                    try:
                        await notifier.send_digest(session, render.message(digest, fmt, notifier.digest_bytes))
                    except Exception as exc:
                        failed = True
                        print(f"gridwatch digest: {spec.name} for {period.key}: {name} failed: {exc}", file=err)
                    else:
                        print(f"{spec.name} for {period.key}: sent to {name}", file=out)
        return EXIT_SEND_FAILED if failed else 0
    finally:
        runtime.close()


def _notifier(settings: Settings, host: PluginHost, name: str, env: Any) -> Notifier:
    spec = settings.notifiers[name]
    cls = host.notifier_type(spec.type)
    assert cls is not None and isinstance(spec.options, NotifierOptions)  # validated against cls.Options
    return cls(name, spec.options, env)
