"""The operator's rough edges, driven through the ``archiver`` command as a subprocess.

Each test is a mistake or a habit of a real operator (a typo, a busy port, a pipe into
``head``, a second run, systemd's journal) and asserts on the exit code, the one line said,
and what was (not) created on disk.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from archiver.config import load_config
from archiver.errors import ConfigError
from archiver.simulator import MediaSpec, SessionSpec
from archiver.store import JobStore
from archiver.window import Window

from .benchmarks.harness import write_toml
from .conftest import SECRET, make_config, running

SESSION = "6914a3c0aa01bb02cc030001"


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "ARCHIVER_KORE_CLIENT_SECRET": SECRET}
    full_env.pop("JOURNAL_STREAM", None)  # the test runner's own journal, if it has one
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "archiver", *args], env=full_env, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def write_config(tmp_path: Path, **sections: dict[str, object]) -> Path:
    """A minimal configuration file (credentials optional) rooted in tmp_path."""
    tables: dict[str, dict[str, object]] = {
        "kore": {"host": "http://127.0.0.1:9", "bot_id": "st-bot", "client_id": "cs-client"},
        "archive": {"root": str(tmp_path / "archive"), "min_free_space": 0},
        "daemon": {"state_dir": str(tmp_path / "state"), "inbox_dir": str(tmp_path / "inbox")},
        "observability": {"http_listen": "", "log_format": "json"},
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    return write_toml(tmp_path / "archiver.toml", tables)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- read-only commands never create a store -----------------------------------------------------


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["retry", "--failed"]])
def test_a_command_on_a_missing_store_says_so_and_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    path = write_config(tmp_path, daemon={"state_dir": str(tmp_path / "stat")})  # a typo of "state"
    result = run(*command, "--config", str(path))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "daemon.state_dir" in line and str(tmp_path / "stat") in line
    assert not (tmp_path / "stat").exists()
    assert "pending 0" not in result.stdout


def test_verify_requeue_on_a_missing_store_fails_before_reading_the_archive(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    result = run("verify", "--requeue", "--config", str(path))
    assert result.returncode == 2 and "daemon.state_dir" in one_line(result.stderr)
    assert not (tmp_path / "state").exists()


def test_status_reads_a_store_it_may_not_write_and_leaves_no_files_of_its_own(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    with JobStore.open_in(tmp_path / "state") as store:
        store.enqueue([("session", SESSION)])
    before = sorted(p.name for p in (tmp_path / "state").iterdir())
    os.chmod(tmp_path / "state" / "jobs.sqlite3", 0o444)
    try:
        result = run("status", "--json", "--config", str(path))
    finally:
        os.chmod(tmp_path / "state" / "jobs.sqlite3", 0o644)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"]["pending"] == 1
    assert {p.name for p in (tmp_path / "state").iterdir()} <= set(before) | {"jobs.sqlite3-wal", "jobs.sqlite3-shm"}


# -- global options, pipes, exit codes -----------------------------------------------------------


def test_config_may_come_before_the_command(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    JobStore.open_in(tmp_path / "state").close()
    result = run("--config", str(path), "status", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total"] == 0


def test_status_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    with JobStore.open_in(tmp_path / "state") as store:
        store.enqueue([("session", f"6914a3c0aa01bb02cc03{n:04x}") for n in range(50)])
    env = {**os.environ, "ARCHIVER_KORE_CLIENT_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "archiver", "status", "--config", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    proc.stdout.close()  # `| head` that has already read what it wanted
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr
    assert proc.returncode == 141


def test_an_unexpected_error_is_one_log_line_with_the_traceback_as_a_field(tmp_path: Path) -> None:
    """A bug (here, one put into `status` on purpose) is one log line, its traceback a field."""
    path = write_config(tmp_path)
    with JobStore.open_in(tmp_path / "state"):
        pass
    program = (
        "import sys, archiver.cli, archiver.store\n"
        "archiver.store.JobStore.status = lambda *args, **kwargs: 1 / 0\n"
        f"sys.exit(archiver.cli.main(['status', '--config', {str(path)!r}]))\n"
    )
    env = {**os.environ, "ARCHIVER_KORE_CLIENT_SECRET": SECRET}
    env.pop("JOURNAL_STREAM", None)
    result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    record = json.loads(line)
    assert record["level"] == "critical" and "ZeroDivisionError" in record["msg"]
    assert record["exc"].startswith("Traceback") and "\n" in record["exc"]


def test_http_listen_in_use_is_one_line_naming_the_key(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = write_config(tmp_path, observability={"http_listen": f"127.0.0.1:{port}", "log_format": "json"})
        result = run("run", "--config", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("archiver: config: observability.http_listen: ")
    assert not (tmp_path / "state" / "jobs.sqlite3").exists()  # refused before any work


@pytest.mark.parametrize("host", ["https://kore.example:99999", "https://[::1", "https://kore.example:http"])
def test_a_malformed_kore_host_is_one_line(tmp_path: Path, host: str) -> None:
    path = write_config(tmp_path, kore={"host": host})
    result = run("check", "--config", str(path))
    assert result.returncode == 2
    assert one_line(result.stderr).startswith("archiver: config: kore.host: ")


def test_a_secret_file_that_is_not_utf8_is_refused_without_showing_it(tmp_path: Path) -> None:
    secret = tmp_path / "client_secret"
    secret.write_bytes(b"s3cr\xe9t-\xff\xfe-value")
    path = write_config(tmp_path, kore={"client_secret_file": str(secret)})
    env = {k: v for k, v in os.environ.items() if k != "ARCHIVER_KORE_CLIENT_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "archiver", "check", "--config", str(path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "kore.client_secret_file" in line and "UTF-8" in line
    for leak in ("s3cr", "value", "0xe9", "0xff", "\\xe9", "position"):
        assert leak not in result.stderr + result.stdout


async def test_a_second_archiver_exits_75(tmp_path, simulator):
    sim = await simulator()
    config = make_config(tmp_path, sim)
    async with running(config) as service:
        result = await asyncio.to_thread(run, "once", "--config", str(tmp_path / "archiver.toml"))
    assert result.returncode == 75
    line = one_line(result.stderr)
    assert "already running" in line and f"pid {os.getpid()}" in line


async def test_once_waiting_ok_exits_0_when_sessions_are_only_waiting(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.0)
    sim.config.sessions[SESSION] = SessionSpec(
        recordings=[MediaSpec("r.wav", 500, 1)], voicemails=[], transcript_texts=[], not_ready_polls=50
    )
    make_config(tmp_path, sim)
    config_path = str(tmp_path / "archiver.toml")
    plain = await asyncio.to_thread(run, "once", "--config", config_path, SESSION)
    assert plain.returncode == 3, plain.stderr
    tolerant = await asyncio.to_thread(run, "once", "--waiting-ok", "--config", config_path)
    assert tolerant.returncode == 0, tolerant.stderr
    assert "deferred 1" in tolerant.stdout  # the summary still says what waits
    with JobStore.open_in(tmp_path / "state") as store:
        assert store.counts()["deferred"] == 1


# -- logging: journal priorities, the start-up line, environment typos ---------------------------


def test_under_systemd_lines_carry_syslog_priorities_and_the_start_up_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, daemon={"concurrency": 3}, kore={"requests_per_minute": 45})
    read_end, write_end = os.pipe()
    st = os.fstat(write_end)
    env = {
        **os.environ, "ARCHIVER_KORE_CLIENT_SECRET": SECRET,
        "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
        "ARCHIVER_DAEMON_CONCURENCY": "8",  # a typo of ARCHIVER_DAEMON_CONCURRENCY
    }
    with os.fdopen(read_end, "rb") as reader:
        proc = subprocess.Popen(
            [sys.executable, "-m", "archiver", "once", "--config", str(path)],
            stdout=subprocess.DEVNULL, stderr=write_end, env=env,
        )
        os.close(write_end)
        output = reader.read().decode()
        assert proc.wait(timeout=60) == 0
    lines = output.strip().splitlines()
    assert lines and all(line[:3] in {"<2>", "<3>", "<4>", "<6>", "<7>"} for line in lines), output
    records = [(line[:3], json.loads(line[3:])) for line in lines]
    warnings = [r for p, r in records if p == "<4>"]
    assert any("ARCHIVER_DAEMON_CONCURENCY" in r["msg"] and "ARCHIVER_DAEMON_CONCURRENCY" in r["msg"] for r in warnings)
    start = next(r for p, r in records if p == "<6>" and "starting" in r["msg"])
    assert start["version"] and start["config"] == str(path) and start["concurrency"] == 3 and start["budget"] == 45
    assert "listen" in start


def test_without_journal_stream_lines_have_no_priority_prefix(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    result = run("once", "--config", str(path), env={"JOURNAL_STREAM": "1:1"})  # not our stderr
    assert result.returncode == 0, result.stderr
    assert all(line.startswith("{") for line in result.stderr.strip().splitlines())


def test_an_unknown_archiver_variable_warns_with_the_closest_key(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    JobStore.open_in(tmp_path / "state").close()
    result = run("status", "--config", str(path), env={"ARCHIVER_DAEMON_STATEDIR": "/x"})
    assert result.returncode == 0
    line = one_line(result.stderr)
    assert "ARCHIVER_DAEMON_STATEDIR" in line and "did you mean ARCHIVER_DAEMON_STATE_DIR" in line


# -- the simulator says what it expects ----------------------------------------------------------


def test_simulate_prints_the_client_secret_it_expects() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARCHIVER_KORE_CLIENT_SECRET"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "archiver", "simulate", "--api-port", "0", "--media-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "client secret sim-client-secret" in "".join(lines)
    assert "export ARCHIVER_KORE_CLIENT_SECRET=sim-client-secret" in "".join(lines)


# -- the window's time zone ----------------------------------------------------------------------


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def test_the_window_follows_daylight_saving_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """09:00-09:59 in Berlin is 07:xx UTC in summer and 08:xx UTC in winter."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    for window in (Window("* 9 * * *"), Window("* 9 * * *", "Europe/Berlin")):
        assert window.seconds_until_open(at("2026-07-01T07:30:00")) is None
        assert window.seconds_until_open(at("2026-07-01T08:30:00")) is not None
        assert window.seconds_until_open(at("2026-01-15T08:30:00")) is None
        assert window.seconds_until_open(at("2026-01-15T07:30:00")) is not None


