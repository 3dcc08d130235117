"""What the HTTP notifiers share: one POST, with errors that never leak the URL's secrets."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp


class DeliveryError(Exception):
    pass


def safe_url(url: str) -> str:
    """Scheme, host and path only: robot keys and tokens live in the query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


async def post_json(session: aiohttp.ClientSession, url: str, body: Any, timeout: float) -> Any:
    """POST JSON; return the decoded JSON answer (or None); raise DeliveryError otherwise."""
    try:
        async with session.post(
            url,
            data=json.dumps(body, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json; charset=utf-8"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise DeliveryError(f"{safe_url(url)} answered HTTP {resp.status}: {text[:200]}")
            try:
                return json.loads(text) if text.strip() else None
            except ValueError:
                return None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DeliveryError(f"{safe_url(url)}: {type(exc).__name__} {exc}".strip()) from None
