"""The alert lifecycle on hand-computed timelines, the outbox, and what each notifier sends.

The engine runs on a real state database and is stepped at chosen times; the notifiers post
to a local HTTP server that records every request, and the bodies are checked against each
receiver's documented format (Alertmanager's webhook, WeCom and DingTalk group robots).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web

from gridwatch.alerting.alert import iso
from gridwatch.alerting.engine import AlertEngine, Route
from gridwatch.alerting.outbox import Outbox, queue_lengths
from gridwatch.alerting.silences import add_silence
from gridwatch.api import Grid, Sample
from gridwatch.cli import main
from gridwatch.notifiers.alertmanager import AlertmanagerNotifier
from gridwatch.notifiers.robots import DingTalkNotifier, WeComNotifier
from gridwatch.notifiers.webhook import WebhookNotifier
from gridwatch.rules import Rule, evaluate
from gridwatch.store import Store
from gridwatch.testing import wait_for

# -- a local HTTP receiver ---------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]  # decoded
    query_string: str  # as sent, still percent-encoded
    body: Any  # decoded JSON (or text)
    at: float


class Recorder:
    """An aiohttp server on 127.0.0.1 in a thread of its own, recording every request.

    ``answer(path, (status, json), ...)`` scripts the answers for a path, in order; the last
    one repeats. Unscripted paths answer ``200 {"errcode": 0, "errmsg": "ok"}``.
    """

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._script: dict[str, list[tuple[int, Any]]] = {}
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="recorder", daemon=True)
        self._runner: web.AppRunner | None = None

    def answer(self, path: str, *answers: tuple[int, Any]) -> None:
        with self._lock:
            self._script[path] = list(answers)

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def bodies(self, path: str | None = None) -> list[Any]:
        return [r.body for r in self.received(path)]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            self.requests.append(
                Received(request.method, request.path, dict(request.query), request.query_string, body, time.time())
            )
            script = self._script.get(request.path) or [(200, {"errcode": 0, "errmsg": "ok"})]
            status, answer = script.pop(0) if len(script) > 1 else script[0]
        return web.json_response(answer, status=status)

    async def _setup(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    def start(self) -> Recorder:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._setup(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._sock.close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder().start()
    try:
        yield r
    finally:
        r.stop()


# -- the engine on a real state database --------------------------------------------------------

T0 = 1_780_000_000.0  # 2026-05-28, a fixed instant: every time below is T0 + hand-computed seconds
METRIC = "gridwatch_visit_coverage_ratio"
GRIDS = {
    "G1": Grid("G1", "东湖一网格", "东湖社区", "东街街道"),
    "G2": Grid("G2", "西河二网格", "西河社区", "西街街道"),
    "G3": Grid("G3", "南山三网格", "南山社区", "东街街道"),
}


class Bench:
    """An AlertEngine stepped at chosen times with chosen values, on a real state database."""

    def __init__(self, tmp_path: Path, rules: list[dict[str, Any]], routes: list[Route], external_url: str = ""):
        self.store = Store(tmp_path / "state.db")
        self.store.open()
        self.rules = {r.alert: r for r in (Rule.model_validate(x) for x in rules)}
        self.engine = AlertEngine(routes, external_url=external_url)

    def step(self, now: float, values: dict[str, float], metric: str = METRIC) -> None:
        samples = [Sample(metric, {"grid": g}, v) for g, v in values.items()]
        hits = evaluate(self.rules.values(), samples, GRIDS)
        self.store.call(self.engine.step, now, hits, self.rules, samples)

    def state(self, grid: str = "G1") -> str | None:
        found = [a.state for a in self.engine.snapshot if a.labels.get("grid") == grid]
        assert len(found) <= 1
        return found[0] if found else None

    def alert(self, grid: str = "G1") -> Any:
        [a] = [a for a in self.engine.snapshot if a.labels.get("grid") == grid]
        return a

    def outbox(self, notifier: str | None = None) -> list[dict[str, Any]]:
        rows = self.store.call(
            lambda db: list(db.query("SELECT id, notifier, payload, delivered_at, attempts FROM outbox ORDER BY id"))
        )
        return [{**r, "payload": json.loads(r["payload"])} for r in rows if notifier in (None, r["notifier"])]

    def history(self) -> list[tuple[float, str, str]]:
        rows = self.store.call(lambda db: list(db.query("SELECT at, from_state, to_state FROM alert_history")))
        return [(r["at"], r["from_state"], r["to_state"]) for r in rows]


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Any]:
    made: list[Bench] = []

    def make(rules: list[dict[str, Any]], routes: list[Route] | None = None, **kw: Any) -> Bench:
        b = Bench(tmp_path / f"b{len(made)}", rules, routes if routes is not None else [Route("am")], **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.store.close()


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def coverage_rule(**kw: Any) -> dict[str, Any]:
    return {
        "alert": "VisitCoverageLow",
        "metric": METRIC,
        "below": {"warning": 0.8, "critical": 0.5},
        "summary": "{grid_name}走访覆盖率 {value:.0%}",
        **kw,
    }


def test_for_pending_then_firing_exactly_when_for_has_passed(bench):
    b = bench([coverage_rule(**{"for": "60s"})])
    b.step(T0, {"G1": 0.3})
    assert b.state() == "pending" and b.alert().active_since == T0
    b.step(T0 + 30, {"G1": 0.3})
    b.step(T0 + 59, {"G1": 0.3})
    assert b.state() == "pending"
    assert b.outbox() == []  # a pending alert is nobody's business yet
    b.step(T0 + 60, {"G1": 0.3})
    assert b.state() == "firing"
    [row] = b.outbox()
    p = row["payload"]
    assert (row["notifier"], p["status"], p["startsAt"], p["endsAt"]) == ("am", "firing", iso(T0 + 60), None)
    # the grid's street and community from the registry: a receiver routes by street
    place = {"street": "东街街道", "community": "东湖社区"}
    assert p["labels"] == {"alertname": "VisitCoverageLow", "grid": "G1", **place, "severity": "critical"}
    assert b.history() == [(T0, "inactive", "pending"), (T0 + 60, "pending", "firing")]
    # later evaluations of the same firing alert queue nothing more
    b.step(T0 + 61, {"G1": 0.3})
    b.step(T0 + 120, {"G1": 0.31})
    assert len(b.outbox()) == 1
    # the condition clears: resolved at that evaluation, and receivers hear it once
    b.step(T0 + 130, {"G1": 0.95})
    assert b.state() == "resolved"
    resolved = b.outbox()[1]["payload"]
    assert (resolved["status"], resolved["startsAt"], resolved["endsAt"]) == ("resolved", iso(T0 + 60), iso(T0 + 130))
    assert resolved["fingerprint"] == p["fingerprint"]
    b.step(T0 + 140, {"G1": 0.95})
    assert len(b.outbox()) == 2


def test_a_pending_alert_whose_condition_clears_starts_its_timer_again(bench):
    b = bench([coverage_rule(**{"for": "60s"})])
    b.step(T0, {"G1": 0.3})
    b.step(T0 + 50, {"G1": 0.9})  # cleared before `for` passed: forgotten, never announced
    assert b.state() is None
    b.step(T0 + 55, {"G1": 0.3})
    assert b.alert().active_since == T0 + 55
    b.step(T0 + 60, {"G1": 0.3})
    b.step(T0 + 114, {"G1": 0.3})
    assert b.state() == "pending"
    b.step(T0 + 115, {"G1": 0.3})
    assert b.state() == "firing"
    assert [r["payload"]["status"] for r in b.outbox()] == ["firing"]


def test_keep_firing_for_holds_the_alert_until_last_true_plus_keep(bench):
    b = bench([coverage_rule(keep_firing_for="30s")])
    b.step(T0, {"G1": 0.3})
    assert b.state() == "firing"  # no `for`: firing at once
    b.step(T0 + 10, {"G1": 0.3})  # last true
    b.step(T0 + 20, {"G1": 0.9})
    b.step(T0 + 39, {"G1": 0.9})
    assert b.state() == "firing"
    b.step(T0 + 40, {"G1": 0.9})
    assert b.state() == "resolved" and b.alert().resolved_at == T0 + 40
    assert [r["payload"]["status"] for r in b.outbox()] == ["firing", "resolved"]


def test_keep_firing_for_a_flapping_condition_announces_nothing_new(bench):
    b = bench([coverage_rule(keep_firing_for="30s")])
    b.step(T0, {"G1": 0.3})
    b.step(T0 + 10, {"G1": 0.9})
    b.step(T0 + 20, {"G1": 0.3})  # back within the keep window: last_true moves on
    b.step(T0 + 45, {"G1": 0.9})
    assert b.state() == "firing"
    b.step(T0 + 50, {"G1": 0.9})
    assert b.state() == "resolved"
    assert [r["payload"]["status"] for r in b.outbox()] == ["firing", "resolved"]


def test_escalation_and_back_is_one_alert_announced_at_each_severity(bench):
    b = bench([coverage_rule()], [Route("am"), Route("duty", min_severity="critical")])
    b.step(T0, {"G1": 0.7})
    first = b.alert()
    assert (first.state, first.severity) == ("firing", "warning")
    b.step(T0 + 10, {"G1": 0.4})
    b.step(T0 + 20, {"G1": 0.45})  # still critical, new value: nothing new to announce
    b.step(T0 + 30, {"G1": 0.7})
    b.step(T0 + 40, {"G1": 0.9})
    assert {a.id for a in b.engine.snapshot} == {first.id}
    assert b.history() == [(T0, "inactive", "pending"), (T0, "pending", "firing"), (T0 + 40, "firing", "resolved")]

    am = [r["payload"] for r in b.outbox("am")]
    assert [(p["status"], p["labels"]["severity"], p.get("previousSeverity")) for p in am] == [
        ("firing", "warning", None),
        ("firing", "critical", "warning"),
        ("firing", "warning", "critical"),
        ("resolved", "warning", None),
    ]
    assert {p["fingerprint"] for p in am} == {first.id}
    assert {p["startsAt"] for p in am} == {iso(T0)}

    # the critical-only route hears the critical alert start, and end when it calms down
    duty = [r["payload"] for r in b.outbox("duty")]
    assert [(p["status"], p["labels"]["severity"]) for p in duty] == [("firing", "critical"), ("resolved", "critical")]
    assert duty[1]["endsAt"] == iso(T0 + 30)

    # what Alertmanager is told: the alert at the new severity, and the old one ended now
    notifier = AlertmanagerNotifier("am", AlertmanagerNotifier.Options(urls=["http://127.0.0.1:1"]), None)
    up = notifier._body([am[1]])
    assert [(x["labels"]["severity"], x["startsAt"]) for x in up] == [("critical", iso(T0)), ("warning", iso(T0))]
    assert up[1]["endsAt"] == iso(T0 + 10)
    assert ts(up[0]["endsAt"]) > time.time()  # firing: ends by itself unless re-sent
    down = notifier._body([am[2]])
    assert [(x["labels"]["severity"], x["endsAt"]) for x in down][1] == ("critical", iso(T0 + 30))
    ended = notifier._body([am[3]])
    assert [(x["labels"]["severity"], x["endsAt"]) for x in ended] == [("warning", iso(T0 + 40))]


def test_label_matchers_see_the_grid_registry(bench):
    b = bench([coverage_rule(match={"street": "东街街道"}, labels={"team": "东街网格中心"})])
    b.step(T0, {"G1": 0.3, "G2": 0.3, "G3": 0.7})
    assert (b.state("G1"), b.state("G2"), b.state("G3")) == ("firing", None, "firing")
    labels = b.alert("G3").labels
    assert labels == {
        "alertname": "VisitCoverageLow",
        "grid": "G3",
        "street": "东街街道",
        "community": "南山社区",
        "team": "东街网格中心",
    }


def test_templates_render_chinese_text_and_format_specs(bench):
    b = bench(
        [
            coverage_rule(
                summary="{grid_name}（{community}）走访覆盖率仅 {value:.0%}",
                description="{street}{grid_name}：{severity} 级，{household}请尽快安排走访",
            )
        ]
    )
    b.step(T0, {"G1": 0.456})
    a = b.alert()
    assert a.summary == "东湖一网格（东湖社区）走访覆盖率仅 46%"
    assert a.description == "东街街道东湖一网格：critical 级，请尽快安排走访"  # an unknown field renders empty
    [row] = b.outbox()
    assert row["payload"]["annotations"] == {"summary": a.summary, "description": a.description}
    raw = b.store.call(lambda db: db.execute("SELECT payload FROM outbox").fetchone()[0])
    assert "走访覆盖率仅 46%" in raw  # stored as text, not \\u escapes


def test_a_silenced_alert_is_queued_only_after_the_silence_expires(bench):
    b = bench([coverage_rule()])
    matchers = [{"name": "grid", "value": "G1", "isRegex": False}]
    b.store.call(add_silence, matchers, T0 - 10, T0 + 100, "张三", "停电检修", T0 - 10)
    b.step(T0, {"G1": 0.3, "G2": 0.3})
    assert (b.state("G1"), b.state("G2")) == ("firing", "firing")
    assert [r["payload"]["labels"]["grid"] for r in b.outbox()] == ["G2"]
    views = {v["labels"]["grid"]: v["silenced"] for v in b.engine.views(T0 + 1)}
    assert views == {"G1": True, "G2": False}
    b.step(T0 + 99, {"G1": 0.3, "G2": 0.3})
    assert len(b.outbox()) == 1
    b.step(T0 + 100, {"G1": 0.3, "G2": 0.3})  # the silence ends at T0 + 100
    [_, row] = b.outbox()
    assert (row["payload"]["status"], row["payload"]["labels"]["grid"]) == ("firing", "G1")


def test_a_silence_on_severity_lets_the_other_severity_through(bench):
    b = bench([coverage_rule()])
    matchers = [{"name": "severity", "value": "warning", "isRegex": False}]
    b.store.call(add_silence, matchers, T0 - 10, T0 + 3600, "李四", "只看严重的", T0 - 10)
    b.step(T0, {"G1": 0.7})
    assert b.outbox() == []
    b.step(T0 + 10, {"G1": 0.3})
    assert [(r["payload"]["status"], r["payload"]["labels"]["severity"]) for r in b.outbox()] == [
        ("firing", "critical")
    ]


def test_outbox_rows_are_routed_by_min_severity_and_match(bench):
    routes = [
        Route("all"),
        Route("duty", min_severity="critical"),
        Route("east", match={"grid": "G1"}),
    ]
    b = bench([coverage_rule()], routes)
    b.step(T0, {"G1": 0.7, "G2": 0.3})
    got = sorted(
        (r["notifier"], r["payload"]["labels"]["grid"], r["payload"]["labels"]["severity"]) for r in b.outbox()
    )
    assert got == [
        ("all", "G1", "warning"),
        ("all", "G2", "critical"),
        ("duty", "G2", "critical"),
        ("east", "G1", "warning"),
    ]
    b.step(T0 + 10, {})
    resolved = sorted(
        (r["notifier"], r["payload"]["labels"]["grid"]) for r in b.outbox() if r["payload"]["status"] == "resolved"
    )
    assert resolved == [("all", "G1"), ("all", "G2"), ("duty", "G2"), ("east", "G1")]


# -- the outbox and the receivers ---------------------------------------------------------------


def firing_now(tmp_path: Path, routes: list[Route], grids: dict[str, float], **kw: Any) -> Bench:
    """A bench with alerts firing as of the real clock (the outbox delivers what is due now)."""
    b = Bench(tmp_path, [coverage_rule()], routes, **kw)
    b.step(time.time(), grids)
    return b


def run_outbox(b: Bench, notifiers: dict[str, Any], timeout: float = 10.0) -> Outbox:
    """Run an Outbox with its delivery loops until every queued notification is delivered."""

    def undelivered() -> int:
        return sum(b.store.call(queue_lengths).values())

    async def go() -> Outbox:
        outbox = Outbox(b.store, b.engine, notifiers)
        outbox.start()
        try:
            end = time.monotonic() + timeout
            while undelivered():
                assert time.monotonic() < end, "timed out waiting for the outbox"
                await asyncio.sleep(0.05)
        finally:
            await outbox.stop()
        return outbox

    return asyncio.run(go())


def robot(cls: type, url: str, **options: Any) -> Any:
    return cls("robot", cls.Options.model_validate({"url": url, **options}), None)


def test_wecom_gets_one_markdown_message_for_everything_queued(tmp_path, recorder):
    b = firing_now(tmp_path, [Route("robot")], {"G1": 0.3, "G2": 0.7, "G3": 0.4})
    wecom = robot(WeComNotifier, f"{recorder.url}/cgi-bin/webhook/send?key=KEY-123")
    try:
        run_outbox(b, {"robot": wecom})
    finally:
        b.store.close()
    [req] = recorder.received()
    assert (req.method, req.path, req.query) == ("POST", "/cgi-bin/webhook/send", {"key": "KEY-123"})
    body = req.body
    assert set(body) == {"msgtype", "markdown"} and body["msgtype"] == "markdown"
    assert set(body["markdown"]) == {"content"}
    content = body["markdown"]["content"]
    assert isinstance(content, str) and len(content.encode()) <= 4096
    assert content.startswith("### 网格监测：3 条告警（严重 2 条）")
    for line in ("东湖一网格走访覆盖率 30%", "西河二网格走访覆盖率 70%", "南山三网格走访覆盖率 40%"):
        assert content.count(line) == 1
    # 严重 and 一般 in WeCom's two warm colours (it has no red), never the rule's name
    assert content.count('<font color="warning">【严重】</font>') == 2
    assert content.count('<font color="comment">【一般】</font>') == 1
    assert "VisitCoverageLow" not in content


def test_a_long_batch_is_cut_to_fit_the_robot_limit(tmp_path, recorder):
    rule = coverage_rule(summary="{grid}" + "网格走访覆盖率严重不足，请网格长立即组织入户走访并上报情况" * 3)
    b = Bench(tmp_path, [rule], [Route("robot")])
    grids = {f"G{i:03d}": 0.1 for i in range(200)}
    b.step(time.time(), grids)
    wecom = robot(WeComNotifier, f"{recorder.url}/wecom", batch=200)
    ding = robot(DingTalkNotifier, f"{recorder.url}/ding", batch=200)
    try:
        run_outbox(b, {"robot": wecom})
        rows = [r["payload"] for r in b.outbox()]
        asyncio.run(_send_once(ding, rows))
    finally:
        b.store.close()
    [wecom_req] = recorder.received("/wecom")
    content = wecom_req.body["markdown"]["content"]
    assert 3000 < len(content.encode()) <= 4096
    assert content.splitlines()[-1].startswith("…及其他 ")
    [ding_req] = recorder.received("/ding")
    assert len(ding_req.body["markdown"]["text"].encode()) <= 4096


async def _send_once(notifier: Any, alerts: list[dict[str, Any]]) -> None:
    async with aiohttp.ClientSession() as session:
        await notifier.send(session, alerts)


def expected_sign(secret: str, timestamp: str) -> str:
    """DingTalk's documented signature, computed here independently of gridwatch."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}\n{secret}".encode(), digestmod=hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def test_dingtalk_markdown_is_signed(tmp_path, recorder):
    secret = "SEC0123456789abcdef+/网格"
    b = firing_now(tmp_path, [Route("robot")], {"G1": 0.3, "G2": 0.7})
    ding = robot(DingTalkNotifier, f"{recorder.url}/robot/send?access_token=TOKEN", secret=secret)
    before = int(time.time() * 1000)
    try:
        run_outbox(b, {"robot": ding})
    finally:
        b.store.close()
    after = int(time.time() * 1000)
    [req] = recorder.received()
    assert req.path == "/robot/send"
    assert set(req.query) == {"access_token", "timestamp", "sign"} and req.query["access_token"] == "TOKEN"
    ts = req.query["timestamp"]
    assert ts.isdigit() and before <= int(ts) <= after  # milliseconds
    sign = expected_sign(secret, ts)
    assert req.query["sign"] == sign
    assert parse_qs(req.query_string)["sign"] == [sign]  # a bare '+' would read as a space
    body = req.body
    assert body["msgtype"] == "markdown" and set(body["markdown"]) == {"title", "text"}
    assert body["markdown"]["title"] == "网格监测：2 条告警（严重 1 条）"
    assert "东湖一网格走访覆盖率 30%" in body["markdown"]["text"]
    assert "西河二网格走访覆盖率 70%" in body["markdown"]["text"]