def test_daemon_timezone_is_a_key_with_an_override_and_is_checked(tmp_path: Path) -> None:
    path = write_config(tmp_path, daemon={"window": "* 1-5 * * *", "timezone": "America/New_York"})
    assert load_config(path, need_credentials=False).daemon.timezone == "America/New_York"
    config = load_config(path, env={"ARCHIVER_DAEMON_TIMEZONE": "Asia/Tokyo"}, need_credentials=False)
    assert config.daemon.timezone == "Asia/Tokyo"
    with pytest.raises(ConfigError, match="daemon.timezone"):
        load_config(path, env={"ARCHIVER_DAEMON_TIMEZONE": "Mars/Olympus"}, need_credentials=False)


# -- the command line reaches a running daemon at once -------------------------------------------


async def test_retry_and_enqueue_force_take_effect_in_a_running_daemon_within_seconds(tmp_path, simulator):
    import time

    from archiver.service import Service

    sim = await simulator(voicemail_rate=0.0)
    sim.config.sessions[SESSION] = SessionSpec(
        recordings=[MediaSpec("r.wav", 5000, 1)], voicemails=[], transcript_texts=[], v2_status="failed"
    )
    # Sweeps and inbox scans an hour apart: only the store watch can wake the workers.
    config = make_config(tmp_path, sim, daemon__sweep_interval="1h", daemon__inbox_scan_interval="1h", daemon__max_attempts=1)
    config_path = str(tmp_path / "archiver.toml")
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", SESSION)])
    service = Service(config)
    task = asyncio.create_task(service.run())

    def state() -> str:
        with JobStore.open_in(config.daemon.state_dir) as store:
            return store.get("session", SESSION).state

    async def wait_state(wanted: str, seconds: float) -> float:
        started = time.monotonic()
        while state() != wanted:
            assert time.monotonic() - started < seconds, f"still {state()} after {seconds}s"
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    try:
        await asyncio.wait_for(service.ready.wait(), 30)
        await wait_state("failed", 20)
        sim.config.sessions[SESSION].v2_status = "success"
        result = await asyncio.to_thread(run, "retry", "--failed", "--config", config_path)
        assert result.returncode == 0, result.stderr
        assert await wait_state("done", 5) < 5
        archived_before = service.pool.stats.done  # before: the daemon may act before the command exits
        result = await asyncio.to_thread(run, "enqueue", "--force", "--config", config_path, SESSION)
        assert result.returncode == 0, result.stderr
        started = time.monotonic()
        while service.pool.stats.done == archived_before:
            assert time.monotonic() - started < 5, "enqueue --force not taken up"
            await asyncio.sleep(0.05)
    finally:
        service.stop()
        await task


