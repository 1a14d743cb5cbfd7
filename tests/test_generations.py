"""A forced or repeated archive never destroys an earlier one, over loopback.

Attacks: ``enqueue --force`` after the vendor's copy expired (before: a new manifest with no
files, the audio left as a stray nobody verified); a re-archive that gets fewer files; a
deletion the audit log knows and the manifest does not, then one flipped byte and
``verify --requeue`` (before: re-archived into an empty manifest).
"""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from archiver.cli import main as cli_main
from archiver.store import JobStore
from archiver.verify import verify_session

from .vendor import audio_of, config_for, directory_of, drain, manifest_of, serve_bytes, v2_answer, wav

SID = "67ab573f3685d1ba99541234"
A = wav(b"\xa1" * 30_000)
B = wav(b"\xb2" * 20_000)


async def archived(tmp_path, vendor, **settings):
    vendor.v2[SID] = v2_answer(("a.wav", vendor.media_url("a.wav")), ("b.wav", vendor.media_url("b.wav")))
    vendor.media["a.wav"] = serve_bytes(A)
    vendor.media["b.wav"] = serve_bytes(B)
    config = config_for(tmp_path, vendor, **settings)
    assert (await drain(config, SID))[SID].state == "done"
    return config


def verify_cli(config, *extra: str) -> tuple[int, dict]:
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(["verify", "--config", str(config.source), "--json", *extra])
    return code, json.loads(out.getvalue())


async def test_forcing_an_expired_session_keeps_the_earlier_archive(tmp_path, vendor):
    config = await archived(tmp_path, vendor)
    directory = directory_of(config, SID)
    earlier = (directory / "manifest.json").read_bytes()
    vendor.v2[SID] = {"status": "media_unavailable", "recording": []}
    job = (await drain(config, SID, force=True))[SID]
    assert job.state == "done", job.last_error
    manifest = manifest_of(config, SID)
    assert manifest["parts"]["recordings"]["status"] == "media_unavailable"
    [kept] = manifest["earlier_generations"]
    assert kept["path"] == "generations/1" and "lacks 2 file(s)" in kept["reason"]
    generation = directory / "generations" / "1"
    assert (generation / "manifest.json").read_bytes() == earlier
    assert (generation / "recordings" / "a.wav").read_bytes() == A
    assert (generation / "recordings" / "b.wav").read_bytes() == B
    # verify checks the generation like the manifest's files: intact now ...
    report = await asyncio.to_thread(verify_session, directory)
    assert report.problems == [] and report.files >= 4
    code, _ = await asyncio.to_thread(verify_cli, config)
    assert code == 0
    # ... and a flipped byte in it is found.
    path = generation / "recordings" / "a.wav"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    report = await asyncio.to_thread(verify_session, directory)
    assert [(p.path, p.kind) for p in report.problems] == [("generations/1/recordings/a.wav", "sha256")]


async def test_a_re_archive_with_fewer_files_keeps_the_earlier_one(tmp_path, vendor):
    config = await archived(tmp_path, vendor)
    vendor.v2[SID] = v2_answer(("a.wav", vendor.media_url("a.wav")))
    assert (await drain(config, SID, force=True))[SID].state == "done"
    assert audio_of(config, SID) == {"a.wav": A}
    manifest = manifest_of(config, SID)
    [kept] = manifest["earlier_generations"]
    assert "lacks 1 file(s)" in kept["reason"] and "b.wav" in kept["reason"]
    generation = directory_of(config, SID) / "generations" / "1" / "recordings"
    assert (generation / "b.wav").read_bytes() == B


async def test_a_re_archive_holding_everything_leaves_no_generation(tmp_path, vendor):
    config = await archived(tmp_path, vendor)
    assert (await drain(config, SID, force=True))[SID].state == "done"
    assert audio_of(config, SID) == {"a.wav": A, "b.wav": B}
    assert "earlier_generations" not in manifest_of(config, SID)
    assert not (directory_of(config, SID) / "generations").exists()
    assert len(vendor.requests("GET", "/media/a.wav")) == 2  # fetched afresh


async def test_a_second_forced_re_archive_keeps_both_earlier_generations(tmp_path, vendor):
    config = await archived(tmp_path, vendor)
    vendor.v2[SID] = v2_answer(("a.wav", vendor.media_url("a.wav")))
    assert (await drain(config, SID, force=True))[SID].state == "done"
    vendor.v2[SID] = {"status": "media_unavailable", "recording": []}
    assert (await drain(config, SID, force=True))[SID].state == "done"
    kept = manifest_of(config, SID)["earlier_generations"]
    assert [k["generation"] for k in kept] == [1, 2]
    report = await asyncio.to_thread(verify_session, directory_of(config, SID))
    assert report.problems == []


async def test_verify_requeue_consults_the_audit_log(tmp_path, vendor):
    """Attack: the deletion reached the audit log but not the manifest; one byte flipped.
    Before: ``verify --requeue`` re-archived the session into an empty manifest."""
    config = await archived(tmp_path, vendor, delete__enabled=True)
    directory = directory_of(config, SID)
    manifest = manifest_of(config, SID)
    assert manifest["deletion"]["result"] == "deleted"
    del manifest["deletion"]  # as if the manifest rewrite after DELETE had failed
    (directory / "manifest.json").write_text(json.dumps(manifest))
    path = directory / "recordings" / "a.wav"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    vendor.v2[SID] = {"status": "media_unavailable", "recording": []}
    code, report = await asyncio.to_thread(verify_cli, config, "--requeue")
    assert code == 1
    assert report["requeued"] == [] and [n["id"] for n in report["not_requeued"]] == [SID]
    assert "audit log" in report["not_requeued"][0]["reason"]
    with JobStore.open_in(config.daemon.state_dir) as store:
        assert store.get("session", SID).state == "done"
    # Forced by hand all the same, it is refused: never archived again over what is kept.
    job = (await drain(config, SID, force=True))[SID]
    assert job.state == "failed" and "audit log" in (job.last_error or "")
    assert (directory / "recordings" / "b.wav").read_bytes() == B
    assert manifest_of(config, SID)["files"] == manifest["files"]
