"""The HTTP surface: /metrics, /healthz, /readyz and the JSON API, on aiohttp."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web
from prometheus_client.exposition import choose_encoder
from pydantic import BaseModel, ValidationError

from gridwatch.alerting.silences import add_silence, check_regex, expire_silence, load_silences
from gridwatch.api import SourceUnavailable
from gridwatch.assessment.rollup import BY
from gridwatch.assessment.scorecard import Period, month_of, parse_period
from gridwatch.config import tls_context
from gridwatch.durations import parse_duration
from gridwatch.tokens import bearer_matches
from gridwatch.web import board, export, openapi
from gridwatch.web.compress import accepts_gzip, gzip_chunks
from gridwatch.web.scope import SCOPE, scope_of
from gridwatch.web.views import json_bytes

if TYPE_CHECKING:
    from gridwatch.config import Settings
    from gridwatch.web.readmodel import ReadModel

log = logging.getLogger("gridwatch.web.app")

READ: web.AppKey[Callable[[], ReadModel]] = web.AppKey("read")
"""The current read model: the daemon swaps it whole on reload."""
MAX_BODY = 4 * 1024 * 1024  # bytes: an ingest batch of ~10,000 rows; anything larger gets 413
# the request head: a line (request line or one header) up to 8 KiB, at most 64 headers; beyond → 400
MAX_LINE = 8190
MAX_HEADERS = 64


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json_bytes(data), status=status, content_type="application/json", charset="utf-8")


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
        response = json_response({"error": message, "status": exc.status}, exc.status)
        for name, value in exc.headers.items():  # WWW-Authenticate, Allow: the answer's meaning
            if name.lower() not in ("content-type", "content-length"):
                response.headers.add(name, value)
        return response
    except asyncio.CancelledError:
        raise
    except ConnectionError:  # the client went away (a scraper's timeout): nobody to answer, nothing wrong
        log.debug("the client of %s went away before its answer was written", request.path)
        return web.Response(status=499)
    except Exception:
        log.exception("unhandled error serving %s", request.path)
        return json_response({"error": "internal server error", "status": 500}, 500)


async def metrics(request: web.Request) -> web.StreamResponse:
    model = request.app[READ]()
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    openmetrics = content_type.startswith("application/openmetrics-text")
    live = encoder(model.registry)  # a few dozen lines about gridwatch itself, fresh every time
    if openmetrics:
        live = live.removesuffix(b"# EOF\n")
    tail = b"# EOF\n" if openmetrics else b""
    headers = {"Content-Type": content_type, "Vary": "Accept-Encoding"}
    if accepts_gzip(request.headers.get("Accept-Encoding", "")):
        # the rest, compressed once per change; only the live part is compressed per scrape
        chunks = gzip_chunks(live, await model.pages.exposition_gzip(openmetrics, scope_of(request)), tail)
        headers["Content-Encoding"] = "gzip"
    else:  # the rest: rendered once per change, written as it is (shared, not copied)
        chunks = [live, await model.pages.exposition(openmetrics, scope_of(request)), tail]
    response = web.StreamResponse(headers=headers)
    response.content_length = sum(len(c) for c in chunks)
    try:
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:  # the scraper gave up (its timeout): nothing to answer to
        log.debug("a scraper went away before its answer was written")
    return response


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    model = request.app[READ]()
    waiting = model.not_ready()
    if waiting:
        body: dict[str, Any] = {"ready": False, "waiting_for": waiting}
        if model.store.write_error is not None:  # "state database" is among waiting_for: say why
            body["state_database"] = {"writable": False, "error": model.store.write_error}
        return json_response(body, 503)
    return json_response({"ready": True})


async def status(request: web.Request) -> web.Response:
    return json_response(request.app[READ]().status())


async def grids(request: web.Request) -> web.Response:
    lights = await request.app[READ]().pages.lights_in(scope_of(request))
    return web.Response(body=lights.json, content_type="application/json", charset="utf-8")


async def grid(request: web.Request) -> web.Response:
    detail = await request.app[READ]().grid_detail(request.match_info["grid"], scope_of(request))
    if detail is None:
        raise web.HTTPNotFound(text="no such grid")
    return json_response(detail)


def _period(request: web.Request) -> Period | None:
    """``?period=``, or None when not given; a 400 saying what is expected when malformed."""
    text = request.query.get("period")
    try:
        return None if text is None else parse_period(text)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


def _visible(request: web.Request, model: ReadModel) -> set[str] | None:
    """The grids a scoped reader sees (None: all of them)."""
    scope = scope_of(request)
    return None if scope.everything else set(scope.filter_grids(model.grids()))


async def summary(request: web.Request) -> web.Response:
    by = request.query.get("by", "street")
    if by not in BY:
        raise web.HTTPBadRequest(text=f"bad by {by[:40]!r}: expected one of {', '.join(BY)}")
    model = request.app[READ]()
    return json_response(await model.summary(by, _period(request), _visible(request, model)))


EXPORTS = {"csv": (export.as_csv, export.CSV_TYPE), "xlsx": (export.as_xlsx, export.XLSX_TYPE)}


async def assessment(request: web.Request) -> web.Response:
    model = request.app[READ]()
    fmt = request.query.get("format", "json")
    if fmt != "json" and fmt not in EXPORTS:
        raise web.HTTPBadRequest(text=f"bad format {fmt[:40]!r}: expected json, csv or xlsx")
    data = await model.assessment(_period(request) or month_of(model.today()), _visible(request, model))
    if fmt == "json":
        return json_response(data)
    render, content_type = EXPORTS[fmt]
    body = await asyncio.get_running_loop().run_in_executor(model.pool, render, data)
    headers = {hdrs.CONTENT_DISPOSITION: export.disposition(data["period"], fmt)}
    return web.Response(
        body=body, content_type=content_type, charset="utf-8" if fmt == "csv" else None, headers=headers
    )


async def read_body(request: web.Request) -> bytes:
    """The whole body, within ``[server] client_timeout``: a client trickling a body byte by byte
    holds no handler for longer (a body over MAX_BODY is a 413 from aiohttp)."""
    try:
        async with asyncio.timeout(request.app[READ]().settings.client_timeout):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="the request body did not arrive in time") from None


def parse_json(body: bytes) -> Any:
    """JSON from a body, or a 400; nesting too deep for the parser is a client error too."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise web.HTTPBadRequest(text="the body is not valid JSON") from None


