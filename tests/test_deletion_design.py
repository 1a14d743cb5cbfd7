"""Deletion is safe by construction: proven, asked again, written ahead, sent once.

Each test is an attack that once made the archiver delete the vendor's copy of something it
did not hold whole, or lose the record of a deletion: a body cut without a length, a leg
added after archiving, a v1 archive against a v2 listing, a crash while DELETE is in flight,
a lost answer, a manifest that could not be rewritten. Over loopback, against a crafted
vendor or the simulator's fault knobs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import pytest
from aiohttp import web

from archiver.cli import main as cli_main
from archiver.client import KoreClient, api_session
from archiver.audit import audit_log_path
from archiver.deletion import ALREADY_DELETED, DELETED, POSSIBLY_DELETED, REFUSED, delete_after_archive
from archiver.errors import PermanentError
from archiver.service import Service
from archiver.simulator import Faults
from archiver.store import JobStore

from .conftest import SECRET, archiver_for, make_config
from .vendor import audio_of, config_for, directory_of, drain, manifest_of, serve_bytes, v2_answer, wav

SID = "67ab573f3685d1ba99541234"
FULL = wav(bytes(range(256)) * 400)
LEG = wav(b"\x42" * 20_000)


def audit(config) -> list[dict]:
    path = audit_log_path(config)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def delete(config, session_id: str = SID):
    async with api_session(config) as http:
        return await delete_after_archive(config, KoreClient(config, http), directory_of(config, session_id), session_id)


async def test_a_body_cut_without_a_length_is_never_deleted(tmp_path, vendor):
    """Attack: no Content-Length, clean close after 30,000 of 102,444 bytes, Range ignored.
    Before: archived as complete, verified intact, and the vendor's full copy deleted."""
    vendor.v2[SID] = v2_answer(("call.wav", vendor.media_url("call.wav")))
    vendor.media["call.wav"] = serve_bytes(FULL[:30_000], declared=False, ranges=False)
    config = config_for(tmp_path, vendor, delete__enabled=True)
    job = (await drain(config, SID))[SID]
    assert job.state == "done", job.last_error
    assert vendor.requests("DELETE", "/v2/recordings") == []
    manifest = manifest_of(config, SID)
    assert "deletion" not in manifest and manifest["unproven"]  # kept, and the manifest says why
    outcome = await delete(config)
    assert outcome.status == REFUSED and "not proven complete" in outcome.reason
    assert audio_of(config, SID) == {"call.wav": FULL[:30_000]}


async def test_a_leg_added_after_archiving_stops_the_deletion(tmp_path, vendor):
    """Attack: the vendor lists a second recording by the time the deletion runs.
    Before: the manifest was trusted as written; the session was deleted whole."""
    vendor.v2[SID] = v2_answer(("leg1.wav", vendor.media_url("leg1.wav")))
    vendor.media["leg1.wav"] = serve_bytes(FULL)
    vendor.media["leg2.wav"] = serve_bytes(LEG)
    config = config_for(tmp_path, vendor)
    assert (await drain(config, SID))[SID].state == "done"
    vendor.v2[SID] = v2_answer(("leg1.wav", vendor.media_url("leg1.wav")), ("leg2.wav", vendor.media_url("leg2.wav")))
    outcome = await delete(config_for(tmp_path, vendor, delete__enabled=True))
    assert outcome.status == REFUSED and "2 recording(s), 1 archived" in outcome.reason
    assert vendor.requests("DELETE", "/v2/recordings") == []
    # Archived again (forced), it holds both legs, and then the deletion goes ahead.
    config = config_for(tmp_path, vendor, delete__enabled=True)
    assert (await drain(config, SID, force=True))[SID].state == "done"
    assert audio_of(config, SID) == {"leg1.wav": FULL, "leg2.wav": LEG}
    assert len(vendor.requests("DELETE", "/v2/recordings")) == 1
    assert manifest_of(config, SID)["deletion"]["state"] == "deleted"


async def test_a_replaced_recording_under_the_same_name_stops_the_deletion(tmp_path, vendor):
    """The vendor's one recording is now at another path under another name: not ours."""
    vendor.v2[SID] = v2_answer(("a.wav", vendor.media_url("a.wav")))
    vendor.media["a.wav"] = serve_bytes(FULL)
    config = config_for(tmp_path, vendor)
    assert (await drain(config, SID))[SID].state == "done"
    vendor.v2[SID] = v2_answer(("b.wav", vendor.media_url("b.wav")))
    outcome = await delete(config_for(tmp_path, vendor, delete__enabled=True))
    assert outcome.status == REFUSED and "1 not matched" in outcome.reason
    assert vendor.requests("DELETE", "/v2/recordings") == []


