"""The ``log`` notifier: one structured log line per notification (for audits and testing)."""

from __future__ import annotations

import logging
from typing import Any

from gridwatch.api import Notifier
from gridwatch.hookspecs import hookimpl

log = logging.getLogger("gridwatch.notify")


class LogNotifier(Notifier):
    type = "log"

    async def send(self, session: Any, alerts: list[dict[str, Any]]) -> None:
        for a in alerts:
            log.info(
                "notification %s %s %s",
                a["status"],
                a["labels"].get("alertname"),
                a.get("annotations", {}).get("summary", ""),
                extra={
                    "notifier": self.name,
                    "status": a["status"],
                    "labels": a["labels"],
                    "fingerprint": a["fingerprint"],
                },
            )


@hookimpl
def register_notifier_types() -> list[type[Notifier]]:
    return [LogNotifier]
