"""The completeness features wired into the daemon and the CLI."""

from __future__ import annotations

import asyncio
import json

from archiver.cli import main as cli_main
from archiver.layout import session_dir
from archiver.service import Service
from archiver.store import JobStore

from .conftest import make_config

IDS = [f"6914a3c0aa01bb02cc04{n:04x}" for n in range(4)]


async def test_daemon_deletes_from_source_only_after_archiving(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.0)
    config = make_config(tmp_path, sim, delete__enabled=True)
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", s) for s in IDS])
    stats = await Service(config, burst=True).run()
    assert stats.done == len(IDS)
    assert sim.stats.deleted == set(IDS)
    for sid in IDS:
        manifest = json.loads((session_dir(config.archive.root, config.kore.bot_id, "session", sid) / "manifest.json").read_text())
        assert manifest["deletion"]["result"] == "deleted"
    audit = (config.daemon.state_dir / "deletions.jsonl").read_text().splitlines()
    answers = [json.loads(line) for line in audit if json.loads(line)["state"] != "pending"]  # each after its intent
    assert sorted(line["session_id"] for line in answers) == sorted(IDS)
    # A forced re-archive of a session deleted at the vendor is refused, not emptied.
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", IDS[0])], force=True)
    stats = await Service(config, burst=True).run()
    assert stats.failed == 1 and "deleted" in stats.failures[0][1]


async def test_verify_command_finds_damage_and_requeues(tmp_path, simulator, capsys):
    sim = await simulator(voicemail_rate=0.0)
    config = make_config(tmp_path, sim)
    cfg = str(tmp_path / "archiver.toml")
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", s) for s in IDS])
    await Service(config, burst=True).run()
    assert await asyncio.to_thread(cli_main, ["verify", "--config", cfg]) == 0
    audio = next((session_dir(config.archive.root, config.kore.bot_id, "session", IDS[1]) / "recordings").glob("*.wav"))
    data = bytearray(audio.read_bytes())
    data[100] ^= 0xFF
    audio.write_bytes(bytes(data))
    capsys.readouterr()
    assert await asyncio.to_thread(cli_main, ["verify", "--config", cfg, "--requeue"]) == 1
    assert "sha256 mismatch" in capsys.readouterr().out
    with JobStore.open_in(config.daemon.state_dir) as store:
        assert store.get("session", IDS[1]).state == "pending"
        assert store.get("session", IDS[0]).state == "done"
    await Service(config, burst=True).run()
    assert await asyncio.to_thread(cli_main, ["verify", "--config", cfg, "--session", IDS[1]]) == 0
    assert await asyncio.to_thread(cli_main, ["verify", "--config", cfg, "--session", "../x"]) == 2


async def test_daemon_discovers_sessions_and_archives_them_with_transcripts(tmp_path, simulator):
    import time

    from archiver.layout import session_dir as sdir

    sim = await simulator(sessions_per_day=24, voicemail_rate=0.0, analytics_per_minute=0, analytics_per_hour=0)
    config = make_config(
        tmp_path, sim, discovery__enabled=True, discovery__lookback="1d", kore__fetch_transcripts=True,
        analytics__requests_per_minute=10_000, analytics__requests_per_hour=100_000,
    )
    now = time.time()
    voice = sorted(r.session_id for r in sim.population(now - 86400, now) if r.channel == "korevg" and r.visible_at <= now)
    assert voice
    service = Service(config)
    task = asyncio.create_task(service.run())
    from .conftest import wait_for

    await wait_for(lambda: _done(config) >= len(voice), timeout=30, what="discovered sessions archived")
    service.stop()
    await task
    with JobStore.open_in(config.daemon.state_dir) as store:
        queued = sorted(job.ext_id for job in store.iter_jobs())
    assert queued == voice  # voice sessions only, each once
    for sid in voice:
        transcript = json.loads((sdir(config.archive.root, config.kore.bot_id, "session", sid) / "transcript.json").read_text())
        expected = sorted(m["_id"] for m in sim.messages(sid))
        assert sorted(m["_id"] for m in transcript["messages"]) == expected
        assert len(transcript["text"].splitlines()) == len(expected)


def _done(config) -> int:
    with JobStore.open_in(config.daemon.state_dir) as store:
        return store.counts().get("done", 0)


async def test_backfill_command_queues_a_past_range_once(tmp_path, simulator, capsys):
    from datetime import datetime, timezone

    from archiver.cli import run_backfill

    sim = await simulator(sessions_per_day=6, analytics_per_minute=0, analytics_per_hour=0)
    config = make_config(tmp_path, sim, discovery__page_size=4, analytics__requests_per_minute=10_000,
                         analytics__requests_per_hour=100_000)
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    end = datetime(2026, 10, 20, 23, 59, 59, tzinfo=timezone.utc)
    voice = {r.session_id for r in sim.population(start.timestamp(), end.timestamp()) if r.channel == "korevg"}
    assert await run_backfill(config, start, end) == 0
    assert await run_backfill(config, start, end) == 0
    with JobStore.open_in(config.daemon.state_dir) as store:
        assert {job.ext_id for job in store.iter_jobs()} == voice
    out = capsys.readouterr().out
    assert f"{len(voice)} queued" in out and f"{len(voice)} already known" in out
