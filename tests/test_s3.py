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
        if head["ChecksumSHA256"] != base64.b64encode(bytes.fromhex(entry["sha256"])).decode():
            # A multipart object: its checksum is over its parts' checksums.
            assert admin.head_object(Bucket=bucket, Key=prefix + entry["path"], PartNumber=1)["PartsCount"] > 1
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


def objects_counted(service, outcome: str) -> float:
    return service.metrics.registry.get_sample_value("archiver_s3_objects_total", {"outcome": outcome}) or 0


def versions(endpoint, bucket, prefix="") -> dict[str, int]:
    """key -> number of versions written (a versioned bucket keeps every PUT)."""
    found: dict[str, int] = {}
    for page in s3_admin(endpoint).get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Versions") or []:
            found[item["Key"]] = found.get(item["Key"], 0) + 1
    return found


async def test_crash_after_upload_before_bookkeeping_uploads_nothing_twice(tmp_path, simulator, moto_endpoint):
    from archiver.s3 import Bucket, s3_client
    from archiver.s3archive import S3SessionArchiver, spool_config

    from .conftest import archiver_for

    sim = await simulator(voicemail_rate=1.0)
    bucket = new_bucket(moto_endpoint, versioning=True)
    config = make_config(tmp_path, sim, **s3_settings(tmp_path, moto_endpoint, bucket))
    # Session 0 was published completely, session 1 only in part (its audio), and then the
    # process died: neither was marked done in the job store.
    async with archiver_for(spool_config(config)) as inner, s3_client(config) as client:
        target = S3SessionArchiver(config, inner, Bucket(config, client))
        await target.archive("session", IDS[0])
        await inner.archive("session", IDS[1])
        directory = inner.directory("session", IDS[1])
        manifest = json.loads((directory / "manifest.json").read_text())
        audio = next(f for f in manifest["files"] if f["kind"] == "audio")
        await target.bucket.put_file(
            directory / audio["path"], target.bucket.key(f"{target.relative(directory)}/{audio['path']}"),
            audio["size"], audio["sha256"],
        )
    before = versions(moto_endpoint, bucket)
    media_before = sum(sim.stats.media_bytes_served.values())
    enqueue(config, IDS[:3])
    service = Service(config, burst=True)
    stats = await service.run()
    assert stats.done == 3 and stats.failed == 0
    assert objects_counted(service, "present") == 1  # the audio published before the crash
    after = versions(moto_endpoint, bucket)
    assert set(after.values()) == {1}  # nothing written twice
    assert all(after[key] == 1 for key in before)
    for sid in IDS[:3]:
        assert_in_bucket(config, sim, moto_endpoint, bucket, sid)
    # The published session was not downloaded again; the half-published one was taken from the spool.
    assert sum(sim.stats.media_bytes_served.values()) - media_before == sum(
        m.size for m in sim.session(IDS[2]).recordings + sim.session(IDS[2]).voicemails
    )
    assert counts(config)["done"] == 3


async def test_sigkill_during_uploads_then_restart_loses_nothing_and_writes_nothing_twice(
    tmp_path, simulator, moto_endpoint
):
    from .test_service import spawn

    sim = await simulator(voicemail_rate=0.0, min_size=600_000, max_size=900_000)
    bucket = new_bucket(moto_endpoint, versioning=True)
    config = make_config(tmp_path, sim, daemon__concurrency=2, **s3_settings(tmp_path, moto_endpoint, bucket))
    ids = [f"6914a3c0aa01bb02cc04{n:04x}" for n in range(8)]
    enqueue(config, ids)
    sim.faults.slow_body = 0.5
    sim.faults.slow_body_delay = 0.005
    proc = await spawn(tmp_path / "archiver.toml", "run")

    def first_manifest() -> bool:
        return any(k.endswith("manifest.json") for k in versions(moto_endpoint, bucket))

    from .conftest import wait_for

    await wait_for(first_manifest, timeout=60, what="a session published")
    proc.kill()
    await proc.wait()
    assert counts(config)["done"] < len(ids)  # it died with work left
    sim.faults.slow_body = 0.0
    proc = await spawn(tmp_path / "archiver.toml", "once")
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert set(versions(moto_endpoint, bucket).values()) == {1}
    for sid in ids:
        assert_in_bucket(config, sim, moto_endpoint, bucket, sid, voicemail=False)
    assert counts(config)["done"] == len(ids)


