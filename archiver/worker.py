"""The worker pool: N workers taking due jobs from the job store and archiving them.

Concurrency is one number (``daemon.concurrency``); there is no task per item. The store is
the queue: a worker claims one due job at a time, so a million queued ids cost nothing in
memory. Idle workers sleep on one wake event (set by enqueues, the sweeper and by any worker
that found work, so a burst of new jobs wakes every worker) or until the next job falls due.

What happens to a job after it ran (done, deferred, retry later, failed, released) is
decided here, in :meth:`WorkerPool._settle`, and written with cancellation shielded off.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .archive import SessionArchiver, SessionResult
from .config import Config, format_size
from .breaker import Breakers
from .errors import DISK_FULL, TRANSIENT, ArchiverError, TransientError, job_outcome
from .ids import SESSION
from .logsetup import job_context
from .metrics import Metrics
from .retry import RetryPolicy
from .store import Job, JobStore
from .window import Window

log = logging.getLogger("archiver.worker")
# How often a paused pool looks at the disk again.
DISK_RECHECK = 5.0


@dataclass
class PoolStats:
    """What this process did (for ``archiver once``'s summary and exit code)."""

    done: int = 0
    failed: int = 0
    deferred: int = 0
    retried: int = 0
    bytes: int = 0
    last_success: float | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)


