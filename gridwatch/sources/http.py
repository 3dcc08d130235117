"""The ``http`` source: rows from a JSON API, e.g. a city platform's ``/api/{table}``.

Requests run with aiohttp on the daemon's event loop (one pooled client session per
source); the blocking ``read`` called from a worker thread waits for them. Without a
running daemon loop (a command-line tool, a test) each request runs on a private loop.

An answer's body is a JSON list of objects, or an object whose ``records`` key (a dotted
path such as ``data.list``) holds that list. What it means when it is not:

- 5xx, a refused connection, no answer within ``timeout`` -> SourceUnavailable (retried);
- a body that is not JSON (an HTML error page, a truncated body) -> SourceUnavailable, and
  counted as ``bad_json``;
- 4xx -> CheckError (a wrong path, a missing or refused credential);
- list items that are not objects are skipped and counted as ``not_object``;
- a body nested too deep to parse (a JSON bomb) -> SourceUnavailable, counted as ``bad_json``;
- a body larger than ``body_size_limit`` once decompressed -> SourceUnavailable, read no further;
- a redirect to another origin (scheme, host, port) -> CheckError, unless ``follow_redirects``;
  ``headers`` and the ``auth_env`` credential are never sent to another origin;
- the check's own deadline passing first -> TimeoutError.

A key an object leaves out is NULL in that row (APIs often omit nulls).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import string
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import ByteSize, Field, field_validator
from yarl import URL

from gridwatch.api import CheckError, Source, SourceUnavailable, TableOptions
from gridwatch.durations import Duration
from gridwatch.hookspecs import hookimpl
from gridwatch.sources.files import BAD_JSON, NOT_OBJECT, RejectCounter

_Answer = tuple[int, str, bytes]  # status, content type, body
_closing: set[asyncio.Task[None]] = set()
_REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10


@dataclass(frozen=True)
class _Policy:
    """How one request goes: its headers, those that may leave the origin, redirects, size cap."""

    headers: dict[str, str]
    public: dict[str, str]  # what a redirect to another origin gets: no configured header, no secret
    follow: bool
    cap: int  # bytes of the decompressed body; 0: no limit


class _Redirected(Exception):
    """A redirect to another origin that the options do not allow, or to no HTTP URL at all."""


class _TooLarge(Exception):
    """The body grew past ``body_size_limit``."""


class HttpSource(RejectCounter, Source["HttpSource.Options"]):
    """Polls a JSON API; ``tables`` maps a standard table to the ``{table}`` part of the URL."""

    type = "http"

    class Options(TableOptions):
        url: str
        """a template such as ``https://platform.example/api/{table}``"""
        timeout: Duration = 10.0
        """the longest wait for one answer (the check's deadline may cut it shorter)"""
        headers: dict[str, str] = {}
        auth_header: str = Field("Authorization", min_length=1)
        auth_env: str | None = None
        """the environment variable holding the ``auth_header`` value, read per request"""
        records: str | None = None
        """the key of a JSON object under which the list of rows lives (``data.list``)"""
        follow_redirects: bool = False
        """follow redirects to another origin too (within the URL's origin they are always followed);
        ``headers`` and the ``auth_env`` credential are never sent to another origin"""
        body_size_limit: ByteSize = Field(ByteSize(64 * 1024 * 1024), ge=0)
        """the largest answer, once decompressed, in bytes or as ``64MiB``; 0: no limit"""

        @field_validator("url")
        @classmethod
        def _template(cls, v: str) -> str:
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
            except ValueError as exc:
                raise ValueError(f"not a URL template: {exc}") from None
            if fields - {"table"}:
                raise ValueError(
                    "the only placeholder a url may hold is {table}; found "
                    + ", ".join(f"{{{f}}}" for f in sorted(fields - {"table"}))
                )
            if URL(v.replace("{table}", "t")).scheme not in ("http", "https"):
                raise ValueError("expected an http:// or https:// URL")
            return v

    def __init__(self, name: str, options: Options, env: Any) -> None:
        Source.__init__(self, name, options, env)
        RejectCounter.__init__(self)
        self._session: aiohttp.ClientSession | None = None  # lives on env.loop

    # -- the Source contract -------------------------------------------------------------------
    def read(self, table: str, columns: Sequence[str], *, deadline: float = math.inf) -> list[dict[str, Any]]:
        url = self.url_for(table)
        status, ctype, body = self._get(url, deadline)
        where = _display(url)
        if status == 404:
            raise CheckError(
                f"table {table!r} not found in source {self.name} (HTTP 404 from {where}): map it with tables.{table}"
            )
        if status in (401, 403):
            via = f"auth_env {self.options.auth_env}" if self.options.auth_env else "no auth_env"
            raise CheckError(
                f"source {self.name}: {where} refused the request (HTTP {status}); "
                f"check the credential ({via}, header {self.options.auth_header})"
            )
        if 400 <= status < 500:
            raise CheckError(f"source {self.name}: HTTP {status} from {where}")
        if not 200 <= status < 300:
            raise SourceUnavailable(f"HTTP {status} from {where}")
        items = self._records(self._decode(body, ctype, where), table, where)
        colmap = self.column_map(table, columns)
        rows, skipped = [], 0
        for item in items:
            if isinstance(item, dict):
                rows.append({std: item.get(src) for std, src in colmap.items()})
            else:
                skipped += 1
        if skipped:
            self.count_rejected({NOT_OBJECT: skipped})
        return rows

    def ping(self) -> None:
        """Reachable means an answer below 500; the body is not looked at."""
        url = self.url_for("grids")
        status, _, _ = self._get(url, math.inf)
        if status >= 500:
            raise SourceUnavailable(f"HTTP {status} from {_display(url)}")

    def close(self) -> None:
        session, self._session = self._session, None
        loop = self.env.loop
        if session is None or session.closed or loop is None or loop.is_closed():
            return
        if _on_loop(loop):  # the daemon closes sources from the loop itself: never block it
            task = loop.create_task(session.close())
            _closing.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(_closing.discard)
        elif loop.is_running():
            with suppress(Exception):  # best effort: the process may be ending anyway
                asyncio.run_coroutine_threadsafe(session.close(), loop).result(5)

    # -- requests ------------------------------------------------------------------------------
    def url_for(self, table: str) -> str:
        return self.options.url.replace("{table}", self.table_name(table))

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", **self.options.headers}
        if self.options.auth_env:
            value = os.environ.get(self.options.auth_env)
            if value is None:
                raise CheckError(
                    f"source {self.name}: environment variable {self.options.auth_env} (auth_env) is not set"
                )
            headers[self.options.auth_header] = value
        return headers

    def _get(self, url: str, deadline: float) -> _Answer:
        """GET ``url`` and read its body, within ``timeout`` and the check's deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"source {self.name}: the check's deadline passed before the request")
        limit = min(self.options.timeout, remaining)
        policy = _Policy(
            self._headers(),
            {"Accept": "application/json"},
            self.options.follow_redirects,
            int(self.options.body_size_limit),
        )
        loop = self.env.loop
        try:
            if loop is not None and loop.is_running() and not loop.is_closed():
                if _on_loop(loop):
                    raise RuntimeError("HttpSource.read blocks: call it from a worker thread")
                future = asyncio.run_coroutine_threadsafe(self._shared_request(url, policy, limit), loop)
                try:
                    return future.result(limit + 1.0)
                except TimeoutError:
                    future.cancel()
                    raise
            return asyncio.run(_private_request(url, policy, limit))
        except _Redirected as exc:
            raise CheckError(f"source {self.name}: {_display(url)} {exc}") from None
        except _TooLarge:
            raise SourceUnavailable(
                f"the response from {_display(url)} is larger than body_size_limit "
                f"({policy.cap} bytes once decompressed); it was not read further"
            ) from None
        except TimeoutError:
            if limit < self.options.timeout:
                raise TimeoutError(
                    f"source {self.name}: {_display(url)} did not answer before the check's deadline"
                ) from None
            raise SourceUnavailable(f"{_display(url)} did not answer within {self.options.timeout:g}s") from None
        except aiohttp.ClientPayloadError as exc:
            self.count_rejected({BAD_JSON: 1})
            raise SourceUnavailable(f"the response from {_display(url)} broke off: {_scrub(exc, url)}") from None
        except aiohttp.ClientError as exc:
            raise SourceUnavailable(f"{_display(url)}: {_scrub(exc, url)}") from None

    async def _shared_request(self, url: str, policy: _Policy, limit: float) -> _Answer:
        if self._session is None or self._session.closed:  # runs on the loop: no race
            self._session = aiohttp.ClientSession()
        return await _request(self._session, url, policy, limit)

    # -- bodies --------------------------------------------------------------------------------
    def _decode(self, body: bytes, ctype: str, where: str) -> Any:
        try:
            return json.loads(body)
        except RecursionError:  # a JSON bomb: arrays in arrays, thousands deep
            self.count_rejected({BAD_JSON: 1})
            raise SourceUnavailable(
                f"the response from {where} is nested too deep to parse ({len(body)} bytes)"
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            self.count_rejected({BAD_JSON: 1})
            what = ctype.split(";")[0].strip() or "no content type"
            detail = str(exc)
            if (
                isinstance(exc, json.JSONDecodeError)
                and (exc.pos >= len(exc.doc.rstrip()) or exc.msg.startswith("Unterminated"))
            ) or (isinstance(exc, UnicodeDecodeError) and exc.reason == "unexpected end of data"):  # cut mid-character
                detail = "it ends early (truncated?)"
            raise SourceUnavailable(
                f"the response from {where} is not JSON ({what}, {len(body)} bytes): {detail}"
            ) from None

    def _records(self, data: Any, table: str, where: str) -> list[Any]:
        path = self.options.records
        if path:
            node = data
            for key in path.split("."):
                if not isinstance(node, dict) or key not in node:
                    keys = ", ".join(list(data)[:10]) if isinstance(data, dict) else ""
                    raise CheckError(
                        f"source {self.name}: the response for table {table!r} from {where} has "
                        f"no {path!r} (records)" + (f"; its keys are {keys}" if keys else "") + _server_message(data)
                    )
                node = node[key]
            data = [] if node is None else node
        if isinstance(data, dict):
            raise CheckError(
                f"source {self.name}: the response for table {table!r} from {where} is a JSON "
                f"object (keys: {', '.join(list(data)[:10])}), not a list of rows: set records "
                "to the key that holds them" + _server_message(data)
            )
        if not isinstance(data, list):
            raise CheckError(
                f"source {self.name}: the response for table {table!r} from {where} is a JSON "
                f"{type(data).__name__}, not a list of rows"
            )
        return data


async def _request(session: aiohttp.ClientSession, url: str, policy: _Policy, limit: float) -> _Answer:
    """GET ``url``, following redirects by hand: aiohttp would send every configured header
    to wherever a redirect points (it drops only ``Authorization``)."""
    target = URL(url)
    origin, headers = target.origin(), policy.headers
    async with asyncio.timeout(limit):
        for _ in range(MAX_REDIRECTS + 1):
            async with session.get(
                target, headers=headers, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=limit)
            ) as resp:
                location = resp.headers.get("Location")
                if resp.status not in _REDIRECTS or location is None:
                    body = await _body(resp, policy.cap)
                    return resp.status, resp.headers.get("Content-Type", ""), body
            try:
                target = target.join(URL(location))
                elsewhere = target.origin() != origin
            except ValueError:
                raise _Redirected("redirects to something that is not a URL") from None
            if target.scheme not in ("http", "https"):
                raise _Redirected("redirects to a URL that is not http:// or https://")
            if elsewhere and not policy.follow:
                raise _Redirected(
                    f"redirects to another origin ({target.origin()}); set follow_redirects = true to "
                    "follow it (headers and the auth_env credential are never sent there)"
                )
            if elsewhere:
                headers = policy.public
        raise _Redirected(f"redirects more than {MAX_REDIRECTS} times")


async def _body(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    """The body, decompressed, read no further than ``cap`` bytes (0: all of it): a small gzip
    answer can unpack to gigabytes."""
    if not cap:
        return await resp.read()
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > cap:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _private_request(url: str, policy: _Policy, limit: float) -> _Answer:
    async with aiohttp.ClientSession() as session:
        return await _request(session, url, policy, limit)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _display(url: str) -> str:
    """The URL for messages: no query string (tokens live there), no credentials."""
    try:
        u = URL(url)
        return str(u.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "the configured url"


def _scrub(exc: BaseException, url: str) -> str:
    return (str(exc) or type(exc).__name__).replace(url, _display(url))


def _server_message(data: Any) -> str:
    """An error envelope's own words (``{"code": 500, "msg": "..."}``), if it has some."""
    if isinstance(data, dict):
        for key in ("msg", "message", "error", "errmsg"):
            if isinstance(data.get(key), str) and data[key]:
                return f" (the server says: {data[key][:200]})"
    return ""


@hookimpl
def register_source_types() -> list[type[Source]]:
    return [HttpSource]
