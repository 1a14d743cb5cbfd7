"""The retry policy: one place decides what is retried, how often and how long to wait.

Waits are exponential with full jitter (:meth:`RetryPolicy.backoff`, the same formula as
tenacity's ``wait_random_exponential``), except when the server said how long
(``Retry-After``), which is honoured as given.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from .config import HttpConfig
from .errors import is_transient

log = logging.getLogger("archiver.retry")
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and backoff for one API call or download; built from [http]."""

    max_attempts: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    # The longest Retry-After honoured (kore.max_retry_after): one answer saying "a year"
    # must not park a call for a year.
    max_retry_after: float = 900.0

    @classmethod
    def from_config(cls, http: HttpConfig, max_retry_after: float = 900.0) -> "RetryPolicy":
        """From [http], with ``kore.max_retry_after``."""
        return cls(http.max_attempts, http.backoff_initial, http.backoff_max, max_retry_after)

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff after ``attempt`` (1-based) failed: the one formula,
        also for the loops tenacity does not drive (media resumes, whole sessions)."""
        return random.uniform(0, min(self.backoff_max, self.backoff_initial * 2 ** max(0, attempt - 1)))

    def wait_for(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: Retry-After if the server gave one, else jittered backoff."""
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after", None)
        if hint is not None:
            return min(float(hint), self.max_retry_after)
        return self.backoff(state.attempt_number)

    async def call(
        self,
        func: Callable[[], Awaitable[T]],
        *,
        on_retry: Callable[[BaseException, int, float], Any] | None = None,
    ) -> T:
        """Run ``func`` until it succeeds, fails permanently, or attempts run out (re-raising the last error)."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            if on_retry is not None and exc is not None:
                on_retry(exc, state.attempt_number, delay)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self.wait_for,
            retry=retry_if_exception(is_transient),
            before_sleep=before_sleep,
            reraise=True,
        )
        return await retrying(func)
