"""A digest goes out once per period through SIGKILLs, and once from two replicas sharing a ledger.

Real ``gridwatch run`` processes on the city of ``tests/test_digests.py``, with the wall clock:
each daily digest is configured to go out an hour before now (so its next period is a day away,
whatever the time the tests run), and the ledger is told the digests have been configured for
three days (as a daemon that ran then would have recorded), so the latest period is owed at once.
The webhook receiver is slow to answer, so kills land while digests are made and delivered.
``GRIDWATCH_FAULT_SEED=N`` replays a failing run's kill schedule.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gridwatch.testing import DaemonProcess, free_port, wait_for
from tests.faults import FlakyServer, flaky_server, integrity, kill, read_state
from tests.test_digests import TZ, keep_lights, seed_watch, write_city, write_config

SEED = int(os.environ.get("GRIDWATCH_FAULT_SEED", "20261207"))
HOOKS = ("hook1", "hook2")


def daemon(
    d: Path, server: FlakyServer, names: list[str], replica: str = "state", shared: bool = False
) -> DaemonProcess:
    """``gridwatch run`` with a daily digest per name, each to both webhooks, due an hour ago; its
    state database is ``{replica}.db``; with ``shared``, the ledger is ``shared.db``."""
    at = (datetime.now(TZ) - timedelta(hours=1)).strftime("%H:%M:%S")
    hooks = "".join(
        f'[notifiers.{h}]\ntype = "webhook"\nurl = "{server.url}/{h}"\ntimeout = "2s"\nmatch = {{ digests = "only" }}\n'
        for h in HOOKS
    )
    entries = "".join(
        f'[[digests]]\nkind = "daily"\nname = "{n}"\nat = {at}\nnotifiers = {list(HOOKS)}\n' for n in names
    )
    port = free_port()
    cfg = write_config(d, hooks + entries, port=port, interval="2s", name=replica, state=replica)
    if shared:
        text = cfg.read_text(encoding="utf-8").replace("[state]\n", '[state]\nshared_path = "shared.db"\n', 1)
        cfg.write_text(text, encoding="utf-8")
    return DaemonProcess(cfg, port)


def configured_before(path: Path, names: list[str], shared: bool = False) -> None:
    for n in names:
        seed_watch(path, n, datetime.now(TZ) - timedelta(days=3), shared=shared)


def received(server: FlakyServer) -> list[tuple[str, str, str]]:
    """(notifier path, digest id, the body as sent) of every digest posted."""
    with server._lock:
        posts = list(server.posts)
    return [(p.strip("/"), b["id"], json.dumps(b, sort_keys=True, ensure_ascii=False)) for p, b, _ in posts]


def ledger_rows(path: Path) -> list[tuple[Any, ...]]:
    return read_state(
        path,
        "SELECT d.name, d.period, x.notifier, x.payload, x.delivered_at FROM digests d "
        "JOIN digest_deliveries x ON x.digest_id = d.id ORDER BY d.id, x.notifier",
    )


def all_delivered(path: Path, names: list[str]) -> bool:
    if not path.exists():
        return False
    try:
        rows = ledger_rows(path)
    except sqlite3.OperationalError:  # not migrated yet
        return False
    return {r[0] for r in rows} == set(names) and len(rows) == 2 * len(names) and all(r[4] for r in rows)


def check_consistent(path: Path, where: str) -> None:
    """Right after a kill: the file is whole; each digest has all its deliveries or none exist."""
    assert integrity(path) == "ok", where
    try:
        made = read_state(path, "SELECT id, name, period FROM digests")
    except sqlite3.OperationalError:
        return  # killed before the migration that makes the tables: nothing made yet
    for did, name, period in made:
        [(n,)] = read_state(path, "SELECT count(*) FROM digest_deliveries WHERE digest_id = ?", (did,))
        assert n == len(HOOKS), f"{where}: {name} {period} made with {n} deliveries"


def assert_once_each(server: FlakyServer, path: Path, names: list[str], kills: int) -> dict[str, int]:
    rows = ledger_rows(path)
    assert len({r[1] for r in rows}) == 1, "one period for every digest"
    period = rows[0][1]
    expected = {
        (r[2], f"{r[0]}/{r[1]}"): json.dumps(json.loads(r[3]), sort_keys=True, ensure_ascii=False) for r in rows
    }
    assert len(expected) == len(names) * len(HOOKS)
    got = received(server)
    seen: dict[tuple[str, str], int] = {}
    for hook, did, body in got:
        assert (hook, did) in expected, f"{hook} got {did}, which the ledger never made"
        assert body == expected[(hook, did)], f"{hook} got a different {did}: a digest announced twice as new"
        seen[(hook, did)] = seen.get((hook, did), 0) + 1
    missing = sorted(set(expected) - set(seen))
    assert not missing, f"made but never received: {missing}"
    again = sum(n - 1 for n in seen.values())
    assert again <= kills, f"{again} digests sent again for {kills} kills"
    return {"digests": len(names), "period": int(period.replace("-", "")), "deliveries": len(got), "again": again}


def test_sigkill_at_random_moments_sends_each_digest_once(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    write_city(tmp_path)
    state = tmp_path / "state.db"
    keep_lights(state)
    iterations = 6
    names = [f"d{i}" for i in range(iterations)]
    configured_before(state, names)
    kills = 0
    with flaky_server() as server:
        server.post_delay = 0.3
        for i in range(iterations):  # every start brings one more digest due, so there is always work
            where = f"iteration {i} (GRIDWATCH_FAULT_SEED={SEED})"
            d = daemon(tmp_path, server, names[: i + 1])
            if rng.random() < 0.2:  # during start-up: migrations, the first runs, the first digest
                d.start(wait=False)
                time.sleep(rng.uniform(0.05, 1.0))  # the kill's moment, not a wait for a condition
            else:
                d.start()
                time.sleep(rng.uniform(0.2, 3.0))  # the kill's moment, not a wait for a condition
            kill(d)
            kills += 1
            if state.exists():
                check_consistent(state, where)
        server.post_delay = 0.0
        with daemon(tmp_path, server, names) as d:
            wait_for(lambda: all_delivered(state, names), 40, f"every digest delivered\n{d.log()[-3000:]}")
            assert d.stop() == 0
        check_consistent(state, "the end")
        stats = assert_once_each(server, state, names, kills)
    print("digests under sigkill:", stats, "kills:", kills)


def test_two_replicas_sharing_a_ledger_send_each_digest_once(tmp_path: Path) -> None:
    write_city(tmp_path)
    names = ["d0", "d1", "d2"]
    shared = tmp_path / "shared.db"
    configured_before(shared, names, shared=True)
    with flaky_server() as server:
        server.post_delay = 0.2
        a, b = (daemon(tmp_path, server, names, replica, shared=True) for replica in ("a", "b"))
        a.start(wait=False)
        b.start(wait=False)
        try:
            wait_for(
                lambda: all_delivered(shared, names),
                40,
                f"every digest delivered\n{a.log()[-2000:]}\n{b.log()[-2000:]}",
            )
            time.sleep(3)  # several rounds of both replicas: nothing more may go out
            for n in names:
                assert a.metric("gridwatch_digests_undelivered", digest=n) == 0
                assert b.metric("gridwatch_digests_undelivered", digest=n) == 0
            sent = [
                d.metric("gridwatch_digest_deliveries_total", digest=n, notifier=h, outcome="success") or 0
                for d in (a, b)
                for n in names
                for h in HOOKS
            ]
            assert sum(sent) == len(names) * len(HOOKS)
            assert a.stop() == 0 and b.stop() == 0
        finally:
            a.__exit__()
            b.__exit__()
        stats = assert_once_each(server, shared, names, kills=0)
        assert stats["deliveries"] == len(names) * len(HOOKS)
        makers = {m for (m,) in read_state(shared, "SELECT made_by FROM digests")}
        assert makers <= {f"{os.uname().nodename}:{tmp_path.resolve() / r}" for r in ("a.db", "b.db")}
        for replica in ("a.db", "b.db"):  # each replica's own state database holds no digest
            assert read_state(tmp_path / replica, "SELECT count(*) FROM digests") == [(0,)]


def test_a_replica_takes_over_a_delivery_the_other_died_in(tmp_path: Path) -> None:
    write_city(tmp_path)
    names = ["d0"]
    shared = tmp_path / "shared.db"
    configured_before(shared, names, shared=True)
    with flaky_server() as server:
        server.post_delay = 1.5  # the receiver has the digest; the sender dies before it hears back
        a, b = (daemon(tmp_path, server, names, replica, shared=True) for replica in ("a", "b"))
        a.start()
        wait_for(lambda: len(received(server)) >= 1, 30, f"a digest posted\n{a.log()[-2000:]}")
        kill(a)
        server.post_delay = 0.0
        started = time.monotonic()
        with b:
            wait_for(lambda: all_delivered(shared, names), 40, f"taken over\n{b.log()[-2000:]}")
            assert b.stop() == 0
        # the claim of the dead replica ran out first (the notifier's 2 s timeout + 5 s)
        assert time.monotonic() - started < 30
        stats = assert_once_each(server, shared, names, kills=1)
        assert stats["again"] <= 1
