"""Session discovery: find every voice session by date in Kore's sessions history and queue it.

``Discovery.run`` walks from a persisted watermark up to now; ``Discovery.backfill`` walks
any past range without touching the watermark. Both cut the range into windows of
``discovery.window`` (getSessions refuses 7 days or more), page each window with
``skip``/``limit`` until ``moreAvailable`` is false, keep the sessions on
``analytics.channel`` (getSessions has no channel filter, so the others are dropped here) and
enqueue them; ``JobStore.enqueue`` is idempotent, so a session seen twice is queued once.

Why the watermark is safe:

- It is written only after a window has been paged to the end and its sessions committed to
  the queue, so a crash repeats at most one window and never skips one.
- Kore's analytics reach the sessions history some time after a session starts. Each run
  starts ``discovery.overlap`` before the watermark, so a session listed up to ``overlap``
  after it started is found by the next run. Later ones need a backfill.
- Consecutive windows share one second, in case the API treats ``dateTo`` as exclusive.

Every call goes through ``AnalyticsClient``, whose limiter keeps both the per-minute and the
per-hour budget, so discovery waits instead of ever breaching the hour.

With ``discovery.source = "call_details"`` the same windows are walked through Call Details
v2 instead (``calldetails.py`` splits a busy window until each part fits): only voice calls
are queued, and each one's record is stored first, so archiving it needs no further call
for its metadata (and none for a voicemail the record says it does not have).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timezone

from .analytics import AnalyticsClient, kore_time, utc
from .calldetails import CallDetails, CallRecords, WalkStats, is_voice
from .client import KoreClient, api_session
from .config import Config
from .ids import SESSION, session_id_problem
from .store import JobStore, StateLock

log = logging.getLogger("archiver.discovery")

WATERMARK_KEY = "discovery.watermark"
# Consecutive windows overlap by this much: a session exactly on a boundary is asked for twice.
_EDGE = 1.0
# getSessions refuses a range of 7 days or more; a window (its edge included) stays clear of it.
MAX_WINDOW = 7 * 86400.0 - 60.0


@dataclass(frozen=True)
class DiscoveryResult:
    """What one run or backfill did.

    ``seen`` counts the sessions on the wanted channel as listed (one seen twice counts twice),
    so ``seen == added + known``; ``ignored`` counts sessions on other channels.
    """

    windows: int = 0
    pages: int = 0
    seen: int = 0
    added: int = 0
    known: int = 0
    ignored: int = 0

    def __add__(self, other: DiscoveryResult) -> DiscoveryResult:
        return DiscoveryResult(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def plan_windows(start: float, end: float, size: float) -> Iterator[tuple[float, float]]:
    """[start, end] cut at every ``size`` seconds into windows, each but the first reaching
    ``_EDGE`` back into the one before; nothing when ``end <= start``."""
    if size <= _EDGE:
        raise ValueError("window size must be more than a second")
    size = min(size, MAX_WINDOW - _EDGE)
    cut = start
    while cut < end:
        stop = min(cut + size, end)
        yield max(start, cut - _EDGE), stop
        cut = stop


class Discovery:
    """Finds sessions by date and enqueues them; see the module docstring."""

    def __init__(
        self,
        config: Config,
        client: KoreClient,
        store: JobStore,
        *,
        clock: Callable[[], float] = time.time,
        analytics: AnalyticsClient | None = None,
        calls: CallRecords | None = None,
    ) -> None:
        self.config = config
        self.settings = config.discovery
        self.store = store
        self.clock = clock
        # Pass the AnalyticsClient the transcripts use, so one limiter holds the bot's budget.
        self.analytics = analytics or AnalyticsClient(client, ledger=store)
        if calls is None and self.settings.source == "call_details":
            calls = CallRecords(config, store, CallDetails(client))
        self.calls = calls
        self._lock = asyncio.Lock()

    async def watermark(self) -> float | None:
        """Unix seconds up to which every window has been paged and enqueued, or None."""
        raw = await self.store.run(self.store.get_meta, WATERMARK_KEY)
        if raw is None:
            return None
        try:
            return self._seconds(datetime.fromisoformat(raw))
        except ValueError:
            log.warning("discovery: ignoring an unreadable watermark %r; starting from the lookback", raw[:60])
            return None

    async def run(self, now: float | datetime | None = None) -> DiscoveryResult:
        """Discover from the watermark (less the overlap; the lookback on a first run) to now."""
        async with self._lock:
            end = self._seconds(now) if now is not None else self.clock()
            mark = await self.watermark()
            start = end - self.settings.lookback if mark is None else min(mark, end) - self.settings.overlap
            result = await self._walk(start, end, advance=True)
        log.info(
            "discovery: %d new sessions, %d already known, %d windows, %d pages",
            result.added, result.known, result.windows, result.pages,
            extra={"kv_added": result.added, "kv_known": result.known, "kv_until": kore_time(utc(end))},
        )
        return result

    async def backfill(self, date_from: float | datetime, date_to: float | datetime) -> DiscoveryResult:
        """Discover every session started in [date_from, date_to]; the watermark is left alone."""
        start, end = self._seconds(date_from), self._seconds(date_to)
        if end < start:
            raise ValueError("backfill: date_to is before date_from")
        result = await self._walk(start, end, advance=False)
        log.info(
            "discovery: backfill of %s..%s: %d new sessions, %d already known",
            kore_time(utc(start)), kore_time(utc(end)), result.added, result.known,
            extra={"kv_added": result.added, "kv_known": result.known},
        )
        return result

    # -- windows and pages -------------------------------------------------------------------

    async def _walk(self, start: float, end: float, *, advance: bool) -> DiscoveryResult:
        total = DiscoveryResult()
        for window_start, window_end in plan_windows(start, end, self.settings.window):
            total += await self._window(window_start, window_end)
            if advance:
                # Only now is everything up to window_end in the queue.
                await self.store.run(self.store.set_meta, WATERMARK_KEY, kore_time(utc(window_end)))
        return total

    async def _window(self, start: float, end: float) -> DiscoveryResult:
        """Page one window to the end, enqueueing each page as it comes."""
        if self.settings.source == "call_details":
            return await self._call_details_window(start, end)
        result = DiscoveryResult(windows=1)
        skip, page_size = 0, self.settings.page_size
        while True:
            page = await self.analytics.get_sessions(utc(start), utc(end), skip=skip, limit=page_size)
            wanted, ignored = self._voice_sessions(page.items)
            added, known = await self._enqueue(wanted)
            result += DiscoveryResult(pages=1, seen=len(wanted), added=added, known=known, ignored=ignored)
            # Advance by what was served, not by what was asked: the server may cut a page.
            skip += len(page.items)
            if not page.more_available:
                return result

    async def _call_details_window(self, start: float, end: float) -> DiscoveryResult:
        """One window through Call Details v2: each voice call's record stored, then queued."""
        assert self.calls is not None
        stats = WalkStats()
        result = DiscoveryResult(windows=1)
        async for batch in self.calls.calls.walk(start, end, stats):
            voice = [r for r in batch if is_voice(r)]
            kept = await self.calls.keep(voice)
            added, known = await self._enqueue([r["sessionId"] for r in kept])
            result += DiscoveryResult(seen=len(kept), added=added, known=known, ignored=len(batch) - len(voice))
        return result + DiscoveryResult(pages=stats.calls, ignored=stats.invalid)

    def _voice_sessions(self, sessions: tuple[dict, ...]) -> tuple[list[str], int]:
        """The valid session ids on the wanted channel, and how many others were dropped."""
        wanted, ignored = [], 0
        for entry in sessions:
            session_id = entry.get("sessionId")
            if entry.get("channel") != self.config.analytics.channel:
                ignored += 1
            elif not isinstance(session_id, str) or session_id_problem(session_id) is not None:
                ignored += 1
                log.warning("discovery: ignoring an invalid session id %r", str(session_id)[:80])
            else:
                wanted.append(session_id)
        return wanted, ignored

    async def _enqueue(self, session_ids: list[str]) -> tuple[int, int]:
        if not session_ids:
            return 0, 0
        outcome = await asyncio.to_thread(self.store.enqueue, [(SESSION, sid) for sid in session_ids])
        return outcome.added, outcome.requeued + outcome.skipped

    @staticmethod
    def _seconds(value: float | datetime) -> float:
        """Unix seconds; a naive datetime is taken as UTC."""
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            return value.timestamp()
        return float(value)


async def backfill_range(config: Config, date_from: float | datetime, date_to: float | datetime) -> DiscoveryResult:
    """``archiver backfill``: walk a past range through getSessions in valid windows and queue
    what is new.

    It holds the state lock: the daemon's discovery spends the same hourly Analytics budget,
    and two processes could not keep their sum under it.
    """
    with StateLock(config.daemon.state_dir), JobStore.open_in(config.daemon.state_dir) as store:
        async with api_session(config) as http:
            return await Discovery(config, KoreClient(config, http, store=store), store).backfill(date_from, date_to)
