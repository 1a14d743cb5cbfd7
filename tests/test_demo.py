"""``archiver demo`` runs end to end (the README's first command relies on it)."""

from __future__ import annotations

import json

from archiver.demo import V1_SESSIONS, V2_SESSIONS, run_demo


async def test_demo_archives_every_session_and_is_rerunnable(tmp_path, capsys):
    assert await run_demo(tmp_path / "demo") == 0
    manifests = sorted((tmp_path / "demo" / "archive").rglob("manifest.json"))
    assert sorted(m.parent.name for m in manifests) == sorted(V1_SESSIONS + V2_SESSIONS)
    for manifest in manifests:
        data = json.loads(manifest.read_text())
        assert any(f["kind"] == "audio" for f in data["files"])
    out = capsys.readouterr().out
    assert "archived 4 sessions" in out and "archived 2 sessions" in out
    assert list((tmp_path / "demo" / "inbox" / "processed").glob("*calls.txt.report.txt"))
    assert await run_demo(tmp_path / "demo") == 0  # a second run finds everything archived


async def test_demo_with_s3_archives_into_the_bucket(tmp_path, capsys, monkeypatch, moto_endpoint):
    from .conftest import S3_KEY_ID, S3_SECRET, s3_admin

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    url = f"{moto_endpoint}/demo-bucket-{tmp_path.name[-8:].lower().replace('_', '-')}/calls"
    bucket = url.split("/")[3]
    assert await run_demo(tmp_path / "demo", url) == 0
    keys = [o["Key"] for o in s3_admin(moto_endpoint).list_objects_v2(Bucket=bucket)["Contents"]]
    manifests = [k for k in keys if k.endswith("/manifest.json")]
    assert sorted(k.split("/")[-2] for k in manifests) == sorted(V1_SESSIONS + V2_SESSIONS)
    assert all(k.startswith("calls/") for k in keys)
    out = capsys.readouterr().out
    assert f"created the bucket {bucket}" in out and "objects under s3://" in out
    assert not [p for p in (tmp_path / "demo" / "state" / "spool").rglob("*") if p.is_file()]
    assert await run_demo(tmp_path / "demo", url) == 0  # a second run finds everything in the bucket
    assert len(s3_admin(moto_endpoint).list_objects_v2(Bucket=bucket)["Contents"]) == len(keys)
