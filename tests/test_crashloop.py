"""Crash loop: the daemon as a subprocess, killed with SIGKILL at random moments and restarted.

Kills land at random points of the work (after a random number of requests since the
process started, zero included: a kill during start-up), while ids keep arriving through
the inbox, bodies are slow and faults fire. After the last kill one more daemon drains the
queue. The promise checked: every session archived exactly once and byte-exact, no temp
file, the job store passes ``PRAGMA integrity_check``, and a kill costs at most the
downloads it interrupted (each media file is delivered completely once, except files in
flight at a kill, fetched again once per kill at most).

The fast variant runs by default; ``--run-slow`` adds the long one (240 sessions, 12 kills).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

from archiver.simulator import Faults, Simulator
from archiver.store import JobStore

from .conftest import SECRET, make_config, wait_for
from .conftest import archiver_for
from .reliability import assert_downloaded_once, assert_exactly_once, figures

FAULTS = Faults(
    api_5xx=0.05, api_429=0.02, media_5xx=0.05, media_reset=0.05, media_truncate=0.05, ignore_range=0.2,
    slow_body=0.4, slow_body_delay=0.004, expired_url=0.05, not_ready_rate=0.1, not_ready_polls=1,
)
CONCURRENCY = 4


async def spawn(config_path: Path, log: Path) -> asyncio.subprocess.Process:
    """``archiver run`` with its log appended to ``log`` (a pipe would fill and block it)."""
    env = {**os.environ, "ARCHIVER_KORE_CLIENT_SECRET": SECRET}
    with open(log, "ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "archiver", "run", "--config", str(config_path),
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )


def drop(inbox: Path, name: str, ids: list[str]) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    temp = inbox / f".{name}.tmp"
    temp.write_text("\n".join(ids) + "\n")
    os.replace(temp, inbox / name)


def counts(config) -> dict[str, int]:
    with JobStore.open_in(config.daemon.state_dir) as store:
        return store.counts()


def idle(config) -> bool:
    """Every queued job is done (and the inbox file of this round was taken)."""
    now = counts(config)
    unfinished = now["pending"] + now["running"] + now["deferred"]
    dropped = [p for p in config.daemon.inbox_dir.iterdir() if p.is_file()]
    return now["done"] > 0 and unfinished == 0 and not dropped


async def crash_loop(tmp_path: Path, sim: Simulator, sessions: int, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    config = make_config(
        tmp_path, sim,
        daemon__concurrency=CONCURRENCY, daemon__max_attempts=50, daemon__defer_delay="100ms",
        daemon__sweep_interval="200ms", daemon__inbox_scan_interval="200ms", daemon__grace_period="2s",
        http__max_attempts=10, kore__rate_window="100ms",
    )
    config_path, log = tmp_path / "archiver.toml", tmp_path / "daemon.log"
    ids = [f"{0x67900000 + n * 7919:08x}c0ffee{seed:02x}{n:08x}" for n in range(sessions)]
    batches = [ids[i::kills + 1] for i in range(kills + 1)]  # one inbox file before each run
    killed_busy = 0
    started = time.monotonic()
    for number in range(kills):
        drop(config.daemon.inbox_dir, f"ids-{number:02d}.txt", batches[number])
        before = len(sim.requests)
        proc = await spawn(config_path, log)
        # A random moment: after 0 (still starting) to 60 more requests, or once it ran out of work.
        target = before + rng.randint(0, 60)

        def moment() -> bool:
            return len(sim.requests) >= target or proc.returncode is not None or idle(config)

        try:
            await wait_for(moment, timeout=60, what=f"kill {number + 1}: {target - before} requests")
        finally:
            proc.kill()
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
        killed_busy += counts(config).get("running", 0) > 0
    drop(config.daemon.inbox_dir, "ids-last.txt", batches[-1])
    proc = await spawn(config_path, log)
    try:
        await wait_for(lambda: counts(config).get("done", 0) == sessions, timeout=120, what="the queue drained")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0
    elapsed = time.monotonic() - started

    assert counts(config) == {"pending": 0, "running": 0, "deferred": 0, "done": sessions, "failed": 0}
    with JobStore.open_in(config.daemon.state_dir) as store:
        assert store.integrity_check() == "ok"
    assert_exactly_once(config, sim, ids)
    again = assert_downloaded_once(config, sim, ids)
    # A kill can cost the downloads in flight (one per worker), nothing more.
    assert sum(n - 1 for n in again.values()) <= kills * CONCURRENCY, again
    assert killed_busy >= 1, "no kill landed while a session was being archived"
    problems = [line for line in log.read_text().splitlines() if '"level": "error"' in line or "Traceback" in line]
    assert problems == [], problems[:5]
    seen = figures(sim, sessions)
    print(
        f"\ncrash loop: {seen}; {kills} kills survived ({killed_busy} mid-session), "
        f"{len(again)} files fetched again after a kill, in {elapsed:.1f}s"
    )


async def test_crash_loop_fast(tmp_path, simulator):
    sim = await simulator(seed=21, voicemail_rate=0.5, min_size=20_000, max_size=200_000, faults=FAULTS,
                          retry_after_header=False)
    await crash_loop(tmp_path, sim, sessions=60, kills=5, seed=21)


@pytest.mark.slow
async def test_crash_loop_long(tmp_path, simulator):
    sim = await simulator(seed=22, voicemail_rate=0.5, min_size=20_000, max_size=600_000, faults=FAULTS,
                          retry_after_header=False)
    await crash_loop(tmp_path, sim, sessions=240, kills=12, seed=22)


# -- regressions the crash loop found -------------------------------------------------------


async def test_kill_after_the_manifest_leaves_no_part_file_behind(tmp_path, simulator):
    """A kill between writing manifest.json and removing the part files left a stale
    ``.voicemail.part.json`` in an archived session for good; the next attempt removes it."""
    sim = await simulator(voicemail_rate=1.0)
    config = make_config(tmp_path, sim)
    sid = "67ab573f3685d1ba99547777"
    async with archiver_for(config) as archiver:
        result = await archiver.archive("session", sid)
        stale = result.directory / ".voicemail.part.json"
        stale.write_text(json.dumps({"status": "success", "files": []}))  # as the killed run left it
        before = len(sim.requests)
        again = await archiver.archive("session", sid)
    assert again.outcome == "done" and len(sim.requests) == before
    assert not stale.exists()
    assert_exactly_once(config, sim, [sid])
