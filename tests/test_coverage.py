"""archiver coverage and the daily report: the vendor's calls set against the archive."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from archiver.cli import main as cli_main
from archiver.coverage import COVERAGE_DIR, INDEX_FILE
from archiver.service import Service
from archiver.simulator import SessionSpec, Simulator
from archiver.store import JobStore

import pytest

from .conftest import SECRET, wait_for
from .test_call_archive import config_for, discover

DAY = 86400.0
D0 = datetime(2025, 3, 10, tzinfo=timezone.utc).timestamp()
DAY0 = "2025-03-10"
NOW = D0 + 3 * DAY


@pytest.fixture(autouse=True)
def secret_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHIVER_KORE_CLIENT_SECRET", SECRET)


def voice(sim: Simulator, start: float = D0, end: float = D0 + DAY - 1) -> set[str]:
    return {r.session_id for r in sim.population(start, end) if r.channel == "korevg"}


def coverage(config: Any, capsys: Any, *extra: str, last: str = DAY0) -> tuple[int, dict[str, Any]]:
    code = cli_main(["coverage", "--config", config.source, "--from", DAY0, "--to", last, "--json", *extra])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    return code, json.loads(captured.out)


async def test_a_full_run_covers_every_call_of_the_day(simulator, tmp_path: Path, capsys) -> None:
    sim = await simulator(sessions_per_day=80, now=NOW, no_media_rate=0.15, call_details_per_minute=0)
    config = config_for(tmp_path, sim)
    await discover(config, D0, D0 + DAY - 1)
    await Service(config, burst=True).run()
    code, report = await _in_thread(coverage, config, capsys)
    [day] = report["days"]
    counts, sessions = day["counts"], day["sessions"]
    assert code == 0 and report["complete"] is True
    assert counts["missing"] == 0 and counts["failed"] == 0 and counts["pending"] == 0
    assert counts["vendor_known"] == len(voice(sim))
    no_media = {sid for sid in voice(sim) if not sim.session(sid).recordings}
    assert set(sessions["archived_no_media"]) == {sid for sid in no_media if not sim.session(sid).voicemails}
    assert all("media_unavailable" in reason for reason in sessions["archived_no_media"].values())
    assert set(sessions["archived"]) | set(sessions["archived_no_media"]) == voice(sim)


async def test_a_rigged_run_names_exactly_the_sessions_removed_from_the_queue(simulator, tmp_path: Path, capsys) -> None:
    sim = await simulator(sessions_per_day=60, now=NOW, call_details_per_minute=0)
    config = config_for(tmp_path, sim)
    await discover(config, D0, D0 + DAY - 1)
    everything = sorted(voice(sim))
    removed, broken = set(everything[3:8]), everything[10]
    sim.config.sessions[broken] = SessionSpec([], [], [], v2_status="failed")
    conn = sqlite3.connect(config.daemon.state_dir / "jobs.sqlite3")
    conn.executemany("DELETE FROM jobs WHERE ext_id = ?", [(sid,) for sid in removed])
    conn.commit()
    conn.close()
    await Service(config, burst=True).run()
    code, report = await _in_thread(coverage, config, capsys)
    sessions = report["days"][0]["sessions"]
    assert code == 1 and report["complete"] is False
    assert set(sessions["missing"]) == removed
    assert set(sessions["failed"]) == {broken} and "failed" in sessions["failed"][broken]
    # Text output names them too, and says so in its exit code.
    code = await _in_thread(cli_main, ["coverage", "--config", config.source, "--from", DAY0, "--to", DAY0])
    text = capsys.readouterr().out
    assert code == 1 and all(f"missing  {sid}" in text for sid in removed)
    # --enqueue-missing queues exactly those; archived, they leave only the failed one.
    code, report = await _in_thread(coverage, config, capsys, "--enqueue-missing")
    assert report["enqueued"] == len(removed)
    await Service(config, burst=True).run()
    code, report = await _in_thread(coverage, config, capsys)
    assert report["days"][0]["counts"]["missing"] == 0 and set(report["days"][0]["sessions"]["failed"]) == {broken}


async def test_a_call_in_the_days_last_second_counts_once(simulator, tmp_path: Path, capsys) -> None:
    sim = await simulator(sessions_per_day=0, now=NOW, call_details_end_exclusive=True, call_details_per_minute=0)
    config = config_for(tmp_path, sim)
    last, next_day = f"{int(D0 + DAY - 1):08x}{1:016x}", f"{int(D0 + DAY):08x}{2:016x}"
    for sid in (last, next_day):
        sim.config.sessions[sid] = SessionSpec([], [], [])
    code, report = await _in_thread(lambda: coverage(config, capsys, last="2025-03-11"))
    first, second = report["days"]
    assert first["sessions"]["missing"] == [last] and second["sessions"]["missing"] == [next_day]


async def test_the_daemon_writes_the_days_report_into_the_archive(simulator, tmp_path: Path) -> None:
    sim = await simulator(sessions_per_day=40, now=NOW, call_details_per_minute=0)
    config = config_for(tmp_path, sim)
    await discover(config, D0, D0 + DAY - 1)
    with JobStore.open_in(config.daemon.state_dir) as store:
        dropped = next(job.ext_id for job in store.iter_jobs())
    conn = sqlite3.connect(config.daemon.state_dir / "jobs.sqlite3")
    conn.execute("DELETE FROM jobs WHERE ext_id = ?", (dropped,))
    conn.commit()
    conn.close()
    service = Service(config, serve_http=False)
    import asyncio

    task = asyncio.create_task(service.run())
    await asyncio.wait_for(service.ready.wait(), 10)
    await wait_for(lambda: service.store.counts()["pending"] == 0 and service.pool.active == 0, 30, "the queue to drain")
    report = await service.daily_coverage(date(2025, 3, 10))
    service.stop()
    await task
    assert report is not None and report.missing == [dropped]
    assert service.metrics.coverage_missing._value.get() == 1
    directory = config.archive.root / COVERAGE_DIR
    written = (directory / f"{DAY0}.json").read_bytes()
    index = json.loads((directory / INDEX_FILE).read_text())
    entry = index["reports"][DAY0]
    assert entry["sha256"] == hashlib.sha256(written).hexdigest() and entry["size"] == len(written)
    assert entry["missing"] == 1 and json.loads(written)["sessions"]["missing"] == [dropped]
    assert not [p for p in directory.iterdir() if p.name not in {f"{DAY0}.json", INDEX_FILE}]  # no temp left


async def _in_thread(func: Any, *args: Any) -> Any:
    """The CLI runs its own event loop: call it from a thread."""
    import asyncio

    return await asyncio.to_thread(func, *args)