def inline(*bodies: bytes):
    import base64

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"recording": [f"data:audio/wav;base64,{base64.b64encode(b).decode()}" for b in bodies]})

    return answer


async def test_a_v1_archive_is_deleted_only_when_the_v2_listing_matches(tmp_path, vendor):
    """Attack: v1 returned one recording, the v2 endpoint holds two.
    Before: DELETE through v2 removed the one v1 never returned."""
    vendor.v1[SID] = inline(FULL)
    vendor.v2[SID] = v2_answer(("a.wav", vendor.media_url("a.wav")), ("b.wav", vendor.media_url("b.wav")))
    config = config_for(tmp_path, vendor, kore__recordings_api="v1", delete__enabled=True)
    assert (await drain(config, SID))[SID].state == "done"
    assert vendor.requests("DELETE", "/v2/recordings") == []
    outcome = await delete(config)
    assert outcome.status == REFUSED and "2 recording(s), 1 archived" in outcome.reason
    # When v2 lists exactly what v1 returned, the match (by position) allows it.
    other = "67ab573f3685d1ba99540002"
    vendor.v1[other] = inline(FULL)
    vendor.v2[other] = v2_answer(("a.wav", vendor.media_url("a.wav")))
    assert (await drain(config, other))[other].state == "done"
    assert [s.query["sessionId"] for s in vendor.requests("DELETE", "/v2/recordings")] == [other]
    entry = [f for f in manifest_of(config, other)["files"] if f["kind"] == "audio"][0]
    assert entry["length_source"] == "inline_json"


async def test_the_intent_is_on_disk_before_delete_is_sent(tmp_path, vendor):
    """Attack: look at the disk at the moment DELETE arrives. Before: nothing recorded yet."""
    vendor.v2[SID] = v2_answer(("a.wav", vendor.media_url("a.wav")))
    vendor.media["a.wav"] = serve_bytes(FULL)
    config = config_for(tmp_path, vendor, delete__enabled=True)
    seen: dict[str, object] = {}

    async def on_delete(request: web.Request) -> web.Response:
        seen["manifest"] = manifest_of(config, SID).get("deletion")
        seen["audit"] = audit(config)
        return web.json_response({"message": "Call recordings deleted successfully"})

    vendor.on_delete = on_delete
    assert (await drain(config, SID))[SID].state == "done"
    assert seen["manifest"]["state"] == "pending"  # type: ignore[index]
    assert [line["state"] for line in seen["audit"]] == ["pending"]  # type: ignore[union-attr]
    assert manifest_of(config, SID)["deletion"]["state"] == "deleted"
    assert [line["state"] for line in audit(config)] == ["pending", "deleted"]


async def test_a_lost_answer_is_possibly_deleted_and_never_archived_over(tmp_path, simulator):
    """Attack: the vendor deletes, then the connection drops before the answer.
    Before: recorded as an error, and the session could be archived again over its files."""
    sim = await simulator(faults=Faults(delete_answer_lost=1.0))
    config = make_config(tmp_path, sim, delete__enabled=True)
    sid = SID
    async with archiver_for(config) as archiver:
        await archiver.archive("session", sid)
    outcome = await delete(config, sid)
    assert outcome.status == POSSIBLY_DELETED and sim.stats.deleted == {sid}
    assert manifest_of(config, sid)["deletion"]["state"] == "possibly_deleted"
    assert (await delete(config, sid)).status == ALREADY_DELETED
    async with archiver_for(config) as archiver:
        with pytest.raises(PermanentError, match="possibly_deleted"):
            await archiver.archive("session", sid, force=True)


