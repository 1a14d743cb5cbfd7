"""The catalog, ``archiver find``, ``export`` and ``state``, end to end against the simulator."""

from __future__ import annotations

import hashlib
import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from archiver.catalog import Catalog, call_facts
from archiver.cli import main as cli_main, run_once
from archiver.config import Config
from archiver.ids import object_id_time
from archiver.layout import session_dir
from archiver.state import rebuild
from archiver.store import JobStore

from .conftest import SECRET, make_config

# ObjectId session ids: the first 8 hex digits are the start time (2025-02-10 .. 2025-02-12).
IDS = [
    "67a9a0000000000000000001",  # 2025-02-10
    "67a9a0010000000000000002",  # 2025-02-10
    "67aaf1800000000000000003",  # 2025-02-11
    "67aaf1810000000000000004",  # 2025-02-11
    "67ac43000000000000000005",  # 2025-02-12
]


def call_details(index: int, session_id: str) -> dict[str, Any]:
    """A call.json as the call-details step writes it: a normalised block and the vendor's record."""
    agents = [
        [{"name": "Alice Smith", "email": "alice@example.com", "id": "a-1"}],
        [{"name": "Bob Jones", "email": "bob@example.com", "id": "a-2"}],
        [],
        [{"name": "Alice Smith", "email": "alice@example.com", "id": "a-1"},
         {"name": "Carol White", "email": "carol@example.com", "id": "a-3"}],
        [{"name": "Bob Jones", "email": "bob@example.com", "id": "a-2"}],
    ][index]
    return {
        "sessionId": session_id,
        "call": {
            "direction": "inbound" if index % 2 == 0 else "outbound",
            "caller": ["+1 (555) 010-2000", "+44 20 7946 0000", "+1 555 010 3000", "+1 (555) 010-2000", "anonymous"][index],
            "callee": "+1 800 555 0100",
            "queues": [["Billing"], ["Sales EMEA"], [], ["Billing", "Retention"], ["Support"]][index],
            "agents": agents,
            "dispositions": [["Resolved"], ["Callback"], [], ["Escalated"], ["Resolved"]][index],
            "voicemail": index == 2,
            "final_status": "completed",
        },
        "record": {"Direction": "Inbound", "sessionStartTime": object_id_time(session_id).isoformat()},
    }


def add_call_json(config: Config, session_id: str, document: dict[str, Any]) -> None:
    """Put a call.json in an archived session and list it in the manifest (replacing one there)."""
    import hashlib

    directory = session_dir(config.archive.root, config.kore.bot_id, "session", session_id)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if f["path"] != "call.json"]
    (directory / "manifest.json").write_text(json.dumps(manifest))
    raw = json.dumps(document).encode()
    (directory / "call.json").write_bytes(raw)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"].append({"path": "call.json", "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
                              "kind": "call_details", "api": "call_details", "fetched_at": "2025-02-13T00:00:00Z"})
    (directory / "manifest.json").write_text(json.dumps(manifest))


def catalog_snapshot(config: Config) -> list[dict[str, Any]]:
    with Catalog.open_in(config.daemon.state_dir) as catalog:
        return catalog.snapshot()


def find(config: Config, capsys, *args: str) -> list[str]:
    capsys.readouterr()
    assert cli_main(["find", "--config", str(config.source), "--json", *args]) == 0
    return [row["session_id"] for row in json.loads(capsys.readouterr().out)]


@pytest.fixture
async def archived(tmp_path, simulator):
    """Five sessions archived by `once` (voicemails with transcriptions, call transcripts)."""
    sim = await simulator(voicemail_rate=0.6)
    config = make_config(tmp_path, sim, kore__fetch_transcripts=True)
    assert await run_once(config, [("session", sid) for sid in IDS]) == 0
    return sim, config