def validation_message(exc: ValidationError, where: Callable[[tuple[Any, ...]], str] | None = None) -> str:
    """Where and what, without echoing the values (a body may hold what a log must not)."""
    parts = []
    for err in exc.errors()[:5]:
        place = where(err["loc"]) if where else ".".join(str(p) for p in err["loc"]) or "the body"
        what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{place}: {what}")
    return "; ".join(parts)


def _rows(table: str, body: bytes) -> Any:
    """The body as rows of ``table``, checked against the row schema of the OpenAPI document (a 400
    if not). A worker thread runs this: 4 MiB of rows take a while to parse and check."""
    rows = openapi.ROW_LISTS.get(table)
    if rows is None:
        raise web.HTTPBadRequest(text=f"unknown table {table!r}: expected one of {', '.join(openapi.ROW_LISTS)}")
    payload = parse_json(body)
    if not isinstance(payload, list | dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object or a list of JSON objects")
    listed = isinstance(payload, list)

    def where(loc: tuple[Any, ...]) -> str:
        row = f"row {loc[0]}" if listed else "the row"
        return ", ".join([row, ".".join(map(str, loc[1:]))]) if len(loc) > 1 else row

    try:
        rows.validate_python(payload if listed else [payload], strict=True)
    except ValidationError as exc:
        raise web.HTTPBadRequest(text=validation_message(exc, where)) from None
    return payload


async def ingest(request: web.Request) -> web.Response:
    """Rows pushed by a platform or an SMS gateway into an ``ingest`` source."""
    model = request.app[READ]()
    sources = model.push_sources()
    if not sources:
        raise web.HTTPNotFound(text="no ingest source")
    authorization = request.headers.get("Authorization")
    # credentials first, so nothing about the sources is told to a client without a token
    if not any([s.authorized(authorization) for s in sources]):
        raise web.HTTPUnauthorized(text="a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    name = request.query.get("source")
    if name is not None:
        sources = [s for s in sources if s.name == name]
    if len(sources) != 1:
        raise web.HTTPNotFound(text="no such ingest source" if not sources else "several ingest sources: add ?source=")
    source = sources[0]
    if not source.authorized(authorization):
        raise web.HTTPUnauthorized(text="a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    table = request.match_info["table"]
    body = await read_body(request)

    def store() -> int:
        return int(source.ingest(table, _rows(table, body)))

    try:
        n = await asyncio.get_running_loop().run_in_executor(model.pool, store)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    except SourceUnavailable as exc:
        raise web.HTTPServiceUnavailable(text=f"cannot store: {exc}") from None
    if table == "grids":
        model.grids_changed()
    return json_response({"stored": n, "table": table}, 201 if n else 200)


def require_token(request: web.Request) -> None:
    """Write endpoints need ``Authorization: Bearer <token>`` matching ``[server] token``."""
    expected = request.app[READ]().settings.token_sha256
    if expected is None:
        raise web.HTTPForbidden(text="write endpoints are disabled: set [server] token_sha256 (or token)")
    if not bearer_matches(request.headers.get("Authorization"), expected):
        raise web.HTTPUnauthorized(text="a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})


async def alerts(request: web.Request) -> web.Response:
    return json_response(request.app[READ]().alerts(scope_of(request)))


async def silences_list(request: web.Request) -> web.Response:
    model = request.app[READ]()
    now = time.time()
    items = await model.store.acall(load_silences)
    scope, grids = scope_of(request), model.grids()  # a street sees the silences of its grids
    items = [s for s in items if scope.allows_matchers(s.matchers, grids)]
    return json_response([s.view(now) for s in sorted(items, key=lambda s: -s.created_at)])


def _validated(model: type[BaseModel], body: bytes, what: str) -> Any:
    """A request body as the model of the OpenAPI document has it, or a 400 saying where it is not."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise web.HTTPBadRequest(text=f"bad {what}: {validation_message(exc)}") from None


def _silence_times(req: openapi.SilenceRequest, now: float) -> tuple[float, float]:
    """Start and end as timestamps, clamped to the years a timestamp can be shown in (a silence
    "until 9999" stays one, instead of being stored and then failing every listing). A start in
    the past is now, as Alertmanager stores it (``duration`` counts from then); an end in the past
    is refused. A ValueError says why a well-formed request cannot be a silence."""
    clamp = lambda t: min(max(t, openapi.EARLIEST), openapi.LATEST)  # noqa: E731
    starts = max(clamp(req.startsAt.timestamp() if req.startsAt else now), now)
    ends = clamp(req.endsAt.timestamp() if req.endsAt else starts + parse_duration(req.duration))
    if ends <= now:
        raise ValueError("it has already ended: its end must be in the future")
    if ends <= starts:
        raise ValueError("it must end after it starts")
    return starts, ends


def _check_regexes(matchers: list[dict[str, Any]]) -> None:
    for m in matchers:
        if m["isRegex"]:
            check_regex(m["name"], m["value"])  # RE2, as matching uses: linear time, no backreferences


async def silences_create(request: web.Request) -> web.Response:
    require_token(request)
    model = request.app[READ]()
    req = _validated(openapi.SilenceRequest, await read_body(request), "silence")
    matchers = req.matcher_list()
    now = time.time()
    try:  # well formed, but maybe not possible: 422
        starts, ends = _silence_times(req, now)
        _check_regexes(matchers)
        silence = await model.store.acall(add_silence, matchers, starts, ends, req.createdBy, req.comment, now)
    except ValueError as exc:
        raise web.HTTPUnprocessableEntity(text=f"bad silence: {exc}") from None
    await model.alerting.silences_changed()
    return json_response(silence.view(time.time()), 201)


async def silences_expire(request: web.Request) -> web.Response:
    require_token(request)
    model = request.app[READ]()
    if not await model.store.acall(expire_silence, request.match_info["id"], time.time()):
        raise web.HTTPNotFound(text="no such active silence")
    await model.alerting.silences_changed()
    return json_response({"expired": request.match_info["id"]})


async def reload(request: web.Request) -> web.Response:
    require_token(request)
    ok = await request.app[READ]().reload()
    return json_response({"reloaded": ok}, 200 if ok else 422)


async def openapi_document(request: web.Request) -> web.Response:
    model = request.app[READ]()
    return json_response(openapi.document(model.settings, [s.name for s in model.push_sources()]))


# -- which host --------------------------------------------------------------------------------


def host_name(host: str) -> str:
    """The name in a ``Host`` header: without the port, lower case, no trailing dot."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, _, port = host.rpartition(":")
    if name and port.isdigit():
        host = name
    return host.rstrip(".").lower()


def known_host(settings: Settings, host: str | None) -> bool:
    """Whether a request names this gridwatch: an IP address (a page of another site cannot make a
    browser send one: DNS rebinding needs a name), ``localhost``, or one of ``[server] hostnames``
    (by default the listen address). Checked while reads are open (a rebinding page has no
    credentials to read with), and always once ``hostnames`` is set."""
    if host is None or (settings.hostnames is None and settings.reads_protected):
        return True
    name = host_name(host)
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    allowed = settings.hostnames if settings.hostnames is not None else [host_name(settings.host)]
    return name == "localhost" or name in allowed


@web.middleware
async def host_check(request: web.Request, handler: Any) -> web.StreamResponse:
    """421 for a ``Host`` this gridwatch does not go by (DNS rebinding); health probes never."""
    if request.path not in OPEN_PATHS and not known_host(request.app[READ]().settings, request.headers.get(hdrs.HOST)):
        raise web.HTTPMisdirectedRequest(text="this host name is not one of [server] hostnames")
    return await handler(request)


async def no_store(request: web.Request, response: web.StreamResponse) -> None:
    """An answer to a request with credentials is not kept by a browser or proxy cache."""
    if hdrs.AUTHORIZATION in request.headers:
        response.headers[hdrs.CACHE_CONTROL] = "no-store"


# -- who may read ------------------------------------------------------------------------------

OPEN_PATHS = {"/healthz", "/readyz"}  # systemd and load balancers probe these without credentials
WRITE_HANDLERS = {ingest, silences_create, silences_expire, reload}  # each checks its own bearer token


def read_challenge(settings: Settings) -> list[tuple[str, str]]:
    """One ``WWW-Authenticate`` per way to read; Basic first, so a browser asks for a password."""
    challenge: list[tuple[str, str]] = []
    if settings.basic_auth_users or any(r.user for r in settings.readers):
        challenge.append((hdrs.WWW_AUTHENTICATE, 'Basic realm="gridwatch", charset="UTF-8"'))
    if settings.read_token_sha256 or settings.token_sha256 or any(r.token_sha256 for r in settings.readers):
        challenge.append((hdrs.WWW_AUTHENTICATE, 'Bearer realm="gridwatch"'))
    return challenge


@web.middleware
async def read_access(request: web.Request, handler: Any) -> web.StreamResponse:
    """Reads (``/metrics``, ``/api/v1`` reads, the board, and any unknown path) need credentials when
    configured; /healthz and /readyz never do, and the write endpoints check their own token. A
    street's credential reads too, scoped: the request carries what it may see (``scope_of``)."""
    if request.path not in OPEN_PATHS and request.match_info.handler not in WRITE_HANDLERS:
        model = request.app[READ]()
        scope = await model.access.scope(request.headers.get(hdrs.AUTHORIZATION))
        if scope is None:
            raise web.HTTPUnauthorized(text="credentials are required to read", headers=read_challenge(model.settings))
        request[SCOPE] = scope
    return await handler(request)


# -- the server --------------------------------------------------------------------------------


def server_options(settings: Settings) -> dict[str, Any]:
    """What the aiohttp request handler enforces on every connection.

    ``keepalive_timeout`` is armed when a connection opens and re-armed after each response; when it
    expires while the head of the next request is still incomplete, aiohttp closes the connection.
    So it bounds both idle keep-alive connections and a slowloris client sending its head a byte at
    a time. Oversized request lines or headers, or too many headers, are answered 400 and closed.
    """
    return {
        "keepalive_timeout": settings.client_timeout,
        "max_line_size": MAX_LINE,
        "max_field_size": MAX_LINE,
        "max_headers": MAX_HEADERS,
    }


def server_tls(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context when ``[server] tls_cert`` and ``tls_key`` are set (checked at config load)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    return tls_context(settings.tls_cert, settings.tls_key)


def make_app(read: Callable[[], ReadModel]) -> web.Application:
    """The HTTP surface over ``read()``, the current read model."""
    app = web.Application(middlewares=[json_errors, host_check, read_access], client_max_size=MAX_BODY)
    app[READ] = read
    app.on_response_prepare.append(no_store)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/grids", grids)
    app.router.add_get("/api/v1/grids/{grid}", grid)
    app.router.add_get("/api/v1/summary", summary)
    app.router.add_get("/api/v1/assessment", assessment)
    app.router.add_post("/api/v1/ingest/{table}", ingest)
    app.router.add_get("/api/v1/alerts", alerts)
    app.router.add_get("/api/v1/silences", silences_list)
    app.router.add_post("/api/v1/silences", silences_create)
    app.router.add_delete("/api/v1/silences/{id}", silences_expire)
    app.router.add_post("/api/v1/reload", reload)
    app.router.add_get("/api/v1/openapi.json", openapi_document)
    board.add_routes(app)  # GET / and its assets
    return app
