"""``wecom`` and ``dingtalk``: group-robot webhooks with one Markdown message in Chinese per batch.

Both robots accept 20 messages a minute; the outbox groups what is queued into one message and
paces delivery with ``max_per_minute`` (default 20 here). Formats as documented by each
platform: WeCom ``{"msgtype": "markdown", "markdown": {"content": ...}}`` (content ≤ 4096
bytes); DingTalk ``{"msgtype": "markdown", "markdown": {"title", "text"}}``, signed with
``timestamp`` and ``sign`` = base64(HMAC-SHA256(secret, "timestamp\\nsecret")) when a secret
is set. A non-zero ``errcode`` in the answer is a failed delivery (retried).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote_plus

from pydantic import AnyHttpUrl, Field

from gridwatch.api import Notifier, NotifierOptions
from gridwatch.hookspecs import hookimpl
from gridwatch.notifiers.http import DeliveryError, post_json, safe_url

MAX_BYTES = 4000  # both robots cap a message near 4096 bytes; keep room for the tail line
SEVERITY_ZH = {"critical": "严重", "warning": "警告"}
STATUS_ZH = {"firing": "告警", "resolved": "已恢复"}


def markdown(alerts: list[dict[str, Any]]) -> tuple[str, str]:
    """(title, body): one line per alert, newest problems first, cut to fit the robot's limit."""
    firing = sum(a["status"] == "firing" for a in alerts)
    title = f"网格监测：{firing} 条告警，{len(alerts) - firing} 条恢复"
    lines = [f"### {title}"]
    for i, a in enumerate(sorted(alerts, key=lambda a: a["status"] != "firing")):
        labels = a["labels"]
        severity = SEVERITY_ZH.get(labels.get("severity", ""), labels.get("severity", ""))
        summary = a.get("annotations", {}).get("summary") or labels.get("alertname", "")
        colour = "warning" if a["status"] == "firing" else "info"
        line = (
            f'- <font color="{colour}">【{STATUS_ZH[a["status"]]}·{severity}】</font>'
            f"{summary}（{labels.get('alertname', '')}）"
        )
        tail = f"\n…及其他 {len(alerts) - i} 条"
        if len("\n".join([*lines, line]).encode()) + len(tail.encode()) > MAX_BYTES:
            lines.append(tail.strip())
            break
        lines.append(line)
    return title, "\n".join(lines)


class RobotOptions(NotifierOptions):
    url: AnyHttpUrl
    max_per_minute: int = Field(20, ge=0)


class WeComNotifier(Notifier[RobotOptions]):
    type = "wecom"
    Options = RobotOptions
    digest_format = "markdown"
    digest_bytes = 4096  # the documented limit of markdown.content

    async def send(self, session: Any, alerts: list[dict[str, Any]]) -> None:
        _title, body = markdown(alerts)
        await self._post(session, body)

    async def send_digest(self, session: Any, message: dict[str, Any]) -> None:
        await self._post(session, message["text"])

    async def _post(self, session: Any, body: str) -> None:
        answer = await post_json(
            session,
            str(self.options.url),
            {"msgtype": "markdown", "markdown": {"content": body}},
            self.options.timeout,
        )
        _check(answer, self.options.url)


class DingTalkOptions(RobotOptions):
    secret: str | None = None
    """the robot's signing secret (加签), usually ``${DINGTALK_SECRET}``"""


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


class DingTalkNotifier(Notifier[DingTalkOptions]):
    type = "dingtalk"
    Options = DingTalkOptions
    digest_format = "markdown"
    digest_bytes = 20000  # the documented limit of a message

    async def send(self, session: Any, alerts: list[dict[str, Any]]) -> None:
        await self._post(session, *markdown(alerts))

    async def send_digest(self, session: Any, message: dict[str, Any]) -> None:
        await self._post(session, message["title"], message["text"])

    async def _post(self, session: Any, title: str, body: str) -> None:
        url = str(self.options.url)
        if self.options.secret:
            ts = int(time.time() * 1000)
            url += ("&" if "?" in url else "?") + f"timestamp={ts}&sign={dingtalk_sign(self.options.secret, ts)}"
        answer = await post_json(
            session,
            url,
            {"msgtype": "markdown", "markdown": {"title": title, "text": body}},
            self.options.timeout,
        )
        _check(answer, self.options.url)


def _check(answer: Any, url: Any) -> None:
    if isinstance(answer, dict) and answer.get("errcode", 0) != 0:
        raise DeliveryError(f"{safe_url(str(url))}: errcode {answer.get('errcode')} {answer.get('errmsg', '')}")


@hookimpl
def register_notifier_types() -> list[type[Notifier]]:
    return [WeComNotifier, DingTalkNotifier]
