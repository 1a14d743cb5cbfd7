"""Chaos: the daemon against a simulator with every fault knob on at once.

Two daemons run side by side against one simulator, one archiving recordings through the v2
API (signed media URLs) and one through v1 (inline base64), both fetching voicemails. Every
fault fires at once: 5xx and 429 from the API, connections reset mid-body (API and media),
truncated bodies, ignored ``Range``, slow bodies, expired URLs, and recordings that are not
ready at first. The promise checked: every session archived, every sha256 equal to the
simulator's, no temp file, every media file delivered completely exactly once.

The fast variant runs by default; ``--run-slow`` adds the long one (600 sessions).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from archiver.service import Service
from archiver.simulator import Faults, Simulator
from archiver.store import JobStore

from .conftest import make_config
from .reliability import Captured, assert_downloaded_once, assert_exactly_once, figures

# Each knob is rolled per request (per body for the media faults); together they hit well
# over a quarter of all requests.
CHAOS = Faults(
    api_5xx=0.10,
    api_429=0.05,
    api_reset=0.20,
    media_5xx=0.10,
    media_reset=0.12,
    media_truncate=0.10,
    ignore_range=0.40,
    slow_body=0.10,
    slow_body_delay=0.005,
    expired_url=0.10,
    not_ready_rate=0.10,
    not_ready_polls=2,
)


def session_ids(count: int, salt: int) -> list[str]:
    # ObjectIds spread over 2025, so the archive's date partitions are exercised too.
    return [f"{0x67800000 + n * 9973:08x}{salt:04x}cafe{n:08x}" for n in range(count)]


def chaos_config(root: Path, sim: Simulator, api: str, **extra):
    root.mkdir(parents=True, exist_ok=True)
    return make_config(
        root, sim,
        kore__recordings_api=api,
        # 429s come without Retry-After: each pauses every worker for one (short) window.
        kore__rate_window="100ms",
        http__max_attempts=10,
        http__backoff_initial="5ms",
        http__backoff_max="40ms",
        daemon__concurrency=4,
        daemon__max_attempts=30,
        daemon__defer_delay="100ms",
        daemon__sweep_interval="200ms",
        observability__log_level="DEBUG",
        **extra,
    )


async def run_chaos(tmp_path: Path, simulator, sessions: int, *, max_size: int, timeout: float) -> None:
    sim = await simulator(seed=11, voicemail_rate=0.5, min_size=2_000, max_size=max_size, faults=CHAOS,
                          retry_after_header=False)
    v1_count = sessions // 3
    plans = {
        "v2": (chaos_config(tmp_path / "v2", sim, "v2"), session_ids(sessions - v1_count, 2)),
        "v1": (chaos_config(tmp_path / "v1", sim, "v1"), session_ids(v1_count, 1)),
    }
    for config, ids in plans.values():
        with JobStore.open_in(config.daemon.state_dir) as store:
            store.enqueue([("session", sid) for sid in ids])
    services = [Service(config) for config, _ in plans.values()]
    started = time.monotonic()
    with Captured() as logs:
        tasks = [asyncio.create_task(s.run()) for s in services]
        try:
            await asyncio.gather(*(s.ready.wait() for s in services))
            await _until_all_done(services, [len(ids) for _, ids in plans.values()], timeout)
        finally:
            for service in services:
                service.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
    elapsed = time.monotonic() - started

    seen = figures(sim, sessions)
    print(f"\nchaos: {seen} in {elapsed:.1f}s; faults by kind: {dict(sim.stats.faults_injected)}")
    assert seen.fault_rate >= 0.25, seen
    for config, ids in plans.values():
        assert_exactly_once(config, sim, ids)
        assert assert_downloaded_once(config, sim, ids) == {}
        with JobStore.open_in(config.daemon.state_dir) as store:
            assert store.counts()["done"] == len(ids)
    # Every kind of fault really happened, and none of them surfaced as a bug.
    assert set(sim.stats.faults_injected) >= {
        "api_5xx", "api_429", "api_reset", "media_5xx", "media_reset", "media_truncate", "ignore_range",
        "slow_body", "expired_url",
    }
    assert logs.internal_errors() == []


async def _until_all_done(services: list[Service], totals: list[int], timeout: float) -> None:
    """Poll the stores until every job is done; fail at once on a failed job."""
    deadline = time.monotonic() + timeout
    while True:
        done = 0
        for service, total in zip(services, totals):
            assert service.store is not None
            counts = service.store.counts()
            if counts.get("failed"):
                errors = service.store.status(recent=5).recent_errors
                raise AssertionError(f"sessions failed under chaos: {errors}")
            done += counts.get("done", 0) == total
        if done == len(services):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"chaos run did not finish in {timeout}s: {[s.store.counts() for s in services]}")
        await asyncio.sleep(0.05)


async def test_chaos_fast(tmp_path, simulator):
    await run_chaos(tmp_path, simulator, 120, max_size=40_000, timeout=90)


@pytest.mark.slow
async def test_chaos_long(tmp_path, simulator):
    await run_chaos(tmp_path, simulator, 600, max_size=600_000, timeout=900)
