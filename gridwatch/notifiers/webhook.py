"""The ``webhook`` notifier: a JSON POST in Alertmanager's webhook format (version 4).

The bridges operators already run for Alertmanager (SMS gateways, chat relays) accept it as is.
"""

from __future__ import annotations

from typing import Any

from pydantic import AnyHttpUrl

from gridwatch.api import Notifier, NotifierOptions
from gridwatch.hookspecs import hookimpl
from gridwatch.notifiers.http import post_json

ZERO_TIME = "0001-01-01T00:00:00Z"  # what Alertmanager puts in endsAt of a firing alert


def common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def webhook_payload(receiver: str, alerts: list[dict[str, Any]], external_url: str = "") -> dict[str, Any]:
    items = [
        {
            "status": a["status"],
            "labels": a["labels"],
            "annotations": a.get("annotations", {}),
            "startsAt": a["startsAt"],
            "endsAt": a["endsAt"] if a["status"] == "resolved" else ZERO_TIME,
            "generatorURL": a.get("generatorURL", ""),
            "fingerprint": a["fingerprint"],
        }
        for a in alerts
    ]
    labels = common([a["labels"] for a in items])
    group = {"alertname": labels["alertname"]} if "alertname" in labels else {}
    return {
        "version": "4",
        "groupKey": "{}:" + "{" + ",".join(f'{k}="{v}"' for k, v in group.items()) + "}",
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in items) else "resolved",
        "receiver": receiver,
        "groupLabels": group,
        "commonLabels": labels,
        "commonAnnotations": common([a["annotations"] for a in items]),
        "externalURL": external_url,
        "alerts": items,
    }


class WebhookNotifier(Notifier["WebhookNotifier.Options"]):
    type = "webhook"

    digest_format = "json"

    class Options(NotifierOptions):
        url: AnyHttpUrl

    async def send(self, session: Any, alerts: list[dict[str, Any]]) -> None:
        # every alert's generatorURL is gridwatch's [server] external_url: the backlink receivers show
        external_url = next((a["generatorURL"] for a in alerts if a.get("generatorURL")), "")
        body = webhook_payload(self.name, alerts, external_url)
        await post_json(session, str(self.options.url), body, self.options.timeout)

    async def send_digest(self, session: Any, message: dict[str, Any]) -> None:
        await post_json(session, str(self.options.url), message, self.options.timeout)


@hookimpl
def register_notifier_types() -> list[type[Notifier]]:
    return [WebhookNotifier]
