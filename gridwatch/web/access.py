"""Who a read request is: the district (everything), one street's reader (a :class:`Scope`), or
nobody (401).

The district's credentials (``read_token_sha256``, ``basic_auth_users``, the write token) are
SHA-256 digests, checked in microseconds. A scoped reader's password is a bcrypt hash, which
takes a quarter of a second on purpose: it is checked in a worker thread, once per distinct
``Authorization`` header, and the answer kept until the config is reloaded (a board refreshing
every few seconds would otherwise cost a core). Requests with the same header that arrive while
it is being checked wait for that one check.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os

from gridwatch.settings import Settings
from gridwatch.tokens import (
    basic_credentials,
    basic_matches,
    bearer_matches_any,
    bearer_token,
    digest,
    password_hash_matches,
)
from gridwatch.web.scope import EVERYTHING, Scope

MAX_REMEMBERED = 1024  # verified headers kept; each needs a right password, so only a few exist


class Access:
    """The read credentials of one config, and the scoped readers' passwords verified so far."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tokens = [(r.token_sha256, Scope.of(r)) for r in settings.readers if r.token_sha256]
        self._users = {r.user: (r.password_hash, Scope.of(r)) for r in settings.readers if r.user and r.password_hash}
        # checked for an unknown user, so that the answer takes as long as for a known one
        self._decoy = next((hashed for hashed, _ in self._users.values()), None)
        self._key = os.urandom(32)  # remembered headers are kept as keyed digests, not as they came
        self._verified: dict[bytes, Scope] = {}
        self._checking: dict[bytes, asyncio.Future[Scope | None]] = {}

    async def scope(self, authorization: str | None) -> Scope | None:
        """What a request with this ``Authorization`` header may read; None: nothing (401)."""
        s = self.settings
        if not s.reads_protected:
            return EVERYTHING
        district = bearer_matches_any(authorization, (s.read_token_sha256, s.token_sha256))
        if district or basic_matches(authorization, s.basic_auth_users):
            return EVERYTHING
        token = bearer_token(authorization)
        if token is not None:
            return self._by_token(token)
        credentials = basic_credentials(authorization)
        if credentials is None or not self._users or authorization is None:
            return None
        key = hmac.new(self._key, authorization.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        known = self._verified.get(key)
        if known is not None:
            return known
        check = self._checking.get(key)
        if check is None:
            check = self._checking[key] = asyncio.ensure_future(self._check(key, *credentials))
        return await asyncio.shield(check)  # a client that goes away cancels only its own wait

    def _by_token(self, token: str) -> Scope | None:
        """Every reader's digest is compared, so the time taken does not tell which one matched."""
        got = digest(token)
        found = [scope for expected, scope in self._tokens if hmac.compare_digest(got, expected or "")]
        return found[0] if found else None

    async def _check(self, key: bytes, user: str, password: str) -> Scope | None:
        try:
            scope = await asyncio.get_running_loop().run_in_executor(None, self._password, user, password)
            if scope is not None:
                if len(self._verified) >= MAX_REMEMBERED:
                    self._verified.clear()
                self._verified[key] = scope
            return scope
        finally:
            self._checking.pop(key, None)

    def _password(self, user: str, password: str) -> Scope | None:
        hashed, scope = self._users.get(user, (None, None))
        right = password_hash_matches(password, hashed or self._decoy or "")
        return scope if right and hashed is not None else None
