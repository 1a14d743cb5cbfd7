"""Rolling-window rate limits.

A limit group (Contact Center per account; Analytics per bot with a minute and an hour
window) is a key plus one or more ``(limit, window)`` pairs read from the config per request.
A request is accepted only if every window of its group has room, and only accepted requests
are counted. So once the hour is used up, every request of the group is refused until the
oldest accepted one rolls out of it, whatever the minute window says.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Sequence


class RollingLimiter:
    """Accepted-request timestamps per (key, window length)."""

    def __init__(self) -> None:
        # Keyed by the window's position in its group, so two windows of equal length (a
        # test's scaled-down minute and hour) still count separately.
        self._accepted: dict[tuple[Hashable, int], deque[float]] = {}

    def acquire(self, key: Hashable, windows: Sequence[tuple[int, float]], now: float) -> float | None:
        """Accept and count a request (None), or return the seconds until one would be accepted.

        A window whose limit is 0 or less is disabled.
        """
        waits = []
        for index, (limit, window) in enumerate(windows):
            if limit <= 0:
                continue
            stamps = self._stamps((key, index), window, now)
            if len(stamps) >= limit:
                # The request that must leave the window before there is room again.
                waits.append(stamps[len(stamps) - limit] + window - now)
        if waits:
            return max(waits)
        for index, (limit, _) in enumerate(windows):
            if limit > 0:
                self._accepted[(key, index)].append(now)
        return None

    def _stamps(self, slot: tuple[Hashable, int], window: float, now: float) -> deque[float]:
        stamps = self._accepted.setdefault(slot, deque())
        while stamps and stamps[0] <= now - window:
            stamps.popleft()
        return stamps


def retry_after_header(wait: float) -> str:
    """``Retry-After`` for a wait in seconds: a whole number, rounded up, at least 1."""
    return str(max(1, math.ceil(wait)))
