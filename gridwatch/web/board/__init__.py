"""The status board: one page for people at a wall screen or a laptop, served at ``/``.

Plain HTML, CSS and JavaScript from this package: no build step, no CDN, no web font
(command centres are often offline). The page reads ``/api/v1/grids``, ``/api/v1/alerts``,
``/api/v1/status`` and ``/api/v1/grids/{grid}`` and refreshes itself; it puts every value
from the data into the page as text, and a strict Content-Security-Policy keeps it honest.
"""

from __future__ import annotations

from importlib.resources import files

from aiohttp import web

STATIC = files(__name__) / "static"
ASSETS = {  # the only files served: name → content type
    "board.js": "text/javascript",
    "board.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _response(name: str, content_type: str) -> web.Response:
    body = (STATIC / name).read_bytes()  # a few kB, read per request: an upgrade shows at once
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=HEADERS)


async def index(request: web.Request) -> web.Response:
    return _response("index.html", "text/html")


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound(text="no such board asset")
    return _response(name, ASSETS[name])


def add_routes(app: web.Application) -> None:
    """``GET /`` (the board) and ``GET /board/{name}`` (its assets)."""
    app.router.add_get("/", index)
    app.router.add_get("/board/{name}", asset)
