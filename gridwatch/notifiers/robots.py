"""``wecom`` and ``dingtalk``: group-robot webhooks with one Markdown message in Chinese per batch.

Both robots accept 20 messages a minute; the outbox groups what is queued into one message and
paces delivery with ``max_per_minute`` (default 20 here). Formats as documented by each
platform: WeCom ``{"msgtype": "markdown", "markdown": {"content": ...}}`` (content ≤ 4096
bytes); DingTalk ``{"msgtype": "markdown", "markdown": {"title", "text"}}``, signed with
``timestamp`` and ``sign`` = base64(HMAC-SHA256(secret, "timestamp\\nsecret")) when a secret
is set. A non-zero ``errcode`` in the answer is a failed delivery (retried).

A duty officer reads the message at a glance: 严重 in red, 一般 in orange (WeCom has no red: its
橙红 and 灰 instead), what recovered in green with the time and the value now, the grid's street and
community, local times, and a link to the grid on the board when ``[server] external_url`` is set.
Every value from data (a grid's name, a label) is escaped, so it cannot add Markdown of its own:
a link, an ``<@all>``, or a forged line of a message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import quote, quote_plus
from zoneinfo import ZoneInfo

from pydantic import AnyHttpUrl, Field

from gridwatch.api import Notifier, NotifierOptions
from gridwatch.hookspecs import hookimpl
from gridwatch.names import DisplayNames
from gridwatch.notifiers.http import DeliveryError, post_json, safe_url

MAX_BYTES = 4000  # both robots cap a message near 4096 bytes; keep room for the tail line
DEFAULT_TZ = ZoneInfo("Asia/Shanghai")  # the config's default, for a robot built without one


@dataclass(frozen=True)
class Palette:
    """The colours of a robot's Markdown: what ``<font color>`` takes for each kind of line."""

    critical: str
    warning: str
    resolved: str


DINGTALK_COLOURS = Palette(critical="#E53935", warning="#FB8C00", resolved="#43A047")
"""DingTalk renders hex colours only (six digits): red, orange, green."""
WECOM_COLOURS = Palette(critical="warning", warning="comment", resolved="info")
"""WeCom's Markdown has three named colours only: 橙红 (``warning``), 灰 (``comment``), 绿 (``info``)."""

# what a value from data must not bring into a robot's Markdown: tags (<font>, <@all>), links,
# emphasis, headings, quotes, tables, entities, and the 【】 of the status tags this module writes
_MARKDOWN = str.maketrans(
    {
        "<": "＜",
        ">": "＞",
        "[": "［",
        "]": "］",
        "(": "（",
        ")": "）",
        "*": "＊",
        "_": "＿",
        "`": "｀",
        "#": "＃",
        "|": "｜",
        "~": "～",
        "!": "！",
        "&": "＆",
        "@": "＠",
        "\\": "＼",
        "【": "〔",
        "】": "〕",
    }
)


def escape(text: object) -> str:
    """A value from data as plain text inside a robot's Markdown: on one line (a line break would
    forge a line of its own), its Markdown and HTML characters replaced by their full-width forms
    so they read the same and do nothing."""
    one_line = " ".join(str(text).split())  # every line break and control space, collapsed
    return "".join(c for c in one_line if c.isprintable()).translate(_MARKDOWN)


def _link(base: str, grid: str) -> str:
    """The board with a grid's detail open: ``{external_url}/?grid=ID``, safe inside ``(...)``."""
    url = f"{base.rstrip('/')}/?grid={quote(grid, safe='')}"
    return quote(url, safe=":/?=&%#+,;@!$'-._")


def _when(iso: str | None, tz: tzinfo, now: datetime) -> str:
    """A local time a duty officer reads: 10:31 today, 09-24 10:31 another day."""
    if not iso:
        return ""
    try:
        at = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(tz)
    except ValueError:
        return ""
    return at.strftime("%H:%M") if at.date() == now.astimezone(tz).date() else at.strftime("%m-%d %H:%M")


