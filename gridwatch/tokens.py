"""Bearer tokens and basic-auth passwords: kept as SHA-256 digests (or, for a scoped reader's
password, a salted bcrypt hash), compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping

import bcrypt

# compared against when a basic-auth user is unknown, so the answer takes as long as for a known one
_NO_USER = "0" * 64
BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
"""What ``htpasswd -B`` and the bcrypt library write: ``$2b$12$`` and 53 characters of salt and hash."""


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


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for any other header."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic ...`` header; None for any other header."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def password_hash_matches(password: str, hashed: str) -> bool:
    """Whether a password is the one of a bcrypt hash (the library compares in constant time).

    bcrypt reads the first 72 bytes of a password, as ``htpasswd -B`` does when it hashes one.
    Deliberately slow (a quarter of a second at cost 12): call it off the event loop."""
    try:
        return bcrypt.checkpw(password.encode("utf-8", "surrogatepass")[:72], hashed.encode("ascii"))
    except ValueError:  # a hash the library does not take: the config check lets none through
        return False


def basic_matches(authorization: str | None, users: Mapping[str, str]) -> bool:
    """Whether an ``Authorization: Basic ...`` header names a user of ``users`` (user → password
    digest) with the right password."""
    if not users:
        return False
    credentials = basic_credentials(authorization)
    if credentials is None:
        return False
    user, password = credentials
    expected = users.get(user)
    same = hmac.compare_digest(password_digest(password), (expected or _NO_USER).lower())
    return same and expected is not None