async def test_catalog_built_while_archiving_equals_the_one_rebuilt_from_the_archive(archived):
    sim, config = archived
    during = catalog_snapshot(config)
    assert [row["session_id"] for row in during] == sorted(IDS)
    for row in during:
        manifest = json.loads((config.archive.root / row["location"] / "manifest.json").read_text())
        assert row["files"] == sorted((f["path"], f["size"], f["sha256"], f["kind"]) for f in manifest["files"])
        assert row["text"]  # every session has a call transcript
        assert row["target"] == "file" and row["deleted"] == 0
    voicemails = [sid for sid in IDS if sim.session(sid).voicemails]
    assert voicemails
    for name in ("catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm"):
        (config.daemon.state_dir / name).unlink(missing_ok=True)
    result = rebuild(config)
    assert result.sessions == len(IDS)
    assert catalog_snapshot(config) == during


async def test_find_filters_return_exactly_the_expected_sessions(archived, capsys):
    sim, config = archived
    for index, sid in enumerate(IDS):
        add_call_json(config, sid, call_details(index, sid))
    assert cli_main(["state", "rebuild", "--config", str(config.source)]) == 0
    assert find(config, capsys) == IDS
    assert find(config, capsys, "--from", "2025-02-11") == IDS[2:]
    assert find(config, capsys, "--to", "2025-02-11") == IDS[:4]
    assert find(config, capsys, "--from", "2025-02-11", "--to", "2025-02-11") == IDS[2:4]
    assert find(config, capsys, "--agent", "alice") == [IDS[0], IDS[3]]
    assert find(config, capsys, "--agent", "bob@example.com") == [IDS[1], IDS[4]]
    assert find(config, capsys, "--agent", "a-3") == [IDS[3]]
    assert find(config, capsys, "--caller", "5550102000") == [IDS[0], IDS[3]]
    assert find(config, capsys, "--caller", "+44 20") == [IDS[1]]
    assert find(config, capsys, "--queue", "billing") == [IDS[0], IDS[3]]
    assert find(config, capsys, "--disposition", "Resolved") == [IDS[0], IDS[4]]
    assert find(config, capsys, "--queue", "billing", "--agent", "carol") == [IDS[3]]
    assert find(config, capsys, "--agent", "100%_") == []  # LIKE wildcards are literal
    # --text: every word in the session's call transcript or voicemail transcription, as the simulator has them.
    def words_of(sid: str) -> set[str]:
        texts = [m["components"][0]["data"]["text"] for m in sim.messages(sid)] + sim.session(sid).transcript_texts
        return {w.lower() for text in texts for w in re.findall(r"\w+", text)}

    for sid in (IDS[1], next(s for s in IDS if sim.session(s).transcript_texts)):
        for source in (sim.messages(sid)[1]["components"][0]["data"]["text"], *sim.session(sid).transcript_texts):
            query = " ".join(re.findall(r"\w+", source)[-3:])
            expected = [s for s in IDS if {w.lower() for w in query.split()} <= words_of(s)]
            assert sid in expected
            assert find(config, capsys, "--text", query) == expected, query
    assert find(config, capsys, "--text", 'NEAR(" OR *') == []  # FTS syntax is searched as words
    assert find(config, capsys, "--text", *query.split()) == expected  # unquoted words too
    # CSV and the table carry the same sessions.
    capsys.readouterr()
    assert cli_main(["find", "--config", str(config.source), "--csv", "--agent", "alice"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("session_id,") and [line.split(",")[0] for line in lines[1:]] == [IDS[0], IDS[3]]
    assert cli_main(["find", "--config", str(config.source), "--agent", "alice"]) == 0
    captured = capsys.readouterr()
    assert IDS[0] in captured.out and IDS[3] in captured.out and IDS[1] not in captured.out
    assert "2 sessions" in captured.err


async def test_find_with_an_empty_text_query_is_a_usage_error(archived, capsys):
    _sim, config = archived
    assert cli_main(["find", "--config", str(config.source), "--text", "  ,; "]) == 2
    assert "--text" in capsys.readouterr().err


def test_call_json_reader_takes_the_vendor_record_and_ignores_junk():
    facts = call_facts({"data": [{
        "Direction": "Inbound", "isVoicemail": "YES", "finalStatus": "Completed",
        "metaInfo": {"caller": "+15550100", "callee": "+15550200", "dialedNumber": "+15550200"},
        "sessionStartTime": "2025-02-10 10:00:00", "sessionEndTime": "2025-02-10T10:05:00Z",
        "dispositions": ["Sale"], "dispositionRemarks": ["upsell"],
        "destinations": [{"queueName": "Sales", "respondingAgent": {"agentId": "x1", "name": "Eve", "email": "e@x"}}],
    }]})
    assert facts["direction"] == "Inbound" and facts["voicemail"] == 1 and facts["caller"] == "+15550100"
    assert facts["duration"] == 300.0 and facts["queues"] == ["Sales"] and facts["remarks"] == ["upsell"]
    assert facts["agents"] == [{"name": "Eve", "email": "e@x", "id": "x1"}]
    for junk in (None, {}, {"call": []}, {"call": {"agents": [1, None, {"name": True}], "start": "yesterday",
                                                   "duration": -5, "queues": {"a": 1}}}, {"data": "x" * 10}):
        facts = call_facts(junk)  # type: ignore[arg-type]
        assert "start" not in facts and "duration" not in facts and not facts.get("agents")


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


async def test_export_refuses_a_damaged_file_says_so_in_custody_and_sha256sum_checks(archived, tmp_path, capsys):
    sim, config = archived
    damaged_sid, good_sid = IDS[0], IDS[2]
    directory = session_dir(config.archive.root, config.kore.bot_id, "session", damaged_sid)
    manifest = json.loads((directory / "manifest.json").read_text())
    damaged = next(f for f in manifest["files"] if f["kind"] == "audio")
    flip_a_byte(directory / damaged["path"])
    out = tmp_path / "handover"
    code = cli_main(["export", "--config", str(config.source), "--session", damaged_sid, good_sid, "--to", str(out)])
    assert code == 1
    assert f"refused {damaged_sid}/{damaged['path']}" in capsys.readouterr().out
    custody = json.loads((out / "custody.json").read_text())
    assert custody["result"] == "incomplete" and custody["summary"]["files_refused"] == 1
    import pwd

    assert custody["exported_by"]["user"] == pwd.getpwuid(os.getuid()).pw_name and custody["exported_by"]["host"]
    assert custody["exported_by"]["uid"] == os.getuid()
    [bad] = [f for s in custody["sessions"] for f in s["files"] if f["result"] == "refused"]
    assert bad["path"] == f"{damaged_sid}/{damaged['path']}" and bad["sha256"] == damaged["sha256"]
    assert bad["sha256_read"] != damaged["sha256"] and "damaged" in bad["detail"]
    assert not (out / bad["path"]).exists()
    # Every other file is there, byte for byte as archived, and verified.
    for session in custody["sessions"]:
        source_manifest = json.loads((config.archive.root / session["location"] / "manifest.json").read_text())
        for entry in source_manifest["files"]:
            exported = out / session["folder"] / entry["path"]
            if session["id"] == damaged_sid and entry["path"] == damaged["path"]:
                continue
            assert exported.read_bytes() == (config.archive.root / session["location"] / entry["path"]).read_bytes()
    assert "INCOMPLETE" in (out / "README.txt").read_text() and "sha256sum -c SHA256SUMS" in (out / "README.txt").read_text()
    checked = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = {line.split("  ", 1)[1] for line in (out / "SHA256SUMS").read_text().splitlines()}
    assert "custody.json" in listed and f"{good_sid}/manifest.json" in listed and bad["path"] not in listed
    [logged] = [json.loads(line) for line in (config.daemon.state_dir / "exports.jsonl").read_text().splitlines()]
    assert logged["export_id"] == custody["export_id"] and logged["result"] == "incomplete"
    assert logged["refused"][0]["path"] == bad["path"] and logged["sessions"] == [damaged_sid, good_sid]


async def test_export_by_filters_into_a_zip_checks_with_sha256sum(archived, tmp_path, capsys):
    _sim, config = archived
    target = tmp_path / "out" / "handover.zip"
    target.parent.mkdir()
    assert cli_main(["export", "--config", str(config.source), "--from", "2025-02-11", "--until", "2025-02-11",
                     "--zip", str(target)]) == 0
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(target) as archive:
        archive.extractall(unpacked)
    custody = json.loads((unpacked / "custody.json").read_text())
    assert [s["id"] for s in custody["sessions"]] == IDS[2:4] and custody["result"] == "complete"
    assert custody["selection"]["filters"]["date_from"].startswith("2025-02-11")
    checked = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=unpacked, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [p.name for p in target.parent.iterdir()] == ["handover.zip"]  # no temp file left


async def test_export_refuses_to_overwrite_and_reports_unknown_sessions(archived, tmp_path, capsys):
    _sim, config = archived
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert cli_main(["export", "--config", str(config.source), "--session", IDS[0], "--to", str(busy)]) == 2
    assert (busy / "keep.txt").read_text() == "mine" and len(list(busy.iterdir())) == 1
    assert "not an empty folder" in capsys.readouterr().err
    out = tmp_path / "fresh"
    unknown = "67ab573f3685d1ba9954ffff"
    assert cli_main(["export", "--config", str(config.source), "--session", unknown, IDS[1], "--to", str(out)]) == 1
    custody = json.loads((out / "custody.json").read_text())
    assert custody["summary"]["sessions_not_found"] == [unknown]
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True).returncode == 0


async def test_state_rebuild_after_losing_the_state_dir_then_once_fetches_nothing(tmp_path, simulator):
    sim = await simulator(voicemail_rate=1.0)
    config = make_config(tmp_path, sim, delete__enabled=True)
    ids = [("session", sid) for sid in IDS[:3]]
    assert await run_once(config, ids) == 0
    deleted = [r for r in sim.requests if r.method == "DELETE"]
    assert len(deleted) == 3
    during = catalog_snapshot(config)
    assert all(row["deleted"] == 1 for row in during)
    shutil.rmtree(config.daemon.state_dir)
    assert cli_main(["state", "rebuild", "--config", str(config.source)]) == 0
    assert catalog_snapshot(config) == during
    with JobStore.open_in(config.daemon.state_dir) as store:
        jobs = [store.get(t, e) for t, e in ids]
        assert [(j.state, j.attempts) for j in jobs] == [("done", 0)] * 3
    sim.requests.clear()
    assert await run_once(config, ids) == 0
    assert sim.requests == []  # no API call, no media fetch, no second DELETE
    with JobStore.open_in(config.daemon.state_dir) as store:
        assert [store.get(t, e).attempts for t, e in ids] == [0, 0, 0]  # never even claimed


async def test_rebuild_takes_deletions_the_audit_log_knows_and_a_manifest_lost(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.0)
    config = make_config(tmp_path, sim, delete__enabled=True, delete__audit_log=str(tmp_path / "audit" / "del.jsonl"))
    assert await run_once(config, [("session", IDS[0])]) == 0
    directory = session_dir(config.archive.root, config.kore.bot_id, "session", IDS[0])
    manifest = json.loads((directory / "manifest.json").read_text())
    del manifest["deletion"]  # as if the manifest rewrite had failed after the DELETE
    (directory / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(config.daemon.state_dir)
    result = rebuild(config)
    assert result.deleted_from_log == 1
    [row] = catalog_snapshot(config)
    assert row["deleted"] == 1 and json.loads(row["deletion"])["source"] == "audit_log"


async def test_rebuild_sets_an_unreadable_database_aside_and_refuses_while_the_daemon_runs(archived, capsys):
    _sim, config = archived
    catalog_file = config.daemon.state_dir / "catalog.sqlite3"
    for name in ("catalog.sqlite3-wal", "catalog.sqlite3-shm"):
        (config.daemon.state_dir / name).unlink(missing_ok=True)
    catalog_file.write_bytes(b"this is not a database" * 100)
    result = rebuild(config)
    assert result.sessions == len(IDS) and len(result.set_aside) == 1
    assert result.set_aside[0].read_bytes().startswith(b"this is not a database")  # kept, not deleted
    from archiver.store import StateLock

    lock = StateLock(config.daemon.state_dir)
    lock.acquire()
    try:
        assert cli_main(["state", "rebuild", "--config", str(config.source)]) != 0
        assert "already running" in capsys.readouterr().err
    finally:
        lock.release()


async def test_state_backup_is_a_consistent_copy_while_the_store_is_written(archived, tmp_path, capsys):
    _sim, config = archived
    writer = JobStore.open_in(config.daemon.state_dir)
    try:
        writer._conn.execute("BEGIN IMMEDIATE")  # a write transaction under way in another connection
        writer._conn.execute("UPDATE jobs SET last_error = 'uncommitted'")
        target = tmp_path / "backups" / "state.tar.gz"
        assert cli_main(["state", "backup", "--config", str(config.source), str(target)]) == 0
        writer._conn.execute("ROLLBACK")
    finally:
        writer.close()
    unpacked = tmp_path / "restored"
    with tarfile.open(target) as tar:
        # The "data" filter exists from Python 3.11.4 (and in security releases before it).
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(unpacked, **safe)
    assert {p.name for p in unpacked.iterdir()} >= {"jobs.sqlite3", "catalog.sqlite3", "BACKUP.json"}
    with sqlite3.connect(unpacked / "jobs.sqlite3") as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("SELECT COUNT(*) FROM jobs WHERE state = 'done'").fetchone()[0] == len(IDS)
        assert copy.execute("SELECT COUNT(*) FROM jobs WHERE last_error = 'uncommitted'").fetchone()[0] == 0
    with sqlite3.connect(unpacked / "catalog.sqlite3") as copy:
        assert copy.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == len(IDS)
    assert cli_main(["state", "backup", "--config", str(config.source), str(target)]) == 1  # never overwritten


async def test_rebuild_reports_an_unusable_manifest_and_rebuilds_the_rest(archived, capsys):
    _sim, config = archived
    broken = session_dir(config.archive.root, config.kore.bot_id, "session", IDS[1])
    (broken / "manifest.json").write_text('{"format": 1, "id": "someone-else", "files": []}')
    shutil.rmtree(config.daemon.state_dir)
    assert cli_main(["state", "rebuild", "--config", str(config.source)]) == 1
    out = capsys.readouterr().out
    assert f"skipped {broken.relative_to(config.archive.root).as_posix()}" in out and "someone-else" in out
    assert [row["session_id"] for row in catalog_snapshot(config)] == [s for s in IDS if s != IDS[1]]
    with JobStore.open_in(config.daemon.state_dir) as store:
        assert store.get("session", IDS[1]) is None  # its manifest cannot be trusted: left to the operator


async def test_find_without_a_state_directory_is_one_clear_line(tmp_path, simulator, capsys):
    config = make_config(tmp_path, await simulator())
    assert cli_main(["find", "--config", str(config.source)]) == 2
    err = capsys.readouterr().err
    assert "daemon.state_dir" in err and "no catalog" in err and "state rebuild" in err and "Traceback" not in err
    assert not config.daemon.state_dir.exists()
    config.daemon.state_dir.mkdir()
    assert cli_main(["find", "--config", str(config.source)]) == 2
    assert list(config.daemon.state_dir.iterdir()) == []  # a read-only command creates nothing


async def test_find_reads_the_catalog_without_writing_to_it(archived, capsys):
    _sim, config = archived
    before = (config.daemon.state_dir / "catalog.sqlite3").read_bytes()
    assert find(config, capsys) == IDS
    assert (config.daemon.state_dir / "catalog.sqlite3").read_bytes() == before
    for name in ("catalog.sqlite3-wal", "catalog.sqlite3-shm"):
        (config.daemon.state_dir / name).unlink(missing_ok=True)
    (config.daemon.state_dir / "catalog.sqlite3").write_bytes(b"garbage" * 1000)
    assert cli_main(["find", "--config", str(config.source)]) == 2
    err = capsys.readouterr().err
    assert "cannot be read" in err and "state rebuild" in err and "Traceback" not in err


D0 = datetime(2025, 3, 10, tzinfo=timezone.utc).timestamp()
DAY = 86400.0


def words(value: Any) -> str:
    return json.dumps(value).lower()


async def test_find_returns_exactly_the_sessions_the_simulators_call_details_describe(tmp_path, simulator, capsys):
    """Sessions archived with their call details (call.json written while archiving): each
    filter finds exactly the sessions whose vendor record matches, and the catalog built
    while archiving equals the one rebuilt from the archive."""
    from archiver.simulator.calldetails import call_record

    sim = await simulator(sessions_per_day=8, now=D0 + 3 * DAY, voicemail_rate=0.3, call_details_per_minute=0)
    ids = [r.session_id for r in sim.population(D0, D0 + 3 * DAY - 1) if r.channel == "korevg"]
    config = make_config(tmp_path, sim, kore__account_id="sim-account", call_details__requests_per_minute=100000)
    assert await run_once(config, [("session", sid) for sid in ids]) == 0
    records = {sid: call_record(sim.config, sim.record(sid), sim.session(sid)) for sid in ids}
    during = catalog_snapshot(config)
    assert all(row["call_details"] == 1 for row in during) and len(during) == len(ids)
    for name in ("catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm"):
        (config.daemon.state_dir / name).unlink(missing_ok=True)
    assert cli_main(["state", "rebuild", "--config", str(config.source)]) == 0
    assert catalog_snapshot(config) == during

    def expect(keep) -> list[str]:
        return sorted((sid for sid, r in records.items() if keep(r)), key=lambda s: (sim.record(s).start, s))

    agents = {d["respondingAgent"][k] for r in records.values() for d in r.get("destinations", [])
              if "respondingAgent" in d for k in ("name", "email", "agentId")}
    queues = {d["queueName"] for r in records.values() for d in r.get("destinations", [])}
    dispositions = {x for r in records.values() for x in r.get("dispositions", [])}
    assert agents and queues and dispositions
    for agent in sorted(agents):
        assert find(config, capsys, "--agent", agent.upper()) == expect(
            lambda r: agent.lower() in words([d.get("respondingAgent") for d in r.get("destinations", [])])), agent
    for queue in sorted(queues):
        assert find(config, capsys, "--queue", queue) == expect(
            lambda r: any(queue.lower() in d["queueName"].lower() for d in r.get("destinations", []))), queue
    for disposition in sorted(dispositions):
        assert find(config, capsys, "--disposition", disposition) == expect(
            lambda r: disposition.lower() in words(r.get("dispositions", []) + r.get("dispositionRemarks", []))), disposition
    some_caller = records[ids[4]]["metaInfo"]["caller"]
    assert find(config, capsys, "--caller", some_caller[-7:]) == expect(
        lambda r: some_caller[-7:] in words(r["metaInfo"])), some_caller
    day = datetime.fromtimestamp(D0 + DAY, tz=timezone.utc).strftime("%Y-%m-%d")
    assert find(config, capsys, "--from", day, "--to", day) == expect(lambda r: r["sessionStartTime"].startswith(day))
    assert find(config, capsys, "--from", day, "--to", day)  # not an empty day
    capsys.readouterr()
    assert cli_main(["find", "--config", str(config.source), "--json", "--from", day, "--to", day]) == 0
    for row in json.loads(capsys.readouterr().out):
        record = records[row["session_id"]]
        assert row["started_at"] == record["sessionStartTime"].replace(".000Z", "Z")
        assert row["direction"] == record["Direction"] and row["caller"] == record["metaInfo"]["caller"]
        assert row["voicemail"] == (record["isVoicemail"] == "YES") and row["final_status"] == record["finalStatus"]


async def test_s3_target_catalog_rebuild_and_export_come_from_the_bucket(tmp_path, simulator, moto_endpoint, capsys):
    from .conftest import new_bucket, s3_admin, s3_settings

    sim = await simulator(voicemail_rate=0.5)
    bucket = new_bucket(moto_endpoint)
    config = make_config(tmp_path, sim, kore__fetch_transcripts=True, **s3_settings(tmp_path, moto_endpoint, bucket))
    ids = [("session", sid) for sid in IDS]
    assert await run_once(config, ids) == 0
    during = catalog_snapshot(config)
    assert [row["session_id"] for row in during] == sorted(IDS) and {row["target"] for row in during} == {"s3"}
    assert all(row["text"] for row in during)
    # The state directory (and the spool inside it) is lost: everything comes back from the bucket.
    shutil.rmtree(config.daemon.state_dir)
    assert cli_main(["state", "rebuild", "--config", str(config.source)]) == 0
    assert f"rebuilt from s3://{bucket}/kore/" in capsys.readouterr().out
    assert catalog_snapshot(config) == during
    sim.requests.clear()
    assert await run_once(config, ids) == 0
    assert sim.requests == []
    # Export from the bucket, one object damaged there.
    location = next(row["location"] for row in during if row["session_id"] == IDS[0])
    manifest = json.loads((s3_admin(moto_endpoint).get_object(
        Bucket=bucket, Key=f"kore/{location}/manifest.json")["Body"].read()))
    damaged = next(f for f in manifest["files"] if f["kind"] == "audio")
    key = f"kore/{location}/{damaged['path']}"
    body = bytearray(s3_admin(moto_endpoint).get_object(Bucket=bucket, Key=key)["Body"].read())
    body[0] ^= 0xFF
    s3_admin(moto_endpoint).put_object(Bucket=bucket, Key=key, Body=bytes(body))
    out = tmp_path / "handover"
    assert cli_main(["export", "--config", str(config.source), "--session", IDS[0], IDS[1], "--to", str(out)]) == 1
    custody = json.loads((out / "custody.json").read_text())
    assert custody["source"]["target"] == "s3" and custody["source"]["archive"] == f"s3://{bucket}/kore/"
    [bad] = [f for s in custody["sessions"] for f in s["files"] if f["result"] == "refused"]
    assert bad["path"] == f"{IDS[0]}/{damaged['path']}" and bad["source"] == f"s3://{bucket}/{key}"
    verified = [f for s in custody["sessions"] for f in s["files"] if f["result"] == "verified"]
    assert verified and all(f["source"].startswith(f"s3://{bucket}/kore/") for f in verified)
    checked = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_export_never_follows_a_planted_link_or_a_path_out_of_the_session(archived, tmp_path, capsys):
    _sim, config = archived
    directory = session_dir(config.archive.root, config.kore.bot_id, "session", IDS[0])
    manifest = json.loads((directory / "manifest.json").read_text())
    secret = tmp_path / "secret.txt"
    secret.write_text("not for export")
    audio = next(f for f in manifest["files"] if f["kind"] == "audio")
    # The audio replaced by a link to a file holding the very bytes the manifest expects.
    real = tmp_path / "elsewhere.wav"
    (directory / audio["path"]).rename(real)
    (directory / audio["path"]).symlink_to(real)
    manifest["files"].append({"path": "../../../../../../secret.txt", "size": 14, "sha256": "0" * 64, "kind": "audio"})
    (directory / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "handover"
    assert cli_main(["export", "--config", str(config.source), "--session", IDS[0], "--to", str(out)]) == 1
    custody = json.loads((out / "custody.json").read_text())
    refused = {f["path"]: f["detail"] for s in custody["sessions"] for f in s["files"] if f["result"] == "refused"}
    assert f"{IDS[0]}/{audio['path']}" in refused and "cannot read" in refused[f"{IDS[0]}/{audio['path']}"]
    assert any("leaves the session directory" in d for d in refused.values())
    assert not any(p.is_symlink() for p in out.rglob("*"))
    assert b"not for export" not in b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())


async def test_a_broken_catalog_never_fails_archiving_and_rebuild_mends_it(tmp_path, simulator, capsys):
    sim = await simulator()
    config = make_config(tmp_path, sim)
    state = config.daemon.state_dir
    state.mkdir(parents=True)
    (state / "catalog.sqlite3").mkdir()  # SQLite cannot open a directory
    assert await run_once(config, [("session", IDS[0])]) == 0
    directory = session_dir(config.archive.root, config.kore.bot_id, "session", IDS[0])
    assert (directory / "manifest.json").exists()
    (state / "catalog.sqlite3").rmdir()
    assert rebuild(config).sessions == 1
    assert [row["session_id"] for row in catalog_snapshot(config)] == [IDS[0]]


async def test_export_carries_an_earlier_generation_a_forced_re_archive_could_not_fetch_again(tmp_path, simulator, capsys):
    sim = await simulator(voicemail_rate=0.0)
    config = make_config(tmp_path, sim)
    assert await run_once(config, [("session", IDS[0])]) == 0
    directory = session_dir(config.archive.root, config.kore.bot_id, "session", IDS[0])
    first = json.loads((directory / "manifest.json").read_text())
    audio = [f for f in first["files"] if f["kind"] == "audio"]
    sim._state.delete(IDS[0])  # the vendor's copy expired
    assert cli_main(["enqueue", "--config", str(config.source), "--force", IDS[0]]) == 0
    assert await run_once(config, []) == 0
    [earlier] = json.loads((directory / "manifest.json").read_text())["earlier_generations"]
    out = tmp_path / "handover"
    assert cli_main(["export", "--config", str(config.source), "--session", IDS[0], "--to", str(out)]) == 0
    custody = json.loads((out / "custody.json").read_text())
    assert custody["result"] == "complete"
    for entry in audio:
        exported = out / IDS[0] / earlier["path"] / entry["path"]
        assert exported.read_bytes() == (directory / earlier["path"] / entry["path"]).read_bytes()
        assert hashlib.sha256(exported.read_bytes()).hexdigest() == entry["sha256"]
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True).returncode == 0
    # One byte of the kept generation flipped: refused like any other file.
    flip_a_byte(directory / earlier["path"] / audio[0]["path"])
    again = tmp_path / "again"
    assert cli_main(["export", "--config", str(config.source), "--session", IDS[0], "--to", str(again)]) == 1
    custody = json.loads((again / "custody.json").read_text())
    [bad] = [f for s in custody["sessions"] for f in s["files"] if f["result"] == "refused"]
    assert bad["path"] == f"{IDS[0]}/{earlier['path']}/{audio[0]['path']}"


async def test_a_session_archived_already_is_indexed_again_when_it_comes_back(tmp_path, simulator):
    """The state directory was restored from a backup older than the session: the session,
    queued again, is found archived (nothing fetched) and goes back in the catalog too."""
    sim = await simulator()
    config = make_config(tmp_path, sim)
    assert await run_once(config, [("session", IDS[0])]) == 0
    with Catalog.open_in(config.daemon.state_dir) as catalog, catalog._write() as conn:
        conn.execute("DELETE FROM sessions")
    for name in ("jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm"):
        (config.daemon.state_dir / name).unlink(missing_ok=True)
    assert catalog_snapshot(config) == []
    fetched = len(sim.requests)
    assert await run_once(config, [("session", IDS[0])]) == 0
    assert [row["session_id"] for row in catalog_snapshot(config)] == [IDS[0]]
    assert len(sim.requests) == fetched  # found archived: nothing asked of the vendor


async def test_a_damaged_job_store_is_one_clear_line_then_set_aside_by_rebuild(archived, capsys, monkeypatch):
    """A job store SQLite cannot read (or a directory in its place): every command says so in
    one line naming the file and what to do, exit 2, and leaves it as it is; `state rebuild`
    keeps it aside and queues the archive's sessions as done in a new one."""
    _sim, config = archived
    monkeypatch.setenv("ARCHIVER_KORE_CLIENT_SECRET", SECRET)
    state = config.daemon.state_dir
    for name in ("jobs.sqlite3-wal", "jobs.sqlite3-shm"):
        (state / name).unlink(missing_ok=True)
    damaged = b"this is not a database" * 100
    (state / "jobs.sqlite3").write_bytes(damaged)
    capsys.readouterr()
    for command in (["once"], ["status"], ["enqueue", IDS[0]]):
        # In a thread: `once` runs an event loop of its own.
        assert await asyncio.to_thread(cli_main, [command[0], "--config", str(config.source), *command[1:]]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "please report" not in err
        assert f"{state / 'jobs.sqlite3'} cannot be used" in err and "archiver state rebuild" in err
    assert (state / "jobs.sqlite3").read_bytes() == damaged
    result = rebuild(config)
    assert [p.read_bytes() for p in result.set_aside if p.name.startswith("jobs.sqlite3")] == [damaged]
    with JobStore.open_existing(state) as store:
        assert store.counts()["done"] == len(IDS)
