"""A full archive disk: nothing half-written under a final name, jobs wait, one log line.

The archive root is a small tmpfs mounted for the test (root only; the tests say why they
skip otherwise). A filler file takes the space away and gives it back. The promise checked:
while the disk is full no file with its final name is incomplete, jobs stay pending (not
failed, no attempts spent), the log says why once (not once per chunk or per session), and
archiving resumes by itself when space returns. The free-space guard
(``archive.min_free_space``) pauses work before the disk is full at all.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import subprocess
from dataclasses import dataclass
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from archiver import atomicfile, worker
from archiver.errors import DiskFullError
from archiver.service import Service
from archiver.simulator import MediaSpec, SessionSpec
from archiver.store import JobStore

from .conftest import archiver_for, enqueue_sessions, make_config, running, sha256_file, temp_files, wait_for
from .reliability import Captured, assert_exactly_once

IDS = [f"67ab573f3685d1ba9954d{n:03x}" for n in range(6)]
FILE_SIZES = (400_000, 450_000, 500_000, 550_000, 600_000, 650_000)


@contextmanager
def tmpfs(mount_point: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted with ``options`` at ``mount_point`` (made here), unmounted afterwards.
    Skips the test where it cannot be mounted (it needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the archive needs root")
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs at ``tmp_path/archive``, unmounted afterwards."""
    with tmpfs(tmp_path / "archive", "size=4m") as disk:
        yield disk


def fill(disk: Path, leave: int) -> Path:
    """Take all but about ``leave`` bytes of the disk with a filler file."""
    filler = disk / "filler.bin"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as out:
        out.write(b"\0" * max(free - leave, 0))
    return filler


def free_bytes(disk: Path) -> int:
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize


def one_recording_each(sim, sizes: tuple[int, ...] = FILE_SIZES) -> None:
    for sid, size in zip(IDS, sizes):
        sim.config.sessions[sid] = SessionSpec(
            recordings=[MediaSpec(f"{sid}-merged.wav", size, size)], voicemails=[], transcript_texts=[]
        )


def assert_final_names_complete(config, sim) -> None:
    """Every audio file under its final name holds exactly the simulator's bytes."""
    expected = {m.file_name: sim.media_sha256(m) for sid in IDS for m in sim.session(sid).recordings}
    for path in config.archive.root.rglob("*.wav"):
        assert not path.name.startswith("."), path
        assert sha256_file(path) == expected[path.name], f"{path.name} is incomplete under its final name"
    for path in config.archive.root.rglob("*.json"):
        json.loads(path.read_bytes())  # sidecars, part files and manifests are whole too


def disk_messages(logs: Captured) -> list[str]:
    # Not the start-up line: it names the configuration file, whose test directory says "space".
    return [
        r.getMessage() for r in logs.records
        if r.levelno >= logging.INFO and "space" in r.getMessage() and "starting" not in r.getMessage()
    ]


def waiting(state: str, attempts: int) -> bool:
    """Pending, or being tried again right now; either way no attempt was spent on the disk."""
    return (state, attempts) in {("pending", 0), ("running", 1)}


def job_states(config, ids: list[str] = IDS) -> list[tuple[str, int]]:
    with JobStore.open_in(config.daemon.state_dir) as store:
        return [(store.get("session", sid).state, store.get("session", sid).attempts) for sid in ids]


@dataclass(frozen=True)
class Pause:
    """One way for the archive disk to run short, and what the service must do meanwhile."""

    settings: dict[str, object]
    leave: int  # bytes left free by the filler
    sizes: tuple[int, ...]
    recheck: float  # worker.DISK_RECHECK for the test
    asks_the_api: bool  # a full disk is found by writing; the guard pauses before any request