def test_dingtalk_without_a_secret_sends_no_signature(tmp_path, recorder):
    b = firing_now(tmp_path, [Route("robot")], {"G1": 0.3})
    ding = robot(DingTalkNotifier, f"{recorder.url}/robot/send?access_token=TOKEN")
    try:
        run_outbox(b, {"robot": ding})
    finally:
        b.store.close()
    [req] = recorder.received()
    assert req.query == {"access_token": "TOKEN"}


@pytest.mark.parametrize("cls", [WeComNotifier, DingTalkNotifier])
def test_a_robot_errcode_is_a_failure_and_is_retried(tmp_path, recorder, cls):
    recorder.answer(
        "/robot",
        (200, {"errcode": 45009, "errmsg": "api freq out of limit"}),
        (200, {"errcode": 0, "errmsg": "ok"}),
    )
    b = firing_now(tmp_path, [Route("robot")], {"G1": 0.3})
    extra = {"secret": "s3cret"} if cls is DingTalkNotifier else {}
    notifier = robot(cls, f"{recorder.url}/robot?key=SECRET-KEY", **extra)
    try:
        outbox = run_outbox(b, {"robot": notifier})
        [row] = b.outbox()
        error = b.store.call(lambda db: db.execute("SELECT last_error FROM outbox").fetchone()[0])
    finally:
        b.store.close()
    assert outbox.outcomes[("robot", "failure")] == 1
    assert row["attempts"] == 1 and row["delivered_at"] is not None
    assert "45009" in error and "SECRET-KEY" not in error  # the robot key never reaches logs
    first, second = recorder.received("/robot")
    assert first.body == second.body  # the same message, retried
    assert second.at - first.at >= 0.9  # after the first back-off (1 s)


