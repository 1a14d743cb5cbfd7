"""Client-side rate limiting for the Kore.ai API.

The Contact Center APIs allow a fixed number of requests per rolling window per account
(60 a minute). Every avoidable 429 costs a whole window, so the limiter keeps us under the
budget instead of reacting to refusals: it remembers when the last N requests were sent and
makes the next one wait until the oldest leaves the window. A small margin covers the
difference between when we send and when the server counts.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Callable, Sequence


class RateLimiter:
    """At most ``limit`` acquisitions in any ``window`` seconds, FIFO, shared by all workers."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        # We count a request when it is queued, the server when it arrives: the margin covers
        # connection set-up and jitter in between. 2% of the window, between 0.1 s and 1 s.
        self.margin = min(1.0, max(0.1, 0.02 * window)) if margin is None else margin
        self._clock = clock
        self._sent: collections.deque[float] = collections.deque(maxlen=limit)
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def delay(self) -> float:
        """Seconds until a request may be sent (0 when it may go now)."""
        now = self._clock()
        wait = max(0.0, self._paused_until - now)
        if len(self._sent) >= self.limit:
            wait = max(wait, self._sent[0] + self.window + self.margin - now)
        return wait

    async def acquire(self) -> None:
        """Wait for a slot and take it."""
        async with self._lock:
            while (wait := self.delay()) > 0:
                await asyncio.sleep(wait)
            self._sent.append(self._clock())

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (after a 429: the server's window is full)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)


class MultiWindowLimiter(RateLimiter):
    """Several rolling windows at once: Kore's Analytics APIs allow 60 a minute *and* 1,800
    an hour per bot, and breaching the hour shuts every Analytics call out until it rolls.

    The shortest window is the one ``RateLimiter`` itself keeps, so ``limit``/``window`` (and
    the pause a 429 without ``Retry-After`` causes) are the shortest window's; each longer
    window is kept by a ``RateLimiter`` of its own, and one acquisition takes a slot in every
    window at the same instant. The memory held is the sum of the limits, bounded.
    """

    def __init__(
        self,
        windows: Sequence[tuple[int, float]],
        *,
        margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not windows:
            raise ValueError("at least one (limit, window) pair is needed")
        ordered = sorted(windows, key=lambda pair: pair[1])
        (limit, window), *longer = ordered
        super().__init__(limit, window, margin=margin, clock=clock)
        self.windows: tuple[tuple[int, float], ...] = tuple(ordered)
        self._longer = [RateLimiter(n, w, margin=margin, clock=clock) for n, w in longer]
        # Called after each acquisition (the Analytics client persists its budget with it).
        self.on_acquire: Callable[[], None] | None = None

    def delay(self) -> float:
        """Seconds until every window has room (0 when a request may go now)."""
        return max([super().delay(), *(inner.delay() for inner in self._longer)])

    async def acquire(self) -> None:
        """Wait until every window has a slot, and take one in each."""
        async with self._lock:
            while (wait := self.delay()) > 0:
                await asyncio.sleep(wait)
            now = self._clock()
            self._sent.append(now)
            for inner in self._longer:
                inner._sent.append(now)
            if self.on_acquire is not None:
                self.on_acquire()

    def seed(self, ages: Sequence[float]) -> None:
        """Count requests made ``ages`` seconds ago (by an earlier run) in every window."""
        now = self._clock()
        for age in sorted(ages, reverse=True):
            for limiter in (self, *self._longer):
                if age < limiter.window:
                    limiter._sent.append(now - age)
