"""Delete-from-source after archive, against the simulator over loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from archiver.client import KoreClient, api_session
from archiver.config import Config
from archiver.audit import audit_log_path
from archiver.deletion import (
    ALREADY_DELETED, DELETED, DISABLED, DRY_RUN, ERROR, POSSIBLY_DELETED, REFUSED, delete_after_archive,
)

from .conftest import archiver_for, SECRET, make_config

SID = "67ab573f3685d1ba99541234"
OTHER = "67ab573f3685d1ba99545678"




async def archive(config: Config, *ids: str) -> list[Path]:
    async with archiver_for(config) as archiver:
        return [(await archiver.archive("session", sid)).directory for sid in ids]


async def delete(config: Config, directory: Path, session_id: str = SID):
    async with api_session(config) as http:
        return await delete_after_archive(config, KoreClient(config, http), directory, session_id)


def deletes(sim) -> list[Any]:
    return [r for r in sim.requests if r.server == "api" and r.method == "DELETE"]


def manifest_of(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "manifest.json").read_text())


def recordings_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in manifest["files"] if f["kind"] == "audio" and f["path"].startswith("recordings/")]


def audit_lines(config: Config) -> list[dict[str, Any]]:
    path = audit_log_path(config)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
async def archived(tmp_path, simulator):
    """One session with a recording and a voicemail, archived; ``configure(**settings)`` for deletion."""
    sim = await simulator(voicemail_rate=1.0)
    [directory] = await archive(make_config(tmp_path, sim), SID)

    def configure(**settings: Any) -> Config:
        return make_config(tmp_path, sim, **settings)

    return sim, configure, directory


async def test_deletes_once_when_every_check_passes(archived):
    sim, configure, directory = archived
    config = configure(delete__enabled=True)
    before = manifest_of(directory)
    outcome = await delete(config, directory)
    assert outcome.status == DELETED and outcome.deleted and outcome.recorded
    assert sim.stats.deleted == {SID}
    [request] = deletes(sim)
    assert request.query == {"sessionId": SID} and request.status == 200
    after = manifest_of(directory)
    deletion = after.pop("deletion")
    assert after == before  # nothing else in the manifest changed
    assert deletion == {
        "at": deletion["at"], "dry_run": False, "state": "deleted", "result": "deleted",
        "message": "Call recordings deleted successfully",
    }
    # Written ahead: the intent, then the answer.
    intent, line = audit_lines(config)
    assert intent["session_id"] == SID and intent["state"] == "pending" and intent["dry_run"] is False
    assert line["session_id"] == SID and line["state"] == line["result"] == "deleted" and line["dry_run"] is False
    assert line["message"] == "Call recordings deleted successfully" and line["at"] == deletion["at"]
    # Asked again right before deleting: a fresh listing, then the DELETE.
    api = [(r.method, r.path.rsplit("/", 1)[-1]) for r in sim.requests if r.server == "api"]
    assert api[-2:] == [("GET", "recordings"), ("DELETE", "recordings")]
    assert line["files"] == [{"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in recordings_of(before)]
    audit_text = audit_log_path(config).read_text()
    assert SECRET not in audit_text and "eyJ" not in audit_text
    # Idempotent: a session whose manifest records the deletion is not deleted again.
    again = await delete(config, directory)
    assert again.status == ALREADY_DELETED
    assert len(deletes(sim)) == 1 and len(audit_lines(config)) == 2


def _flip(directory: Path) -> str:
    path = directory / recordings_of(manifest_of(directory))[0]["path"]
    data = bytearray(path.read_bytes())
    data[500] ^= 0x01
    path.write_bytes(bytes(data))
    return "sha256"


def _truncate(directory: Path) -> str:
    path = directory / recordings_of(manifest_of(directory))[0]["path"]
    path.write_bytes(path.read_bytes()[:-1])
    return "size"


def _remove(directory: Path) -> str:
    (directory / recordings_of(manifest_of(directory))[0]["path"]).unlink()
    return "missing"


def _no_manifest(directory: Path) -> str:
    (directory / "manifest.json").unlink()
    return "not archived"


def _garbled_manifest(directory: Path) -> str:
    (directory / "manifest.json").write_text('{"format": 1, "files": [')
    return "not valid JSON"


def _recordings_not_success(directory: Path) -> str:
    manifest = manifest_of(directory)
    manifest["parts"]["recordings"]["status"] = "failed"
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return "'failed'"


def _no_recording_listed(directory: Path) -> str:
    manifest = manifest_of(directory)
    manifest["files"] = [f for f in manifest["files"] if not f["path"].startswith("recordings/")]
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return "no recording audio file"


def _another_sessions_manifest(directory: Path) -> str:
    manifest = manifest_of(directory)
    manifest["id"] = OTHER
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return OTHER


FAILED_CHECKS: dict[str, Callable[[Path], str]] = {
    "flipped byte": _flip,
    "truncated": _truncate,
    "missing recording": _remove,
    "no manifest": _no_manifest,
    "garbled manifest": _garbled_manifest,
    "recordings not success": _recordings_not_success,
    "no recording listed": _no_recording_listed,
    "another session's manifest": _another_sessions_manifest,
}


@pytest.mark.parametrize("check", FAILED_CHECKS)
async def test_never_deletes_when_a_check_fails(archived, check):
    sim, configure, directory = archived
    config = configure(delete__enabled=True)
    expected = FAILED_CHECKS[check](directory)
    manifest = directory / "manifest.json"
    before = manifest.read_bytes() if manifest.exists() else None
    outcome = await delete(config, directory)
    assert outcome.status == REFUSED and expected in outcome.reason
    assert deletes(sim) == [] and sim.stats.deleted == set()
    assert (manifest.read_bytes() if manifest.exists() else None) == before
    assert not audit_log_path(config).exists()


async def test_refused_when_the_directory_is_not_the_sessions(archived):
    sim, configure, directory = archived
    outcome = await delete(configure(delete__enabled=True), directory, OTHER)
    assert outcome.status == REFUSED and deletes(sim) == []


async def test_dry_run_records_without_deleting(archived):
    sim, configure, directory = archived
    config = configure(delete__enabled=True, delete__dry_run=True)
    outcome = await delete(config, directory)
    assert outcome.status == DRY_RUN and outcome.recorded
    assert deletes(sim) == [] and sim.stats.deleted == set()
    deletion = manifest_of(directory)["deletion"]
    assert deletion["dry_run"] is True and deletion["result"] == "dry_run"
    [line] = audit_lines(config)
    assert line["dry_run"] is True and line["result"] == "dry_run" and line["session_id"] == SID
    assert [f["path"] for f in line["files"]] == list(outcome.files)
    # A dry run is not a deletion: once dry_run is off, the session is deleted.
    real = configure(delete__enabled=True)
    assert (await delete(real, directory)).status == DELETED
    assert sim.stats.deleted == {SID} and [l["result"] for l in audit_lines(real)] == ["dry_run", "pending", "deleted"]


async def test_disabled_does_nothing(archived):
    sim, configure, directory = archived
    config = configure()
    before, requests = (directory / "manifest.json").read_bytes(), len(sim.requests)
    outcome = await delete(config, directory)
    assert outcome.status == DISABLED and not outcome.deleted
    assert len(sim.requests) == requests and sim.stats.deleted == set()
    assert (directory / "manifest.json").read_bytes() == before
    assert not audit_log_path(config).exists()


async def delete_answered(archived, status: int):
    """Deletion enabled, the vendor answering DELETE with ``status``: (sim, config, directory, outcome)."""
    sim, configure, directory = archived
    config = configure(delete__enabled=True)
    sim.faults.delete_status = status
    return sim, config, directory, await delete(config, directory)


async def test_a_5xx_answer_leaves_the_session_possibly_deleted(archived):
    """A 5xx to DELETE says nothing about whether it happened: possibly deleted, for good."""
    sim, config, directory, outcome = await delete_answered(archived, 500)
    assert outcome.status == POSSIBLY_DELETED and "HTTP 500" in outcome.reason and outcome.recorded
    assert len(deletes(sim)) == 1  # sent once, never retried
    intent, line = audit_lines(config)
    assert intent["state"] == "pending" and line["state"] == "possibly_deleted" and "HTTP 500" in line["message"]
    assert manifest_of(directory)["deletion"]["state"] == "possibly_deleted"
    sim.faults.delete_status = 0
    requests = len(sim.requests)
    async with archiver_for(config) as archiver:
        result = await archiver.archive("session", SID)
    assert result.outcome == "done" and len(sim.requests) == requests  # still archived: nothing fetched
    again = await delete(config, directory)  # treated as deleted from now on
    assert again.status == ALREADY_DELETED and len(deletes(sim)) == 1


async def test_a_refused_call_is_recorded_and_may_be_tried_again(archived):
    """A 4xx answer is the vendor refusing: nothing was deleted, a later run may try again."""
    sim, config, directory, outcome = await delete_answered(archived, 412)
    assert outcome.status == ERROR and "HTTP 412" in outcome.reason and outcome.recorded
    assert sim.stats.deleted == set()
    assert [l["state"] for l in audit_lines(config)] == ["pending", "error"]
    assert manifest_of(directory)["deletion"]["state"] == "error"
    sim.faults.delete_status = 0
    assert (await delete(config, directory)).status == DELETED
    assert sim.stats.deleted == {SID}
    assert [l["state"] for l in audit_lines(config)] == ["pending", "error", "pending", "deleted"]


async def test_audit_log_is_appended_at_the_configured_path(archived, tmp_path):
    sim, configure, directory = archived
    config = configure(delete__enabled=True, delete__audit_log=str(tmp_path / "audit" / "deleted.jsonl"))
    [other] = await archive(config, OTHER)
    assert (await delete(config, directory)).deleted
    assert (await delete(config, other, OTHER)).deleted
    assert audit_log_path(config) == tmp_path / "audit" / "deleted.jsonl"
    assert [line["session_id"] for line in audit_lines(config)] == [SID, SID, OTHER, OTHER]  # intent, answer
    assert sim.stats.deleted == {SID, OTHER}
