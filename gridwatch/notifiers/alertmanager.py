"""The ``alertmanager`` notifier: Alertmanager's API v2, as Prometheus speaks it.

Firing alerts are re-sent on an interval with ``endsAt`` in the future, resolved ones are sent
with their end time, so Alertmanager's grouping, inhibition, silences and HA deduplication
work unchanged. Every URL of a cluster gets every alert.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydantic import AnyHttpUrl, Field

from gridwatch.alerting.alert import iso
from gridwatch.api import Notifier, NotifierOptions
from gridwatch.durations import Duration
from gridwatch.hookspecs import hookimpl
from gridwatch.notifiers.http import DeliveryError, post_json

log = logging.getLogger("gridwatch.notifiers.alertmanager")


class AlertmanagerNotifier(Notifier["AlertmanagerNotifier.Options"]):
    type = "alertmanager"

    class Options(NotifierOptions):
        urls: list[AnyHttpUrl] = Field(min_length=1)
        resend_interval: Duration = 60.0

    def __init__(self, name: str, options: Any, env: Any) -> None:
        super().__init__(name, options, env)
        self.resend_interval = options.resend_interval
        self.endpoints = [str(u).rstrip("/") + "/api/v2/alerts" for u in options.urls]

    def _body(self, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for a in alerts:
            item = {k: a[k] for k in ("labels", "annotations", "startsAt", "generatorURL") if a.get(k)}
            if a.get("endsAt"):
                item["endsAt"] = a["endsAt"]
            elif a["status"] == "firing":  # ends by itself if gridwatch stops re-sending
                item["endsAt"] = iso(time.time() + 4 * (self.resend_interval or 60.0))
            out.append(item)
            previous = a.get("previousSeverity")
            if previous:  # the escalated alert replaces the old one, which ends now
                out.append(
                    {
                        **item,
                        "labels": {**a["labels"], "severity": previous},
                        "endsAt": a["updatedAt"],
                    }
                )
        return out

    async def send(self, session: Any, alerts: list[dict[str, Any]]) -> None:
        body = self._body(alerts)
        results = await asyncio.gather(
            *(post_json(session, url, body, self.options.timeout) for url in self.endpoints),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, Exception)]
        for e in errors:
            log.warning("notifier %s: %s", self.name, e)
        if len(errors) == len(results):  # one live member of the cluster is enough: it gossips
            raise DeliveryError("; ".join(str(e) for e in errors))

    async def resend(self, session: Any, firing: list[dict[str, Any]]) -> None:
        if firing:
            await self.send(session, firing)


@hookimpl
def register_notifier_types() -> list[type[Notifier]]:
    return [AlertmanagerNotifier]