async def test_a_failed_manifest_rewrite_after_delete_leaves_it_pending(tmp_path, vendor, monkeypatch):
    """Attack: the manifest cannot be rewritten after DELETE (full disk). Before: the manifest
    said nothing, and the session looked like any archived one."""
    import archiver.manifest as manifest

    vendor.v2[SID] = v2_answer(("a.wav", vendor.media_url("a.wav")))
    vendor.media["a.wav"] = serve_bytes(FULL)
    config = config_for(tmp_path, vendor, delete__enabled=True)
    async with archiver_for(config) as archiver:
        await archiver.archive("session", SID)
    real = manifest.rewrite
    calls = []

    async def second_write_fails(directory, document):
        calls.append(document.get("deletion", {}).get("state"))
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return await real(directory, document)

    monkeypatch.setattr(manifest, "rewrite", second_write_fails)
    outcome = await delete(config)
    assert outcome.status == DELETED and not outcome.recorded and calls == ["pending", "deleted"]
    assert manifest_of(config, SID)["deletion"]["state"] == "pending"  # read as possibly deleted
    monkeypatch.setattr(manifest, "rewrite", real)
    assert (await delete(config)).status == ALREADY_DELETED and len(vendor.requests("DELETE", "/v2/recordings")) == 1
    async with archiver_for(config) as archiver:
        with pytest.raises(PermanentError, match="pending"):
            await archiver.archive("session", SID, force=True)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_a_crash_while_delete_is_in_flight_leaves_the_session_possibly_deleted(tmp_path, vendor):
    """Attack: SIGKILL while DELETE is in flight. Before: no record at all of a deletion that
    may have happened; a forced re-archive then wrote an empty manifest over the files."""
    vendor.v2[SID] = v2_answer(("a.wav", vendor.media_url("a.wav")))
    vendor.media["a.wav"] = serve_bytes(FULL)
    arrived = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        arrived.set()
        await asyncio.sleep(3600)
        return web.json_response({})

    vendor.on_delete = hang
    config = config_for(tmp_path, vendor, delete__enabled=True)
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", SID)])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", "run", "--config", str(tmp_path / "archiver.toml"),
        env={**os.environ, "ARCHIVER_KORE_CLIENT_SECRET": SECRET},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await asyncio.wait_for(arrived.wait(), 60)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert manifest_of(config, SID)["deletion"]["state"] == "pending"
    assert [line["state"] for line in audit(config)] == ["pending"]
    files = audio_of(config, SID)
    # From now on: treated as deleted. Not deleted again, not archived over, not requeued.
    vendor.v2[SID] = {"status": "media_unavailable", "recording": []}
    config_path = str(tmp_path / "archiver.toml")
    assert await asyncio.to_thread(cli_main, ["enqueue", "--config", config_path, "--force", SID]) == 0
    await asyncio.wait_for(Service(config, burst=True).run(), 60)
    with JobStore.open_in(config.daemon.state_dir) as store:
        job = store.get("session", SID)
    assert job.state == "failed" and "never archived again" in (job.last_error or "")
    assert audio_of(config, SID) == files and manifest_of(config, SID)["deletion"]["state"] == "pending"
    assert len([s for s in vendor.seen if s.method == "DELETE"]) == 1


@pytest.mark.parametrize("block", [64, 1000, 1 << 20])
def test_the_audit_log_is_asked_about_one_session_block_by_block(tmp_path, vendor, monkeypatch, block):
    """The log is read before every deletion for years: lines are parsed only around a hit,
    and a hit cut by a block boundary (or a last line cut by a crash) reads the same."""
    import archiver.audit as audit

    config = config_for(tmp_path, vendor)
    path = audit_log_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = [f"67ab573f3685d1ba9954{n:04x}" for n in range(300)]
    lines = []
    for n, sid in enumerate(ids):
        for state in ("pending", ("deleted", "error", "possibly_deleted")[n % 3]):
            lines.append(json.dumps({"session_id": sid, "state": state, "result": state, "dry_run": False}))
    lines.append(json.dumps({"session_id": ids[7], "state": "dry_run", "result": "dry_run", "dry_run": True}))
    path.write_text("\n".join(lines) + '\n{"session_id": "' + ids[8] + '", "sta')  # cut by a crash
    everything = audit.last_lines(config)
    monkeypatch.setattr(audit, "_BLOCK", block)
    for sid in (ids[0], ids[1], ids[2], ids[7], ids[8], ids[-1], "67ab573f3685d1ba9954ffff"):
        assert audit.last_lines(config, {sid}) == ({sid: everything[sid]} if sid in everything else {}), sid
    assert audit.deleted_in_audit_log(config, {ids[0], ids[1], ids[2]}) == {ids[0], ids[2]}
