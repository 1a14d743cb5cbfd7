"""The circuit breaker: a vendor outage pauses the work; it does not fail it.

One breaker per host the archiver talks to (the API host and the media host), shared by every
worker. Calls report how each request went: an HTTP answer below 500 proves the host is up
(even a 404 or a 429); a connection error, a timeout or a 5xx counts against it. After
``threshold`` such failures in a row, whatever the worker, the breaker *opens*:

    closed ──threshold failures in a row──> open ──probe time──> half-open
      ^                                      ^                       │
      └──────────── the probe answered ──────┼───────────────────────┘
                                             └─── the probe failed: wait twice as long

While open, every request to the host is refused at once with :class:`VendorDown` (no
socket, no budget); the worker gives its job back without spending an attempt and the pool
stops claiming. At the probe time one request goes through: its answer closes the breaker
(the pool resumes by itself) or opens it again for twice the wait, up to ``probe_max``. The
log says it once when the breaker opens and once when it closes.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from .errors import VendorDown

log = logging.getLogger("archiver.breaker")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    """Consecutive-failure breaker for one host, with a doubling probe interval."""

    def __init__(
        self,
        host: str,
        threshold: int,
        probe_initial: float,
        probe_max: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.threshold = threshold
        self.probe_initial = probe_initial
        self.probe_max = max(probe_max, probe_initial)
        self._clock = clock
        self.state = CLOSED
        self.failures = 0
        self.opened_at: float | None = None  # wall clock, for /healthz
        self.reason = ""
        self._wait = probe_initial
        self._probe_at = 0.0
        # Called with True when the host comes back, False when it goes down (metrics, wake-ups).
        self.listeners: list[Callable[[bool], None]] = []

    @property
    def up(self) -> bool:
        """False while the breaker is open or probing."""
        return self.state == CLOSED

    def seconds_to_probe(self) -> float:
        """0 when a request may go (closed, or the probe is due); else seconds until the probe."""
        if self.state == CLOSED:
            return 0.0
        if self.state == HALF_OPEN:
            return self._wait  # a probe is out; its answer decides
        return max(0.0, self._probe_at - self._clock())

    def admit(self) -> bool:
        """Before sending a request: pass (False), become the probe (True), or raise
        :class:`VendorDown`. The probe's sender calls :meth:`abandoned` when it gave no verdict."""
        if self.state == CLOSED or self.threshold <= 0:
            return False
        if self.state == OPEN and self._clock() >= self._probe_at:
            self.state = HALF_OPEN  # this request is the probe
            log.debug("%s host: probing", self.host, extra={"kv_host": self.host})
            return True
        raise VendorDown(f"the {self.host} host is unreachable ({self.reason}); waiting for it", host=self.host)

    def succeeded(self) -> None:
        """The host answered (any status below 500)."""
        self.failures = 0
        if self.state == CLOSED:
            return
        down_for = time.time() - (self.opened_at or time.time())
        self.state, self._wait, self.opened_at, self.reason = CLOSED, self.probe_initial, None, ""
        log.warning("%s host is reachable again after %.0fs: resuming", self.host, down_for,
                    extra={"kv_host": self.host})
        self._tell(True)

    def failed(self, reason: str) -> None:
        """A connection error, a timeout or a 5xx from the host."""
        self.failures += 1
        if self.threshold <= 0:
            return
        if self.state == HALF_OPEN:
            # The probe failed: stay down, ask again twice as late.
            self._wait = min(self._wait * 2, self.probe_max)
            self._reopen(reason)
        elif self.state == CLOSED and self.failures >= self.threshold:
            self._wait = self.probe_initial
            self._reopen(reason)
            self.opened_at = time.time()
            log.error(
                "%s host unreachable (%d failures in a row, last: %s): pausing work, probing every %.1fs to %.1fs",
                self.host, self.failures, reason, self.probe_initial, self.probe_max,
                extra={"kv_host": self.host},
            )
            self._tell(False)

    def abandoned(self) -> None:
        """The probe ended; if with no verdict (cancelled, say), the next request probes again."""
        if self.state == HALF_OPEN:
            self.state = OPEN
            self._probe_at = self._clock()

    def _reopen(self, reason: str) -> None:
        self.state = OPEN
        self.reason = reason[:200]
        self._probe_at = self._clock() + self._wait

    def _tell(self, up: bool) -> None:
        for listener in self.listeners:
            listener(up)


class Breakers:
    """The two breakers of one running archiver: the API host's and the media host's."""

    def __init__(self, threshold: int, probe_initial: float, probe_max: float) -> None:
        self.api = CircuitBreaker("api", threshold, probe_initial, probe_max)
        self.media = CircuitBreaker("media", threshold, probe_initial, probe_max)

    def __iter__(self):
        return iter((self.api, self.media))

    @classmethod
    def from_config(cls, daemon) -> "Breakers":
        return cls(daemon.breaker_threshold, daemon.breaker_probe_initial, daemon.breaker_probe_max)

    def down(self) -> list[CircuitBreaker]:
        """The breakers that are not closed."""
        return [breaker for breaker in self if not breaker.up]