async def test_an_existing_object_with_other_bytes_is_refused_and_reported(tmp_path, simulator, moto_endpoint):
    from archiver.layout import TakenNames, safe_filename

    sim = await simulator(voicemail_rate=0.0)
    bucket = new_bucket(moto_endpoint)
    config = make_config(tmp_path, sim, **s3_settings(tmp_path, moto_endpoint, bucket))
    name = safe_filename(sim.session(IDS[0]).recordings[0].file_name, "recording-1.wav", TakenNames())
    key = session_prefix(config, IDS[0]) + "recordings/" + name
    s3_admin(moto_endpoint).put_object(Bucket=bucket, Key=key, Body=b"someone else's bytes")
    enqueue(config, IDS[:2])
    service = Service(config, burst=True)
    stats = await service.run()
    assert stats.done == 1 and stats.failed == 1
    assert objects_counted(service, "conflict") == 1
    assert stats.failures[0][0] == IDS[0] and "already exists with other content" in stats.failures[0][1]
    assert object_sha256(moto_endpoint, bucket, key) == hashlib.sha256(b"someone else's bytes").hexdigest()
    objects = bucket_objects(moto_endpoint, bucket, session_prefix(config, IDS[0]))
    assert session_prefix(config, IDS[0]) + "manifest.json" not in objects  # the session is not complete
    with JobStore.open_in(config.daemon.state_dir) as store:
        failed = store.status(recent=10).recent_errors
    assert any(e[0] == IDS[0] and "not replaced" in (e[2] or "") for e in failed)
    spooled = session_dir(config.daemon.state_dir / "spool", config.kore.bot_id, "session", IDS[0])
    assert (spooled / "manifest.json").exists()  # kept for the operator
    assert_in_bucket(config, sim, moto_endpoint, bucket, IDS[1], voicemail=False)


async def test_object_lock_on_every_object_and_a_locked_object_cannot_be_deleted(tmp_path, simulator, moto_endpoint):
    sim = await simulator(voicemail_rate=1.0, min_size=2_000, max_size=6_500_000)
    bucket = new_bucket(moto_endpoint, lock=True)
    config = make_config(
        tmp_path, sim, **s3_settings(
            tmp_path, moto_endpoint, bucket, s3__object_lock_mode="GOVERNANCE", s3__object_lock_retention="30d",
            s3__legal_hold=True, s3__multipart_threshold="5MiB", s3__part_size="5MiB",
        ),
    )
    enqueue(config, IDS[:3])
    started = datetime.now(timezone.utc)
    stats = await Service(config, burst=True).run()
    assert stats.done == 3 and stats.failed == 0
    objects = bucket_objects(moto_endpoint, bucket)
    assert len(objects) > 9
    sizes = [head["ContentLength"] for head in objects.values()]
    assert max(sizes) > 5 * 1024**2  # a multipart object among them
    for key, head in objects.items():
        assert head["ObjectLockMode"] == "GOVERNANCE", key
        days = (head["ObjectLockRetainUntilDate"] - started).total_seconds() / 86400
        assert 29.9 < days < 30.1, key
        assert head["ObjectLockLegalHoldStatus"] == "ON", key
    for sid in IDS[:3]:
        assert_in_bucket(config, sim, moto_endpoint, bucket, sid)
    key, head = next(iter(objects.items()))
    admin = s3_admin(moto_endpoint)
    with pytest.raises(Exception) as refused:
        admin.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert admin.head_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])["ContentLength"] == head["ContentLength"]


