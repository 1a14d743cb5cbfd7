"""``archiver check``: the operator's first command, against the simulator."""

from __future__ import annotations

import io
import os
import sys
import asyncio

import pytest

from archiver.cli import run_check
from archiver.config import load_config

from .conftest import SECRET, make_config, running


async def test_check_passes_against_the_simulator(tmp_path, simulator):
    sim = await simulator()
    config = make_config(tmp_path, sim)
    out = io.StringIO()
    assert await run_check(config, out) == 0
    text = out.getvalue()
    assert "the service can start" in text and "FAIL" not in text
    assert "accepted the credentials and scope" in text
    assert [r for r in sim.requests if r.server == "api" and "auth" in r.headers]


async def test_check_fails_clearly_on_a_bad_secret(tmp_path, simulator):
    sim = await simulator()
    make_config(tmp_path, sim)
    config = load_config(tmp_path / "archiver.toml", env={"ARCHIVER_KORE_CLIENT_SECRET": "not-the-secret"})
    out = io.StringIO()
    assert await run_check(config, out) == 1
    assert "FAIL scope 'SmartAssist Recordings' (recordings): API call failed: v2_recordings: HTTP 401: Invalid JWT token" in out.getvalue()
    assert "not-the-secret" not in out.getvalue()


async def test_check_fails_clearly_on_a_missing_scope(tmp_path, simulator):
    sim = await simulator(scopes=frozenset({"SmartAssist Voicemail"}))
    config = make_config(tmp_path, sim)
    out = io.StringIO()
    assert await run_check(config, out) == 1
    assert "Permission denied. Scope is incorrect!" in out.getvalue()


async def test_check_fails_clearly_on_an_unwritable_directory(tmp_path, simulator):
    sim = await simulator()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the inbox should be")
    config = make_config(tmp_path, sim, daemon__inbox_dir=str(blocker / "inbox"))
    out = io.StringIO()
    assert await run_check(config, out) == 1
    assert f"FAIL inbox directory {blocker / 'inbox'} is not writable" in out.getvalue()


async def test_check_command_line_exit_codes(tmp_path, simulator):
    sim = await simulator()
    make_config(tmp_path, sim)
    env = {**os.environ, "ARCHIVER_KORE_CLIENT_SECRET": SECRET}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", "check", "--config", str(tmp_path / "archiver.toml"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode() + err.decode()
    env["ARCHIVER_KORE_CLIENT_SECRET"] = "wrong-secret-value"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", "check", "--config", str(tmp_path / "archiver.toml"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1 and b"Invalid JWT token" in out


async def test_check_probes_every_scope_the_configuration_uses(tmp_path, simulator):
    """Each scope in use is asked once; the one the app lacks is the line marked FAIL."""
    sim = await simulator(scopes=frozenset({"SmartAssist Recordings", "Bot Sessions", "Delete Recordings"}))
    config = make_config(
        tmp_path, sim, kore__fetch_transcripts=True, discovery__enabled=True, delete__enabled=True,
    )
    out = io.StringIO()
    assert await run_check(config, out) == 1
    lines = out.getvalue().splitlines()
    status = {scope: line[:4] for line in lines for scope in (
        "SmartAssist Recordings", "SmartAssist Voicemail", "Bot Sessions", "Chat History") if f"scope '{scope}'" in line}
    assert status == {
        "SmartAssist Recordings": "ok  ", "SmartAssist Voicemail": "FAIL", "Bot Sessions": "ok  ", "Chat History": "FAIL",
    }
    assert any(line.startswith("note scope 'Delete Recordings'") and "cannot be probed" in line for line in lines)
    asked = {(r.method, r.path.rsplit("/", 1)[-1]) for r in sim.requests if r.server == "api"}
    assert {("GET", "recordings"), ("GET", "voicemail"), ("POST", "getSessions")} <= asked
    assert any(path == "getMessagesV2" for _, path in asked)
    assert ("DELETE", "recordings") not in asked  # never probed by deleting


async def test_check_says_when_http_listen_cannot_be_bound(tmp_path, simulator):
    import socket

    sim = await simulator()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = make_config(tmp_path, sim, observability__http_listen=f"127.0.0.1:{port}")
        out = io.StringIO()
        assert await run_check(config, out) == 1
    assert f"FAIL observability.http_listen 127.0.0.1:{port} cannot be bound" in out.getvalue()


async def test_check_beside_a_running_daemon_does_not_fail_on_its_port(tmp_path, simulator):
    sim = await simulator()
    config = make_config(tmp_path, sim, observability__http_listen="127.0.0.1:0")
    async with running(config) as service:
        busy = make_config(tmp_path, sim, observability__http_listen=f"127.0.0.1:{service.health_server.port}")
        out = io.StringIO()
        assert await run_check(busy, out) == 0, out.getvalue()
    assert f"the archiver running now (pid {os.getpid()}) serves it" in out.getvalue()


async def test_check_fails_on_a_job_store_it_cannot_write(tmp_path):
    """What check reports for a store the running user may only read (root-owned, say)."""
    from archiver.check import _check_store_writable
    from archiver.store import JobStore

    JobStore.open_in(tmp_path).close()
    with JobStore.open_existing(tmp_path) as read_only:  # what a store owned by another user gives
        good, text = _check_store_writable(read_only)
    assert not good and "not writable by uid" in text and "readonly" in text
    with JobStore.open_existing(tmp_path, read_only=False) as store:
        assert _check_store_writable(store)[0]


async def test_check_probes_the_call_details_scope_when_an_account_is_set(tmp_path, simulator):
    sim = await simulator(scopes=frozenset({"SmartAssist Recordings", "SmartAssist Voicemail"}))
    config = make_config(tmp_path, sim, kore__account_id="sim-account")
    out = io.StringIO()
    assert await run_check(config, out) == 1
    [line] = [line for line in out.getvalue().splitlines() if "scope 'SmartAssist Analytics'" in line]
    assert line.startswith("FAIL") and "Scope is incorrect" in line
    sim.config.scopes = sim.config.scopes | {"SmartAssist Analytics"}
    out = io.StringIO()
    assert await run_check(config, out) == 0, out.getvalue()
    assert any(r.path.endswith("/v2/interactionDetails") and r.headers.get("accountId") == "sim-account"
               for r in sim.requests)


async def test_check_as_root_does_not_create_a_store_in_the_service_users_directory(tmp_path, simulator):
    """Root running check on the service's state directory would leave a root-owned store."""
    if os.geteuid() != 0:
        pytest.skip("only root can create a store another user cannot write (CI runs as root)")
    sim = await simulator()
    config = make_config(tmp_path, sim)
    config.daemon.state_dir.mkdir()
    os.chown(config.daemon.state_dir, 65534, 65534)
    out = io.StringIO()
    assert await run_check(config, out) == 1
    assert "belongs to uid 65534: run check as that user" in out.getvalue()
    assert [p.name for p in config.daemon.state_dir.iterdir()] == []
