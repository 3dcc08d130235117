"""The digest ledger: which digest was made for which period, and where each copy went.

Tables (``gridwatch/store.py``, migration 3): ``digests`` has one row per (digest name, period),
made once (a UNIQUE key, inserted with its deliveries in one transaction, so a kill leaves both
or neither); ``digest_deliveries`` one per notifier with the rendered message, sent and re-sent
as it is; ``digest_watch`` when each digest was first configured.

A delivery is *claimed* before it is sent: the claim names the replica and lasts a lease
(longer than a send may take). A replica that dies mid-send leaves its claim; the same replica
takes it back at once when it restarts, another after the lease. So a digest is sent once, and
sent again (the same message) only when a kill or a crash fell between the receiver's answer and
the write that records it.
"""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from gridwatch.store import insert_rows, transaction

KEEP = 400 * 86400.0  # seconds a delivered digest stays in the ledger


def owed(db: sqlite_utils.Database, name: str, period: str, due_at: float, now: float) -> bool:
    """Whether the digest ``name`` still owes ``period``: not made yet, and due after the digest
    was first configured (recorded now, on first sight)."""
    with transaction(db) as conn:
        conn.execute("INSERT OR IGNORE INTO digest_watch (name, since) VALUES (?, ?)", [name, now])
    [(since,)] = db.execute("SELECT since FROM digest_watch WHERE name = ?", [name]).fetchall()
    if due_at <= since:
        return False
    return not db.execute("SELECT 1 FROM digests WHERE name = ? AND period = ?", [name, period]).fetchall()


def make(
    db: sqlite_utils.Database,
    row: dict[str, Any],
    messages: dict[str, dict[str, Any]],
    now: float,
) -> bool:
    """Record a digest and its deliveries (``notifier: message``) in one transaction; False when
    another process (a replica) made it first, and nothing is written."""
    with transaction(db) as conn:
        cur = conn.execute(
            "INSERT OR IGNORE INTO digests (name, period, kind, due_at, made_at, made_by) VALUES (?, ?, ?, ?, ?, ?)",
            [row["name"], row["period"], row["kind"], row["due_at"], now, row["made_by"]],
        )
        if cur.rowcount == 0:
            return False
        digest_id = cur.lastrowid
        insert_rows(
            conn,
            "digest_deliveries",
            [
                {
                    "digest_id": digest_id,
                    "notifier": notifier,
                    "payload": json.dumps(msg, ensure_ascii=False),
                    "attempts": 0,
                    "next_attempt": now,
                }
                for notifier, msg in messages.items()
            ],
        )
        conn.execute(  # the ledger stays small: a year and a month of delivered digests
            "DELETE FROM digest_deliveries WHERE digest_id IN (SELECT id FROM digests WHERE made_at < ?) "
            "AND delivered_at IS NOT NULL",
            [now - KEEP],
        )
        conn.execute(
            "DELETE FROM digests WHERE made_at < ? AND id NOT IN (SELECT digest_id FROM digest_deliveries)",
            [now - KEEP],
        )
    return True


def waiting(db: sqlite_utils.Database, notifiers: list[str], me: str, now: float) -> list[dict[str, Any]]:
    """Deliveries to ``notifiers`` that are due and not claimed by another live replica, oldest first."""
    if not notifiers:
        return []
    marks = ",".join("?" * len(notifiers))
    return list(
        db.query(
            "SELECT x.id, x.notifier, x.payload, x.attempts, d.name, d.period FROM digest_deliveries x "
            "JOIN digests d ON d.id = x.digest_id "
            f"WHERE x.delivered_at IS NULL AND x.next_attempt <= ? AND x.notifier IN ({marks}) "
            "AND (x.claimed_until IS NULL OR x.claimed_until < ? OR x.claimed_by = ?) ORDER BY x.id",
            [now, *notifiers, now, me],
        )
    )


def claim(db: sqlite_utils.Database, delivery: int, me: str, now: float, lease: float) -> bool:
    """Take a delivery for ``lease`` seconds; False when it was delivered or another replica holds it."""
    with transaction(db) as conn:
        cur = conn.execute(
            "UPDATE digest_deliveries SET claimed_by = ?, claimed_until = ? WHERE id = ? AND delivered_at IS NULL "
            "AND (claimed_until IS NULL OR claimed_until < ? OR claimed_by = ?)",
            [me, now + lease, delivery, now, me],
        )
        return cur.rowcount == 1


def delivered(db: sqlite_utils.Database, deliveries: dict[int, float]) -> None:
    """Mark deliveries (``id: when``) delivered."""
    with transaction(db) as conn:
        conn.executemany(
            "UPDATE digest_deliveries SET delivered_at = ?, claimed_until = NULL, last_error = NULL WHERE id = ?",
            [(when, i) for i, when in deliveries.items()],
        )


def failed(db: sqlite_utils.Database, delivery: int, attempts: int, retry_at: float, error: str) -> None:
    """A send failed: retry at ``retry_at``, by any replica."""
    with transaction(db) as conn:
        conn.execute(
            "UPDATE digest_deliveries SET attempts = ?, next_attempt = ?, last_error = ?, claimed_until = NULL "
            "WHERE id = ?",
            [attempts, retry_at, error[:500], delivery],
        )


def undelivered(db: sqlite_utils.Database, notifiers: list[str] | None = None) -> dict[str, int]:
    """Deliveries still waiting, per digest name (``gridwatch_digests_undelivered``); only those to
    ``notifiers`` when given (one no longer configured waits for nobody)."""
    only = "" if notifiers is None else f"AND x.notifier IN ({','.join('?' * len(notifiers))}) "
    return dict(
        db.execute(
            "SELECT d.name, count(*) FROM digest_deliveries x JOIN digests d ON d.id = x.digest_id "
            f"WHERE x.delivered_at IS NULL {only}GROUP BY d.name",
            list(notifiers or ()),
        ).fetchall()
    )
