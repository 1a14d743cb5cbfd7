"""The job store: states, idempotent enqueue, claiming, crash recovery, operator commands."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from archiver import ids
from archiver.errors import UnsafeInputError
from archiver.store import (
    CLAIM_SQL,
    COUNTS_SQL,
    DEFERRED,
    DONE,
    FAILED,
    NEXT_DUE_SQL,
    OLDEST_PENDING_SQL,
    PENDING,
    RECENT_ERRORS_SQL,
    RUNNING,
    SCHEMA_VERSION,
    STATES,
    JobStore,
)

T0 = 1_700_000_000.0
REPO = Path(__file__).resolve().parents[1]


def sid(n: int) -> str:
    return f"{n:024x}"


def sessions(*numbers: int) -> list[tuple[str, str]]:
    return [(ids.SESSION, sid(n)) for n in numbers]


@pytest.fixture
def store(tmp_path: Path):
    with JobStore.open_in(tmp_path / "state") as s:
        yield s


def state_of(store: JobStore, n: int) -> str:
    job = store.get(ids.SESSION, sid(n))
    assert job is not None
    return job.state


def claim_one(store: JobStore, n: int, now: float = T0):
    """Claim the job of session n (it must be the only due one)."""
    [job] = store.claim(1, now=now)
    assert job.ext_id == sid(n)
    return job


# -- opening ----------------------------------------------------------------------------------


def test_open_creates_state_dir_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "jobs.sqlite3"
    JobStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_rows_survive_reopen(tmp_path: Path) -> None:
    with JobStore.open_in(tmp_path) as s:
        s.enqueue(sessions(1, 2), now=T0)
        s.set_meta("watermark", "42")
    with JobStore.open_in(tmp_path) as s:
        assert s.counts()[PENDING] == 2
        assert s.get_meta("watermark") == "42"
        assert s.integrity_check() == "ok"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    JobStore.open_in(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "jobs.sqlite3")
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(Exception, match="schema version 99"):
        JobStore.open_in(tmp_path)


# -- enqueue ----------------------------------------------------------------------------------


def test_enqueue_new_rows_are_pending_and_due(store: JobStore) -> None:
    result = store.enqueue(sessions(1, 2) + [(ids.USER, "agent@example.com")], now=T0)
    assert (result.added, result.requeued, result.skipped) == (3, 0, 0)
    job = store.get(ids.SESSION, sid(1))
    assert job is not None
    assert (job.state, job.attempts, job.not_before, job.created_at, job.force) == (PENDING, 0, T0, T0, False)
    assert store.get(ids.USER, "agent@example.com") is not None
    assert store.get(ids.SESSION, "agent@example.com") is None


def test_enqueue_is_idempotent(store: JobStore) -> None:
    store.enqueue(sessions(1, 2), now=T0)
    result = store.enqueue(sessions(1, 2, 2, 3), now=T0 + 5)
    assert (result.added, result.requeued, result.skipped) == (1, 0, 3)
    assert store.counts()[PENDING] == 3
    assert store.get(ids.SESSION, sid(1)).created_at == T0  # type: ignore[union-attr]


def test_done_session_is_not_fetched_again_unless_forced(store: JobStore) -> None:
    store.enqueue(sessions(1), now=T0)
    job = claim_one(store, 1)
    store.complete(job.id)

    assert store.enqueue(sessions(1)).skipped == 1
    assert state_of(store, 1) == DONE

    result = store.enqueue(sessions(1), force=True, now=T0 + 10)
    assert (result.added, result.requeued, result.skipped) == (0, 1, 0)
    job = store.get(ids.SESSION, sid(1))
    assert job is not None
    assert (job.state, job.attempts, job.not_before, job.force) == (PENDING, 0, T0 + 10, True)

    job = claim_one(store, 1, now=T0 + 10)
    assert job.force  # the worker archives it again, replacing what is on disk
    store.complete(job.id)
    assert store.get_job(job.id).force is False  # type: ignore[union-attr]


def test_force_marks_pending_rows_and_keeps_the_request_of_running_ones(store: JobStore) -> None:
    store.enqueue(sessions(1, 2), now=T0)
    [running] = store.claim(1, now=T0)
    result = store.enqueue(sessions(1, 2, 3), force=True, now=T0 + 1)
    # The running job keeps the request (requeued): it starts over, forced, once it ends.
    assert (result.added, result.requeued, result.skipped) == (1, 1, 1)
    running_now = store.get_job(running.id)
    assert running_now is not None and (running_now.state, running_now.force) == (RUNNING, True)
    pending = store.get(ids.SESSION, sid(2))
    assert pending is not None and (pending.state, pending.not_before, pending.force) == (PENDING, T0, True)
    assert store.get(ids.SESSION, sid(3)).force is True  # type: ignore[union-attr]


def test_requeue_failed_puts_back_only_failed_rows(store: JobStore) -> None:
    store.enqueue(sessions(1, 2), now=T0)
    for job in store.claim(2, now=T0):
        store.fail(job.id, "boom") if job.ext_id == sid(1) else store.complete(job.id)
    assert store.enqueue(sessions(1, 2)).requeued == 0
    result = store.enqueue(sessions(1, 2), requeue_failed=True, now=T0 + 3)
    assert (result.requeued, result.skipped) == (1, 1)
    job = store.get(ids.SESSION, sid(1))
    assert job is not None
    assert (job.state, job.attempts, job.force) == (PENDING, 0, False)
    assert state_of(store, 2) == DONE


def test_enqueue_commits_each_batch_while_reading_lazily(store: JobStore, tmp_path: Path) -> None:
    seen_by_other_connection: list[int] = []

    def items():
        for n in range(25):
            if n in (10, 20):
                # By the time item n is read, the batches before it are committed: another
                # connection (as the CLI would have) sees them.
                with JobStore.open_in(tmp_path / "state") as other:
                    seen_by_other_connection.append(other.counts()[PENDING])
            yield ids.SESSION, sid(n)

    result = store.enqueue(items(), batch=10)
    assert result.added == 25
    assert seen_by_other_connection == [10, 20]


def test_invalid_id_stops_before_its_batch_is_written(store: JobStore) -> None:
    items = sessions(*range(10)) + [(ids.SESSION, "../etc/passwd")] + sessions(11)
    with pytest.raises(UnsafeInputError):
        store.enqueue(items, batch=5)
    assert store.counts()[PENDING] == 10


@pytest.mark.parametrize(
    "items, kwargs, error",
    [
        ([("bogus", "abc")], {}, ValueError),
        ([(ids.USER, "a..b")], {}, UnsafeInputError),
        (sessions(1), {"batch": 0}, ValueError),
    ],
)
def test_enqueue_rejects_bad_input(store: JobStore, items, kwargs, error) -> None:
    with pytest.raises(error):
        store.enqueue(items, **kwargs)
    assert store.status().total == 0


# -- claiming and transitions --------------------------------------------------------------


def test_claim_takes_due_jobs_oldest_first(store: JobStore) -> None:
    store.enqueue(sessions(1), now=T0 + 2)
    store.enqueue(sessions(2), now=T0 + 1)
    store.enqueue(sessions(3), now=T0 + 100)  # not due yet
    jobs = store.claim(10, now=T0 + 5)
    assert [j.ext_id for j in jobs] == [sid(2), sid(1)]
    assert all(j.state == RUNNING and j.attempts == 1 and j.updated_at == T0 + 5 for j in jobs)
    assert store.get_job(jobs[0].id) == jobs[0]
    assert store.claim(10, now=T0 + 5) == []
    assert [j.ext_id for j in store.claim(10, now=T0 + 100)] == [sid(3)]


def test_claim_respects_limit(store: JobStore) -> None:
    store.enqueue(sessions(*range(5)), now=T0)
    assert len(store.claim(2, now=T0)) == 2
    assert store.counts() == {PENDING: 3, RUNNING: 2, DONE: 0, DEFERRED: 0, FAILED: 0}


def test_defer_then_due_again(store: JobStore) -> None:
    store.enqueue(sessions(1), now=T0)
    job = claim_one(store, 1)
    store.defer(job.id, T0 + 600, "media_in_progress", now=T0 + 1)
    assert store.claim(1, now=T0 + 599) == []
    assert store.next_due() == T0 + 600
    job = claim_one(store, 1, now=T0 + 600)
    assert job.attempts == 2 and job.first_deferred_at == T0 + 1
    store.defer(job.id, T0 + 1200, "still in progress", now=T0 + 601)
    job = store.get_job(job.id)
    assert job is not None
    assert (job.state, job.first_deferred_at, job.last_error) == (DEFERRED, T0 + 1, "still in progress")


def test_retry_later_release_fail_complete(store: JobStore) -> None:
    store.enqueue(sessions(1), now=T0)
    job = claim_one(store, 1)
    store.retry_later(job.id, T0 + 30, "timeout", now=T0 + 1)
    job = store.get_job(job.id)
    assert job is not None
    assert (job.state, job.not_before, job.last_error, job.attempts) == (PENDING, T0 + 30, "timeout", 1)

    job = claim_one(store, 1, now=T0 + 30)
    assert job.attempts == 2
    store.release(job.id)
    released = store.get_job(job.id)
    assert released is not None
    assert (released.state, released.attempts, released.not_before) == (PENDING, 1, T0 + 30)

    job = claim_one(store, 1, now=T0 + 30)
    store.fail(job.id, "403 forever")
    assert state_of(store, 1) == FAILED

    store.retry(failed=True, now=T0 + 40)
    job = claim_one(store, 1, now=T0 + 40)
    store.complete(job.id)
    done = store.get_job(job.id)
    assert done is not None
    assert (done.state, done.last_error) == (DONE, None)


@pytest.mark.parametrize("call", ["complete", "release", "fail", "defer", "retry_later"])
def test_transitions_on_unknown_job_raise(store: JobStore, call: str) -> None:
    args = {
        "complete": (),
        "release": (),
        "fail": ("x",),
        "defer": (T0, "x"),
        "retry_later": (T0, "x"),
    }[call]
    with pytest.raises(KeyError):
        getattr(store, call)(12345, *args)


def test_recover_running_after_crash(tmp_path: Path) -> None:
    crashed = JobStore.open_in(tmp_path)
    crashed.enqueue(sessions(1, 2, 3), now=T0)
    crashed.claim(2, now=T0)
    crashed.close()  # the daemon died with two jobs running

    with JobStore.open_in(tmp_path) as restarted:
        assert restarted.recover_running() == 2
        assert restarted.counts()[PENDING] == 3
        jobs = restarted.claim(3, now=T0)
        # The interrupted attempt counts, so a job that kills the daemon cannot loop forever.
        assert sorted(j.attempts for j in jobs) == [1, 2, 2]


def test_concurrent_claims_never_share_a_job(tmp_path: Path) -> None:
    with JobStore.open_in(tmp_path) as s:
        s.enqueue(sessions(*range(400)), now=T0)
    claimed: list[list[int]] = []
    shared = JobStore.open_in(tmp_path)

    def worker(own_connection: bool) -> None:
        store = JobStore.open_in(tmp_path) if own_connection else shared
        mine = []
        while jobs := store.claim(3, now=T0):
            mine.extend(j.id for j in jobs)
        claimed.append(mine)
        if own_connection:
            store.close()

    threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    shared.close()
    everything = [i for mine in claimed for i in mine]
    assert len(everything) == 400 and len(set(everything)) == 400


# -- operator commands -------------------------------------------------------------------


def make_mixed(store: JobStore) -> None:
    """Sessions 1-2 failed, 3 deferred, 4 done, 5 running, 6 pending."""
    store.enqueue(sessions(1, 2, 3, 4, 5, 6), now=T0)
    jobs = {int(j.ext_id, 16): j for j in store.claim(5, now=T0)}
    store.fail(jobs[1].id, "e1", now=T0 + 1)
    store.fail(jobs[2].id, "e2", now=T0 + 2)
    store.defer(jobs[3].id, T0 + 999, "not ready", now=T0 + 3)
    store.complete(jobs[4].id, now=T0 + 4)


def test_retry_failed(store: JobStore) -> None:
    make_mixed(store)
    assert store.retry(failed=True, now=T0 + 10) == 2
    job = store.get(ids.SESSION, sid(1))
    assert job is not None
    assert (job.state, job.attempts, job.not_before) == (PENDING, 0, T0 + 10)
    assert [state_of(store, n) for n in (3, 4, 5)] == [DEFERRED, DONE, RUNNING]


def test_retry_deferred(store: JobStore) -> None:
    make_mixed(store)
    assert store.retry(deferred=True, now=T0 + 10) == 1
    job = store.get(ids.SESSION, sid(3))
    assert job is not None
    assert (job.state, job.not_before, job.first_deferred_at) == (PENDING, T0 + 10, None)


def test_retry_by_id_leaves_done_and_running(store: JobStore) -> None:
    make_mixed(store)
    assert store.retry(ext_ids=[sid(n) for n in (2, 3, 4, 5, 6, 99)], now=T0 + 10) == 3
    assert [state_of(store, n) for n in range(1, 7)] == [FAILED, PENDING, PENDING, DONE, RUNNING, PENDING]


def test_retry_many_in_chunks(store: JobStore) -> None:
    store.enqueue(sessions(*range(25_000)), now=T0)
    while jobs := store.claim(5000, now=T0):
        for job in jobs:
            store.fail(job.id, "x")
    assert store.retry(failed=True, now=T0) == 25_000
    assert store.retry(ext_ids=[sid(n) for n in range(1200)], now=T0) == 1200
    assert store.counts()[PENDING] == 25_000


def test_counts_status_and_next_due(store: JobStore) -> None:
    assert store.counts() == dict.fromkeys(STATES, 0)
    assert store.next_due() is None
    assert store.status().oldest_pending_at is None
    make_mixed(store)
    status = store.status(recent=2)
    assert status.counts == {PENDING: 1, RUNNING: 1, DONE: 1, DEFERRED: 1, FAILED: 2}
    assert status.total == 6
    assert status.oldest_pending_at == T0
    assert [(e.ext_id, e.state, e.last_error) for e in status.recent_errors] == [
        (sid(3), DEFERRED, "not ready"),
        (sid(2), FAILED, "e2"),
    ]
    json.dumps(status.as_dict())
    assert store.next_due() == T0  # session 6, pending since T0


def test_iter_jobs_streams_in_pages(store: JobStore) -> None:
    make_mixed(store)
    assert [int(j.ext_id, 16) for j in store.iter_jobs(page=2)] == [1, 2, 3, 4, 5, 6]
    assert [int(j.ext_id, 16) for j in store.iter_jobs(FAILED, page=1)] == [1, 2]
    assert next(iter(store.iter_jobs(DONE))).state == DONE


def test_meta(store: JobStore) -> None:
    assert store.get_meta("discovery.watermark") is None
    store.set_meta("discovery.watermark", "1")
    store.set_meta("discovery.watermark", "2")
    assert store.get_meta("discovery.watermark") == "2"


def test_cli_process_reads_and_writes_while_daemon_holds_the_store(store: JobStore, tmp_path: Path) -> None:
    store.enqueue(sessions(1, 2), now=T0)
    [job] = store.claim(1, now=T0)
    script = (
        "import json, sys\n"
        "from archiver.store import JobStore\n"
        "from archiver import ids\n"
        "s = JobStore.open_in(sys.argv[1], busy_timeout=5)\n"
        "r = s.enqueue([(ids.SESSION, 'c' * 24)])\n"
        "print(json.dumps({'added': r.added, 'counts': s.counts()}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=True,
    )
    answer = json.loads(done.stdout)
    assert answer == {"added": 1, "counts": {PENDING: 2, RUNNING: 1, DONE: 0, DEFERRED: 0, FAILED: 0}}
    store.complete(job.id)
    assert store.counts() == {PENDING: 2, RUNNING: 0, DONE: 1, DEFERRED: 0, FAILED: 0}


def test_whole_queue_queries_use_indexes(store: JobStore, tmp_path: Path) -> None:
    store.enqueue(sessions(*range(50_000)), now=T0)
    for job in store.claim(500, now=T0):
        store.fail(job.id, "x")
    conn = sqlite3.connect(tmp_path / "state" / "jobs.sqlite3")

    def plan(sql: str, *params: object) -> str:
        return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))

    assert "COVERING INDEX jobs_state" in plan(COUNTS_SQL)
    assert "COVERING INDEX jobs_state (state=?)" in plan(OLDEST_PENDING_SQL)
    assert "INDEX jobs_errors" in plan(RECENT_ERRORS_SQL, 10)
    claim_plan = plan(CLAIM_SQL, T0, 4)
    assert "INDEX jobs_deadline" in claim_plan and "TEMP B-TREE" not in claim_plan
    assert "INDEX jobs_due" in plan(NEXT_DUE_SQL)
    conn.close()


@pytest.mark.parametrize("end", ["complete", "fail", "defer", "retry_later", "release"])
def test_force_asked_while_running_is_honoured_when_the_attempt_ends(store: JobStore, end: str) -> None:
    """Regression: ``enqueue --force`` on a running job was answered "already known" and dropped."""
    store.enqueue(sessions(1), now=T0)
    [running] = store.claim(1, now=T0)
    store.enqueue(sessions(1), force=True, now=T0 + 1)
    finish = {
        "complete": lambda: store.complete(running.id, now=T0 + 2),
        "fail": lambda: store.fail(running.id, "boom", now=T0 + 2),
        "defer": lambda: store.defer(running.id, T0 + 999, "not ready", now=T0 + 2),
        "retry_later": lambda: store.retry_later(running.id, T0 + 999, "reset", now=T0 + 2),
        "release": lambda: store.release(running.id, now=T0 + 2),
    }[end]
    finish()
    job = store.get_job(running.id)
    assert job is not None and (job.state, job.force, job.not_before) == (PENDING, True, T0 + 2)
    [again] = store.claim(1, now=T0 + 2)
    assert again.force is True
    store.complete(again.id, now=T0 + 3)
    done = store.get_job(again.id)
    assert done is not None and (done.state, done.force) == (DONE, False)  # honoured once, not forever


def test_a_schema_2_store_loses_the_unused_part_columns_and_keeps_its_jobs(tmp_path: Path) -> None:
    """``wants`` and ``parts_done`` were never filled or read: schema 3 drops them, jobs kept."""
    import sqlite3

    path = tmp_path / "state"
    with JobStore.open_in(path) as store:
        store.enqueue(sessions(1, 2), now=T0)
    conn = sqlite3.connect(path / "jobs.sqlite3")
    conn.execute("ALTER TABLE jobs ADD COLUMN wants TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE jobs ADD COLUMN parts_done TEXT NOT NULL DEFAULT 'recordings'")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    with JobStore.open_in(path) as store:
        assert store.counts()[PENDING] == 2
        assert claim_one(store, 1).ext_id == sid(1)
    conn = sqlite3.connect(path / "jobs.sqlite3")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    assert not {"wants", "parts_done"} & columns and version == 3


# -- calls from async code ----------------------------------------------------------------------


async def test_store_calls_from_tasks_run_off_the_loop_in_order_and_answer_together(store: JobStore) -> None:
    """Calls made while the store's thread is busy wait for it, then run in the order they
    were made, in one batch whose answers reach the loop together."""
    release = threading.Event()
    ran: list[tuple[int, str]] = []

    def call(n: int) -> int:
        if n == 0:
            release.wait(10)
        ran.append((n, threading.current_thread().name))
        return n * n

    first = store.soon(call, 0)
    queued = [store.soon(call, n) for n in range(1, 51)]
    release.set()
    assert await first == 0
    done, _ = await asyncio.wait(queued, return_when=asyncio.FIRST_COMPLETED)
    assert all(f.done() for f in queued), "the calls queued behind a busy thread came back in one batch"
    assert [f.result() for f in queued] == [n * n for n in range(1, 51)]
    assert [n for n, _ in ran] == list(range(51))
    assert {name for _, name in ran} == {"store-calls"}  # never the loop's thread


async def test_a_failing_store_call_raises_in_its_caller_only(store: JobStore) -> None:
    store.enqueue(sessions(1))
    [job] = store.claim(1)
    failing = store.soon(store.complete, 999_999)  # no such job
    fine = store.soon(store.complete, job.id)
    with pytest.raises(KeyError):
        await failing
    await fine
    assert state_of(store, 1) == DONE


async def test_close_makes_the_calls_already_handed_to_the_store(tmp_path: Path) -> None:
    """A completion handed over and not awaited (the worker awaits it with its next claim)
    is written before the store closes, even when nobody awaits it at all."""
    with JobStore.open_in(tmp_path / "state") as store:
        store.enqueue(sessions(1, 2))
        jobs = store.claim(2)
        for job in jobs:
            store.soon(store.complete, job.id)
        await store.calls_done()
        assert store.counts()[DONE] == 2
        late = store.soon(store.fail, jobs[0].id, "x")  # closed before the loop sees its answer
    with JobStore.open_in(tmp_path / "state") as reopened:
        assert state_of(reopened, 1) == FAILED
    assert not late.done() or late.exception() is None
