"""Bearer tokens and basic-auth passwords: kept as SHA-256 digests, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping

# compared against when a basic-auth user is unknown, so the answer takes as long as for a known one
_NO_USER = "0" * 64


def digest(token: str) -> str:
    """The hex SHA-256 of a token: what a config may hold instead of the token itself."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def password_digest(password: str) -> str:
    """The hex SHA-256 of a password exactly as typed (``printf %s "$PASSWORD" | sha256sum``)."""
    return hashlib.sha256(password.encode("utf-8", "surrogatepass")).hexdigest()


def bearer_matches(authorization: str | None, expected_digest: str) -> bool:
    """Whether an ``Authorization: Bearer <token>`` header carries the token of that digest."""
    if not authorization:
        return False
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(digest(token), expected_digest.lower())


def bearer_matches_any(authorization: str | None, expected_digests: Iterable[str | None]) -> bool:
    """Whether the header carries any of these tokens; every digest is compared, so the time taken
    does not tell which one matched."""
    results = [bearer_matches(authorization, d) for d in expected_digests if d]
    return any(results)


def basic_matches(authorization: str | None, users: Mapping[str, str]) -> bool:
    """Whether an ``Authorization: Basic ...`` header names a user of ``users`` (user → password
    digest) with the right password."""
    if not authorization or not users:
        return False
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    user, sep, password = decoded.partition(":")
    if not sep:
        return False
    expected = users.get(user)
    same = hmac.compare_digest(password_digest(password), (expected or _NO_USER).lower())
    return same and expected is not None
