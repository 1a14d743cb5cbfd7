"""The Kore.ai Analytics APIs: the sessions history (getSessions) and conversation history
(getMessagesV2).

They are called through ``KoreClient`` (its auth, retries and error translation) but under a
budget of their own: Kore counts Analytics calls per bot, 60 a minute *and* 1,800 an hour,
apart from the Contact Center group the recordings use, and once the hour is breached every
Analytics call is refused until it rolls. One ``AnalyticsClient`` (one limiter) must serve
every Analytics caller of a bot, discovery and transcripts alike.

Both APIs list newest first and page with ``skip``/``limit``. New records push older ones
down, so paging while they arrive can show a record twice but never skips one: callers
de-duplicate.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .client import KoreClient
from .config import AnalyticsConfig
from .errors import ProtocolError
from .ratelimit import MultiWindowLimiter, RateLimiter
from .store import JobStore

MINUTE, HOUR = 60.0, 3600.0
# Store meta key holding the times of the Analytics calls of the last hour (JSON list).
LEDGER_KEY = "analytics.calls"
# getMessagesV2 serves up to 10,000 messages a page; a conversation rarely has more than a few
# hundred, and a smaller page keeps one answer well under the client's JSON size cap.
MESSAGES_PAGE_SIZE = 1000
MAX_MESSAGES_PAGE_SIZE = 10_000


def analytics_limiter(
    analytics: AnalyticsConfig, *, minute: float = MINUTE, hour: float = HOUR, margin: float | None = None
) -> MultiWindowLimiter:
    """The Analytics budget of ``[analytics]``: requests_per_minute and requests_per_hour at once.

    ``minute`` and ``hour`` are the window lengths (shorter in tests).
    """
    return MultiWindowLimiter(
        [(analytics.requests_per_minute, minute), (analytics.requests_per_hour, hour)], margin=margin
    )


def _largest_limit(limiter: RateLimiter) -> int:
    if isinstance(limiter, MultiWindowLimiter):
        return max(limit for limit, _window in limiter.windows)
    return limiter.limit


def kore_time(when: datetime) -> str:
    """``2025-02-11T13:57:19.000Z``: the format the Analytics APIs take (UTC, milliseconds)."""
    when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def utc(seconds: float) -> datetime:
    """An aware UTC datetime from Unix seconds."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


@dataclass(frozen=True)
class Page:
    """One page of a listing: its records as returned, and whether more follow."""

    items: tuple[dict[str, Any], ...]
    total: int | None
    more_available: bool


class AnalyticsClient:
    """getSessions and getMessagesV2 for the configured bot, under the Analytics budget."""

    def __init__(
        self,
        client: KoreClient,
        *,
        limiter: RateLimiter | None = None,
        channel: str | None = None,
        messages_page_size: int = MESSAGES_PAGE_SIZE,
        ledger: JobStore | None = None,
    ) -> None:
        """``ledger``: the job store, where the times of recent calls are kept across restarts."""
        if not 1 <= messages_page_size <= MAX_MESSAGES_PAGE_SIZE:
            raise ValueError(f"messages_page_size must be between 1 and {MAX_MESSAGES_PAGE_SIZE}")
        self.client = client
        self.limiter = limiter or analytics_limiter(client.config.analytics)
        self.channel = channel or client.config.analytics.channel
        self.messages_page_size = messages_page_size
        self._ledger = ledger if isinstance(self.limiter, MultiWindowLimiter) else None
        # Wall-clock times of the calls still inside the longest window (the hour).
        self._calls: collections.deque[float] = collections.deque(maxlen=_largest_limit(self.limiter))
        if self._ledger is not None:
            self._restore()
            self.limiter.on_acquire = self._remember

    def _restore(self) -> None:
        """Count the calls an earlier process made within the longest window: the hourly limit
        holds across restarts, not only within one run."""
        assert isinstance(self.limiter, MultiWindowLimiter) and self._ledger is not None
        try:
            stored = json.loads(self._ledger.get_meta(LEDGER_KEY) or "[]")
        except ValueError:
            stored = []
        now = time.time()
        longest = self.limiter.windows[-1][1]
        recent = sorted(float(t) for t in stored if isinstance(t, (int, float)) and 0 <= now - float(t) < longest)
        self._calls.extend(recent)
        self.limiter.seed([now - t for t in recent])

    def _remember(self) -> None:
        self._calls.append(time.time())

    async def _call(self, endpoint: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One Analytics call under this budget; the times of the calls it made are then saved
        in the ledger (in a worker thread, like every store call from async code), failed or not."""
        try:
            return await self.client.request_json(endpoint, "POST", path, {}, body=body, limiter=self.limiter)
        finally:
            if self._ledger is not None:
                text = json.dumps([round(t, 3) for t in self._calls])
                await asyncio.shield(asyncio.to_thread(self._ledger.set_meta, LEDGER_KEY, text))

    async def get_sessions(self, date_from: datetime, date_to: datetime, *, skip: int, limit: int) -> Page:
        """POST /getSessions: sessions started in [date_from, date_to] (under 7 days), newest first."""
        body = {"dateFrom": kore_time(date_from), "dateTo": kore_time(date_to), "skip": skip, "limit": limit}
        data = await self._call("get_sessions", "/getSessions", body)
        return _page(data, "sessions", "get_sessions", skip)

    async def get_messages(
        self,
        session_ids: Sequence[str],
        *,
        skip: int,
        limit: int,
        date_from: datetime | None = None,
        date_to: datetime | None = None,
    ) -> Page:
        """POST /getMessagesV2: the messages of ``session_ids`` on this client's channel, newest first."""
        body: dict[str, Any] = {
            "sessionId": list(session_ids), "skip": skip, "limit": limit, "channelType": self.channel,
        }
        if date_from is not None:
            body["dateFrom"] = kore_time(date_from)
        if date_to is not None:
            body["dateTo"] = kore_time(date_to)
        data = await self._call("get_messages", "/getMessagesV2", body)
        return _page(data, "messages", "get_messages", skip)


def _page(data: dict[str, Any], key: str, endpoint: str, skip: int) -> Page:
    """Check a listing's shape; ``moreAvailable`` falls back to ``skip + len < total``."""
    items = data.get(key)
    if items is None:
        items = []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ProtocolError(f"{endpoint}: {key!r} is not a list of objects")
    total = data.get("total")
    if total is not None and (isinstance(total, bool) or not isinstance(total, int)):
        raise ProtocolError(f"{endpoint}: 'total' is not a number")
    more = data.get("moreAvailable")
    if more is None:
        more = total is not None and skip + len(items) < total
    elif not isinstance(more, bool):
        raise ProtocolError(f"{endpoint}: 'moreAvailable' is not a boolean")
    if more and not items:
        # Asking again with the same skip would get the same empty page for ever.
        raise ProtocolError(f"{endpoint}: an empty page that says more is available")
    return Page(tuple(items), total, more)


def around(started: datetime) -> tuple[datetime, datetime]:
    """A date range sure to hold a session's messages: from an hour before it started to two
    days after (Kore's date filters default to recent days, so old sessions need one)."""
    return started - timedelta(hours=1), started + timedelta(days=2)