def test_an_http_error_keeps_the_notification_queued(tmp_path, recorder):
    recorder.answer("/hook", (503, {"error": "busy"}), (503, {"error": "busy"}), (200, {}))
    b = firing_now(tmp_path, [Route("hook")], {"G1": 0.3})
    hook = WebhookNotifier("hook", WebhookNotifier.Options(url=f"{recorder.url}/hook"), None)
    try:
        outbox = run_outbox(b, {"hook": hook}, timeout=15)
        [row] = b.outbox()
    finally:
        b.store.close()
    assert outbox.outcomes[("hook", "failure")] == 2 and row["attempts"] == 2
    assert len(recorder.received("/hook")) == 3


def test_webhook_body_follows_alertmanagers_webhook_payload(tmp_path, recorder):
    url = "https://gridwatch.example.org/"
    b = firing_now(tmp_path, [Route("hook")], {"G1": 0.3, "G3": 0.4}, external_url=url)
    hook = WebhookNotifier("hook", WebhookNotifier.Options(url=f"{recorder.url}/hook"), None)
    try:
        run_outbox(b, {"hook": hook})
        b.step(time.time(), {"G3": 0.4})  # G1 resolves
        run_outbox(b, {"hook": hook})
        fingerprints = {a.labels["grid"]: a.id for a in b.engine.snapshot}
    finally:
        b.store.close()
    first, second = recorder.bodies("/hook")
    assert set(first) >= {
        "version",
        "groupKey",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert (first["version"], first["status"], first["receiver"]) == ("4", "firing", "hook")
    assert first["groupLabels"] == {"alertname": "VisitCoverageLow"}
    # G1 and G3 are both in 东街街道: its street is common to the group
    assert first["commonLabels"] == {"alertname": "VisitCoverageLow", "street": "东街街道", "severity": "critical"}
    assert first["commonAnnotations"] == {}  # the summaries differ
    assert first["externalURL"] == url
    assert [a["labels"]["grid"] for a in first["alerts"]] == ["G1", "G3"]
    for a in first["alerts"]:
        assert set(a) >= {"status", "labels", "annotations", "startsAt", "endsAt", "fingerprint"}
        assert a["status"] == "firing"
        assert a["endsAt"] == "0001-01-01T00:00:00Z"
        assert a["fingerprint"] == fingerprints[a["labels"]["grid"]]
        assert a["startsAt"].endswith("Z")
        assert a["generatorURL"] == url
    assert first["alerts"][0]["annotations"] == {"summary": "东湖一网格走访覆盖率 30%"}

    assert (second["status"], [a["status"] for a in second["alerts"]]) == ("resolved", ["resolved"])
    resolved = second["alerts"][0]
    assert resolved["labels"]["grid"] == "G1" and ts(resolved["endsAt"]) > ts(resolved["startsAt"])
    assert second["commonAnnotations"] == {"summary": "东湖一网格走访覆盖率 30%"}


def test_alertmanager_notifier_posts_api_v2_alerts_to_every_url(tmp_path, recorder):
    b = firing_now(tmp_path, [Route("am")], {"G1": 0.3})
    am = AlertmanagerNotifier(
        "am",
        AlertmanagerNotifier.Options.model_validate(
            {"urls": [f"{recorder.url}/one/", f"{recorder.url}/two", "http://127.0.0.1:9/"]}
        ),
        None,
    )
    try:
        outbox = run_outbox(b, {"am": am})
    finally:
        b.store.close()
    assert outbox.outcomes[("am", "failure")] == 0  # one member of a cluster down is fine
    one, two = recorder.bodies("/one/api/v2/alerts"), recorder.bodies("/two/api/v2/alerts")
    assert one == two and len(one) == 1
    [[item]] = one
    assert set(item) == {"labels", "annotations", "startsAt", "endsAt"}
    assert item["labels"] == {
        "alertname": "VisitCoverageLow",
        "grid": "G1",
        "street": "东街街道",
        "community": "东湖社区",
        "severity": "critical",
    }


# -- check-config ------------------------------------------------------------------------------

CONFIG = """
[sources.data]
type = "sqlite"
path = "data.db"

[[checks]]
name = "test_value"
type = "sql"
source = "data"
metric = "gridwatch_test_value"
value = "n"
query = "SELECT grid, n FROM test_values"

[[rules]]
alert = "TestValueHigh"
metric = "gridwatch_test_value"
above = {{ critical = 5 }}
summary = "{summary}"

[[rules]]
alert = "NobodyMeasuresThis"
metric = "{metric}"
below = {{ warning = 1 }}

[notifiers.am]
type = "alertmanager"
urls = ["{url}"]

[notifiers.robot]
type = "wecom"
url = "http://127.0.0.1:1/cgi-bin/webhook/send?key=x"
"""


def write_config(tmp_path: Path, summary: str, metric: str, url: str) -> Path:
    path = tmp_path / "gridwatch.toml"
    path.write_text(textwrap.dedent(CONFIG.format(summary=summary, metric=metric, url=url)), encoding="utf-8")
    return path


def test_check_config_accepts_rules_and_notifiers(tmp_path, capsys):
    path = write_config(tmp_path, "{grid}测试值 {value:.0f}", "gridwatch_test_value", "http://127.0.0.1:9093")
    assert main(["check-config", "-c", str(path)]) == 0, capsys.readouterr().err


def test_check_config_rejects_bad_rules_and_notifiers(tmp_path, capsys):
    path = write_config(tmp_path, "{grid}测试值 {value:.0q}", "gridwatch_nobody_makes_this", "not a url")
    assert main(["check-config", "-c", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3, lines
    by_key = {line.split(": ")[1]: line for line in lines}
    assert set(by_key) == {"rules[0].summary", "rules[1].metric", "notifiers.am.urls[0]"}
    for line in lines:
        assert line.startswith(f"{path}: ")
    assert "bad template" in by_key["rules[0].summary"]
    assert "gridwatch_nobody_makes_this" in by_key["rules[1].metric"]
    assert "URL" in by_key["notifiers.am.urls[0]"]


def test_rule_requires_a_known_placeholder_syntax():
    with pytest.raises(ValueError, match="plain name"):
        Rule.model_validate(coverage_rule(summary="{labels[grid]}"))


def test_the_recorder_answers_requests_from_any_thread(recorder):
    """The receiver used by the daemon tests answers from a thread, so sync code can post to it."""
    import urllib.request

    req = urllib.request.Request(f"{recorder.url}/ping", data=b'{"a": 1}', method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert json.loads(resp.read()) == {"errcode": 0, "errmsg": "ok"}
    assert wait_for(lambda: recorder.bodies("/ping"), 5, "the request") == [{"a": 1}]


def test_rule_labels_may_be_templates_so_alertmanager_can_route_by_street():
    from gridwatch.api import Grid, Sample
    from gridwatch.rules import Rule, evaluate

    rule = Rule.model_validate(
        {
            "alert": "CoverageLow",
            "metric": "m",
            "below": {"warning": 0.9},
            "labels": {"street": "{street}", "team": "grid-office"},
        }
    )
    grids = {"G1": Grid("G1", "东湖一网格", "东湖社区", "东街街道")}
    [hit] = evaluate([rule], [Sample("m", {"grid": "G1"}, 0.5)], grids)
    assert hit.labels == {
        "grid": "G1",
        "street": "东街街道",
        "community": "东湖社区",
        "team": "grid-office",
        "alertname": "CoverageLow",
    }
    with pytest.raises(ValueError, match="bad template"):
        Rule.model_validate({"alert": "X", "metric": "m", "above": {"warning": 1}, "labels": {"street": "{street"}})