async def test_the_s3_secret_key_reaches_no_log_output_error_or_file(tmp_path, simulator, moto_endpoint):
    from .conftest import S3_KEY_ID, free_port
    from .test_service import spawn

    sim = await simulator(voicemail_rate=0.5)
    bucket = new_bucket(moto_endpoint)
    config = make_config(tmp_path, sim, **s3_settings(tmp_path, moto_endpoint, bucket))
    enqueue(config, IDS[:2])
    proc = await spawn(tmp_path / "archiver.toml", "once")
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    # Then a server that is not there: the failures are reported, without the key.
    dead = make_config(
        tmp_path, sim, http__max_attempts=1, **s3_settings(tmp_path, f"http://127.0.0.1:{free_port()}", bucket)
    )
    enqueue(dead, IDS[2:4])
    proc2 = await spawn(tmp_path / "archiver.toml", "once")
    out2, err2 = await proc2.communicate()
    assert proc2.returncode != 0 and b"S3" in out2 + err2
    check = await spawn(tmp_path / "archiver.toml", "check")
    out3, err3 = await check.communicate()
    assert check.returncode == 1 and b"FAIL S3" in out3
    for blob in (out, err, out2, err2, out3, err3):
        assert S3_SECRET.encode() not in blob
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "s3-secret":
            assert S3_SECRET.encode() not in path.read_bytes(), path
    assert S3_KEY_ID.encode() not in err + err2  # not even the key id is logged


@pytest.mark.parametrize("threshold", ["5MiB", "64MiB"], ids=["multipart", "single-put"])
async def test_a_spool_file_changed_after_download_is_not_uploaded_and_leaves_no_upload(
    tmp_path, simulator, moto_endpoint, threshold
):
    from archiver.errors import PermanentError
    from archiver.s3 import Bucket, s3_client
    from archiver.s3archive import S3SessionArchiver, spool_config

    from .conftest import archiver_for

    sim = await simulator(voicemail_rate=0.0, min_size=6_000_000, max_size=7_000_000)
    bucket = new_bucket(moto_endpoint)
    config = make_config(
        tmp_path, sim, **s3_settings(tmp_path, moto_endpoint, bucket, s3__multipart_threshold=threshold, s3__part_size="5MiB")
    )
    async with archiver_for(spool_config(config)) as inner, s3_client(config) as client:
        target = S3SessionArchiver(config, inner, Bucket(config, client))
        await inner.archive("session", IDS[0])
        directory = inner.directory("session", IDS[0])
        manifest = json.loads((directory / "manifest.json").read_text())
        audio = next(f for f in manifest["files"] if f["kind"] == "audio")
        with open(directory / audio["path"], "r+b") as handle:  # one bit flipped on the disk
            handle.seek(audio["size"] - 10)
            byte = handle.read(1)
            handle.seek(audio["size"] - 10)
            handle.write(bytes([byte[0] ^ 1]))
        with pytest.raises(PermanentError, match="no longer has the"):
            await target.publish(directory)
    admin = s3_admin(moto_endpoint)
    keys = [o["Key"] for o in admin.list_objects_v2(Bucket=bucket).get("Contents") or []]
    assert not [k for k in keys if k.endswith((audio["path"], "manifest.json"))]
    assert not admin.list_multipart_uploads(Bucket=bucket).get("Uploads")  # aborted


async def test_a_spool_copy_holding_earlier_generations_is_kept(tmp_path, simulator, moto_endpoint):
    from archiver.s3 import Bucket, s3_client
    from archiver.s3archive import S3SessionArchiver, spool_config

    from .conftest import archiver_for

    sim = await simulator(voicemail_rate=0.0)
    bucket = new_bucket(moto_endpoint)
    config = make_config(tmp_path, sim, **s3_settings(tmp_path, moto_endpoint, bucket))
    async with archiver_for(spool_config(config)) as inner, s3_client(config) as client:
        target = S3SessionArchiver(config, inner, Bucket(config, client))
        first = await target.archive("session", IDS[0])
        second = await target.archive("session", IDS[1])
        kept = first.directory / "generations" / "1"
        kept.mkdir(parents=True)
        (kept / "generation.json").write_text("{}")
        await target.settled(first)
        await target.settled(second)
    assert (kept / "generation.json").exists() and (first.directory / "manifest.json").exists()
    assert not second.directory.exists()
