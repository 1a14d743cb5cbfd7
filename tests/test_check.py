"""``archiver check``: the operator's first command, against the simulator."""

from __future__ import annotations

import io
import os
import sys
import asyncio

from archiver.cli import run_check
from archiver.config import load_config

from .conftest import SECRET, make_config


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
    assert "FAIL API call failed: v2_recordings: HTTP 401: Invalid JWT token" in out.getvalue()
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
