"""verify, check and delete-after-archive on an S3 target, against moto's S3 server."""

from __future__ import annotations

import base64
import hashlib
import io
import json

from archiver.cli import run_check
from archiver.service import Service
from archiver.verify import run_verify

from .conftest import S3_SECRET, make_config, new_bucket, s3_admin, s3_settings
from .test_s3 import IDS, enqueue, session_prefix


async def archived(tmp_path, simulator, endpoint, ids, **settings):
    sim = await simulator(voicemail_rate=0.5)
    bucket = new_bucket(endpoint)
    config = make_config(tmp_path, sim, **s3_settings(tmp_path, endpoint, bucket), **settings)
    enqueue(config, ids)
    stats = await Service(config, burst=True).run()
    assert stats.done == len(ids) and stats.failed == 0
    return sim, bucket, config


async def verify(config, **kwargs) -> tuple[int, dict]:
    out = io.StringIO()
    code = await run_verify(config, as_json=True, out=out, **kwargs)
    return code, json.loads(out.getvalue())


def audio_key(config, endpoint, bucket, sid) -> tuple[str, dict]:
    prefix = session_prefix(config, sid)
    manifest = json.loads(s3_admin(endpoint).get_object(Bucket=bucket, Key=prefix + "manifest.json")["Body"].read())
    entry = next(f for f in manifest["files"] if f["kind"] == "audio")
    return prefix + entry["path"], entry


async def test_verify_and_deep_verify_catch_a_replaced_object(tmp_path, simulator, moto_endpoint):
    from archiver.s3 import s3_client

    sim, bucket, config = await archived(tmp_path, simulator, moto_endpoint, IDS[:3])
    code, report = await verify(config)
    assert code == 0 and report["sessions_checked"] == 3 and report["sessions_damaged"] == 0
    assert report["files_checked"] >= 6
    admin = s3_admin(moto_endpoint)
    # Replaced by someone with write access: other bytes of the same size.
    key, entry = audio_key(config, moto_endpoint, bucket, IDS[0])
    admin.put_object(Bucket=bucket, Key=key, Body=b"\0" * entry["size"])
    code, report = await verify(config)
    assert code == 1 and report["sessions_damaged"] == 1
    [damaged] = report["damaged"]
    assert damaged["id"] == IDS[0] and [p["path"] for p in damaged["problems"]] == [entry["path"]]
    # Replaced together with a forged checksum and metadata: only reading the bytes tells.
    key, entry = audio_key(config, moto_endpoint, bucket, IDS[1])
    forged = bytearray(admin.get_object(Bucket=bucket, Key=key)["Body"].read())
    forged[-1] ^= 0xFF
    async with s3_client(config) as client:  # the same client as the archiver's, which sends the checksum header
        await client.put_object(
            Bucket=bucket, Key=key, Body=bytes(forged), ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(bytes.fromhex(entry["sha256"])).decode(), Metadata={"sha256": entry["sha256"]},
        )
    code, report = await verify(config)
    assert {d["id"] for d in report["damaged"]} == {IDS[0]}, [d["problems"] for d in report["damaged"]]
    code, report = await verify(config, deep=True)
    assert code == 1 and {d["id"] for d in report["damaged"]} == {IDS[0], IDS[1]}
    problem = next(d for d in report["damaged"] if d["id"] == IDS[1])["problems"][0]
    assert problem["kind"] == "sha256" and problem["found"] is None and hashlib.sha256(forged).hexdigest() in problem["detail"]
    # An object the manifest does not list, and a missing one.
    admin.put_object(Bucket=bucket, Key=session_prefix(config, IDS[2]) + "recordings/stray.wav", Body=b"x")
    key, entry = audio_key(config, moto_endpoint, bucket, IDS[2])
    admin.delete_object(Bucket=bucket, Key=key)
    code, report = await verify(config, session_id=IDS[2])
    kinds = sorted(p["kind"] for p in report["damaged"][0]["problems"])
    assert code == 1 and kinds == ["extra", "missing"]
    out = io.StringIO()
    assert await run_verify(config, requeue=True, out=out) == 1
    assert "never replaced" in out.getvalue() and f"s3://{bucket}/kore/" in out.getvalue()


