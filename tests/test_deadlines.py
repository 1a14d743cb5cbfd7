"""Vendor retention deadlines: earliest deadline first, the status projection, sessions at risk."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver import ids
from archiver.cli import main as cli_main
from archiver.layout import session_dir
from archiver.outlook import outlook
from archiver.service import Service
from archiver.store import JobStore

from .conftest import SECRET, make_config, running

DAY = 86400.0


def oid(at: float, n: int) -> str:
    return f"{int(at):08x}{n:016x}"


@pytest.fixture(autouse=True)
def secret_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHIVER_KORE_CLIENT_SECRET", SECRET)


async def test_a_backlog_drains_earliest_deadline_first(simulator, tmp_path: Path) -> None:
    sim = await simulator()
    config = make_config(tmp_path, sim, daemon__concurrency=1, kore__vendor_retention="90d", kore__fetch_voicemail=False)
    now = time.time()
    sessions = [oid(now - d * DAY, d) for d in range(1, 41)]
    shuffled = sessions[:]
    random.Random(3).shuffle(shuffled)
    with JobStore.open_in(config.daemon.state_dir) as store:
        # Queued in an order unrelated to their time, newest ones first of all.
        store.enqueue([(ids.SESSION, sid) for sid in sorted(shuffled, reverse=True)[:10]], now=now - 60)
        store.enqueue([(ids.SESSION, sid) for sid in shuffled], now=now - 30)
    stats = await Service(config, burst=True).run()
    assert stats.done == 40
    asked = [r.query["sessionId"] for r in sim.requests if r.path.endswith("/v2/recordings")]
    # The oldest session (the earliest deadline) first, whatever the queue order.
    assert asked == sorted(sessions, key=lambda s: int(s[:8], 16))


def status_json(config: Any, capsys: Any) -> dict[str, Any]:
    assert cli_main(["status", "--config", config.source, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


async def test_status_projects_the_backlog_against_the_deadlines(simulator, tmp_path: Path, capsys) -> None:
    sim = await simulator()
    # 60 calls a minute, 2 calls a session (estimated): one session every 2 s.
    config = make_config(tmp_path, sim, kore__vendor_retention="90d", kore__requests_per_minute=60)
    now = time.time()
    retention = 90 * DAY
    # 100 sessions whose deadline is 100-101 s away, behind one already past its deadline: the
    # k-th job of the backlog is done after 2k s, so jobs 51..101 would be archived too late.
    soon = [oid(now - retention + 101, n) for n in range(100)]
    gone = oid(now - retention - DAY, 999)  # queued after its deadline: tried anyway
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([(ids.SESSION, sid) for sid in [*soon, gone]], now=now)
        ahead = outlook(config, store, now)
    assert ahead.backlog == 101 and ahead.calls_per_session == 2.0 and not ahead.measured
    assert ahead.past_deadline == 1 and ahead.at_risk == 1 + 51
    assert ahead.earliest_deadline == pytest.approx(int(now - retention - DAY) + retention)
    assert ahead.drains_before_earliest_deadline is False
    data = status_json(config, capsys)
    assert data["deadlines"]["at_risk"] in (52, 53) and data["deadlines"]["past_deadline"] == 1
    assert data["deadlines"]["drains_before_earliest_deadline"] is False
    assert cli_main(["status", "--config", config.source]) == 0
    text = capsys.readouterr().out
    assert "earliest vendor deadline" in text and "does NOT drain before it" in text
    # The daemon's metric and warning: at risk above zero.
    service = Service(config, serve_http=False)
    service.store = JobStore.open_in(config.daemon.state_dir)
    try:
        found = await service.refresh_outlook(force=True)
    finally:
        service.store.close()
    assert found is not None and found.at_risk >= 52
    assert service.metrics.sessions_at_risk._value.get() == found.at_risk


async def test_without_a_retention_there_are_no_deadlines(simulator, tmp_path: Path, capsys) -> None:
    sim = await simulator()
    config = make_config(tmp_path, sim)
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([(ids.SESSION, oid(1_600_000_000, 1))])
    deadlines = status_json(config, capsys)["deadlines"]
    assert deadlines["earliest_deadline"] is None and deadlines["at_risk"] == 0


async def test_a_session_past_its_deadline_is_archived_and_marked(simulator, tmp_path: Path, capsys) -> None:
    sim = await simulator(sessions_per_day=0)
    config = make_config(
        tmp_path, sim, kore__vendor_retention="30d", kore__account_id="sim-account",
        call_details__requests_per_minute=100000,
    )
    old = oid(time.time() - 40 * DAY, 5)
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([(ids.SESSION, old)])
    stats = await Service(config, burst=True).run()
    assert stats.done == 1
    directory = session_dir(config.archive.root, config.kore.bot_id, "session", old)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["parts"]["call"]["past_vendor_deadline"] is True
    assert manifest["vendor_deadline"]["archived_after"] is True
    assert any(f["kind"] == "audio" for f in manifest["files"])
    # The calls it cost are counted for "API calls per archived session".
    assert status_json(config, capsys)["api_calls_per_archived_session"] > 0


def test_a_version_1_store_gets_session_times(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, id_type TEXT NOT NULL, ext_id TEXT NOT NULL,"
        " wants TEXT NOT NULL DEFAULT '', parts_done TEXT NOT NULL DEFAULT '', state TEXT NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL, last_error TEXT, created_at REAL NOT NULL,"
        " updated_at REAL NOT NULL, first_deferred_at REAL, force INTEGER NOT NULL DEFAULT 0, UNIQUE (ext_id, id_type));"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
        f"INSERT INTO jobs (id_type, ext_id, state, not_before, created_at, updated_at) VALUES"
        f" ('session', '{oid(2000, 1)}', 'pending', 1, 5000, 5000),"
        f" ('session', '{oid(1000, 2)}', 'pending', 2, 5000, 5000),"
        " ('user', 'someone@example.com', 'pending', 0, 7000, 7000);"
        "PRAGMA user_version=1;"
    )
    conn.close()
    with JobStore(path) as store:
        jobs = store.claim(3, now=10_000)
    assert [(j.ext_id, j.session_at) for j in jobs] == [
        (oid(1000, 2), 1000.0), (oid(2000, 1), 2000.0), ("someone@example.com", 7000.0),
    ]


async def test_without_call_details_the_manifest_still_says_it_came_after_the_deadline(simulator, tmp_path: Path) -> None:
    sim = await simulator()
    config = make_config(tmp_path, sim, kore__vendor_retention="30d")
    old, recent = oid(time.time() - 40 * DAY, 6), oid(time.time() - 2 * DAY, 7)
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([(ids.SESSION, old), (ids.SESSION, recent)])
    assert (await Service(config, burst=True).run()).done == 2
    for sid, late in ((old, True), (recent, False)):
        directory = session_dir(config.archive.root, config.kore.bot_id, "session", sid)
        manifest = json.loads((directory / "manifest.json").read_text())
        assert manifest["vendor_deadline"]["archived_after"] is late and "call" not in manifest["parts"]


async def test_the_daemon_reports_sessions_at_risk_from_its_start(simulator, tmp_path: Path) -> None:
    sim = await simulator()
    config = make_config(tmp_path, sim, kore__vendor_retention="90d", kore__requests_per_minute=60)
    now = time.time()
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([(ids.SESSION, oid(now - 90 * DAY + 101, n)) for n in range(100)], now=now)
    async with running(config, serve_http=False) as service:
        at_risk = service.metrics.sessions_at_risk._value.get()
    assert 45 <= at_risk <= 51
    assert b"archiver_sessions_at_risk" in service.metrics.render()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ages=st.lists(st.floats(min_value=0, max_value=120), min_size=0, max_size=60),
    step=st.floats(min_value=0.01, max_value=5.0),
    retention=st.floats(min_value=1.0, max_value=150.0),
)
def test_the_at_risk_count_reads_only_what_can_miss_and_matches_the_whole_projection(
    tmp_path_factory, ages, step, retention
) -> None:
    """The store counts, in SQL over the jobs whose deadline comes before the backlog could
    drain, what walking the whole backlog in deadline order counts (the way it was done)."""
    now = 2_000_000_000.0
    with JobStore.open_in(tmp_path_factory.mktemp("s")) as store:
        store.enqueue([(ids.USER, f"user-{n}") for n in range(len(ages))], now=now)
        with store._write() as conn:  # each job's session time, minutes apart, some tied
            conn.executemany("UPDATE jobs SET session_at = ? WHERE ext_id = ?",
                             [(now - round(age), f"user-{n}") for n, age in enumerate(ages)])
        backlog, first = store.backlog()
        assert backlog == len(ages)
        times = sorted(now - round(age) for age in ages)
        assert first == (times[0] if times else None)
        want_late = sum(1 for rank, at in enumerate(times, 1) if at + retention < now + rank * step)
        want_past = sum(1 for at in times if at + retention < now)
        assert store.at_risk(retention, now, step, backlog) == (want_late, want_past)
