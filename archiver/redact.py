"""Keeping secrets out of everything we print or store.

Signed media URLs are bearer credentials (their ``e``/``n``/``s`` query), the JWT is one too,
and the client secret is the key to both. URLs are shown and stored without their query;
log records pass through :class:`RedactingFilter` as a second line of defence.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
_QUERY_SECRET_RE = re.compile(r"(?i)([?&](?:s|n|e|sig|signature|x-amz-signature|x-amz-credential|token)=)[^&\s\"']+")


def redact_url(url: str) -> str:
    """The URL without query string, fragment or user info: safe to log and to store."""
    try:
        parts = urlsplit(str(url))
        netloc = parts.hostname or ""
        if parts.port:  # raises on a port out of range: a hostile URL must not break the report
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return "<unparseable url>"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove JWTs, signed-URL parameters and the given secret values from free text."""
    text = _JWT_RE.sub("<jwt>", text)
    text = _QUERY_SECRET_RE.sub(r"\1<redacted>", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "<secret>")
    return text


# The attributes every LogRecord has; any other one was passed as ``extra=`` (a structured field).
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """The structured fields of a record: whatever ``extra=`` added, the ``kv_`` prefix dropped."""
    return {
        (key[3:] if key.startswith("kv_") else key): value
        for key, value in record.__dict__.items()
        if key not in _RECORD_ATTRIBUTES
    }


class RedactingFilter(logging.Filter):
    """Scrubs every formatted log message and exception text before it is emitted."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message, self.secrets)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)), self.secrets)
            record.exc_info = None
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_ATTRIBUTES and isinstance(value, str):
                record.__dict__[key] = scrub(value, self.secrets)
        return True
