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


def make_app(daemon: Daemon) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=1024 * 1024)
    app[DAEMON] = daemon
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/status", status)
    return app
