"""Client-side rate limiting for the Kore.ai API.

The Contact Center APIs allow a fixed number of requests per rolling window per account
(60 a minute). Every avoidable 429 costs a whole window, so the limiter keeps us under the
budget instead of reacting to refusals: it remembers when the last N requests were made and
makes the next one wait until the oldest leaves the window.

The server counts a request when it arrives, somewhere between our send and its answer; a
slow connection set-up can put that well after the moment we queued it. So each request's
slot is stamped again when the answer arrives (:meth:`RateLimiter.settle`), the latest
moment the server can have counted it, and a small margin covers the rest.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING, Callable, Sequence

from .errors import Stopping

if TYPE_CHECKING:
    from .store import JobStore

log = logging.getLogger("archiver.ratelimit")


Slot = list  # [time] of one request, see RateLimiter.settle


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
        # 2% of the window, between 0.1 s and 1 s: clock jitter between us and the server.
        self.margin = min(1.0, max(0.1, 0.02 * window)) if margin is None else margin
        self._clock = clock
        # One slot per recent request: a one-element list holding its time, so settle() can
        # move it later. At most ``limit`` of them.
        self._sent: list[Slot] = []
        self._paused_until = 0.0
        self._waiting_until = 0.0  # when the request waiting for room now may go (for progress)
        self._lock = asyncio.Lock()
        # Set by the service when it stops: a worker that is only waiting for budget gives its
        # job back at once instead of holding the shutdown for the grace period.
        self.stopping: asyncio.Event | None = None

    async def _sleep(self, seconds: float) -> None:
        """Wait for budget, or raise :class:`Stopping` as soon as the service stops (a request
        that finds budget free goes ahead: its session may be finishing within the grace)."""
        self._waiting_until = self._clock() + seconds
        if self.stopping is None:
            await asyncio.sleep(seconds)
            return
        if not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), seconds)
            except asyncio.TimeoutError:
                return
        raise Stopping("stopping: the request was waiting for API budget")

    def delay(self) -> float:
        """Seconds until a request may be sent (0 when it may go now)."""
        now = self._clock()
        wait = max(0.0, self._paused_until - now)
        if len(self._sent) >= self.limit:
            wait = max(wait, min(slot[0] for slot in self._sent) + self.window + self.margin - now)
        return wait

    def _take(self, slot: Slot) -> None:
        if len(self._sent) >= self.limit:
            self._sent.remove(min(self._sent, key=lambda s: s[0]))  # the one that left the window
        self._sent.append(slot)

    async def acquire(self) -> Slot:
        """Wait for room and take a slot; pass it to :meth:`settle` when the answer arrives."""
        async with self._lock:
            while (wait := self.delay()) > 0:
                await self._sleep(wait)
            slot: Slot = [self._clock()]
            self._take(slot)
            return slot

    def settle(self, slot: Slot) -> None:
        """The answer to the slot's request arrived: the server counted it by now."""
        slot[0] = max(slot[0], self._clock())

    def wait_left(self) -> float:
        """Seconds the request now waiting for room still has to wait (0 when none waits)."""
        return max(0.0, self._waiting_until - self._clock())

    def paused(self) -> bool:
        """True while a 429 holds every request."""
        return self._clock() < self._paused_until

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

    async def acquire(self) -> Slot:
        """Wait until every window has room, and take one slot counted in each."""
        async with self._lock:
            while (wait := self.delay()) > 0:
                await self._sleep(wait)
            slot: Slot = [self._clock()]
            for limiter in (self, *self._longer):
                limiter._take(slot)
            if self.on_acquire is not None:
                self.on_acquire()
            return slot

    def seed(self, ages: Sequence[float]) -> None:
        """Count requests made ``ages`` seconds ago (by an earlier run) in every window."""
        now = self._clock()
        for age in sorted(ages, reverse=True):
            for limiter in (self, *self._longer):
                if age < limiter.window:
                    limiter._take([now - age])


# Slots a process takes ahead of its requests while the shared window is less than half full
# (each is a row every process counts, so nothing is overspent), and how soon one must be
# used: a request then needs no round trip to the store of its own. One not used in time is
# given back.
AHEAD = 8
AHEAD_FRESH = 0.2  # seconds; under the smallest margin plus the time a restamp takes to land


class SharedRateLimiter(RateLimiter):
    """The same budget, kept in the job store: every process on the state directory (the
    daemon, ``archiver once`` after it, ``archiver check`` beside it) counts the requests of
    all of them, and a restart after SIGKILL finds the last window's requests still counted.

    The store is SQLite: each acquisition is one short write transaction, made through
    :meth:`JobStore.run` (never on the event loop, batched with the workers' other calls),
    unless a slot taken ahead is there to use. Times are wall-clock, the one clock processes
    share.
    """

    def __init__(self, limit: int, window: float, store: "JobStore", *, name: str = "contact_center",
                 margin: float | None = None) -> None:
        super().__init__(limit, window, margin=margin, clock=time.time)
        self.store = store
        self.name = name
        self._ahead: collections.deque[tuple[float, int]] = collections.deque()  # (taken at, row id)

    async def acquire(self) -> Slot:
        """Wait until the shared window has room and take a slot in it: ``[time, row id]``.

        While no request waits, each takes its slot at once: one taken ahead, else one from
        the store, where the takes of many workers go together in one thread hop. Once one
        has to wait, the others queue behind it and go in their order.
        """
        if not self._lock.locked():
            slot = self._use_ahead()
            if slot is not None:
                return slot
            wait, slot = await self._take_shared()
            if slot is not None:
                return slot
        async with self._lock:
            while True:
                wait, slot = await self._take_shared()
                if slot is not None:
                    return slot
                await self._sleep(wait)

    def _use_ahead(self) -> Slot | None:
        """A slot taken ahead and still fresh, stamped again now (here and in the store)."""
        now = self._clock()
        stale = []
        slot = None
        while self._ahead and slot is None:
            taken, row = self._ahead.popleft()
            if now < self._paused_until or now - taken > AHEAD_FRESH:
                stale.append(row)
            else:
                slot = [now, row]
                self._later(self.store.budget_settle, row, now)
        if stale:
            self._later(self.store.budget_release, stale)
        return slot

    async def _take_shared(self) -> tuple[float, Slot | None]:
        now = self._clock()
        wait = self._paused_until - now
        if wait > 0:
            return wait, None
        wait, rows = await self.store.run(
            self.store.budget_take, self.name, self.limit, self.window + self.margin, now, ahead=AHEAD
        )
        if not rows:
            return wait, None
        first, *more = rows
        self._ahead.extend((now, row) for row in more)
        return 0.0, [now, first]

    def settle(self, slot: Slot) -> None:
        """Stamp the slot again at the answer (with the store's next calls; nothing waits for it)."""
        super().settle(slot)
        self._later(self.store.budget_settle, slot[1], slot[0])

    def pause(self, seconds: float) -> None:
        """Hold every request of every process on the state directory for ``seconds``; the
        slots taken ahead are given back."""
        super().pause(seconds)
        self._later(self.store.budget_pause, self.name, self._paused_until)
        if self._ahead:
            self._later(self.store.budget_release, [row for _, row in self._ahead])
            self._ahead.clear()

    def _later(self, func: Callable[..., None], *args: object) -> None:
        def run() -> None:
            try:
                func(*args)
            except Exception as exc:  # the store closing under a late answer: only the budget's precision suffers
                log.debug("budget bookkeeping skipped: %s", exc)

        self.store.soon(run)
