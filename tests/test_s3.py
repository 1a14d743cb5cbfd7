"""The S3 target against moto's S3 server on loopback: upload, prove, never overwrite, lock."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone

import pytest

from archiver.layout import session_dir
from archiver.service import Service
from archiver.store import JobStore

from .conftest import (
    S3_SECRET, bucket_objects, make_config, new_bucket, object_sha256, s3_admin, s3_settings,
)

IDS = [f"6914a3c0aa01bb02cc03{n:04x}" for n in range(6)]


def enqueue(config, ids) -> None:
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", s) for s in ids])


def counts(config) -> dict[str, int]:
    with JobStore.open_in(config.daemon.state_dir) as store:
        return store.counts()


def session_prefix(config, sid: str) -> str:
    directory = session_dir(config.archive.root, config.kore.bot_id, "session", sid)
    return "kore/" + directory.relative_to(config.archive.root).as_posix() + "/"


def assert_in_bucket(config, sim, endpoint, bucket, sid, *, voicemail: bool = True) -> dict:
    """Every manifest entry is an object of that size whose stored sha256 and bytes match;
    the audio is the simulator's."""
    prefix = session_prefix(config, sid)
    admin = s3_admin(endpoint)
    manifest = json.loads(admin.get_object(Bucket=bucket, Key=prefix + "manifest.json")["Body"].read())
    objects = bucket_objects(endpoint, bucket, prefix)
    assert set(objects) == {prefix + f["path"] for f in manifest["files"]} | {prefix + "manifest.json"}
    for entry in manifest["files"]:
        head = objects[prefix + entry["path"]]
        assert head["ContentLength"] == entry["size"]
        assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(entry["sha256"])).decode()
        assert head["Metadata"]["sha256"] == entry["sha256"]
        assert object_sha256(endpoint, bucket, prefix + entry["path"]) == entry["sha256"]
    spec = sim.session(sid)
    expected = [sim.media_sha256(m) for m in spec.recordings]
    if voicemail:
        expected += [sim.media_sha256(m) for m in spec.voicemails]
    assert sorted(f["sha256"] for f in manifest["files"] if f["kind"] == "audio") == sorted(expected)
    return manifest


async def test_daemon_archives_v2_voicemail_transcripts_and_v1_to_the_bucket(tmp_path, simulator, moto_endpoint):
    sim = await simulator(voicemail_rate=0.7)
    bucket = new_bucket(moto_endpoint)
    settings = s3_settings(tmp_path, moto_endpoint, bucket)
    config = make_config(tmp_path, sim, kore__fetch_transcripts=True, **settings)
    enqueue(config, IDS[:4])
    stats = await Service(config, burst=True).run()
    assert stats.done == 4 and stats.failed == 0
    kinds = set()
    for sid in IDS[:4]:
        manifest = assert_in_bucket(config, sim, moto_endpoint, bucket, sid)
        kinds |= {f["kind"] for f in manifest["files"]}
    assert {"audio", "sidecar", "transcription", "transcript"} <= kinds
    v1 = make_config(tmp_path, sim, kore__recordings_api="v1", kore__fetch_voicemail=False, **settings)
    enqueue(v1, IDS[4:])
    stats = await Service(v1, burst=True).run()
    assert stats.done == 2 and stats.failed == 0
    for sid in IDS[4:]:
        manifest = assert_in_bucket(v1, sim, moto_endpoint, bucket, sid, voicemail=False)
        assert {f["api"] for f in manifest["files"] if f["kind"] == "audio"} == {"v1_recordings"}
    # The spool is emptied of published sessions; nothing of the secret key in the state.
    spool = config.daemon.state_dir / "spool"
    assert not [p for p in spool.rglob("*") if p.is_file()]
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "s3-secret":
            assert S3_SECRET.encode() not in path.read_bytes(), path
