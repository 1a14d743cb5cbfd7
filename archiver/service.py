"""The service lifecycle: start, serve, stop.

One :class:`Service` runs the daemon (``archiver run``) or, in burst mode, one drain of the
queue (``archiver once``). APScheduler only enqueues and wakes (inbox scan, sweep of due
jobs, status); the worker pool does the work. Stopping is an event: intake stops, workers
only waiting for API budget give their jobs back at once, in-flight sessions get
``daemon.grace_period`` to finish, then they are cancelled and their jobs go back to
pending; ``CANCEL_DEADLINE`` bounds the wait after the cancel. The last log line says the
archiver stopped. SIGHUP is logged and ignored (the configuration is read at start only).
A lock file keeps two archivers off one state directory.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from . import __version__
from .analytics import AnalyticsClient
from .breaker import Breakers
from .archive import SessionArchiver
from .calldetails import CallDetails, CallRecords
from .catalog import open_for_archiving
from .coverage import Coverage, DayCoverage, write_report, yesterday
from .client import KoreClient, api_session
from .config import Config, format_size
from .discovery import Discovery
from .download import MediaDownloader, media_session
from .errors import ArchiverError, Stopping
from .health import HealthServer
from .inbox import Inbox
from .inbox_retention import prune_processed
from .metrics import Metrics
from .outlook import Outlook, Usage, outlook
from .sdnotify import Notifier
from .store import JobStore, StateLock
from .worker import PoolStats, WorkerPool

log = logging.getLogger("archiver.service")
# Seconds between two projections of the backlog against its deadlines (each reads the backlog).
OUTLOOK_INTERVAL = 60.0
STATES = ("pending", "running", "deferred", "done", "failed")
# After the grace period the in-flight sessions are cancelled; whatever has not ended this
# long after the cancel (a thread stuck in a system call, say) is left behind: stopping is
# bounded by daemon.grace_period plus this.
CANCEL_DEADLINE = 10.0
INBOX_PRUNE_INTERVAL = 3600.0  # seconds between cleanings of inbox/processed/
STORE_POLL_INTERVAL = 1.0  # seconds between looks for commits by other processes
# FileOutcome.disposition -> the outcome label of archiver_inbox_files_total.
INBOX_OUTCOME_LABELS = {"processed": "processed", "rejected": "rejected", "moved_aside": "quarantined"}


# How ``run_once`` ended, and the exit code ``archiver once`` gives for it.
DRAINED, FAILED, WAITING = "drained", "failed", "waiting"
ONCE_EXIT_CODES = {DRAINED: 0, FAILED: 1, WAITING: 3}


@dataclass(frozen=True)
class OnceResult:
    """What ``run_once`` did, and the queue it left."""

    stats: PoolStats
    counts: dict[str, int]

    @property
    def outcome(self) -> str:
        """FAILED when a session failed, else WAITING when sessions are left to retry, else DRAINED."""
        if self.stats.failed:
            return FAILED
        if any(self.counts.get(state, 0) for state in ("pending", "deferred", "running")):
            return WAITING
        return DRAINED

    @property
    def exit_code(self) -> int:
        """``archiver once``'s exit code: 0 drained, 1 a session failed, 3 sessions left waiting."""
        return ONCE_EXIT_CODES[self.outcome]

    def summary(self, failures: int = 20) -> list[str]:
        """The lines ``archiver once`` prints: totals, the queue, the first ``failures`` failures."""
        stats = self.stats
        lines = [
            f"archived {stats.done} sessions ({format_size(stats.bytes)}), failed {stats.failed}, "
            f"deferred {stats.deferred}; queue: " + ", ".join(f"{k} {v}" for k, v in self.counts.items() if v)
        ]
        lines += [f"  failed {ext_id}: {reason}" for ext_id, reason in stats.failures[:failures]]
        return lines


# Threads for the blocking file work of a process (fsyncs, renames, directory changes, the
# manifest and catalog): one more than the cores. More only contend for the interpreter's
# lock and the disk: on 2 cores, 3 took scenario 4 (2,000 sessions) about 5% faster than
# asyncio's default of 6 (tests/benchmarks/bench_versions.py, alternating).
FILE_THREADS = (os.cpu_count() or 1) + 1


