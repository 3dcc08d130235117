"""Bearer tokens: kept as SHA-256 digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac


def digest(token: str) -> str:
    """The hex SHA-256 of a token: what a config may hold instead of the token itself."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def bearer_matches(authorization: str | None, expected_digest: str) -> bool:
    """Whether an ``Authorization: Bearer <token>`` header carries the token of that digest."""
    if not authorization:
        return False
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(digest(token), expected_digest.lower())
