"""Kore's checks on the ``auth`` header, in Kore's order, with Kore's error messages."""

from __future__ import annotations

import time
import warnings

import jwt

from .spec import SimConfig

SDK_CREDENTIALS = "Invalid SDK credentials"
INVALID_JWT = "Invalid JWT token"
BAD_SCOPE = "Permission denied. Scope is incorrect!"
MAX_JTI_LIFETIME = 3600.0
# Kore checks signature, appId and exp; it does not insist on aud, iat, sub or jti shapes.
_DECODE_OPTIONS = {"verify_aud": False, "verify_iat": False, "verify_sub": False, "verify_jti": False}


class JtiStore:
    """The ``jti`` values already used, kept until their token expires."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def use(self, jti: str, exp: float, now: float) -> bool:
        """Record ``jti``; False when it was used before (a replay)."""
        if len(self._seen) > 10_000:
            self._seen = {k: v for k, v in self._seen.items() if v >= now}
        if jti in self._seen:
            return False
        self._seen[jti] = exp
        return True


def check(cfg: SimConfig, jtis: JtiStore, bot_id: str, token: str | None, scope: str) -> str | None:
    """The Kore error message for this request's credentials, or None when they pass."""
    if not token or bot_id != cfg.bot_id:
        return SDK_CREDENTIALS
    if not _token_ok(cfg, jtis, token):
        return INVALID_JWT
    if scope not in cfg.scopes:
        return BAD_SCOPE
    return None


def _token_ok(cfg: SimConfig, jtis: JtiStore, token: str) -> bool:
    try:
        with warnings.catch_warnings():
            # The secret is whatever the test configured; short ones are fine here.
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            claims = jwt.decode(token, cfg.client_secret, algorithms=["HS256"], options=_DECODE_OPTIONS)
    except jwt.PyJWTError:
        return False
    if claims.get("appId") != cfg.client_id:
        return False
    jti = claims.get("jti")
    if jti is None:
        return not cfg.enforce_jti
    now = time.time()
    exp, iat = claims.get("exp"), claims.get("iat", now)
    # A jti token must say when it dies, and die within the hour of its issue.
    if not isinstance(exp, (int, float)) or not isinstance(iat, (int, float)):
        return False
    if exp - iat > MAX_JTI_LIFETIME or not isinstance(jti, str) or not jti:
        return False
    return jtis.use(jti, exp, now)