async def test_vendor_copy_is_deleted_only_after_the_bucket_proves_it(tmp_path, simulator, moto_endpoint):
    from archiver.deletion import DELETED, REFUSED, delete_after_archive
    from archiver.s3 import Bucket, s3_client
    from archiver.s3archive import S3SessionArchiver, spool_config

    from .conftest import archiver_for

    sim, bucket, config = await archived(
        tmp_path, simulator, moto_endpoint, IDS[:2], delete__enabled=True, s3__keep_local_copy=True,
    )
    assert sim.stats.deleted == set(IDS[:2])
    audit = [json.loads(line) for line in (config.daemon.state_dir / "deletions.jsonl").read_text().splitlines()]
    assert sorted(a["session_id"] for a in audit if a["result"] == DELETED) == sorted(IDS[:2])
    # A session archived but whose object in the bucket no longer proves out is not deleted.
    sim2 = await simulator(voicemail_rate=0.0)
    bucket2 = new_bucket(moto_endpoint)
    (tmp_path / "two").mkdir()
    config2 = make_config(tmp_path / "two", sim2, delete__enabled=True, **s3_settings(tmp_path, moto_endpoint, bucket2))
    async with archiver_for(spool_config(config2)) as inner, s3_client(config2) as client:
        target = S3SessionArchiver(config2, inner, Bucket(config2, client))
        result = await target.archive("session", IDS[3])
        key, entry = audio_key(config2, moto_endpoint, bucket2, IDS[3])
        s3_admin(moto_endpoint).put_object(Bucket=bucket2, Key=key, Body=b"\0" * entry["size"])
        outcome = await delete_after_archive(config2, inner.client, result.directory, IDS[3], proof=target.proof)
        assert outcome.status == REFUSED and entry["path"] in outcome.reason
        assert sim2.stats.deleted == set()
        # The spool copy is intact: re-read from disk, the same session would be deleted.
        assert (await delete_after_archive(config2, inner.client, result.directory, IDS[3])).status == DELETED


async def test_check_passes_on_a_good_bucket_and_leaves_nothing_behind(tmp_path, simulator, moto_endpoint):
    sim = await simulator()
    bucket = new_bucket(moto_endpoint, lock=True)
    config = make_config(
        tmp_path, sim, **s3_settings(
            tmp_path, moto_endpoint, bucket, s3__object_lock_mode="COMPLIANCE", s3__object_lock_retention="7d",
        ),
    )
    out = io.StringIO()
    assert await run_check(config, out) == 0, out.getvalue()
    text = out.getvalue()
    assert f"ok   bucket s3://{bucket}/kore/ is reachable" in text
    assert "is writable" in text and "ok   Object Lock is enabled" in text
    assert "info versioning: Enabled" in text and "info default encryption:" in text
    assert "spool directory" in text and S3_SECRET not in text
    admin = s3_admin(moto_endpoint)
    assert not admin.list_objects_v2(Bucket=bucket).get("Contents")
    assert not admin.list_multipart_uploads(Bucket=bucket).get("Uploads")


async def test_check_fails_on_a_missing_bucket_and_on_a_bucket_without_object_lock(tmp_path, simulator, moto_endpoint):
    sim = await simulator()
    config = make_config(tmp_path, sim, **s3_settings(tmp_path, moto_endpoint, "no-such-bucket-here"))
    out = io.StringIO()
    assert await run_check(config, out) == 1
    assert "FAIL S3: bucket s3://no-such-bucket-here/kore/: S3 answered 404" in out.getvalue()
    plain = new_bucket(moto_endpoint)
    config = make_config(
        tmp_path, sim, **s3_settings(
            tmp_path, moto_endpoint, plain, s3__object_lock_mode="GOVERNANCE", s3__object_lock_retention="1d",
        ),
    )
    out = io.StringIO()
    assert await run_check(config, out) == 1
    text = out.getvalue()
    assert "FAIL Object Lock is NOT enabled on the bucket (s3.object_lock_mode is GOVERNANCE)" in text
    assert f"ok   bucket s3://{plain}/kore/ is reachable" in text

