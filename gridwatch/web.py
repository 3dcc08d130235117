"""The HTTP surface: /metrics, /healthz, /readyz and the JSON API, on aiohttp."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from gridwatch import board
from gridwatch.alerts import add_silence, expire_silence, load_silences, parse_matchers
from gridwatch.api import SourceUnavailable
from gridwatch.durations import parse_duration
from gridwatch.tokens import bearer_matches

if TYPE_CHECKING:
    from gridwatch.daemon import Daemon

log = logging.getLogger("gridwatch.web")

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")
MAX_BODY = 4 * 1024 * 1024  # bytes: an ingest batch of ~10,000 rows; anything larger gets 413


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, ensure_ascii=False, default=str),
        status=status,
        content_type="application/json",
    )


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error is JSON with a message, so scripts never have to parse HTML."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        default = f"{exc.status}: {exc.reason}"
        message = exc.reason if not exc.text or exc.text == default else exc.text
        return json_response({"error": message, "status": exc.status}, exc.status)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error serving %s", request.path)
        return json_response({"error": "internal server error", "status": 500}, 500)


async def metrics(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    # rendering thousands of series takes a while: keep it off the event loop
    body = await asyncio.get_running_loop().run_in_executor(daemon.web_pool, encoder, daemon.registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    waiting = request.app[DAEMON].not_ready()
    if waiting:
        return json_response({"ready": False, "waiting_for": waiting}, 503)
    return json_response({"ready": True})


async def status(request: web.Request) -> web.Response:
    return json_response(request.app[DAEMON].status())


async def grids(request: web.Request) -> web.Response:
    return json_response([gl.as_dict() for gl in request.app[DAEMON].lights()])


async def grid(request: web.Request) -> web.Response:
    detail = await request.app[DAEMON].grid_detail(request.match_info["grid"])
    if detail is None:
        raise web.HTTPNotFound(text="no such grid")
    return json_response(detail)


async def ingest(request: web.Request) -> web.Response:
    """Rows pushed by a platform or an SMS gateway into an ``ingest`` source."""
    daemon = request.app[DAEMON]
    sources = daemon.ingest_sources()
    name = request.query.get("source")
    if name is not None:
        sources = [s for s in sources if s.name == name]
    if len(sources) != 1:
        raise web.HTTPNotFound(text="no ingest source" if not sources else "several ingest sources: add ?source=NAME")
    source = sources[0]
    if not source.authorized(request.headers.get("Authorization")):
        raise web.HTTPUnauthorized(text="a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    try:
        payload = await request.json(loads=json.loads)
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not valid JSON") from None
    table = request.match_info["table"]
    try:
        n = await asyncio.get_running_loop().run_in_executor(daemon.web_pool, source.ingest, table, payload)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    except SourceUnavailable as exc:
        raise web.HTTPServiceUnavailable(text=f"cannot store: {exc}") from None
    if daemon.runtime is not None and daemon.runtime.registry is not None and table == "grids":
        daemon.runtime.registry.invalidate()
    return json_response({"stored": n, "table": table}, 201 if n else 200)


def require_token(request: web.Request) -> None:
    """Write endpoints need ``Authorization: Bearer <token>`` matching ``[server] token``."""
    expected = request.app[DAEMON].settings.token_sha256
    if expected is None:
        raise web.HTTPForbidden(text="write endpoints are disabled: set [server] token_sha256 (or token)")
    if not bearer_matches(request.headers.get("Authorization"), expected):
        raise web.HTTPUnauthorized(text="a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})


async def alerts(request: web.Request) -> web.Response:
    return json_response(request.app[DAEMON].alerts())


async def silences_list(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    now = time.time()
    items = await daemon.store.acall(load_silences)
    return json_response([s.view(now) for s in sorted(items, key=lambda s: -s.created_at)])


async def silences_create(request: web.Request) -> web.Response:
    require_token(request)
    daemon = request.app[DAEMON]
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        matchers = body.get("matchers")
        if isinstance(matchers, dict):  # {"grid": "G0001"} is accepted as a shorthand
            matchers = [{"name": k, "value": str(v), "isRegex": False} for k, v in matchers.items()]
        if not isinstance(matchers, list) or not matchers:
            raise ValueError("matchers: a non-empty list of {name, value, isRegex}")
        matchers = parse_matchers(f"{m['name']}{'=~' if m.get('isRegex') else '='}{m['value']}" for m in matchers)
        now = time.time()
        starts = _time(body.get("startsAt"), now)
        ends = (
            _time(body.get("endsAt"), None)
            if body.get("endsAt")
            else starts + parse_duration(body.get("duration", "1h"))
        )
        created_by = str(body.get("createdBy") or "")
        if not created_by:
            raise ValueError("createdBy is required")
        silence = await daemon.store.acall(
            add_silence, matchers, starts, ends, created_by, str(body.get("comment") or ""), now
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise web.HTTPBadRequest(text=f"bad silence: {exc}") from None
    if daemon.alerting is not None:
        await daemon.alerting.silences_changed()
    return json_response(silence.view(time.time()), 201)


async def silences_expire(request: web.Request) -> web.Response:
    require_token(request)
    daemon = request.app[DAEMON]
    if not await daemon.store.acall(expire_silence, request.match_info["id"], time.time()):
        raise web.HTTPNotFound(text="no such active silence")
    if daemon.alerting is not None:
        await daemon.alerting.silences_changed()
    return json_response({"expired": request.match_info["id"]})


async def reload(request: web.Request) -> web.Response:
    require_token(request)
    ok = await request.app[DAEMON].reload()
    return json_response({"reloaded": ok}, 200 if ok else 422)


def _time(value: Any, default: float | None) -> float:
    if value is None:
        if default is None:
            raise ValueError("a time is required")
        return default
    dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return dt.timestamp()


def make_app(daemon: Daemon) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY)
    app[DAEMON] = daemon
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/grids", grids)
    app.router.add_get("/api/v1/grids/{grid}", grid)
    app.router.add_post("/api/v1/ingest/{table}", ingest)
    app.router.add_get("/api/v1/alerts", alerts)
    app.router.add_get("/api/v1/silences", silences_list)
    app.router.add_post("/api/v1/silences", silences_create)
    app.router.add_delete("/api/v1/silences/{id}", silences_expire)
    app.router.add_post("/api/v1/reload", reload)
    board.add_routes(app)  # GET / and its assets
    return app