PAUSES = {
    # No recording fits: every session runs into ENOSPC a few times.
    "full-v2": Pause({"kore__recordings_api": "v2", "daemon__concurrency": 3, "daemon__max_attempts": 2},
                     leave=250_000, sizes=FILE_SIZES, recheck=0.1, asks_the_api=True),
    "full-v1": Pause({"kore__recordings_api": "v1", "daemon__concurrency": 3, "daemon__max_attempts": 2},
                     leave=250_000, sizes=FILE_SIZES, recheck=0.1, asks_the_api=True),
    # Room for every recording (0.8 MB in all), but under archive.min_free_space.
    "guard": Pause({"archive__min_free_space": "1MiB"}, leave=900_000,
                   sizes=tuple(size // 4 for size in FILE_SIZES), recheck=0.05, asks_the_api=False),
}


@pytest.mark.parametrize("pause", PAUSES.values(), ids=PAUSES.keys())
async def test_short_disk_pauses_and_resumes_by_itself(small_disk, tmp_path, simulator, monkeypatch, pause):
    monkeypatch.setattr(worker, "DISK_RECHECK", pause.recheck)
    sim = await simulator(voicemail_rate=0.0)
    one_recording_each(sim, pause.sizes)
    config = make_config(tmp_path, sim, **pause.settings)
    filler = fill(small_disk, leave=pause.leave)
    enqueue_sessions(config, IDS)
    with Captured() as logs:
        async with running(config) as service:
            if pause.asks_the_api:
                await wait_for(lambda: len(sim.requests) >= 4 * len(IDS), timeout=30, what="attempts on a full disk")
                assert all(waiting(state, attempts) for state, attempts in job_states(config))
            else:
                original = service.pool._below_free_space
                checks = 0

                def counted() -> bool:
                    nonlocal checks
                    checks += 1
                    return original()

                service.pool._below_free_space = counted
                await wait_for(lambda: checks >= 10, what="the guard to look at the disk a few times")
                assert sim.requests == []  # paused before asking the API for anything
                assert job_states(config) == [("pending", 0)] * len(IDS)
            assert service.pool.disk_paused()
            assert_final_names_complete(config, sim)
            # The operator is told once, not once per chunk or per session.
            assert len([r for r in logs.records if r.levelno >= logging.ERROR]) == 1
            filler.unlink()
            await wait_for(lambda: service.store.counts().get("done", 0) == len(IDS), timeout=30,
                           what="archiving to resume once space returned")
            assert not service.pool.disk_paused()
    assert_exactly_once(config, sim, IDS)
    assert [state for state, _ in job_states(config)] == ["done"] * len(IDS)
    assert len([r for r in logs.records if r.levelno >= logging.ERROR]) == 1
    assert logs.internal_errors() == []
    assert free_bytes(small_disk) > 0


async def test_once_on_a_full_disk_leaves_the_jobs_queued(small_disk, tmp_path, simulator):
    from archiver.cli import run_once

    sim = await simulator(voicemail_rate=0.0)
    one_recording_each(sim)
    config = make_config(tmp_path, sim, daemon__concurrency=2)
    filler = fill(small_disk, leave=250_000)
    assert await run_once(config, [("session", sid) for sid in IDS]) == 3  # waiting, not failed
    assert all(state == "pending" for state, _ in job_states(config))
    assert not temp_files(config.archive.root)
    filler.unlink()
    assert await run_once(config, []) == 0
    assert_exactly_once(config, sim, IDS)


# -- regressions the disk-full suite found --------------------------------------------------


def disk_faults(monkeypatch, plan) -> None:
    """Make the archive's writes (``os.write`` and ``os.writev``) fail as ``plan(call)`` says:
    None writes everything, an int writes only that many bytes, "full" raises ENOSPC."""
    real_write, real_writev = os.write, os.writev
    calls = 0

    def act(fd: int, data: bytes, whole) -> int:
        nonlocal calls
        calls += 1
        verdict = plan(calls)
        if verdict == "full":
            raise OSError(errno.ENOSPC, "No space left on device")
        if isinstance(verdict, int):
            return real_write(fd, data[:verdict])
        return whole()

    monkeypatch.setattr(atomicfile.os, "write", lambda fd, data: act(fd, bytes(data), lambda: real_write(fd, data)))
    monkeypatch.setattr(
        atomicfile.os, "writev", lambda fd, pieces: act(fd, b"".join(pieces), lambda: real_writev(fd, pieces))
    )


async def test_short_write_then_enospc_never_commits_a_file_missing_bytes(tmp_path, simulator, monkeypatch):
    """The kernel writes part of a chunk, then says ENOSPC; space comes back at once.

    The download used to count the whole chunk as written and resume after it (a retry of
    the same call), committing a file with a hole under its final name whose sidecar sha256
    matched the broken bytes. A full disk now ends the attempt: the job waits for space.
    """
    sim = await simulator(voicemail_rate=0.0)
    sid = IDS[0]
    sim.config.sessions[sid] = SessionSpec(recordings=[MediaSpec("r.wav", 1_500_000, 5)], voicemails=[], transcript_texts=[])
    config = make_config(tmp_path, sim)
    disk_faults(monkeypatch, lambda call: {2: 1000, 3: "full"}.get(call))
    async with archiver_for(config) as archiver:
        with pytest.raises(DiskFullError):
            await archiver.archive("session", sid)
        assert not list(config.archive.root.rglob("r.wav"))
        assert not temp_files(config.archive.root)
        media_calls = sum(r.server == "media" for r in sim.requests)
        assert media_calls == 1  # not retried into the full disk
        await archiver.archive("session", sid)
    assert_exactly_once(config, sim, [sid])


async def test_a_failed_write_poisons_the_temp_file(tmp_path, monkeypatch):
    """After a failed write the file lacks bytes that ``size`` counts: it can never be committed."""
    handle = atomicfile.AtomicFile(tmp_path / "f.wav")
    disk_faults(monkeypatch, lambda call: "full" if call == 1 else None)
    await handle.write(b"x" * 10)
    with pytest.raises(DiskFullError):
        await handle.write(b"y" * 10)
    with pytest.raises(DiskFullError):
        await handle.write(b"z" * 10)
    with pytest.raises(DiskFullError):
        await handle.commit()
    await handle.abort()
    assert not (tmp_path / "f.wav").exists() and list(tmp_path.iterdir()) == []


async def test_v1_inline_recording_is_not_refetched_into_a_full_disk(tmp_path, simulator, monkeypatch):
    """A full disk while decoding a v1 body ended the call's attempt and the retry policy
    fetched the whole body again (and again); now the job waits for space instead."""
    sim = await simulator(voicemail_rate=0.0, min_size=600_000, max_size=600_000)
    config = make_config(tmp_path, sim, kore__recordings_api="v1")
    disk_faults(monkeypatch, lambda call: "full")
    async with archiver_for(config) as archiver:
        with pytest.raises(DiskFullError):
            await archiver.archive("session", IDS[1])
    assert sum(r.path.endswith("/recordings") for r in sim.requests) == 1
    assert not temp_files(config.archive.root)


async def test_no_inodes_left_for_a_session_directory_is_a_full_disk(tmp_path, simulator, monkeypatch):
    """ENOSPC from creating a session's directories (no inodes left, or on ext4 no blocks for
    a new directory) was an "internal error": a logged traceback per session and an attempt
    spent each time, until the jobs failed. It is a full disk like any other."""
    monkeypatch.setattr(worker, "DISK_RECHECK", 0.05)
    with tmpfs(tmp_path / "archive", "size=4m,nr_inodes=64") as disk:
        sim = await simulator(voicemail_rate=0.0, min_size=2_000, max_size=3_000)
        config = make_config(tmp_path, sim, daemon__max_attempts=2)
        fillers = []
        for n in range(128):
            try:
                (disk / f"f{n}").touch()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
            fillers.append(disk / f"f{n}")
        with JobStore.open_in(config.daemon.state_dir) as store:
            store.enqueue([("session", sid) for sid in IDS[:2]])
        service = Service(config)
        with Captured() as logs:
            task = asyncio.create_task(service.run())
            try:
                await wait_for(lambda: len(disk_messages(logs)) >= 1, what="the full disk to be noticed")
                assert all(waiting(state, attempts) for state, attempts in job_states(config, IDS[:2]))
                for filler in fillers:
                    filler.unlink()
                await wait_for(lambda: service.store.counts().get("done", 0) == 2, timeout=30,
                               what="archiving to resume")
            finally:
                service.stop()
                await asyncio.wait_for(task, 30)
        assert logs.internal_errors() == []
        assert len(disk_messages(logs)) == 1
        assert_exactly_once(config, sim, IDS[:2])