def markdown(
    alerts: list[dict[str, Any]],
    palette: Palette = DINGTALK_COLOURS,
    tz: tzinfo = DEFAULT_TZ,
    names: DisplayNames | None = None,
    now: datetime | None = None,
) -> tuple[str, str]:
    """(title, body): one entry per alert, critical first, then warnings, then what recovered,
    cut to fit the robot's limit. An entry is the summary after a coloured 【严重】 or 【一般】
    (【已恢复·严重】 when it ended), and a quoted line with the grid's street and community, the
    local time it began (or ended, with the value now) and a link to the grid on the board."""
    names = names or DisplayNames()
    now = now or datetime.now(tz)
    firing = [a for a in alerts if a["status"] == "firing"]
    critical = sum(a["labels"].get("severity") == "critical" for a in firing)
    parts = []
    if firing:
        parts.append(
            f"{len(firing)} 条告警" + (f"（{names.name('severity', 'critical')} {critical} 条）" if critical else "")
        )
    if len(alerts) > len(firing):
        parts.append(f"{len(alerts) - len(firing)} 条已恢复")
    title = "网格监测：" + "，".join(parts)
    order = sorted(alerts, key=lambda a: (a["status"] != "firing", a["labels"].get("severity") != "critical"))
    entries = [f"### {title}"]
    for i, a in enumerate(order):
        entry = _entry(a, palette, tz, names, now)
        tail = f"…及其他 {len(alerts) - i} 条"
        if len("\n\n".join([*entries, entry, tail]).encode()) > MAX_BYTES:
            entries.append(tail)
            break
        entries.append(entry)
    return title, "\n\n".join(entries)


def _entry(a: dict[str, Any], palette: Palette, tz: tzinfo, names: DisplayNames, now: datetime) -> str:
    labels = a["labels"]
    code = str(labels.get("severity", ""))
    severity = escape(names.name("severity", code))
    summary = escape(a.get("annotations", {}).get("summary") or "")
    if a["status"] == "firing":
        colour = palette.critical if code == "critical" else palette.warning
        head = f'<font color="{colour}">【{severity}】</font>{summary}'
        when = f"{_when(a.get('startsAt'), tz, now)} 起"
    else:
        head = f'<font color="{palette.resolved}">【已恢复·{severity}】</font>{summary}'
        value = escape(a.get("valueText") or "")
        when = f"{_when(a.get('endsAt'), tz, now)} 已恢复" + (f"，当前值 {value}" if value else "")
    detail = [escape(labels[k]) for k in ("street", "community") if labels.get(k)]
    detail.append(when.strip())
    base, grid = str(a.get("generatorURL") or ""), labels.get("grid")
    if base.startswith(("http://", "https://")) and grid:
        detail.append(f"[查看网格]({_link(base, str(grid))})")
    return f"{head}\n> {' · '.join(detail)}"


class RobotOptions(NotifierOptions):
    url: AnyHttpUrl
    max_per_minute: int = Field(20, ge=0)


class WeComNotifier(Notifier[RobotOptions]):
    type = "wecom"
    Options = RobotOptions
    digest_format = "markdown"
    digest_bytes = 4096  # the documented limit of markdown.content

    async def send(self, session: Any, alerts: list[dict[str, Any]]) -> None:
        _title, body = markdown(alerts, WECOM_COLOURS, *_place(self))
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
        await self._post(session, *markdown(alerts, DINGTALK_COLOURS, *_place(self)))

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


def _place(notifier: Notifier[Any]) -> tuple[tzinfo, DisplayNames]:
    """The configured timezone and display names (the defaults for a robot built without them)."""
    env = notifier.env
    tz = getattr(env, "tz", None) or DEFAULT_TZ
    names = getattr(env, "names", None)
    return tz, names if isinstance(names, DisplayNames) else DisplayNames()


def _check(answer: Any, url: Any) -> None:
    if isinstance(answer, dict) and answer.get("errcode", 0) != 0:
        raise DeliveryError(f"{safe_url(str(url))}: errcode {answer.get('errcode')} {answer.get('errmsg', '')}")


@hookimpl
def register_notifier_types() -> list[type[Notifier]]:
    return [WeComNotifier, DingTalkNotifier]