class WorkerPool:
    """A fixed pool of workers over one job store."""

    def __init__(
        self,
        config: Config,
        store: JobStore,
        archiver: SessionArchiver,
        metrics: Metrics,
        *,
        window: Window | None = None,
        clock: Callable[[], float] = time.time,
        breakers: Breakers | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.archiver = archiver
        self.metrics = metrics
        self.window = window or Window(config.daemon.window, config.daemon.timezone)
        self.clock = clock
        self.wake = asyncio.Event()
        self.stats = PoolStats()
        # Between attempts of a whole session: the call policy's formula, at least a minute's ceiling.
        http = config.http
        # Whole-session retries: daemon.max_attempts attempts, waits from the [http] backoff.
        self._session_retry = RetryPolicy(config.daemon.max_attempts, http.backoff_initial, http.backoff_max)
        self.active = 0
        self.disk_paused_until = 0.0
        self._disk_warned = False
        self._tasks: list[asyncio.Task[None]] = []
        # Completions handed to the store and not yet awaited: each goes with the next claim.
        self._completing: collections.deque[asyncio.Future[Any]] = collections.deque()
        # While a host is down, one worker at a time takes a job to carry the breaker's probe.
        self.breakers = breakers
        self._prober: int | None = None
        if breakers is not None:
            for breaker in breakers:
                breaker.listeners.append(lambda up: self.notify() if up else None)

    def notify(self) -> None:
        """New or newly due work: wake idle workers."""
        self.wake.set()

    async def run(self, stopping: asyncio.Event, *, burst: bool = False) -> None:
        """Run the workers until ``stopping`` is set (or, in burst mode, the queue is drained)."""
        self._tasks = [
            asyncio.create_task(self._worker(n, stopping, burst), name=f"worker-{n}")
            for n in range(self.config.daemon.concurrency)
        ]
        try:
            await asyncio.gather(*self._tasks)
            await self._completed()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            # Whatever else happened, the completions handed to the store are made.
            await asyncio.gather(*self._completing, return_exceptions=True)

    # -- the loop -------------------------------------------------------------------------------

    async def _worker(self, number: int, stopping: asyncio.Event, burst: bool) -> None:
        ahead: list[asyncio.Future[Any]] = []  # the next job, claimed while this one finished
        try:
            while not stopping.is_set():
                pause = self._outage_pause(number) or self._pause_for()
                if pause:
                    await self._give_back(ahead)
                if pause and burst and not self._sits_out_outage():
                    # A one-shot run does not sit out a closed window or a full disk (nor an
                    # outage longer than daemon.session_timeout): the jobs stay queued for the
                    # next run, and the exit code says so.
                    self.wake.set()
                    return
                job = None if pause else await self._claim(ahead)
                await self._completed()
                if job is None:
                    if burst and await self._drained():
                        self.wake.set()  # let the other workers see it too
                        return
                    await self._idle(stopping, pause)
                    continue
                self.wake.set()  # there may be more: let another idle worker look
                try:
                    await self._process(job, lambda: self._claim_ahead(ahead))
                finally:
                    if self._prober == number:
                        self._prober = None
        finally:
            await asyncio.shield(self._give_back(ahead))

    def _sits_out_outage(self) -> bool:
        """A one-shot run waits for a host that went down, for at most daemon.session_timeout."""
        if self.breakers is None:
            return False
        down = self.breakers.down()
        started = min((b.opened_at or time.time() for b in down), default=None)
        return started is not None and time.time() - started < self.config.daemon.session_timeout

    def outage(self) -> bool:
        """True while a host's breaker is open."""
        return self.breakers is not None and bool(self.breakers.down())

    def _outage_pause(self, number: int) -> float | None:
        """Seconds to wait while a host is down; None when this worker may claim (no outage,
        or it is the one that carries the probe when the probe is due)."""
        if self.breakers is None:
            return None
        down = self.breakers.down()
        if not down:
            return None
        wait = max(breaker.seconds_to_probe() for breaker in down)
        if wait <= 0 and self._prober in (None, number):
            self._prober = number
            return None
        return max(wait, 0.05)

    def _pause_for(self) -> float | None:
        """Seconds to wait before claiming, when archiving is paused (window, disk)."""
        now = self.clock()
        if now < self.disk_paused_until:
            return self.disk_paused_until - now
        if self._below_free_space():
            self.disk_paused_until = now + DISK_RECHECK
            return DISK_RECHECK
        return self.window.seconds_until_open(now)

    def disk_paused(self) -> bool:
        """True while claims wait for disk space."""
        return self._disk_warned or self.clock() < self.disk_paused_until

    def _below_free_space(self) -> bool:
        """The free-space guard: pause (and say so once) below archive.min_free_space."""
        minimum = self.config.archive.min_free_space
        if not minimum:
            return False
        try:
            free = shutil.disk_usage(self.config.archive.root).free
        except OSError:
            return False
        if free >= minimum:
            if self._disk_warned:
                log.info("free space is back (%d bytes): archiving resumes", free)
                self._disk_warned = False
            return False
        if not self._disk_warned:
            log.error(
                "archive has %s free, below archive.min_free_space (%s): pausing", format_size(free), format_size(minimum)
            )
            self._disk_warned = True
        return True

    # Every store call goes to the store's own thread (JobStore.run/soon): SQLite may wait for
    # the write lock (an inbox ingest, another process), and the event loop must not wait with it.

    async def _claim(self, ahead: list[asyncio.Future[Any]]) -> Job | None:
        """The job claimed ahead, if any, else one claimed now."""
        claimed = ahead.pop() if ahead else self.store.soon(self.store.claim, 1, now=self.clock())
        jobs = await claimed
        return jobs[0] if jobs else None

    def _claim_ahead(self, ahead: list[asyncio.Future[Any]]) -> None:
        """Claim the worker's next job while the current one writes its manifest: the claim's
        round trip to the store happens during that thread hop instead of after it. At most
        one ahead per worker, given back if the worker pauses or stops instead."""
        if not ahead:
            ahead.append(self.store.soon(self.store.claim, 1, now=self.clock()))

    async def _give_back(self, ahead: list[asyncio.Future[Any]]) -> None:
        """Release a job claimed ahead and not started (its attempt does not count)."""
        while ahead:
            try:
                jobs = await ahead.pop()
            except Exception as exc:  # the claim itself failed: nothing is held
                log.debug("claim ahead failed: %s", exc)
                continue
            for job in jobs:
                await self.store.run(self.store.release, job.id)

    async def _completed(self) -> None:
        """Wait for the completions handed to the store (by now done: they went before the
        claim that preceded this call); a store error is raised here."""
        while self._completing:
            await self._completing.popleft()

    async def _drained(self) -> bool:
        """Burst mode ends when nothing is pending (deferred jobs wait for a later run)."""
        return self.active == 0 and (await self.store.run(self.store.counts)).get("pending", 0) == 0

    async def _idle(self, stopping: asyncio.Event, pause: float | None) -> None:
        timeout = self.config.daemon.sweep_interval
        due = await self.store.run(self.store.next_due)
        if due is not None:
            timeout = min(timeout, max(0.0, due - self.clock()))
        if pause:
            timeout = min(timeout, pause) if not self.wake.is_set() else pause
        self.wake.clear()
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stopping.wait())]
        try:
            await asyncio.wait(waiters, timeout=max(timeout, 0.01), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    # -- one job --------------------------------------------------------------------------------

    async def _process(self, job: Job, finishing: Callable[[], None] | None = None) -> None:
        self.active += 1
        token = job_context.set({"session": job.ext_id, "kind": job.id_type, "attempt": job.attempts})
        outcome: tuple[str, str | None] = ("release", None)
        try:
            result = await self._archive(job, finishing)
            outcome = (result.outcome, result.reason)
            if result.outcome == "done":
                self.stats.bytes += result.bytes
                await self._delete_from_source(job, result.directory)
                await self.archiver.settled(result)
        except asyncio.CancelledError:
            outcome = ("release", "cancelled")
            raise
        except Exception as exc:
            kind = job_outcome(exc)
            if kind == DISK_FULL and not isinstance(exc, ArchiverError):
                outcome = (kind, f"no space left on the archive file system ({getattr(exc, 'strerror', exc)})")
            elif kind is not None:
                outcome = (kind, str(exc))
            else:  # a bug: report it on the job, never kill the worker
                log.exception("unexpected error archiving %s", job.ext_id)
                outcome = (TRANSIENT, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self.active -= 1
            # The bookkeeping must happen even when this task is being cancelled.
            await asyncio.shield(self._settle(job, *outcome))
            job_context.reset(token)

    async def _archive(self, job: Job, finishing: Callable[[], None] | None) -> "SessionResult":
        """Archive one session within daemon.session_timeout: a session that takes longer (a
        server feeding it slowly, whatever the other deadlines) is released to retry later."""
        limit = self.config.daemon.session_timeout
        try:
            async with asyncio.timeout(limit) as deadline:
                return await self.archiver.archive(job.id_type, job.ext_id, force=job.force, finishing=finishing)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise TransientError(f"the session took longer than daemon.session_timeout ({limit:.0f}s)") from None

    async def _delete_from_source(self, job: Job, directory: Path) -> None:
        """Opt-in: delete the vendor's copy once the archive is proven (never changes the job's outcome)."""
        if not self.config.delete.enabled or job.id_type != SESSION:
            return
        from .deletion import delete_after_archive

        outcome = await delete_after_archive(
            self.config, self.archiver.client, directory, job.ext_id, proof=self.archiver.proof
        )
        self.metrics.deletions.labels(outcome.status).inc()

    async def _settle(self, job: Job, outcome: str, reason: str | None) -> None:
        now = self.clock()
        daemon = self.config.daemon
        if outcome == "done":
            # Not awaited here: the worker's next claim goes to the store in the same thread
            # hop, after it, and the worker awaits it then (one round trip a session, not two).
            self._completing.append(self.store.soon(self.store.complete, job.id))
            self.stats.done += 1
            self.stats.last_success = now
            self.metrics.sessions.labels("archived").inc()
            self.metrics.last_success.set(now)
            self._disk_warned = False
            log.info("archived %s", job.ext_id)
        elif outcome == "release":
            await self.store.run(self.store.release, job.id)
        elif outcome == "outage":
            # The vendor is down, not the session: the attempt is given back (the breaker logs it).
            await self.store.run(self.store.release, job.id)
            log.debug("waiting for the vendor: %s", reason)
        elif outcome == "not_ready":
            first = job.first_deferred_at or now
            if now - first >= daemon.not_ready_timeout:
                await self._fail(job, f"still not ready after {daemon.not_ready_timeout:.0f}s: {reason}")
            else:
                await self.store.run(self.store.defer, job.id, now + daemon.defer_delay, reason or "not ready")
                self.stats.deferred += 1
                self.metrics.sessions.labels("deferred").inc()
                log.info("not ready yet, asking again later: %s", reason)
        elif outcome == "disk_full":
            # Not the session's fault: give the attempt back and pause every worker.
            await self.store.run(self.store.release, job.id)
            self.disk_paused_until = now + DISK_RECHECK
            if not self._disk_warned:
                log.error("archive disk full, pausing downloads until space returns: %s", reason)
                self._disk_warned = True
        elif outcome == "transient":
            if job.attempts >= self._session_retry.max_attempts:
                await self._fail(job, f"gave up after {job.attempts} attempts: {reason}")
            else:
                # At least backoff_initial: the calls inside were already retried at once.
                delay = self.config.http.backoff_initial + self._session_retry.backoff(job.attempts)
                await self.store.run(self.store.retry_later, job.id, now + delay, reason or "transient error")
                self.stats.retried += 1
                self.metrics.retries.labels("session").inc()
                log.warning("will retry in %.0fs: %s", delay, reason)
        else:
            await self._fail(job, reason or "failed")

    async def _fail(self, job: Job, reason: str) -> None:
        await self.store.run(self.store.fail, job.id, reason)
        self.stats.failed += 1
        self.stats.failures.append((job.ext_id, reason))
        del self.stats.failures[:-100]
        self.metrics.sessions.labels("failed").inc()
        log.error("failed: %s", reason)

