"""The HTTP surface: /metrics, /healthz, /readyz and the JSON API, on aiohttp."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    from gridwatch.daemon import Daemon

log = logging.getLogger("gridwatch.web")

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")


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
    body = await asyncio.get_running_loop().run_in_executor(
        daemon.web_pool, encoder, daemon.registry
    )
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


async def ingest(request: web.Request) -> web.Response:
    """Rows pushed by a platform or an SMS gateway into an ``ingest`` source."""
    daemon = request.app[DAEMON]
    sources = daemon.ingest_sources()
    name = request.query.get("source")
    if name is not None:
        sources = [s for s in sources if s.name == name]
    if len(sources) != 1:
        raise web.HTTPNotFound(
            text="no ingest source" if not sources else "several ingest sources: add ?source=NAME"
        )
    source = sources[0]
    if not source.authorized(request.headers.get("Authorization")):
        raise web.HTTPUnauthorized(
            text="a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        payload = await request.json(loads=json.loads)
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not valid JSON") from None
    table = request.match_info["table"]
    try:
        n = await asyncio.get_running_loop().run_in_executor(
            daemon.web_pool, source.ingest, table, payload
        )
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return json_response({"stored": n, "table": table}, 201 if n else 200)


def make_app(daemon: Daemon) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=1024 * 1024)
    app[DAEMON] = daemon
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/grids", grids)
    app.router.add_post("/api/v1/ingest/{table}", ingest)
    return app
