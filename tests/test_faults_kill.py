"""SIGKILL at random moments, over and over, while checks run and the outbox delivers.

The watched values change every few hundred milliseconds (alerts fire, escalate and resolve all
the time) and the webhook receiver is slow to answer, so kills land during check runs, rule
evaluations, state database writes and deliveries alike, and also during start-up. Delays come
from a seeded generator: ``GRIDWATCH_FAULT_SEED=N`` replays a failing run's kill schedule.

After every kill the state database must open cleanly (``PRAGMA integrity_check``) and be
consistent: an alert announced as firing has its notification queued or delivered, a resolved
one that was announced has its resolution queued, and each alert's state is the last one its
history records. At the end, after a clean run: the receiver got every notification ever
queued, every alert instance seen firing is still firing or its resolution was delivered, and
redeliveries (at least once: a kill between the receiver's answer and the write that records
it) are exact copies, at most one batch per kill.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gridwatch.alerting.alert import iso
from gridwatch.testing import DaemonProcess, free_port, wait_for
from tests.faults import FlakyServer, alert_config, flaky_server, integrity, kill, read_state
from tests.test_alertmanager import set_values, write_data

SEED = int(os.environ.get("GRIDWATCH_FAULT_SEED", "20261121"))
LEVELS = (1.0, 7.0, 9.0)  # none, warning, critical


class Churn:
    """Changes the watched values at random, from a thread, until stopped."""

    def __init__(self, data: Path, rng: random.Random) -> None:
        self.data, self.rng = data, rng
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="churn", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            set_values(self.data, {"G1": self.rng.choice(LEVELS), "G2": self.rng.choice(LEVELS)})
            self._stop.wait(self.rng.uniform(0.1, 0.4))

    def __enter__(self) -> Churn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def check_consistent(state_db: Path, where: str) -> list[tuple[str, float]]:
    """What must hold in a state database right after a kill; returns the firing instances."""
    assert integrity(state_db) == "ok", where
    alerts = read_state(state_db, "SELECT id, state, fired_at, notified_severity FROM alerts")
    rows = [json.loads(p) for (p,) in read_state(state_db, "SELECT payload FROM outbox WHERE notifier = 'hook'")]
    queued = {(r["fingerprint"], r["status"], r["labels"]["severity"], r["startsAt"]) for r in rows}
    firing = []
    for aid, state, fired_at, notified in alerts:
        starts = iso(fired_at)
        if notified is not None:  # announced: the notification saying so is queued or delivered
            assert (aid, "firing", notified, starts) in queued, f"{where}: {aid} announced, nothing queued"
        if state == "firing":
            firing.append((aid, fired_at))
        if state == "resolved" and any(q[0] == aid and q[1] == "firing" and q[3] == starts for q in queued):
            assert any(q[0] == aid and q[1] == "resolved" and q[3] == starts for q in queued), (
                f"{where}: {aid} resolved after being announced, its resolution not queued"
            )
        [(last,)] = read_state(
            state_db, "SELECT to_state FROM alert_history WHERE alert_id = ? ORDER BY id DESC LIMIT 1", (aid,)
        )
        assert last == state, f"{where}: {aid} is {state} but its history ends at {last}"
    return firing


def run_kills(tmp_path: Path, iterations: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    data = write_data(tmp_path, {"G1": 1, "G2": 1})
    state_db = tmp_path / "state.db"
    port = free_port()
    with flaky_server() as hook:
        hook.post_delay = 0.15
        cfg = alert_config(tmp_path, port, f"{hook.url}/hook")
        cfg.write_text(cfg.read_text().replace('interval = "1s"', 'interval = "300ms"', 1), encoding="utf-8")
        seen_firing: set[tuple[str, float]] = set()
        kills = {"start-up": 0, "running": 0}
        with Churn(data, random.Random(seed + 1)):
            for i in range(iterations):
                where = f"iteration {i} (GRIDWATCH_FAULT_SEED={seed})"
                d = DaemonProcess(cfg, port)
                if rng.random() < 0.2:  # during start-up: migrations, loading the alert state
                    d.start(wait=False)
                    time.sleep(rng.uniform(0.05, 1.0))  # the kill's moment, not a wait for a condition
                    kills["start-up"] += 1
                else:
                    d.start()
                    time.sleep(rng.uniform(0.2, 2.5))  # the kill's moment, not a wait for a condition
                    kills["running"] += 1
                kill(d)
                if state_db.exists():
                    seen_firing.update(check_consistent(state_db, where))

        # a clean run on settled values delivers what is left
        set_values(data, {"G1": 9, "G2": 1})
        hook.post_delay = 0.0
        with DaemonProcess(cfg, port) as d:
            wait_for(
                lambda: (
                    {a["labels"]["grid"]: a["state"] for a in d.json("/api/v1/alerts")}.get("G1") == "firing"
                    and d.metric("gridwatch_notification_queue_length", notifier="hook") == 0
                ),
                20,
                f"the settled state delivered\n{d.log()[-3000:]}",
            )
            assert d.stop() == 0
        final = check_consistent(state_db, "the end")
        return {
            "hook": hook,
            "state_db": state_db,
            "seen_firing": seen_firing,
            "final_firing": final,
            "kills": kills,
        }


def assert_nothing_lost(result: dict[str, Any]) -> dict[str, int]:
    hook: FlakyServer = result["hook"]
    state_db: Path = result["state_db"]
    rows = read_state(state_db, "SELECT payload, delivered_at FROM outbox WHERE notifier = 'hook' ORDER BY id")
    assert rows and all(delivered is not None for _, delivered in rows), "undelivered notifications left"
    queued = [json.loads(p) for p, _ in rows]

    def key(a: dict[str, Any]) -> tuple[str, str, str, str]:
        return a["fingerprint"], a["status"], a["labels"]["severity"], a["startsAt"]

    received = [key(a) for a in hook.alerts("/hook")]
    missing = [key(q) for q in queued if key(q) not in received]
    assert not missing, f"queued but never received: {missing}"
    extra = [k for k in received if k not in {key(q) for q in queued}]
    assert not extra, f"received but never queued: {extra}"
    # every instance seen firing after a kill is still firing, or its end reached the receiver
    final = {aid for aid, _ in result["final_firing"]}
    for aid, fired_at in result["seen_firing"]:
        if aid not in final or (aid, fired_at) not in set(result["final_firing"]):
            assert (aid, "resolved", iso(fired_at)) in {(k[0], k[1], k[3]) for k in received}, (aid, fired_at)
    duplicates = len(received) - len(set(received))
    kills = sum(result["kills"].values())
    posts = [b for p, b, _ in hook.posts if p == "/hook"]
    batches = len(posts) - len({json.dumps(b["alerts"], sort_keys=True) for b in posts})
    assert batches <= kills, f"{batches} redelivered batches for {kills} kills"
    return {"kills": kills, **result["kills"], "notifications": len(queued), "redelivered": duplicates}


def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    stats = assert_nothing_lost(run_kills(tmp_path, 6, SEED))
    print("sigkill:", stats)  # shown with -s: the numbers behind the reliability table
    assert stats["notifications"] > 0


@pytest.mark.soak
def test_sigkill_at_random_moments_loses_nothing_soak(tmp_path):
    stats = assert_nothing_lost(run_kills(tmp_path, 30, SEED + 30))
    print("sigkill soak:", stats)
    assert stats["notifications"] > 30
