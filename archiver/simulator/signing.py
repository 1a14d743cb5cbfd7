"""Signed media URLs: ``?e=<expiry>&n=<nonce>&s=<HMAC-SHA256 over path|e|n>``.

The key is private to one simulator instance, so a URL from one instance is refused by
another, as a vendor URL is refused once its signing key rotates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from enum import Enum


class Verdict(Enum):
    """What the media host thinks of a URL's signature parameters."""

    OK = "ok"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"


class Signer:
    """Signs and verifies media paths."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _mac(self, path: str, expires: str, nonce: str) -> str:
        digest = hmac.new(self._key, f"{path}|{expires}|{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def query(self, path: str, expires: int, nonce: int) -> dict[str, str]:
        """The query parameters that make ``path`` fetchable until ``expires`` (Unix seconds)."""
        return {"e": str(expires), "n": str(nonce), "s": self._mac(path, str(expires), str(nonce))}

    def verify(self, path: str, query: dict[str, str], now: float) -> Verdict:
        """Check the signature first (as S3 does), then the expiry."""
        expires, nonce, sig = query.get("e", ""), query.get("n", ""), query.get("s", "")
        if not (expires.isdigit() and nonce.isdigit() and sig):
            return Verdict.BAD_SIGNATURE
        if not hmac.compare_digest(sig.encode(), self._mac(path, expires, nonce).encode()):
            return Verdict.BAD_SIGNATURE
        if int(expires) < now:
            return Verdict.EXPIRED
        return Verdict.OK
