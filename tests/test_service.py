"""The daemon: inbox to archive, in-process and as a subprocess, with signals, kills and notify."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from archiver.cli import main as cli_main, run_once
from archiver.service import Service
from archiver.simulator import MediaSpec, SessionSpec
from archiver.store import JobStore

from .conftest import SECRET, assert_archived, enqueue_sessions, make_config, temp_files, wait_for

IDS = [f"6914a3c0aa01bb02cc03{n:04x}" for n in range(12)]


def drop(inbox: Path, name: str, text: str) -> Path:
    """Write elsewhere, rename in: the way the README tells upstream systems to do it."""
    inbox.mkdir(parents=True, exist_ok=True)
    temp = inbox / f".{name}.tmp"
    temp.write_text(text)
    os.replace(temp, inbox / name)
    return inbox / name


def counts(config) -> dict[str, int]:
    with JobStore.open_in(config.daemon.state_dir) as store:
        return store.counts()


async def test_inbox_file_is_archived_by_a_burst_run(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.5)
    config = make_config(tmp_path, sim)
    drop(config.daemon.inbox_dir, "calls.txt", "# today\n" + "\r\n".join(IDS[:6]) + "\nbad id!\n")
    drop(config.daemon.inbox_dir, "more.csv", "sessionId,agent\n" + "\n".join(f"{s},ann" for s in IDS[6:]) + "\n")
    stats = await Service(config, burst=True).run()
    assert stats.done == len(IDS) and stats.failed == 0
    for sid in IDS:
        assert_archived(config, sim, sid)
    processed = sorted(p.name for p in (config.daemon.inbox_dir / "processed").iterdir())
    assert any(n.endswith("calls.txt") for n in processed) and any(n.endswith("more.csv") for n in processed)
    report = next((config.daemon.inbox_dir / "processed").glob("*calls.txt.report.txt")).read_text()
    assert "line 8" in report and "bad id!" in report
    assert counts(config)["done"] == len(IDS)
    assert not temp_files(config.archive.root)


async def test_daemon_takes_files_dropped_while_running_and_serves_health(tmp_path, simulator):
    sim = await simulator()
    config = make_config(tmp_path, sim, observability__http_listen="127.0.0.1:0", daemon__inbox_scan_interval="100ms")
    service = Service(config)
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(service.ready.wait(), 10)
    drop(config.daemon.inbox_dir, "ids.json", json.dumps({"sessionIds": IDS[:5]}))
    await wait_for(lambda: counts(config).get("done", 0) == 5, what="five sessions archived")
    port = service.health_server.port
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            health = await resp.json()
            assert resp.status == 200 and health["healthy"] and health["last_success"]
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
    assert 'archiver_sessions_total{outcome="archived"} 5.0' in text
    assert 'archiver_api_calls_total{endpoint="v2_recordings",status="200"} 5.0' in text
    service.stop()
    stats = await asyncio.wait_for(task, 10)
    assert stats.done == 5
    for sid in IDS[:5]:
        assert_archived(config, sim, sid)


async def test_not_ready_sessions_are_deferred_then_archived_by_the_sweeper(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.0)
    sid = IDS[0]
    sim.config.sessions[sid] = SessionSpec(recordings=[MediaSpec("r.wav", 5_000, 1)], voicemails=[], transcript_texts=[], not_ready_polls=1)
    config = make_config(tmp_path, sim, daemon__defer_delay="200ms", daemon__sweep_interval="100ms")
    service = Service(config)
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", sid)])
    task = asyncio.create_task(service.run())
    await wait_for(lambda: counts(config).get("done", 0) == 1, what="deferred session archived")
    with JobStore.open_in(config.daemon.state_dir) as store:
        job = store.get("session", sid)
        assert job.attempts == 2 and job.first_deferred_at is not None
    service.stop()
    await task
    assert_archived(config, sim, sid)


async def test_rate_limiter_keeps_the_daemon_out_of_429s(tmp_path, simulator):
    sim = await simulator(rate_limit=8, rate_window=1.0, voicemail_rate=0.0)
    config = make_config(tmp_path, sim, kore__requests_per_minute=8, kore__rate_window="1s", daemon__concurrency=6)
    ids = IDS[:10]  # 20 API calls at 8 per second: at least two windows
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", s) for s in ids])
    started = asyncio.get_running_loop().time()
    stats = await Service(config, burst=True).run()
    elapsed = asyncio.get_running_loop().time() - started
    assert stats.done == len(ids)
    assert sim.stats.rate_limited == 0
    assert elapsed >= 2.0


async def test_once_exit_codes(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.0)
    waiting, broken = IDS[0], IDS[1]
    sim.config.sessions[waiting] = SessionSpec(recordings=[MediaSpec("r.wav", 500, 1)], voicemails=[], transcript_texts=[], not_ready_polls=5)
    sim.config.sessions[broken] = SessionSpec(recordings=[MediaSpec("r.wav", 500, 1)], voicemails=[], transcript_texts=[], v2_status="failed")
    config = make_config(tmp_path, sim)
    assert await run_once(config, [("session", IDS[2])]) == 0
    assert await run_once(config, [("session", waiting)]) == 3
    assert counts(config)["deferred"] == 1
    assert await run_once(config, [("session", broken)]) == 1
    with JobStore.open_in(config.daemon.state_dir) as store:
        assert "failed" in store.get("session", broken).last_error


async def test_operator_commands_against_a_running_daemon(tmp_path, simulator, capsys):
    sim = await simulator()
    config = make_config(tmp_path, sim, daemon__sweep_interval="100ms")
    cfg_path = str(tmp_path / "archiver.toml")
    service = Service(config)
    task = asyncio.create_task(service.run())
    await service.ready.wait()
    assert cli_main(["enqueue", "--config", cfg_path, IDS[0], IDS[1]]) == 0
    service.pool.notify()
    await wait_for(lambda: counts(config).get("done", 0) == 2, what="enqueued sessions archived")
    capsys.readouterr()
    assert cli_main(["status", "--json", "--config", cfg_path]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["done"] == 2
    assert cli_main(["enqueue", "--config", cfg_path, IDS[0]]) == 0
    assert "already known 1" in capsys.readouterr().out
    before = len(sim.requests)
    assert cli_main(["enqueue", "--force", "--config", cfg_path, IDS[0]]) == 0
    service.pool.notify()
    await wait_for(lambda: len(sim.requests) > before and counts(config).get("done", 0) == 2, what="forced re-archive")
    assert cli_main(["retry", "--config", cfg_path]) == 2  # says what to retry
    assert cli_main(["enqueue", "--config", cfg_path, "../etc"]) == 2
    service.stop()
    await task


# -- as a subprocess ----------------------------------------------------------------------------


async def spawn(config_path: Path, *args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    full_env = {**os.environ, "ARCHIVER_KORE_CLIENT_SECRET": SECRET, **(env or {})}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", *args, "--config", str(config_path),
        env=full_env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


def bytes_served(sim) -> int:
    return sum(sim.stats.media_bytes_served.values())


async def test_sigkill_mid_download_then_restart_finishes_every_session_once(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.0, min_size=1_500_000, max_size=2_000_000)
    sim.faults.slow_body = 1.0
    sim.faults.slow_body_delay = 0.01
    config = make_config(tmp_path, sim, daemon__concurrency=3)
    ids = IDS[:6]
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", s) for s in ids])
    proc = await spawn(tmp_path / "archiver.toml", "run")
    await wait_for(lambda: bytes_served(sim) > 300_000, timeout=20, what="downloads under way")
    proc.kill()
    await proc.wait()
    assert counts(config)["running"] >= 1  # it really died mid-job
    sim.faults.slow_body = 0.0
    proc = await spawn(tmp_path / "archiver.toml", "once")
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    for sid in ids:
        assert_archived(config, sim, sid)
    assert counts(config) == {"pending": 0, "running": 0, "done": len(ids), "deferred": 0, "failed": 0}
    assert not temp_files(config.archive.root)
    manifests = list(config.archive.root.rglob("manifest.json"))
    assert len(manifests) == len(ids)


async def slow_downloads_under_way(tmp_path, simulator, ids, *, size: tuple[int, int], delay: float, grace: str,
                                   served: int):
    """``archiver run`` in a child, two workers on slow bodies, once ``served`` bytes have gone out.
    Returns (sim, config, proc)."""
    sim = await simulator(voicemail_rate=0.0, min_size=size[0], max_size=size[1])
    sim.faults.slow_body = 1.0
    sim.faults.slow_body_delay = delay
    config = make_config(tmp_path, sim, daemon__concurrency=2, daemon__grace_period=grace)
    enqueue_sessions(config, ids)
    proc = await spawn(tmp_path / "archiver.toml", "run")
    await wait_for(lambda: bytes_served(sim) > served, timeout=20, what="downloads under way")
    return sim, config, proc


async def test_sigterm_drains_in_flight_sessions_within_the_grace_period(tmp_path, simulator):
    sim, config, proc = await slow_downloads_under_way(
        tmp_path, simulator, IDS, size=(400_000, 500_000), delay=0.002, grace="20s", served=50_000)
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), 25)
    assert proc.returncode == 0
    state = counts(config)
    assert state["running"] == 0 and state["done"] >= 1 and state["done"] + state["pending"] == len(IDS)
    for sid in IDS:
        with JobStore.open_in(config.daemon.state_dir) as store:
            if store.get("session", sid).state == "done":
                assert_archived(config, sim, sid)
    assert not temp_files(config.archive.root)


async def test_sigterm_after_the_grace_period_cancels_and_requeues(tmp_path, simulator):
    sim, config, proc = await slow_downloads_under_way(
        tmp_path, simulator, IDS[:2], size=(2_000_000, 2_000_000), delay=0.05, grace="300ms", served=20_000)
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0
    assert counts(config)["pending"] == 2 and counts(config)["running"] == 0
    assert not temp_files(config.archive.root)
    with JobStore.open_in(config.daemon.state_dir) as store:
        assert store.get("session", IDS[0]).attempts == 0  # the cancelled attempt is given back


async def test_systemd_notify_messages_arrive(tmp_path, simulator):
    sim = await simulator()
    make_config(tmp_path, sim)
    path = str(tmp_path / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.setblocking(False)
    messages: list[str] = []

    def read() -> bool:
        try:
            while True:
                messages.append(receiver.recv(4096).decode())
        except BlockingIOError:
            pass
        return True

    proc = await spawn(tmp_path / "archiver.toml", "run", env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    try:
        await wait_for(lambda: read() and any("READY=1" in m for m in messages), timeout=20, what="READY=1")
        await wait_for(lambda: read() and sum("WATCHDOG=1" in m for m in messages) >= 2, what="watchdog pings")
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
        read()
    finally:
        receiver.close()
        if proc.returncode is None:
            proc.kill()
    assert any(m.startswith("READY=1") and "STATUS=pending=0" in m for m in messages)
    assert any("STOPPING=1" in m for m in messages) or proc.returncode == 0
    assert proc.returncode == 0


async def test_second_archiver_on_the_same_state_dir_is_refused(tmp_path, simulator):
    sim = await simulator()
    config = make_config(tmp_path, sim)
    service = Service(config)
    task = asyncio.create_task(service.run())
    await service.ready.wait()
    proc = await spawn(tmp_path / "archiver.toml", "once")
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 75 and b"already running" in err
    service.stop()
    await task


@pytest.mark.parametrize("bad, key", [("bot_id = 5", "kore.bot_id"), ("concurrency = 0", "daemon.concurrency")])
async def test_bad_config_is_one_clear_line_naming_the_key(tmp_path, bad, key):
    kore = bad if key.startswith("kore") else 'bot_id = "st-b"'
    daemon = bad if key.startswith("daemon") else ""
    path = tmp_path / "bad.toml"
    path.write_text(f'[kore]\n{kore}\nclient_id = "cs-c"\n[daemon]\n{daemon}\n')
    proc = await spawn(path, "run")
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"archiver: config: {key}: ")


async def test_log_lines_are_json_with_session_kind_and_attempt(tmp_path, simulator):
    import io
    import logging

    from archiver.logsetup import setup_logging

    sim = await simulator(voicemail_rate=0.0)
    sim.faults.media_5xx = 1.0
    config = make_config(tmp_path, sim, http__max_attempts=2, daemon__max_attempts=1)
    stream = io.StringIO()
    handler = setup_logging(config.observability, (SECRET,), stream=stream)
    try:
        with JobStore.open_in(config.daemon.state_dir) as store:
            store.enqueue([("session", IDS[0])])
        await Service(config, burst=True).run()
    finally:
        logging.getLogger("archiver").removeHandler(handler)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    job_lines = [r for r in records if r["logger"] in ("archiver.worker", "archiver.download", "archiver.archive")]
    assert job_lines and all(r["session"] == IDS[0] and r["kind"] == "session" and r["attempt"] == 1 for r in job_lines)
    assert any(r["level"] == "error" and "gave up" in r["msg"] for r in job_lines)


async def test_once_shows_a_progress_line_on_a_terminal_and_plain_lines_otherwise(tmp_path, simulator):
    import pty

    sim = await simulator(voicemail_rate=0.0, min_size=300_000, max_size=300_000)
    sim.faults.slow_body = 1.0
    sim.faults.slow_body_delay = 0.02
    config = make_config(tmp_path, sim, daemon__concurrency=2)
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", s) for s in IDS[:4]])
    leader, follower = pty.openpty()
    env = {**os.environ, "ARCHIVER_KORE_CLIENT_SECRET": SECRET}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", "once", "--config", str(tmp_path / "archiver.toml"),
        env=env, stdout=follower, stderr=asyncio.subprocess.PIPE,
    )
    os.close(follower)
    output = bytearray()
    loop = asyncio.get_running_loop()

    def read_all() -> None:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                return
            if not chunk:
                return
            output.extend(chunk)

    reader = loop.run_in_executor(None, read_all)
    await asyncio.wait_for(proc.wait(), 60)
    await asyncio.wait_for(reader, 10)
    os.close(leader)
    text = output.decode()
    assert proc.returncode == 0
    assert "\r" in text and "/4 sessions" in text and "/s" in text  # the progress line
    assert "archived 4 sessions" in text
    # Not a terminal: no progress line, only the summary.
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", IDS[0])], force=True)
    sim.faults.slow_body = 0.0
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", "once", "--config", str(tmp_path / "archiver.toml"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0 and "\r" not in out.decode() and "archived 1 sessions" in out.decode()
    assert all(json.loads(line) for line in err.decode().splitlines())  # JSON log lines off a terminal


class _FinishingArchiver:
    """Archives nothing: calls ``finishing`` (the worker claims its next job ahead), then
    runs ``then`` (stop the pool, say) and reports the session done."""

    proof = None

    def __init__(self, root: Path, then=lambda: None) -> None:
        self.root, self.then, self.seen = root, then, []

    async def archive(self, id_type, ext_id, *, force=False, finishing=None):
        from archiver.archive import SessionResult

        self.seen.append(ext_id)
        if finishing is not None:
            finishing()
        self.then()
        return SessionResult("done", self.root / ext_id)

    async def settled(self, result) -> None:
        pass


async def test_a_job_claimed_ahead_is_the_next_one_processed(tmp_path, simulator):
    from archiver.metrics import Metrics
    from archiver.worker import WorkerPool

    sim = await simulator()
    config = make_config(tmp_path, sim, daemon__concurrency=1)
    ids = [f"67ab573f3685d1ba9954{n:04x}" for n in range(3)]
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", sid) for sid in ids])
        archiver = _FinishingArchiver(tmp_path)
        pool = WorkerPool(config, store, archiver, Metrics())
        await asyncio.wait_for(pool.run(asyncio.Event(), burst=True), 30)
        assert sorted(archiver.seen) == ids and len(archiver.seen) == 3  # none twice, none lost
        jobs = [store.get("session", sid) for sid in ids]
        assert [(j.state, j.attempts) for j in jobs] == [("done", 1)] * 3


async def test_a_job_claimed_ahead_is_given_back_when_the_worker_stops(tmp_path, simulator):
    """Stopped right after the first session, the worker holds the second, claimed while the
    first finished: it goes back to pending, and the attempt does not count."""
    from archiver.metrics import Metrics
    from archiver.worker import WorkerPool

    sim = await simulator()
    config = make_config(tmp_path, sim, daemon__concurrency=1)
    ids = [f"67ab573f3685d1ba9954{n:04x}" for n in range(2)]
    stopping = asyncio.Event()
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", sid) for sid in ids])
        archiver = _FinishingArchiver(tmp_path, then=stopping.set)
        pool = WorkerPool(config, store, archiver, Metrics())
        await asyncio.wait_for(pool.run(stopping), 30)
        first, second = (store.get("session", sid) for sid in ids)
        assert archiver.seen == [first.ext_id]
        assert (first.state, first.attempts) == ("done", 1)
        assert (second.state, second.attempts) == ("pending", 0)


async def test_a_scheduled_job_under_way_at_the_stop_is_ended_by_the_shutdown(tmp_path, simulator, monkeypatch, caplog):
    """A sweep waiting on a thread when SIGTERM comes: the shutdown waits for it, then stops
    it, before run() returns. Left running, asyncio.run cancelled it at exit and the scheduler
    logged that as an error."""
    import threading

    from archiver import service as service_module

    monkeypatch.setattr(service_module, "CANCEL_DEADLINE", 0.5)
    sim = await simulator()
    config = make_config(tmp_path, sim, daemon__sweep_interval="1s")
    service = Service(config)
    started, release = threading.Event(), threading.Event()
    state = []

    async def slow_sweep() -> None:
        started.set()
        state.append("running")
        await asyncio.to_thread(release.wait, 30)  # a thread call under way at the stop
        state.append("finished")

    service.sweep = slow_sweep
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(asyncio.to_thread(started.wait, 30), 40)
        service.stop()
        await asyncio.wait_for(task, 30)
        assert state == ["running"] and not service._running_jobs  # stopped, not left behind
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        release.set()
