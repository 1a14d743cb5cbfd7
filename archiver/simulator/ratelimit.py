"""Rolling-window rate limits.

A limit group (Contact Center per account; later Analytics per bot with a minute and an hour
window) is a key plus one or more ``(limit, window)`` pairs read from the config per request.
A request is accepted only if every window of its group has room, and only accepted requests
are counted.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Sequence


class RollingLimiter:
    """Accepted-request timestamps per (key, window length)."""

    def __init__(self) -> None:
        self._accepted: dict[tuple[Hashable, float], deque[float]] = {}

    def acquire(self, key: Hashable, windows: Sequence[tuple[int, float]], now: float) -> float | None:
        """Accept and count a request (None), or return the seconds until one would be accepted.

        A window whose limit is 0 or less is disabled.
        """
        waits = []
        for limit, window in windows:
            if limit <= 0:
                continue
            stamps = self._stamps(key, window, now)
            if len(stamps) >= limit:
                # The request that must leave the window before there is room again.
                waits.append(stamps[len(stamps) - limit] + window - now)
        if waits:
            return max(waits)
        for limit, window in windows:
            if limit > 0:
                self._accepted[(key, window)].append(now)
        return None

    def _stamps(self, key: Hashable, window: float, now: float) -> deque[float]:
        stamps = self._accepted.setdefault((key, window), deque())
        while stamps and stamps[0] <= now - window:
            stamps.popleft()
        return stamps


def retry_after_header(wait: float) -> str:
    """``Retry-After`` for a wait in seconds: a whole number, rounded up, at least 1."""
    return str(max(1, math.ceil(wait)))
