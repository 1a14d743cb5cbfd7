"""Verification against archives written by the real archiver from the simulator over loopback."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from archiver.client import KoreClient, api_session
from archiver.config import Config
from archiver.deletion import delete_after_archive
from archiver.layout import session_dir
from archiver.store import DONE, PENDING, JobStore
from archiver.verify import run_verify, verify_archive, verify_sample, verify_session

from .conftest import archiver_for, make_config, sha256_file

SID_A = "67ab573f3685d1ba99541234"  # 2025/02/11
SID_B = "6800000085d1ba9954aa0001"  # 2025/04/16
UNDATED = "call-0001"
USER = "agent@example.com"
SESSIONS = [("session", SID_A), ("session", SID_B), ("session", UNDATED), ("user", USER)]




async def archive_all(config: Config, items=SESSIONS, *, force: bool = False) -> None:
    async with archiver_for(config) as archiver:
        for id_type, ext_id in items:
            result = await archiver.archive(id_type, ext_id, force=force)
            assert result.outcome == "done"


@pytest.fixture
async def archived(tmp_path, simulator):
    """Two dated sessions, an undated one and a user, archived with voicemails."""
    sim = await simulator(voicemail_rate=1.0)
    config = make_config(tmp_path, sim)
    await archive_all(config)
    return sim, config


def directory_of(config: Config, ext_id: str, id_type: str = "session") -> Path:
    return session_dir(config.archive.root, config.kore.bot_id, id_type, ext_id)


def manifest_of(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "manifest.json").read_text())


def recording(directory: Path) -> dict[str, Any]:
    return next(f for f in manifest_of(directory)["files"] if f["kind"] == "audio" and f["path"].startswith("recordings/"))


def rel(config: Config, directory: Path) -> str:
    return directory.relative_to(config.archive.root).as_posix()


async def verify(config: Config, **kwargs: Any) -> tuple[int, str]:
    out = io.StringIO()
    options = {"since": None, "session_id": None, "requeue": False, "as_json": False}
    options.update(kwargs)
    code = await run_verify(config, out=out, **options)
    return code, out.getvalue()


def flip_byte(path: Path, offset: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# -- a clean archive -------------------------------------------------------------------------


async def test_clean_archive_exits_zero(archived):
    _sim, config = archived
    code, text = await verify(config)
    assert code == 0
    assert text.count("\n") == 1 and "4 intact, 0 damaged (0 problem(s))" in text
    code, text = await verify(config, as_json=True)
    report = json.loads(text)
    listed = sum(len(manifest_of(directory_of(config, i, t))["files"]) for t, i in SESSIONS)
    assert code == 0 and report["ok"] is True
    assert report["sessions_checked"] == 4 and report["files_checked"] == listed and report["damaged"] == []


async def test_work_in_progress_is_neither_extra_nor_damage(archived):
    _sim, config = archived
    directory = directory_of(config, SID_A)
    # What an interrupted or running archive leaves: part files and temp files.
    (directory / ".recordings.part.json").write_text("{}")
    (directory / "recordings" / f".{SID_A}-merged.wav.0a1b2c3d4e5f.incomplete").write_bytes(b"partial")
    unfinished = directory_of(config, "call-0002")
    unfinished.mkdir(parents=True)
    (unfinished / ".voicemail.part.json").write_text("{}")
    code, text = await verify(config, as_json=True)
    report = json.loads(text)
    assert code == 0 and report["sessions_checked"] == 4 and report["unfinished"] == 1


# -- damage ----------------------------------------------------------------------------------


def _flip(directory: Path) -> str:
    entry = recording(directory)
    path = directory / entry["path"]
    flip_byte(path)
    return f"{entry['path']}: sha256 mismatch: manifest {entry['sha256']}, disk {sha256_file(path)}"


def _truncate(directory: Path) -> str:
    entry = recording(directory)
    path = directory / entry["path"]
    path.write_bytes(path.read_bytes()[:-10])
    return f"{entry['path']}: size mismatch: manifest says {entry['size']} bytes, disk has {entry['size'] - 10}"


def _remove(directory: Path) -> str:
    entry = next(f for f in manifest_of(directory)["files"] if f["kind"] == "transcription")
    (directory / entry["path"]).unlink()
    return f"{entry['path']}: missing: listed in the manifest ({entry['size']} bytes) but not on disk"


def _stray(directory: Path) -> str:
    (directory / "recordings" / "stray.wav").write_bytes(b"RIFF")
    return "recordings/stray.wav: extra file: on disk but not in the manifest"


def _garble_manifest(directory: Path) -> str:
    (directory / "manifest.json").write_bytes(b'{"format": 1, "files": [')
    return "manifest.json: manifest invalid: not valid JSON (Expecting value at line 1, column 25)"


DAMAGE = {"flipped": _flip, "truncated": _truncate, "missing": _remove, "stray": _stray, "manifest": _garble_manifest}


@pytest.mark.parametrize("damage", DAMAGE)
async def test_damage_is_reported_with_one_precise_line(archived, damage):
    _sim, config = archived
    directory = directory_of(config, SID_A)
    expected = f"{rel(config, directory)}/{DAMAGE[damage](directory)}"
    code, text = await verify(config)
    lines = text.splitlines()
    assert code == 1
    assert lines[0] == expected
    assert len(lines) == 2 and "3 intact, 1 damaged (1 problem(s))" in lines[1]
    code, text = await verify(config, as_json=True)
    report = json.loads(text)
    assert code == 1 and report["ok"] is False
    assert [(d["id"], d["directory"]) for d in report["damaged"]] == [(SID_A, rel(config, directory))]
    [problem] = report["damaged"][0]["problems"]
    assert problem["kind"] == {"flipped": "sha256", "truncated": "size", "missing": "missing", "stray": "extra",
                               "manifest": "manifest"}[damage]


async def test_manifest_paths_never_leave_the_session(archived):
    _sim, config = archived
    directory = directory_of(config, SID_A)
    manifest = manifest_of(directory)
    manifest["files"].append({"path": "../../x.wav", "size": 1, "sha256": "0" * 64, "kind": "audio"})
    (directory / "manifest.json").write_text(json.dumps(manifest))
    report = verify_session(directory)
    assert [(p.path, p.kind) for p in report.problems] == [("manifest.json", "manifest")]
    assert "leaves the session directory" in report.problems[0].detail


async def test_one_session_and_a_session_not_archived(archived):
    _sim, config = archived
    _flip(directory_of(config, SID_A))
    assert (await verify(config, session_id=SID_B))[0] == 0
    assert (await verify(config, session_id=SID_A))[0] == 1
    code, text = await verify(config, session_id="67ab573f3685d1ba99540000")
    missing = directory_of(config, "67ab573f3685d1ba99540000")
    assert code == 1
    assert text.splitlines()[0] == f"{rel(config, missing)}/manifest.json: missing: the session is not archived (no manifest.json)"


async def test_since_uses_the_date_partition_and_archived_at(archived):
    _sim, config = archived
    _flip(directory_of(config, SID_A))  # 2025-02-11: before the cut-off, so not looked at
    report = await verify_archive(config, since=datetime(2025, 3, 1))
    assert report.ok and report.sessions_checked == 3
    later = await verify_archive(config, since=datetime.now(timezone.utc) + timedelta(days=1))
    assert later.ok and later.sessions_checked == 0


async def test_sample_checks_that_many_sessions(archived):
    _sim, config = archived
    assert (await verify_sample(config, 2)).sessions_checked == 2
    assert (await verify_sample(config, 10)).sessions_checked == 4


async def test_missing_archive_is_a_problem(tmp_path, simulator):
    sim = await simulator()
    config = make_config(tmp_path, sim)
    code, text = await verify(config)
    assert code == 1 and text.splitlines()[0].endswith(f"missing: the archive has no directory for bot {config.kore.bot_id}")
    assert (await verify_sample(config, 5)).ok


# -- requeue ---------------------------------------------------------------------------------


def _store_with_everything_done(config: Config) -> JobStore:
    store = JobStore.open_in(config.daemon.state_dir)
    store.enqueue(SESSIONS)
    for job in store.claim(10):
        store.complete(job.id)
    return store


async def test_requeue_puts_exactly_the_damaged_sessions_back_and_rearchiving_repairs_them(archived):
    _sim, config = archived
    with _store_with_everything_done(config) as store:
        _flip(directory_of(config, SID_A))
        _garble_manifest(directory_of(config, UNDATED))
        _stray(directory_of(config, SID_B))  # intact otherwise: archiving again would not help
        code, text = await verify(config, requeue=True)
        assert code == 1 and "requeued 2 damaged session(s) to be archived again" in text
        assert f"not requeued {rel(config, directory_of(config, SID_B))}: only files the manifest does not list" in text
        states = {ext_id: store.get(id_type, ext_id) for id_type, ext_id in SESSIONS}
        assert {k: (j.state, j.force) for k, j in states.items()} == {
            SID_A: (PENDING, True), UNDATED: (PENDING, True), SID_B: (DONE, False), USER: (DONE, False),
        }
        jobs = store.claim(10)
        assert sorted(j.ext_id for j in jobs) == sorted([SID_A, UNDATED])
        await archive_all(config, [(j.id_type, j.ext_id) for j in jobs], force=True)
    (directory_of(config, SID_B) / "recordings" / "stray.wav").unlink()
    assert (await verify(config))[0] == 0


async def test_requeue_leaves_sessions_deleted_at_the_vendor_alone(tmp_path, simulator):
    sim = await simulator(voicemail_rate=1.0)
    config = make_config(tmp_path, sim, delete__enabled=True)
    await archive_all(config, SESSIONS[:2])
    async with api_session(config) as http:
        client = KoreClient(config, http)
        for sid in (SID_A, SID_B):
            assert (await delete_after_archive(config, client, directory_of(config, sid), sid)).deleted
    _flip(directory_of(config, SID_A))
    _garble_manifest(directory_of(config, SID_B))  # only the audit log still knows it was deleted
    with JobStore.open_in(config.daemon.state_dir) as store:
        code, text = await verify(config, requeue=True, as_json=True)
        report = json.loads(text)
        assert code == 1 and report["requeued"] == []
        assert sorted(r["id"] for r in report["not_requeued"]) == [SID_A, SID_B]
        assert "deleted at the vendor" in report["not_requeued"][0]["reason"]
        assert store.get("session", SID_A) is None and store.get("session", SID_B) is None
