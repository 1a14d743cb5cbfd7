"""The Contact Center budget is one budget: kept in the job store, it survives SIGKILL and is
counted by every process on the state directory (a daemon, ``archiver once`` after another,
``archiver check`` beside the daemon). The simulator enforces the budget and answers its
429s without ``Retry-After``, so any request over it shows.
"""

from __future__ import annotations

import asyncio
import io
import signal
import time

from archiver.cli import run_check
from archiver.service import Service
from archiver.store import JobStore

from .conftest import make_config, wait_for
from .test_crashloop import spawn

LIMIT, WINDOW = 6, 2.0


def session_ids(count: int, salt: int) -> list[str]:
    return [f"{0x67900000 + n * 6007:08x}{salt:04x}f00d{n:08x}" for n in range(count)]


async def budgeted(simulator):
    return await simulator(rate_limit=LIMIT, rate_window=WINDOW, retry_after_header=False, voicemail_rate=0.0)


def config_for(tmp_path, sim, **extra):
    # One API call per session (no voicemail): the budget is what paces the run.
    return make_config(
        tmp_path, sim, kore__requests_per_minute=LIMIT, kore__rate_window=f"{WINDOW}s",
        kore__fetch_voicemail=False, daemon__concurrency=4, **extra,
    )


def enqueue(config, ids: list[str]) -> None:
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", sid) for sid in ids])


def done(config) -> int:
    with JobStore.open_in(config.daemon.state_dir) as store:
        return store.counts()["done"]


def api_calls(sim) -> int:
    return sum(1 for r in sim.requests if r.server == "api")


async def test_archiver_once_right_after_another_stays_within_the_budget(tmp_path, simulator):
    sim = await budgeted(simulator)
    config = config_for(tmp_path, sim)
    for salt in (1, 2):
        ids = session_ids(LIMIT - 1, salt)
        enqueue(config, ids)
        stats = await asyncio.wait_for(Service(config, burst=True).run(), 30)
        assert stats.done == len(ids)
    assert sim.stats.rate_limited == 0


async def test_check_beside_a_running_daemon_gets_no_429(tmp_path, simulator):
    sim = await budgeted(simulator)
    config = config_for(tmp_path, sim)
    enqueue(config, session_ids(3 * LIMIT, 3))
    service = Service(config)
    running = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 10)
        await wait_for(lambda: api_calls(sim) >= LIMIT, what="the daemon to spend the window")
        out = io.StringIO()
        assert await asyncio.wait_for(run_check(config, out), 30) == 0, out.getvalue()
        assert "the service can start" in out.getvalue()
    finally:
        service.stop()
        await asyncio.wait_for(running, 15)
    assert sim.stats.rate_limited == 0


async def test_three_sigkills_mid_window_cost_no_429(tmp_path, simulator):
    sim = await budgeted(simulator)
    config = config_for(tmp_path, sim)
    ids = session_ids(4 * LIMIT, 4)
    enqueue(config, ids)
    log = tmp_path / "daemon.log"
    for _kill in range(3):
        before = api_calls(sim)
        daemon = await spawn(config.source, log)
        # Killed once it has spent part of a window: the next one must count those calls.
        await wait_for(lambda: api_calls(sim) >= before + LIMIT // 2, timeout=30, what="requests")
        daemon.send_signal(signal.SIGKILL)
        await daemon.wait()
    daemon = await spawn(config.source, log)
    try:
        await wait_for(lambda: done(config) == len(ids), timeout=60, what="every session")
    finally:
        daemon.send_signal(signal.SIGTERM)
        await asyncio.wait_for(daemon.wait(), 30)
    assert sim.stats.rate_limited == 0, log.read_text()[-3000:]


async def test_sigterm_stops_workers_waiting_for_budget_at_once(tmp_path, simulator):
    # Two requests a minute: after the first two, every worker only waits for budget.
    sim = await simulator(rate_limit=2, rate_window=60.0, retry_after_header=False, voicemail_rate=0.0)
    config = make_config(
        tmp_path, sim, kore__requests_per_minute=2, kore__rate_window="60s", kore__fetch_voicemail=False,
        daemon__concurrency=4, daemon__grace_period="60s",
    )
    ids = session_ids(8, 5)
    enqueue(config, ids)
    log = tmp_path / "daemon.log"
    daemon = await spawn(config.source, log)
    await wait_for(lambda: done(config) == 2, timeout=30, what="the budget to be spent")
    # SIGHUP changes nothing and does not stop the daemon.
    daemon.send_signal(signal.SIGHUP)
    await wait_for(lambda: "SIGHUP ignored" in log.read_text(), what="SIGHUP to be handled")
    assert daemon.returncode is None
    started = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(daemon.wait(), 30) == 0
    assert time.monotonic() - started < 10, "the workers waiting for budget held the shutdown"
    last = [line for line in log.read_text().splitlines() if line.strip()][-1]
    assert "archiver stopped" in last
    with JobStore.open_in(config.daemon.state_dir) as store:
        waiting = [store.get("session", sid) for sid in ids]
        pending = [job for job in waiting if job.state == "pending"]
        assert len(pending) == len(ids) - 2 and all(job.attempts == 0 for job in pending)
    assert sim.stats.rate_limited == 0


def budget_rows(store: JobStore) -> int:
    with store._lock:
        return store._conn.execute("SELECT COUNT(*) FROM budget").fetchone()[0]


def test_slots_are_taken_ahead_only_while_the_window_stays_at_most_half_full(tmp_path):
    with JobStore.open_in(tmp_path) as store:
        now = time.time()
        wait, rows = store.budget_take("x", 10, 60.0, now, ahead=8)
        assert wait == 0 and len(rows) == 5  # one for the request, four ahead: half of 10
        assert len(store.budget_take("x", 10, 60.0, now, ahead=8)[1]) == 1  # half full: no more ahead
        store.budget_release(rows[1:])
        assert budget_rows(store) == 2
        for _ in range(8):
            store.budget_take("x", 10, 60.0, now)
        wait, rows = store.budget_take("x", 10, 60.0, now, ahead=8)
        assert rows == [] and wait > 0  # full: nothing, ahead or not


async def test_requests_use_the_slots_taken_ahead_and_give_back_the_stale(tmp_path, monkeypatch):
    """Slots taken ahead are rows every process counts: using one adds none, and one left
    unused past its freshness stops counting."""
    from archiver import ratelimit
    from archiver.ratelimit import SharedRateLimiter

    with JobStore.open_in(tmp_path) as store:
        limiter = SharedRateLimiter(100, 60.0, store)
        first = await limiter.acquire()
        taken = budget_rows(store)
        assert taken == 1 + ratelimit.AHEAD
        slots = [await limiter.acquire() for _ in range(ratelimit.AHEAD)]
        await store.calls_done()
        assert budget_rows(store) == taken  # served from the slots taken ahead
        assert len({s[1] for s in [first, *slots]}) == taken
        monkeypatch.setattr(ratelimit, "AHEAD_FRESH", 0.0)
        await limiter.acquire()  # takes more ahead ...
        await asyncio.sleep(0.01)
        await limiter.acquire()  # ... which are stale by now: given back, one taken afresh
        await store.calls_done()
        assert budget_rows(store) == taken + 1 + 1 + ratelimit.AHEAD
