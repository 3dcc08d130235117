"""Alertmanager (real, from Debian) and a webhook receiver down for many retry cycles, then back.

While both are down the alerts keep changing: they fire, escalate, resolve and fire again, so
every delivery attempt fails and the outbox backs off. Once they are back, what must hold:

- the webhook got exactly what gridwatch queued for it, in the order it was queued: every
  notification once, each alert instance (fingerprint and startsAt) announced firing once per
  severity and resolved at most once, after its firing;
- Alertmanager holds exactly gridwatch's firing alerts, one instance each, with the startsAt of
  when they really fired (its re-sends after the outage neither duplicate nor resurrect them).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import pytest

from gridwatch.testing import DaemonProcess, free_port, wait_for
from tests.faults import alert_config, flaky_server, read_state
from tests.test_alertmanager import am_alerts, am_config, set_values, ts, write_data
from tests.test_notifiers import Recorder

pytestmark = pytest.mark.component

RETRY_CYCLES = 10


def level(value: float) -> str | None:
    """The severity the test rule gives a value (above 5 warning, above 8 critical)."""
    return "critical" if value > 8 else "warning" if value > 5 else None


def gridwatch_view(d: DaemonProcess) -> dict[str, tuple[str, str]]:
    return {a["labels"]["grid"]: (a["state"], a["severity"]) for a in d.json("/api/v1/alerts")}


def failures(d: DaemonProcess, notifier: str) -> float:
    return d.metric("gridwatch_notifications_total", notifier=notifier, outcome="failure") or 0


def test_alertmanager_and_a_webhook_down_for_many_retries_get_every_notification_once(tmp_path, alertmanager):
    am_receiver = Recorder().start()
    try:
        am = alertmanager(am_config(am_receiver))
        with flaky_server() as hook:
            data = write_data(tmp_path, {"G1": 1, "G2": 1})
            port = free_port()
            cfg = alert_config(tmp_path, port, f"{hook.url}/hook", am_urls=[am.url])
            cfg.write_text(cfg.read_text().replace('interval = "1s"', 'interval = "500ms"', 1), encoding="utf-8")
            with DaemonProcess(cfg, port) as d:
                wait_for(lambda: d.get("/readyz")[0] == 200, 15, f"ready\n{d.log()}")
                am.stop()
                hook.stop()

                # fire, escalate, resolve, fire again... until each receiver failed RETRY_CYCLES times
                cycle = [(7, 1), (9, 1), (9, 7), (1, 7), (1, 9), (7, 9), (7, 1), (1, 1)]
                steps = 0

                def step() -> None:
                    nonlocal steps
                    values = dict(zip(("G1", "G2"), map(float, cycle[steps % len(cycle)]), strict=True))
                    set_values(data, values)
                    steps += 1

                    def seen() -> bool:
                        view = gridwatch_view(d)
                        return all(
                            (view.get(g) or ("resolved", ""))[0] == ("firing" if level(v) else "resolved")
                            and (level(v) is None or view[g][1] == level(v))
                            for g, v in values.items()
                        )

                    wait_for(seen, 10, f"gridwatch to see {values}\n{d.log()[-3000:]}")

                while min(failures(d, "am"), failures(d, "hook")) < RETRY_CYCLES:
                    assert steps < 4 * len(cycle), f"too few failed deliveries\n{d.log()[-3000:]}"
                    step()
                assert d.metric("gridwatch_notification_queue_length", notifier="hook") > 0
                assert d.metric("gridwatch_notification_queue_length", notifier="am") > 0

                # both come back, on the same ports; the next change retries the queues at once (else
                # the backoff's next attempt, within 15 s, would)
                am.start()
                hook.start()
                step()
                for notifier in ("am", "hook"):
                    wait_for(
                        lambda n=notifier: d.metric("gridwatch_notification_queue_length", notifier=n) == 0,
                        25,
                        f"the {notifier} queue to drain\n{d.log()[-3000:]}",
                    )
                firing = {a["labels"]["grid"]: a for a in d.json("/api/v1/alerts") if a["state"] == "firing"}

                # Alertmanager: exactly gridwatch's firing alerts, one instance each, since they fired
                def am_matches() -> bool:
                    got = {g: am_alerts(am, g) for g in ("G1", "G2")}
                    return all(
                        len(got[g]) == (1 if g in firing else 0)
                        and all(
                            a["labels"]["severity"] == firing[g]["severity"]
                            and ts(a["startsAt"]) == pytest.approx(ts(firing[g]["active_since"]), abs=0.01)
                            and a["status"]["state"] == "active"
                            for a in got[g]
                        )
                        for g in ("G1", "G2")
                    )

                wait_for(am_matches, 10, f"Alertmanager to hold gridwatch's firing alerts: {firing}")
                assert d.metric("gridwatch_notifications_total", notifier="am", outcome="success") > 0
                print(  # shown with -s
                    f"outage: {steps} changes, failed deliveries am={failures(d, 'am'):g} hook={failures(d, 'hook'):g}"
                )
                assert d.stop() == 0

            # the webhook: exactly what was queued for it, in order, each once
            rows = read_state(tmp_path / "state.db", "SELECT payload FROM outbox WHERE notifier = 'hook' ORDER BY id")
            queued = [json.loads(p) for (p,) in rows]
            got = hook.alerts("/hook")

            def key(a: dict[str, Any]) -> tuple[str, str, str, str]:
                return a["fingerprint"], a["status"], a["labels"]["severity"], a["startsAt"]

            assert [key(a) for a in got] == [key(a) for a in queued]
            assert len(got) >= steps  # one notification per change at least
            per_instance: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
            for a in got:
                per_instance[(a["fingerprint"], a["startsAt"])].append((a["status"], a["labels"]["severity"]))
            for instance, seq in per_instance.items():
                assert seq[0][0] == "firing", (instance, seq)
                assert [s for s, _ in seq].count("resolved") <= 1 and seq[-1][0] in ("firing", "resolved")
                assert all(s == "firing" for s, _ in seq[:-1]), (instance, seq)  # nothing after the end
                assert max(Counter(seq).values()) == 1, (instance, seq)  # never twice as new
            assert len(per_instance) >= 4  # alerts fired again after resolving: new instances
            print(f"outage: webhook got {len(got)} notifications of {len(per_instance)} alert instances, each once")
    finally:
        am_receiver.stop()
