"""JWT signing for the Kore.ai API.

Kore wants HS256 tokens signed with the JWT app's client secret, carrying ``appId``; with a
``jti`` claim it also insists on ``exp`` at most an hour ahead and rejects a reused ``jti``.
We sign ``{appId, sub, iat, exp}``, cache the token and sign again well before it expires;
when the app enforces JTI (``kore.jti_per_request``) every request gets a new token with a
fresh ``jti``.
"""

from __future__ import annotations

import secrets
import time
import warnings
from typing import Callable

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from .config import KoreConfig

# Re-sign this long before expiry, so a token never expires in flight or on a skewed clock.
REFRESH_MARGIN = 300.0


class TokenSigner:
    """Signs and caches the ``auth`` header value."""

    def __init__(self, kore: KoreConfig, clock: Callable[[], float] = time.time) -> None:
        self._kore = kore
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self.signed = 0  # tokens signed so far (tests read it to count re-signing)

    def token(self) -> str:
        """A valid token: the cached one, or a fresh one when needed."""
        now = self._clock()
        if self._kore.jti_per_request or self._token is None or now >= self._expires_at - self._margin():
            self._token = self._sign(now)
        return self._token

    def invalidate(self) -> None:
        """Forget the cached token (after a 401) so the next call signs a new one."""
        self._token = None

    def _margin(self) -> float:
        return min(REFRESH_MARGIN, self._kore.token_ttl / 4)

    def _sign(self, now: float) -> str:
        issued = int(now)
        expires = issued + int(min(self._kore.token_ttl, 3600))
        claims: dict[str, object] = {
            "appId": self._kore.client_id,
            "sub": self._kore.client_id,
            "iat": issued,
            "exp": expires,
        }
        if self._kore.jti_per_request:
            # Kore rejects a reused jti as a replay, so a jti goes only into single-use tokens;
            # the cached token carries none.
            claims["jti"] = secrets.token_hex(16)
        self._expires_at = float(expires)
        self.signed += 1
        with warnings.catch_warnings():
            # The key is the JWT app's client secret, issued by Kore: not ours to lengthen.
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            return jwt.encode(claims, self._kore.client_secret.reveal(), algorithm="HS256")