def use_file_threads() -> None:
    """Make the running loop's default executor (``asyncio.to_thread``) FILE_THREADS wide; for
    the loop of a process that runs the archiver (``archiver run``, ``archiver once``)."""
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="files")
    )


async def run_daemon(config: Config) -> None:
    """``archiver run``: the service until a signal stops it."""
    use_file_threads()
    await Service(config, handle_signals=True).run()


async def run_once(
    config: Config, ids: list[tuple[str, str]], *, watch: Callable[[Service], Awaitable[None]] | None = None,
    file_threads: bool = False,
) -> OnceResult:
    """Enqueue ``ids``, ingest the inbox, drain the queue (burst mode), then count what is left.

    ``watch(service)``, when given, runs beside the service until it ends (a progress line);
    ``file_threads``: the loop is this process's own (see :func:`use_file_threads`).
    """
    if file_threads:
        use_file_threads()
    if ids:
        await asyncio.to_thread(_enqueue, config, ids)
    service = Service(config, burst=True, handle_signals=True)
    watcher = asyncio.create_task(watch(service)) if watch is not None else None
    try:
        stats = await service.run()
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)  # a progress bar ends its line first
    return OnceResult(stats, await asyncio.to_thread(_counts, config))


def _enqueue(config: Config, ids: list[tuple[str, str]]) -> None:
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue(ids)


def _counts(config: Config) -> dict[str, int]:
    with JobStore.open_in(config.daemon.state_dir) as store:
        return store.counts()


