"""The alert lifecycle: inactive → pending → firing → resolved, kept in the state database.

Each evaluation is one SQLite transaction that updates the alerts, appends their history and
queues the notifications those transitions cause — so a restart (even SIGKILL) neither
forgets a firing alert, nor restarts a pending timer, nor announces anything twice.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import sqlite_utils

from gridwatch.alerting.alert import FIRING, PENDING, RESOLVED, Alert, fingerprint, iso
from gridwatch.alerting.silences import Silence, load_silences
from gridwatch.api import Sample
from gridwatch.rules import PLACE, RANK, Hit, Rule, value_text
from gridwatch.store import insert_rows, transaction

log = logging.getLogger("gridwatch.alerting.engine")


@dataclass
class _Changes:
    """Alert changes the state database has not taken yet: one evaluation's, or several while the
    disk is full, so they all go in with one transaction once it takes writes again."""

    changed: dict[str, Alert] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    history: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    current: dict[str, float | None] = field(default_factory=dict)
    """alert id -> the value of its series when it resolved (None: the series is gone)"""

    def __bool__(self) -> bool:
        return bool(self.changed or self.deleted or self.history or self.outbox)

    def move(self, a: Alert, to: str, now: float) -> None:
        """Put an alert in state ``to`` and record the transition: the history keeps every one."""
        self.history.append(
            {
                "alert_id": a.id,
                "alert": a.alert,
                "labels": json.dumps(a.labels, ensure_ascii=False),
                "at": now,
                "from_state": a.state,
                "to_state": to,
                "severity": a.severity,
                "value": a.value,
            }
        )
        a.state = to
        self.changed[a.id] = a

    def drop(self, aid: str) -> None:
        """Delete an alert's row rather than write it: a deletion wins over any change before it."""
        self.changed.pop(aid, None)
        self.deleted.add(aid)

    def merge(self, later: _Changes) -> None:
        """Add a later evaluation's changes, so what the disk refused goes in with them."""
        for aid in later.deleted:
            self.drop(aid)
        self.changed.update(later.changed)
        self.history += later.history
        self.outbox += later.outbox
        self.current.update(later.current)


@dataclass(frozen=True)
class Route:
    """Which alerts a notifier receives."""

    notifier: str
    min_severity: str = "warning"
    match: Mapping[str, str] | None = None

    def accepts(self, labels: Mapping[str, str], severity: str) -> bool:
        if RANK.get(severity, 0) < RANK.get(self.min_severity, 0):
            return False
        return all(labels.get(k) == v for k, v in (self.match or {}).items())