# -- inbox/processed/ retention ------------------------------------------------------------------


def _inbox_history(inbox: Path) -> dict[str, Path]:
    import time as _time

    def stamp(days_ago: float) -> str:
        return _time.strftime("%Y%m%dT%H%M%SZ", _time.gmtime(_time.time() - days_ago * 86400))

    files = {
        "old": inbox / "processed" / f"{stamp(40)}-ids.txt",
        "old_report": inbox / "processed" / f"{stamp(40)}-ids.txt.report.txt",
        "recent": inbox / "processed" / f"{stamp(3)}-ids.txt",
        "old_rejected": inbox / "rejected" / f"{stamp(40)}-junk.json",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("6914a3c0aa01bb02cc030001\n")
    return files


def test_processed_inbox_files_are_removed_after_the_retention_time(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    files = _inbox_history(tmp_path / "inbox")
    result = run("once", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert not files["old"].exists() and not files["old_report"].exists()
    assert files["recent"].exists()
    assert files["old_rejected"].exists()  # rejected/ needs a look: never emptied


def test_inbox_retention_zero_keeps_everything(tmp_path: Path) -> None:
    path = write_config(tmp_path, daemon={"inbox_retention": "0"})
    files = _inbox_history(tmp_path / "inbox")
    result = run("once", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert all(p.exists() for p in files.values())


# -- one unit system for sizes -------------------------------------------------------------------


def test_sizes_are_shown_in_the_iec_units_the_configuration_takes() -> None:
    from archiver.config import format_size, parse_size

    assert format_size(512) == "512 B"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(parse_size("k", "64MiB")) == "64.0 MiB"
    assert format_size(parse_size("k", "4GiB")) == "4.0 GiB"


async def test_once_summary_counts_bytes_in_iec_units(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.0, min_size=300_000, max_size=300_000)
    make_config(tmp_path, sim)
    result = await asyncio.to_thread(run, "once", "--config", str(tmp_path / "archiver.toml"), SESSION)
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[0]
    assert "KiB" in summary or "MiB" in summary, summary
    assert " KB" not in result.stdout and " MB" not in result.stdout


# -- the progress line on a terminal -------------------------------------------------------------


async def test_once_on_a_terminal_keeps_log_lines_above_one_progress_line(tmp_path, simulator):
    """stdout and stderr on one pty, as in an operator's shell, with the API budget tight
    enough that the run has to wait for it."""
    import pty
    import re

    sim = await simulator(voicemail_rate=0.0, min_size=50_000, max_size=50_000)
    ids = [f"6914a3c0aa01bb02cc03{n:04x}" for n in range(4)]
    make_config(
        tmp_path, sim, kore__requests_per_minute=2, kore__rate_window="3s",
        observability__log_format="text", observability__log_level="INFO",
    )
    with JobStore.open_in(tmp_path / "state") as store:
        store.enqueue([("session", s) for s in ids])
    leader, follower = pty.openpty()
    env = {**os.environ, "ARCHIVER_KORE_CLIENT_SECRET": SECRET, "COLUMNS": "160"}
    env.pop("JOURNAL_STREAM", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", "once", "--config", str(tmp_path / "archiver.toml"),
        env=env, stdout=follower, stderr=follower,
    )
    os.close(follower)
    output = bytearray()

    def read_all() -> None:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                return
            if not chunk:
                return
            output.extend(chunk)

    reader = asyncio.get_running_loop().run_in_executor(None, read_all)
    await asyncio.wait_for(proc.wait(), 120)
    await asyncio.wait_for(reader, 10)
    os.close(leader)
    text = output.decode()
    assert proc.returncode == 0, text
    assert re.search(r"\d/4 sessions \|", text)  # the bar
    assert re.search(r"ETA \d\d:\d\d", text)
    assert "waiting" in text and "API rate limit" in text
    assert "KiB" in text or "MiB" in text
    # Every log line starts at the start of a line: never glued to the end of the bar.
    stamps = [m.start() for m in re.finditer(r"\d\d:\d\d:\d\d (INFO|WARNING|ERROR)", text)]
    assert stamps
    for start in stamps:
        before = text[:start].rstrip(" ")
        assert before == "" or before.endswith(("\n", "\r", "\x1b[A", "\x1b[K")), repr(text[max(0, start - 80):start + 20])
    # The summary has a line of its own.
    summary = text.index("archived 4 sessions")
    assert text[:summary].endswith("\n"), repr(text[summary - 40:summary + 20])


def test_a_traceback_in_text_logs_stays_on_its_line() -> None:
    import io
    import logging

    from archiver.config import ObservabilityConfig
    from archiver.logsetup import setup_logging

    stream = io.StringIO()
    handler = setup_logging(ObservabilityConfig(log_format="text"), stream=stream)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("archiver.test").exception("it broke")
    finally:
        logging.getLogger("archiver").removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    assert "it broke" in line and 'exc="Traceback' in line and "RuntimeError: boom" in line