class Service:
    """The archiver as a running thing."""

    def __init__(
        self,
        config: Config,
        *,
        burst: bool = False,
        metrics: Metrics | None = None,
        notifier: Notifier | None = None,
        handle_signals: bool = False,
        serve_http: bool | None = None,
    ) -> None:
        self.config = config
        self.burst = burst
        self.metrics = metrics or Metrics()
        self.notifier = notifier or Notifier()
        self.handle_signals = handle_signals
        self.serve_http = (not burst) if serve_http is None else serve_http
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.pool: WorkerPool | None = None
        self.client: KoreClient | None = None
        self.store: JobStore | None = None
        self.inbox: Inbox | None = None
        self.health_server: HealthServer | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.discovery: Discovery | None = None
        self.call_records: CallRecords | None = None
        self.usage = Usage(self.metrics)
        self._outlook_at = -OUTLOOK_INTERVAL
        self._at_risk = 0
        self.breakers: Breakers | None = None
        self.forced = False  # stopped without waiting for every task (see CANCEL_DEADLINE)
        self._running_jobs: set[asyncio.Task[Any]] = set()  # scheduled jobs under way
        self._last_tick = 0.0
        self._started = 0.0

    def stop(self) -> None:
        """Ask the service to stop (idempotent; safe from a signal handler)."""
        self.stopping.set()

    async def run(self) -> PoolStats:
        """Run until stopped (or drained, in burst mode); returns what this run did."""
        lock = StateLock(self.config.daemon.state_dir)
        lock.acquire()
        try:
            async with AsyncExitStack() as stack:
                await self._start(stack)
                assert self.pool is not None
                pool_task = asyncio.create_task(self.pool.run(self.stopping, burst=self.burst))
                stop_task = asyncio.create_task(self.stopping.wait())
                await asyncio.wait({pool_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                stop_task.cancel()
                await self._shutdown(pool_task)
                return self.pool.stats
        finally:
            lock.release()
            log.info("archiver stopped%s", " (work left behind after the cancel deadline)" if self.forced else "")
            if self.forced and self.handle_signals:
                # A thread that never returns would hold the interpreter's exit for ever
                # (asyncio.run waits for tasks and the executor's threads): leave now.
                logging.shutdown()
                os._exit(1)

    async def _start(self, stack: AsyncExitStack) -> None:
        config = self.config
        self._started = time.time()
        # First, so that a port in use is one clear line before any work starts.
        if self.serve_http and config.observability.http_listen:
            self.health_server = HealthServer(config.observability.http_listen, self.metrics, self.health, self.degraded)
            await self.health_server.start()
            stack.push_async_callback(self.health_server.close)
        self._log_start()
        self.store = await asyncio.to_thread(JobStore.open_in, config.daemon.state_dir)
        stack.callback(self.store.close)
        stack.push_async_callback(self.store.calls_done)  # before the close: what was handed to it is made
        recovered = await self.store.run(self.store.recover_running)
        if recovered:
            log.info("took up %d jobs left running by an earlier run", recovered)
        if config.archive.target == "s3":  # sessions are written to the spool, then published
            from .s3archive import spool_config

            config = spool_config(config)
        config.archive.root.mkdir(parents=True, exist_ok=True)
        api_http = await stack.enter_async_context(api_session(config))
        media_http = await stack.enter_async_context(media_session(config))
        self.breakers = Breakers.from_config(config.daemon)
        self.client = client = KoreClient(config, api_http, metrics=self.metrics, breaker=self.breakers.api, store=self.store)
        downloader = MediaDownloader(config, media_http, metrics=self.metrics, breaker=self.breakers.media)
        analytics = AnalyticsClient(client, ledger=self.store)
        # One Call Details client (one limiter) shared by archiving and discovery.
        calls = CallRecords(config, self.store, CallDetails(client)) if config.kore.account_id else None
        self.call_records = calls
        catalog = await asyncio.to_thread(open_for_archiving, config.daemon.state_dir)
        if catalog is not None:
            stack.callback(catalog.close)  # after the workers: the stack unwinds once they stopped
        archiver = SessionArchiver(
            config, client, downloader, self.metrics, analytics=analytics, calls=calls, catalog=catalog
        )
        if self.config.archive.target == "s3":
            from .s3 import Bucket, s3_client
            from .s3archive import S3SessionArchiver

            bucket = Bucket(self.config, await stack.enter_async_context(s3_client(self.config)))
            archiver = S3SessionArchiver(self.config, archiver, bucket)
        self.discovery = Discovery(config, client, self.store, analytics=analytics, calls=calls)
        self.pool = WorkerPool(config, self.store, archiver, self.metrics, breakers=self.breakers)
        for limiter in (client.limiter, analytics.limiter):
            limiter.stopping = self.stopping
        self._export_pauses(client)
        self.inbox = Inbox(config.daemon, self.store)
        await self.scan_inbox()
        await self.prune_inbox()
        if not self.burst:
            self._start_scheduler(stack)
            watcher = asyncio.create_task(self._watch_store())
            stack.callback(watcher.cancel)
        if self.handle_signals:
            self._install_signals(stack)
        if self.notifier.watchdog_interval:
            watchdog = asyncio.create_task(self._watchdog(self.notifier.watchdog_interval))
            stack.callback(watchdog.cancel)
        counts = await self._update_status()
        if not self.burst:
            await self.refresh_outlook(force=True)  # at-risk sessions known from the first scrape
        self.notifier.notify(ready=1, status=self._status_line(counts))
        self.ready.set()
        log.info("archiver %s", "draining the queue" if self.burst else "running")

    def _export_pauses(self, client: KoreClient) -> None:
        """The vendor-up and paused gauges, read from the breakers, the pool and the limiter
        at each scrape (so they cannot go stale)."""
        assert self.breakers is not None and self.pool is not None
        pool = self.pool
        for breaker in self.breakers:
            self.metrics.vendor_up.labels(breaker.host).set_function(lambda b=breaker: 1.0 if b.up else 0.0)
        paused = self.metrics.downloads_paused
        paused.labels("outage").set_function(lambda: 1.0 if pool.outage() else 0.0)
        paused.labels("disk").set_function(lambda: 1.0 if pool.disk_paused() else 0.0)
        paused.labels("rate_limit").set_function(lambda: 1.0 if client.limiter.paused() else 0.0)

    def _log_start(self) -> None:
        """The start-up line: what runs, from which file, where it listens, how fast it may go."""
        config = self.config
        listen = "not served"
        if self.health_server is not None:
            listen = f"{self.health_server.host}:{self.health_server.port}"
        log.info(
            "kore-archiver %s starting (%s): config %s, listening on %s, %d workers, "
            "API budget %d requests per %gs",
            __version__, "once" if self.burst else "daemon", config.source, listen, config.daemon.concurrency,
            config.kore.requests_per_minute, config.kore.rate_window,
            extra={
                "kv_version": __version__, "kv_config": config.source, "kv_listen": listen,
                "kv_concurrency": config.daemon.concurrency, "kv_budget": config.kore.requests_per_minute,
                "kv_budget_window": config.kore.rate_window,
            },
        )

    def _start_scheduler(self, stack: AsyncExitStack) -> None:
        daemon = self.config.daemon
        scheduler = AsyncIOScheduler(timezone="UTC")
        scheduler.add_job(self._scheduled(self.scan_inbox), "interval", seconds=daemon.inbox_scan_interval,
                          id="inbox", max_instances=1, coalesce=True)
        scheduler.add_job(self._scheduled(self.sweep), "interval", seconds=daemon.sweep_interval,
                          id="sweep", max_instances=1, coalesce=True)
        if self.config.daemon.inbox_retention > 0:
            scheduler.add_job(self._scheduled(self.prune_inbox), "interval", seconds=INBOX_PRUNE_INTERVAL,
                              id="inbox-retention", max_instances=1, coalesce=True)
        if self.config.discovery.enabled:
            scheduler.add_job(self._scheduled(self.discover), "interval", seconds=self.config.discovery.interval,
                              id="discovery", max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
        if self.config.verify.sample_interval > 0:
            scheduler.add_job(self._scheduled(self.verify_sample), "interval", seconds=self.config.verify.sample_interval,
                              id="verify", max_instances=1, coalesce=True)
        if self.config.kore.account_id and self.config.call_details.coverage_schedule:
            from apscheduler.triggers.cron import CronTrigger

            trigger = CronTrigger.from_crontab(self.config.call_details.coverage_schedule, timezone="UTC")
            scheduler.add_job(self._scheduled(self.daily_coverage), trigger, id="coverage", max_instances=1, coalesce=True)
        scheduler.start()
        self.scheduler = scheduler
        self._last_tick = time.time()
        stack.callback(lambda: scheduler.shutdown(wait=False) if scheduler.running else None)

    def _scheduled(self, func: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        """A scheduled job, known while it runs: the shutdown lets it finish (or stops it) itself
        instead of leaving it to be cancelled mid-call, which the scheduler logs as an error."""

        @functools.wraps(func)
        async def run() -> Any:
            task = asyncio.current_task()
            assert task is not None
            self._running_jobs.add(task)
            try:
                return await func()
            except asyncio.CancelledError:
                log.info("%s stopped by the shutdown", func.__name__)
                return None
            finally:
                self._running_jobs.discard(task)

        return run

    async def _end_scheduled_jobs(self) -> None:
        """Wait for the scheduled jobs under way (at most CANCEL_DEADLINE), then stop the rest."""
        running = set(self._running_jobs)
        if not running:
            return
        _done, late = await asyncio.wait(running, timeout=CANCEL_DEADLINE)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    def _install_signals(self, stack: AsyncExitStack) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
            stack.callback(loop.remove_signal_handler, signum)
        # The configuration is read once, at start; SIGHUP (a "reload" by habit) changes
        # nothing and must not kill the daemon, which is its default action.
        loop.add_signal_handler(signal.SIGHUP, self._hangup)
        stack.callback(loop.remove_signal_handler, signal.SIGHUP)

    def _hangup(self) -> None:
        log.warning("SIGHUP ignored: the configuration is read only at start; restart the service to apply a change")

    async def _shutdown(self, pool_task: asyncio.Task[None]) -> None:
        """Stop intake, give in-flight sessions the grace period, then cancel them."""
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if not pool_task.done():
            self.notifier.notify(stopping=1, status="stopping: finishing in-flight sessions")
            log.info("stopping: waiting up to %.0fs for in-flight sessions", self.config.daemon.grace_period)
            done, _ = await asyncio.wait({pool_task}, timeout=self.config.daemon.grace_period)
            if not done:
                log.warning("grace period over: cancelling in-flight sessions (they stay queued)")
                pool_task.cancel()  # the pool cancels its workers, which give their jobs back
                done, _ = await asyncio.wait({pool_task}, timeout=CANCEL_DEADLINE)
                if not done:
                    log.error("in-flight sessions did not end within %.0fs of the cancel; stopping without them",
                              CANCEL_DEADLINE)
                    self.forced = True
                    return
        try:
            await pool_task
        except asyncio.CancelledError:
            pass
        await self._end_scheduled_jobs()
        await self._update_status()
        if self.store is not None:
            # The calls this run spent, for "API calls per archived session" in archiver status.
            await asyncio.to_thread(self.usage.flush, self.store)

    # -- scheduled jobs -------------------------------------------------------------------------

    async def scan_inbox(self) -> int:
        """Read the inbox (in a thread: it parses files) and wake the workers; returns ids accepted."""
        assert self.inbox is not None
        self._last_tick = time.time()
        try:
            outcomes = await asyncio.to_thread(self.inbox.scan)
        except OSError as exc:
            log.error("cannot scan the inbox %s: %s", self.config.daemon.inbox_dir, exc)
            return 0
        for outcome in outcomes:
            label = INBOX_OUTCOME_LABELS.get(outcome.disposition)
            if label:
                self.metrics.inbox_files.labels(label).inc()
        accepted = sum(o.accepted for o in outcomes)
        if accepted and self.pool is not None:
            self.pool.notify()
        return accepted

    async def prune_inbox(self) -> None:
        """Remove what inbox/processed/ has kept for longer than daemon.inbox_retention."""
        try:
            await asyncio.to_thread(prune_processed, self.config.daemon.inbox_dir, self.config.daemon.inbox_retention)
        except OSError as exc:
            log.error("cannot clean %s/processed: %s", self.config.daemon.inbox_dir, exc)

    async def sweep(self) -> None:
        """Wake workers for jobs that fell due and publish queue counts."""
        self._last_tick = time.time()
        if self.pool is not None:
            self.pool.notify()
        await self._update_status()
        await self.refresh_outlook()

    async def discover(self) -> None:
        """Find new sessions through the Sessions History API and wake the workers."""
        assert self.discovery is not None
        try:
            result = await self.discovery.run()
        except Stopping:
            return  # it was waiting for API budget; the watermark stays for the next start
        except ArchiverError as exc:
            log.error("discovery failed (the watermark stays; the next run tries again): %s", exc)
            return
        if result.added and self.pool is not None:
            self.pool.notify()
        log.info("discovery: %d new sessions, %d already known", result.added, result.known)

    async def daily_coverage(self, day: date | None = None) -> DayCoverage | None:
        """Write the coverage report of ``day`` (the day before by default) into the archive."""
        assert self.store is not None and self.call_records is not None
        day = day or yesterday()
        try:
            report = await Coverage(self.config, self.store, self.call_records.calls).day(day)
        except ArchiverError as exc:
            log.error("coverage of %s failed (the next scheduled run tries again): %s", day, exc)
            return None
        path, digest = await asyncio.to_thread(write_report, self.config.archive.root, report)
        self.metrics.coverage_missing.set(len(report.missing))
        counts = report.counts()
        log_at = logging.INFO if report.complete else logging.WARNING
        log.log(
            log_at, "coverage of %s: %d voice sessions, %d missing, %d failed; report %s (sha256 %s)",
            day, counts["vendor_known"], counts["missing"], counts["failed"], path, digest,
            extra={"kv_missing": counts["missing"], "kv_failed": counts["failed"]},
        )
        return report

    async def refresh_outlook(self, *, force: bool = False) -> Outlook | None:
        """The backlog against its deadlines, for /metrics (at most once a minute unless forced)."""
        if self.store is None or (not force and time.monotonic() - self._outlook_at < OUTLOOK_INTERVAL):
            return None
        self._outlook_at = time.monotonic()
        await asyncio.to_thread(self.usage.flush, self.store)
        self.metrics.api_calls_per_session.set(self.usage.ratio())
        found = await asyncio.to_thread(outlook, self.config, self.store, time.time())
        self.metrics.sessions_at_risk.set(found.at_risk)
        if found.at_risk and not self._at_risk:
            log.warning(
                "%d queued sessions are projected to miss their vendor retention deadline at %d requests per %gs",
                found.at_risk, self.config.kore.requests_per_minute, self.config.kore.rate_window,
                extra={"kv_at_risk": found.at_risk},
            )
        elif self._at_risk and not found.at_risk:
            log.info("no queued session is at risk of missing its vendor retention deadline any more")
        self._at_risk = found.at_risk
        return found

    async def verify_sample(self) -> None:
        """Re-read a random sample of archived sessions; problems are logged (and counted)."""
        from .verify import verify_sample

        report = await verify_sample(self.config, self.config.verify.sample_size)
        self.metrics.verify_problems.inc(len(report.damaged))

    async def _update_status(self) -> dict[str, int]:
        """Publish the queue's counts (metrics, systemd status); returns them."""
        if self.store is None:
            return {}
        status = await self.store.run(self.store.status, recent=0)
        counts = status.counts
        for state in STATES:
            self.metrics.queue.labels(state).set(counts.get(state, 0))
        oldest = status.oldest_pending_at
        self.metrics.oldest_pending_age.set(max(0.0, time.time() - oldest) if oldest else 0.0)
        self.metrics.api_calls_per_session.set(self.usage.ratio())
        self.notifier.notify(status=self._status_line(counts))
        return counts

    @staticmethod
    def _status_line(counts: dict[str, int]) -> str:
        return " ".join(f"{state}={counts.get(state, 0)}" for state in STATES)

    async def _watch_store(self) -> None:
        """Wake the workers within a second of a commit by another process.

        ``archiver retry`` and ``enqueue --force`` write the store from the command line; the
        operator expects them to act now, not at the next sweep. SQLite's data_version moves
        exactly when another connection commits, and reading it costs no I/O when nothing did.
        """
        assert self.store is not None
        store = self.store
        seen = await store.run(store.data_version)
        while True:
            await asyncio.sleep(STORE_POLL_INTERVAL)
            version = await store.run(store.data_version)
            if version != seen:
                seen = version
                if self.pool is not None:
                    self.pool.notify()

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notifier.notify(watchdog=1)
            await asyncio.sleep(interval)

    def health(self) -> dict[str, Any]:
        """For /healthz: ready, scheduler alive, last successful archive."""
        now = time.time()
        scheduler_alive = self.burst or (
            self.scheduler is not None and self.scheduler.running
            and now - self._last_tick < 3 * max(self.config.daemon.sweep_interval, self.config.daemon.inbox_scan_interval)
        )
        stats = self.pool.stats if self.pool else PoolStats()
        degraded = self.degraded()
        return {
            "healthy": bool(self.ready.is_set() and scheduler_alive and not self.stopping.is_set()),
            "degraded": degraded,
            "vendor": {b.host: {"up": b.up, "since": b.opened_at, "last_error": b.reason} for b in self.breakers or ()},
            "ready": self.ready.is_set(),
            "scheduler_alive": bool(scheduler_alive),
            "stopping": self.stopping.is_set(),
            "last_success": stats.last_success,
            "archived_this_run": stats.done,
            "failed_this_run": stats.failed,
            "started": self._started,
        }

    def degraded(self) -> list[str]:
        """Why archiving is paused right now (empty when it is not): for /readyz and /healthz."""
        reasons = []
        for breaker in self.breakers.down() if self.breakers is not None else ():
            reasons.append(f"outage: the {breaker.host} host is unreachable ({breaker.reason})")
        if self.pool is not None and self.pool.disk_paused():
            reasons.append("disk: below archive.min_free_space or full")
        return reasons