class AlertEngine:
    """Owns alert state. Every method runs on the state database's thread."""

    def __init__(
        self,
        routes: Iterable[Route] = (),
        resolved_retention: float = 900.0,
        history: int = 10_000,
        external_url: str = "",
    ) -> None:
        self.routes = list(routes)
        self.resolved_retention = resolved_retention
        self.history = history
        self.external_url = external_url
        self.alerts: dict[str, Alert] | None = None
        self.silences: list[Silence] = []
        self.snapshot: list[Alert] = []  # a copy readers on other threads may use freely
        self.tally: dict[tuple[str, str], int] = {}  # (state, severity) -> alerts: every scrape shows it
        # (grid, alert, severity, summary, labels) of the firing alerts on a grid: what colours
        # the lights; the same object until one of them changes, so the lights are not recomputed
        self.lit: tuple[tuple[str, str, str, str, tuple[tuple[str, str], ...]], ...] = ()
        self.unwritten = _Changes()  # ahead of the state database until a write succeeds

    def adopt(self, other: AlertEngine) -> None:
        """Take over another engine's alerts when they are ahead of the state database (a reload
        while the disk is full), so no transition waiting to be written is lost."""
        self.alerts, self.silences, self.unwritten = other.alerts, other.silences, other.unwritten
        self._snap()

    def load(self, db: sqlite_utils.Database) -> None:
        self.alerts = {r["id"]: Alert.from_row(r) for r in db["alerts"].rows}
        self.silences = load_silences(db)
        self._snap()

    def _snap(self) -> None:
        self.snapshot = sorted(
            (replace(a) for a in (self.alerts or {}).values()), key=lambda a: (-a.active_since, a.id)
        )
        lit = tuple(
            sorted(
                (a.labels["grid"], a.alert, a.severity, a.summary, tuple(sorted(a.labels.items())))
                for a in self.snapshot
                if a.state == FIRING and "grid" in a.labels
            )
        )
        if lit != self.lit:
            self.lit = lit
        self.tally = dict(Counter((a.state, a.severity) for a in self.snapshot))

    def reload_silences(self, db: sqlite_utils.Database) -> None:
        """Pick up a silence added or expired outside an evaluation (the API, the CLI)."""
        self.silences = load_silences(db)

    def silenced(self, alert: Alert, now: float) -> bool:
        labels = {**alert.labels, "severity": alert.severity}
        return any(s.active(now) and s.matches(labels) for s in self.silences)

    def views(self, now: float) -> list[dict[str, Any]]:
        """Alerts newest first, as /api/v1/alerts shows them (safe from any thread)."""
        silences = self.silences
        return [
            a.view(any(s.active(now) and s.matches({**a.labels, "severity": a.severity}) for s in silences))
            for a in self.snapshot
        ]

    def step(
        self,
        db: sqlite_utils.Database,
        now: float,
        hits: Iterable[Hit],
        rules: Mapping[str, Rule],
        samples: Iterable[Sample] = (),
    ) -> set[str]:
        """Apply one evaluation at ``now``: transitions, history and notifications, atomically.

        ``samples`` are those the rules saw: an alert that resolves is announced with the value
        its series has now. Returns the notifiers that got new notifications. When the write
        fails the changes stay in memory (``unwritten``) and go in with the next evaluation's,
        and the error propagates.
        """
        if self.alerts is None:
            self.load(db)
        assert self.alerts is not None
        self.silences = load_silences(db)  # the CLI may have added one
        changes = _Changes()
        seen: set[str] = set()
        for hit in hits:
            aid = fingerprint(hit.labels)
            if aid not in seen:  # the first hit of a label set counts
                seen.add(aid)
                self._hold(changes, aid, hit, now)
        series = _Series(samples)
        for aid, a in list(self.alerts.items()):
            if aid not in seen:
                self._release(changes, a, now, rules.get(a.alert), series)
        for a in self.alerts.values():
            self._announce(changes, a, now, rules.get(a.alert))
        self._snap()
        for h in changes.history:
            # the alert and its grid (never a person: labels carry none), so a log tells which grid moved
            grid = json.loads(h["labels"]).get("grid", "-")
            log.info(
                "alert %s grid %s %s → %s (%s)",
                h["alert"],
                grid,
                h["from_state"],
                h["to_state"],
                h["severity"],
                extra={"alert": h["alert"], "grid": grid},
            )
        self.unwritten.merge(changes)
        return self._write(db)

    def _hold(self, changes: _Changes, aid: str, hit: Hit, now: float) -> None:
        """The transition of an alert whose rule holds: it starts pending (again, after a
        resolution) and fires once it has held for the rule's ``for``."""
        assert self.alerts is not None
        a = self.alerts.get(aid) or self._placed(changes, aid, hit)
        if a is None or a.state == RESOLVED:
            a = Alert(
                aid,
                hit.rule.alert,
                hit.labels,
                "inactive",
                hit.severity,
                hit.value,
                now,
                now,
                hit.summary,
                hit.description,
            )
            self.alerts[aid] = a
            changes.move(a, PENDING, now)
        a.value, a.severity, a.summary, a.description = hit.value, hit.severity, hit.summary, hit.description
        a.last_true = now
        changes.changed[aid] = a
        if a.state == PENDING and now - a.active_since >= hit.rule.for_:
            a.fired_at = now
            changes.move(a, FIRING, now)

    def _placed(self, changes: _Changes, aid: str, hit: Hit) -> Alert | None:
        """The alert a gridwatch kept before grid alerts carried their ``street`` and
        ``community``, taken over under its new labels, still pending or firing: an upgrade does
        not resolve and fire again every alert (nor tell the robots twice). None if there is none."""
        assert self.alerts is not None
        added = [k for k in PLACE if k in hit.labels and k not in hit.rule.labels]
        if not added:
            return None
        old = self.alerts.get(fingerprint({k: v for k, v in hit.labels.items() if k not in added}))
        if old is None or old.state not in (PENDING, FIRING):
            return None
        del self.alerts[old.id]
        changes.drop(old.id)
        a = replace(old, id=aid, labels=dict(hit.labels))
        self.alerts[aid] = a
        changes.changed[aid] = a
        return a

    def _release(self, changes: _Changes, a: Alert, now: float, rule: Rule | None, series: _Series) -> None:
        """The transition of an alert whose rule no longer holds: a pending one is forgotten, a
        firing one resolves after ``keep_firing_for`` (with the value its series has now), a
        resolved one is dropped after the retention (so the API still shows it for a while)."""
        assert self.alerts is not None
        keep = rule.keep_firing_for if rule is not None and rule.enabled else 0.0
        if a.state == PENDING:
            changes.move(a, "inactive", now)
            del self.alerts[a.id]
            changes.drop(a.id)
        elif a.state == FIRING and now - a.last_true >= keep:
            a.resolved_at = now
            current = series.value(a, rule)
            changes.current[a.id] = current
            if current is not None:
                a.value = current
            changes.move(a, RESOLVED, now)
        elif a.state == RESOLVED and now - (a.resolved_at or now) >= self.resolved_retention:
            del self.alerts[a.id]
            changes.drop(a.id)

    def _announce(self, changes: _Changes, a: Alert, now: float, rule: Rule | None) -> None:
        """Queue what receivers have not heard yet: a firing alert not announced at its current
        severity (unless silenced), or a resolution of one that was announced."""
        if a.state == FIRING and a.notified_severity != a.severity and not self.silenced(a, now):
            changes.outbox += self._notify(a, now, FIRING, rule, a.value)
            a.notified_severity = a.severity
            changes.changed[a.id] = a
        elif a.state == RESOLVED and a.notified_severity is not None:
            changes.outbox += self._notify(a, now, RESOLVED, rule, changes.current.get(a.id, a.value))
            a.notified_severity = None
            changes.changed[a.id] = a

    def _write(self, db: sqlite_utils.Database) -> set[str]:
        """Write every unwritten change in one transaction, so a crash never keeps half an
        evaluation; returns the notifiers with new rows in the outbox. On failure the changes
        stay unwritten for the next evaluation and the error propagates."""
        todo = self.unwritten
        if not todo:
            return set()
        with transaction(db) as conn:
            if todo.deleted:
                ids = list(todo.deleted)
                conn.execute(f"DELETE FROM alerts WHERE id IN ({','.join('?' * len(ids))})", ids)
            insert_rows(conn, "alerts", [a.row() for a in todo.changed.values()], replace=True)
            if todo.history:
                insert_rows(conn, "alert_history", todo.history)
                conn.execute(
                    "DELETE FROM alert_history WHERE id <= (SELECT max(id) FROM alert_history) - ?",
                    [self.history],
                )
            insert_rows(conn, "outbox", todo.outbox)
        self.unwritten = _Changes()
        return {r["notifier"] for r in todo.outbox}

    def _notify(
        self, a: Alert, now: float, status: str, rule: Rule | None = None, value: float | None = None
    ) -> list[dict[str, Any]]:
        """The outbox rows of one announcement, one per route that takes the alert at its severity."""
        payload = self.payload(a, now, status)
        payload["value"], payload["valueText"] = value, value_text(rule, value)
        severity = a.severity if status == FIRING else (a.notified_severity or a.severity)

        def row(notifier: str, body: dict[str, Any]) -> dict[str, Any]:
            return {
                "notifier": notifier,
                "payload": json.dumps(body, ensure_ascii=False),
                "created_at": now,
                "attempts": 0,
                "next_attempt": now,
                "delivered_at": None,
                "last_error": None,
            }

        rows = [row(r.notifier, payload) for r in self.routes if r.accepts(a.labels, severity)]
        old = a.notified_severity
        if status == FIRING and old is not None and old != a.severity:
            # a route that took the old severity but not the new one: for it the alert has ended
            ended = {**payload, "status": RESOLVED, "labels": {**a.labels, "severity": old}, "endsAt": iso(now)}
            ended.pop("previousSeverity", None)
            rows += [
                row(r.notifier, ended)
                for r in self.routes
                if r.accepts(a.labels, old) and not r.accepts(a.labels, a.severity)
            ]
        return rows

    def payload(self, a: Alert, now: float, status: str, ends_in: float = 0.0) -> dict[str, Any]:
        """An alert in Alertmanager's shape (API v2 and the webhook payload share it). An
        announcement adds ``value`` (a resolution's: the series' value now, None when the series
        is gone) and ``valueText`` (that value as the rule's summary writes it, 92%; "" for None)."""
        severity = a.severity if status == FIRING else (a.notified_severity or a.severity)
        out = {
            "status": status,
            "labels": {**a.labels, "severity": severity},
            "annotations": {k: v for k, v in (("summary", a.summary), ("description", a.description)) if v},
            "startsAt": iso(a.fired_at or a.active_since),
            "endsAt": iso(a.resolved_at) if status == RESOLVED else (iso(now + ends_in) if ends_in else None),
            "generatorURL": self.external_url,
            "fingerprint": a.id,
            "updatedAt": iso(now),
        }
        if status == FIRING and a.notified_severity and a.notified_severity != a.severity:
            out["previousSeverity"] = a.notified_severity
        return out

    def firing(self, now: float) -> list[Alert]:
        return [a for a in (self.alerts or {}).values() if a.state == FIRING and not self.silenced(a, now)]


class _Series:
    """The samples of one evaluation, looked up by the alert they would raise: built on the first
    question (an evaluation in which nothing resolves never indexes its samples)."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self._samples = samples
        self._by_metric: dict[str, list[Sample]] | None = None

    def value(self, a: Alert, rule: Rule | None) -> float | None:
        """The value of the series ``a`` watches, or None when it is gone (or the rule is)."""
        if rule is None or not rule.metric:
            return None
        if self._by_metric is None:
            self._by_metric = {}
            for s in self._samples:
                self._by_metric.setdefault(s.metric, []).append(s)
        # the alert's labels are the series' plus the grid's place, the rule's own and alertname
        beside = {"alertname", *PLACE, *rule.labels}
        for s in self._by_metric.get(rule.metric, ()):
            if all(a.labels.get(k) == v for k, v in s.labels.items()) and set(a.labels) - set(s.labels) <= beside:
                return s.value
        return None
