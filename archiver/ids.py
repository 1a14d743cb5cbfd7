"""Validation of the ids that come from outside (inbox files, the command line, the API).

An id becomes part of a path, a URL query and a log line, so it is checked here once,
before it goes anywhere.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

# Session ids seen in the wild are 24-hex MongoDB ObjectIds; other ids are tolerated as long
# as they are safe as a single path component and a query value.
SESSION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
OBJECT_ID_RE = re.compile(r"[0-9a-fA-F]{24}")
# User ids may be e-mail addresses or enterprise ids.
USER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}")

SESSION = "session"
USER = "user"


def session_id_problem(value: str) -> str | None:
    """Return why ``value`` is not a valid session id, or None when it is."""
    if not value:
        return "empty"
    if len(value) > 128:
        return f"too long ({len(value)} characters, at most 128)"
    if not SESSION_ID_RE.fullmatch(value):
        return "only letters, digits, '-' and '_' are allowed (first character a letter or digit)"
    return None


def user_id_problem(value: str) -> str | None:
    """Return why ``value`` is not a valid user id, or None when it is."""
    if not value:
        return "empty"
    if len(value) > 255:
        return f"too long ({len(value)} characters, at most 255)"
    if not USER_ID_RE.fullmatch(value) or ".." in value:
        return "only letters, digits and . _ @ + - are allowed (no '..')"
    return None


def id_problem(id_type: str, value: str) -> str | None:
    """Validate an id of either type."""
    return session_id_problem(value) if id_type == SESSION else user_id_problem(value)


def object_id_time(session_id: str) -> datetime | None:
    """The creation time embedded in a 24-hex ObjectId, or None for other ids."""
    if not OBJECT_ID_RE.fullmatch(session_id):
        return None
    return datetime.fromtimestamp(int(session_id[:8], 16), tz=timezone.utc)
