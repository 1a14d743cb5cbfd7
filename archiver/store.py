"""The durable job queue: one SQLite row per session (or user) to archive.

The store is a single file, ``<state_dir>/jobs.sqlite3``, in WAL mode so that the operator's
commands (``archiver status``, ``enqueue``, ``retry``) can read and write it while the daemon
runs. Every write is one short ``BEGIN IMMEDIATE`` transaction; readers never block writers.

A job moves through these states::

    enqueue ──> pending ──claim──> running ──complete──> done
                 ^  ^                 │
                 │  ├── retry_later ──┤  transient error: due again later
                 │  └── release ──────┤  shutdown: the attempt does not count
                 │                    ├── defer ──> deferred ──(due)──> claimed again
                 │                    └── fail ───> failed
                 └── recover_running (at start), retry, enqueue(force=True)

Memory does not depend on the queue length: ``enqueue`` consumes its input in batches, one
transaction per batch, and ``iter_jobs`` pages through the table. Every query the workers and
the status command make is served by an index (see ``_SCHEMA``), so a million rows cost
milliseconds, not seconds.

One ``JobStore`` holds one connection guarded by a lock, so it may be shared by the threads of
one process; other processes open their own ``JobStore`` on the same file. Async code makes
its short calls through :meth:`JobStore.run`: off the event loop, in one thread, batched.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Self

from . import ids
from . import sqlitefile
from .errors import ConfigError, StateFileError, StateLocked, UnsafeInputError

PENDING, RUNNING, DONE, DEFERRED, FAILED = "pending", "running", "done", "deferred", "failed"
STATES = (PENDING, RUNNING, DONE, DEFERRED, FAILED)
ID_TYPES = frozenset({ids.SESSION, ids.USER})

FILE_NAME = "jobs.sqlite3"
SCHEMA_VERSION = 3
WHAT = "job store"

CACHE_KIB = 32 * 1024
WAL_SIZE_LIMIT = 64 * 1024 * 1024

# Rows per transaction when a bulk operation (retry of every failed job, say) touches many rows:
# short transactions keep the daemon's workers from waiting on the operator's command.
_CHUNK = 10_000
# Ids per "IN (...)" list; well under SQLite's historical limit of 999 parameters.
_IN_CHUNK = 500

# Statements separated by ";" (no ";" inside them, comments included).
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    id                INTEGER PRIMARY KEY,
    id_type           TEXT    NOT NULL,
    ext_id            TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    not_before        REAL    NOT NULL,
    last_error        TEXT,
    created_at        REAL    NOT NULL,
    updated_at        REAL    NOT NULL,
    first_deferred_at REAL,
    force             INTEGER NOT NULL DEFAULT 0,    -- 1: fetch again even what is archived,
                                                     -- 2: asked while running: again after it
    session_at        REAL,    -- the session's time (ObjectId), else the queue time: its vendor deadline
    -- ext_id first: "archiver retry ID..." looks rows up by ext_id alone.
    UNIQUE (ext_id, id_type)
);
-- claim() and next_due(): due jobs in not_before order. Partial, so finished jobs cost nothing.
-- Those queries name it (INDEXED BY): without statistics the planner would rather take
-- jobs_state and sort every pending row.
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (not_before)
    WHERE state IN ('{PENDING}', '{DEFERRED}');
-- claim(): due jobs in deadline order. With one retention per account the earliest deadline
-- is the earliest session time, so the deadline is kept as that time (a changed retention
-- then applies to the whole queue at once).
CREATE INDEX IF NOT EXISTS jobs_deadline ON jobs (session_at, not_before)
    WHERE state IN ('{PENDING}', '{DEFERRED}');
-- counts() (a covering scan), the oldest pending job, retry --failed/--deferred.
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created_at);
-- status(): the most recent errors.
CREATE INDEX IF NOT EXISTS jobs_errors ON jobs (updated_at) WHERE last_error IS NOT NULL;
-- The vendor's call-details record of a session (JSON), stored when it is found so that
-- archiving it needs no further call (see calldetails.py).
CREATE TABLE IF NOT EXISTS call_records (
    session_id TEXT PRIMARY KEY,
    record     TEXT NOT NULL,
    fetched_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
-- The API budget shared by every process on this state directory (see ratelimit.SharedRateLimiter):
-- one row per recent request, at the latest moment the server can have counted it.
CREATE TABLE IF NOT EXISTS budget (
    id    INTEGER PRIMARY KEY,
    name  TEXT NOT NULL,
    at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS budget_at ON budget (name, at);
"""

_COLUMNS = (
    "id, id_type, ext_id, state, attempts, not_before, last_error,"
    " created_at, updated_at, first_deferred_at, force, session_at"
)
_DUE = f"state IN ('{PENDING}', '{DEFERRED}')"
# ``force`` = 2 on a running job: a forced archive (enqueue --force, verify --requeue) was asked
# for while an attempt was running. When that attempt ends, however it ends, the job starts
# over as a forced one: the request is kept, not answered "already known" and dropped.
FORCE_AFTER_RUN = 2
_HONOUR_FORCE_AFTER_RUN = (
    f"UPDATE jobs SET state = '{PENDING}', force = 1, attempts = 0, not_before = :now,"
    f" first_deferred_at = NULL, updated_at = :now WHERE id = :job_id AND force = {FORCE_AFTER_RUN}"
)

# The queries that run against the whole queue, named so that tests can check their plans.
CLAIM_SQL = (
    f"SELECT {_COLUMNS} FROM jobs INDEXED BY jobs_deadline WHERE {_DUE} AND not_before <= ?"
    " ORDER BY session_at, not_before, id LIMIT ?"
)
# The backlog (jobs still to do) and its earliest session time (for ``archiver status``).
BACKLOG_SQL = f"SELECT COUNT(*), MIN(session_at) FROM jobs INDEXED BY jobs_deadline WHERE {_DUE}"
# Of the backlog in deadline order, taken one every :step seconds: how many miss their deadline
# (session time + :retention), and how many are past it already. Only the jobs whose deadline
# comes before the whole backlog could drain (:horizon) can miss it; they are the first in
# that order, so their rank among them is their rank in the backlog, and the rest is not read.
AT_RISK_SQL = (
    "SELECT COALESCE(SUM(session_at + :retention < :now + rank * :step), 0),"
    " COALESCE(SUM(session_at + :retention < :now), 0) FROM ("
    " SELECT session_at, ROW_NUMBER() OVER (ORDER BY session_at, not_before) AS rank"
    f" FROM jobs INDEXED BY jobs_deadline WHERE {_DUE} AND session_at < :horizon)"
)
NEXT_DUE_SQL = f"SELECT MIN(not_before) FROM jobs INDEXED BY jobs_due WHERE {_DUE}"
COUNTS_SQL = "SELECT state, COUNT(*) FROM jobs GROUP BY state"
OLDEST_PENDING_SQL = f"SELECT MIN(created_at) FROM jobs WHERE state = '{PENDING}'"
RECENT_ERRORS_SQL = (
    "SELECT ext_id, state, last_error, updated_at FROM jobs"
    " WHERE last_error IS NOT NULL ORDER BY updated_at DESC LIMIT ?"
)


@dataclass(frozen=True)
class Job:
    """One row of the queue, as it was when read."""

    id: int
    id_type: str
    ext_id: str
    state: str
    attempts: int
    not_before: float
    last_error: str | None
    created_at: float
    updated_at: float
    first_deferred_at: float | None
    force: bool = False  # enqueued with force: archive again, replacing what is on disk
    session_at: float | None = None  # the session's time (its ObjectId), else the queue time


@dataclass(frozen=True)
class EnqueueResult:
    """What ``enqueue`` did; ``added + requeued + skipped`` is the number of items given."""

    added: int
    requeued: int
    skipped: int


class RecentError(NamedTuple):
    """A job whose last attempt left an error, for ``archiver status``."""

    ext_id: str
    state: str
    last_error: str
    updated_at: float


@dataclass(frozen=True)
class StoreStatus:
    """A consistent snapshot of the queue for ``archiver status``."""

    counts: dict[str, int]
    total: int
    oldest_pending_at: float | None
    recent_errors: list[RecentError]

    def as_dict(self) -> dict[str, Any]:
        """The JSON form ``archiver status --json`` prints."""
        return {
            "counts": self.counts,
            "total": self.total,
            "oldest_pending_at": self.oldest_pending_at,
            "recent_errors": [
                {"id": e.ext_id, "state": e.state, "error": e.last_error, "updated_at": e.updated_at}
                for e in self.recent_errors
            ],
        }


def _job(row: tuple[Any, ...]) -> Job:
    return Job(
        id=row[0],
        id_type=row[1],
        ext_id=row[2],
        state=row[3],
        attempts=row[4],
        not_before=row[5],
        last_error=row[6],
        created_at=row[7],
        updated_at=row[8],
        first_deferred_at=row[9],
        force=bool(row[10]),
        session_at=row[11],
    )


def _checked_key(item: tuple[str, str]) -> tuple[str, str]:
    id_type, ext_id = item
    if id_type not in ID_TYPES:
        raise ValueError(f"unknown id type {id_type!r}")
    problem = ids.id_problem(id_type, ext_id)
    if problem is not None:
        raise UnsafeInputError(f"invalid {id_type} id {ext_id[:80]!r}: {problem}")
    return id_type, ext_id


def session_time(id_type: str, ext_id: str, queued_at: float) -> float:
    """The time a job's vendor deadline counts from: its session's ObjectId time, else (user
    ids, other ids) the time it was queued."""
    when = ids.object_id_time(ext_id) if id_type == ids.SESSION else None
    return when.timestamp() if when is not None else queued_at


def _migrate_from_1(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2: the session time of every job (for deadline order) and the call records."""
    conn.execute("ALTER TABLE jobs ADD COLUMN session_at REAL")
    rows = conn.execute("SELECT id, id_type, ext_id, created_at FROM jobs").fetchall()
    conn.executemany(
        "UPDATE jobs SET session_at = ? WHERE id = ?", ((session_time(t, e, c), i) for i, t, e, c in rows)
    )


def _migrate_from_2(conn: sqlite3.Connection) -> None:
    """Schema 2 -> 3: drop ``wants`` and ``parts_done``, which nothing filled or read (a
    session's finished parts are kept beside it in its part files, see manifest.py)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    for column in ("wants", "parts_done"):
        if column in columns:
            conn.execute(f"ALTER TABLE jobs DROP COLUMN {column}")


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    if version == 1:
        _migrate_from_1(conn)
    if version <= 2:
        _migrate_from_2(conn)


def _now(now: float | None) -> float:
    return time.time() if now is None else now


class JobStore:
    """The job queue in one SQLite file; safe to share between threads and processes."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._busy_timeout = busy_timeout
        self._batches: _Batches | None = None
        try:
            self._conn = sqlitefile.connect(self.path, busy_timeout=busy_timeout, read_only=read_only)
        except sqlite3.Error as exc:  # a directory in its place, no permission: one clear line
            raise StateFileError(self.path, WHAT, exc) from None
        try:
            sqlitefile.check_version(self._conn, WHAT, SCHEMA_VERSION) if read_only else self._setup()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StateFileError(self.path, WHAT, exc) from None
        except BaseException:
            self._conn.close()
            raise

    async def run(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)``, a short blocking call of this store, from async code (see
        :meth:`soon`); returns what it returns, raises what it raises."""
        return await self.soon(func, *args, **kwargs)

    def soon(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Call ``func(*args, **kwargs)`` off the event loop, in the store's own thread, with
        the calls other tasks make meanwhile: they go together in one thread hop, their answers
        back to the loop with one wake-up. (32 workers make four such calls a session: a hop
        each cost more CPU than the calls did.) Calls run one after the other, in the order
        they were made. Bulk operations (an ingest of 50,000 ids) go through
        ``asyncio.to_thread`` instead, not to hold the workers' calls behind them."""
        loop = asyncio.get_running_loop()
        if self._batches is None or self._batches.loop is not loop:
            if self._batches is not None:
                self._batches.stop()  # an earlier loop's thread ends once its calls have run
            self._batches = _Batches(loop)
        return self._batches.submit(func, args, kwargs)

    async def calls_done(self) -> None:
        """Wait until every call handed to :meth:`soon` has run (before :meth:`close`)."""
        if self._batches is not None and self._batches.loop is asyncio.get_running_loop():
            await self._batches.answered.wait()

    @classmethod
    def open_in(cls, state_dir: str | os.PathLike[str], **kwargs: Any) -> JobStore:
        """Open (creating if needed) the store of a state directory."""
        return cls(Path(state_dir) / FILE_NAME, **kwargs)

    @classmethod
    def open_existing(cls, state_dir: str | os.PathLike[str], *, read_only: bool = True, **kwargs: Any) -> JobStore:
        """Open the store of a state directory that must already hold one.

        For the operator's commands: a typo in ``daemon.state_dir`` is reported instead of
        answered from a new, empty store, and a command run as root never creates a database
        the service's user then cannot write.
        """
        path = Path(state_dir) / FILE_NAME
        if not path.is_file():
            raise ConfigError(
                "daemon.state_dir", f"no job store at {path}: check the path (has an archiver run with it yet?)"
            )
        return cls(path, read_only=read_only, **kwargs)

    def check_writable(self) -> None:
        """Take the write lock and let it go (``archiver check``); raises sqlite3.Error when the
        file or its directory cannot be written by this process's user."""
        with self._write():
            self._conn.execute("UPDATE meta SET value = value WHERE 0")

    def data_version(self) -> int:
        """SQLite's change counter: it moves when another connection (another process) commits.

        Cheap (no file read when nothing changed); the daemon polls it to see ``enqueue`` and
        ``retry`` from the command line at once instead of at the next sweep.
        """
        with self._lock:
            return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def _setup(self) -> None:
        sqlitefile.use_wal(self._conn, WHAT, wait=self._busy_timeout)
        # A bulk enqueue inserts ids in random order into the ext_id index, dirtying pages all
        # over it; a cache that holds a batch's worth of them means each is written once per
        # transaction instead of being spilled and rewritten. A fixed bound, whatever the
        # queue length.
        self._conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        # A large enqueue grows the WAL; give the space back after each checkpoint.
        self._conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        sqlitefile.create_schema(self._conn, self._lock, WHAT, _SCHEMA, SCHEMA_VERSION, _migrate)

    def close(self) -> None:
        """Close the connection; further calls raise ``sqlite3.ProgrammingError``."""
        if self._batches is not None:
            self._batches.stop()
            self._batches.thread.join()  # what was handed to it runs on the open connection
        with self._lock:
            try:
                self._conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                pass
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------------------

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction, holding the database's write lock from the start."""
        return sqlitefile.write_transaction(self._conn, self._lock)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same snapshot."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("COMMIT")

    def _update_one(self, job_id: int, assignments: str, **params: Any) -> None:
        """End (or give back) a claimed job; a forced request made while it ran starts it over."""
        with self._write() as conn:
            cursor = conn.execute(f"UPDATE jobs SET {assignments} WHERE id = :job_id", {"job_id": job_id, **params})
            if cursor.rowcount == 0:
                raise KeyError(f"no job with id {job_id}")
            conn.execute(_HONOUR_FORCE_AFTER_RUN, {"job_id": job_id, "now": params.get("now", time.time())})

    # -- enqueue ----------------------------------------------------------------------------

    def enqueue(
        self,
        items: Iterable[tuple[str, str]],
        *,
        force: bool = False,
        requeue_failed: bool = False,
        batch: int = 10_000,
        now: float | None = None,
    ) -> EnqueueResult:
        """Queue ``(id_type, ext_id)`` items; idempotent.

        New ids become pending jobs. Known ids are left as they are, except:

        - ``force=True`` marks jobs to be archived again, replacing what is on disk: done,
          failed and deferred rows go back to pending (counted as requeued); pending rows only get the mark (counted as
          skipped); new rows get it too. Running rows keep the request (counted as
          requeued): when the running attempt ends they start over, forced.
        - ``requeue_failed=True`` puts failed rows back to pending (the parts already archived
          are kept in the session's part files, so they are not fetched again).

        Items are read lazily, ``batch`` at a time, each batch committed in its own
        transaction; an invalid id raises ``UnsafeInputError`` before its batch is written.
        """
        if batch < 1:
            raise ValueError("batch must be at least 1")
        requeue_states = (DONE, FAILED, DEFERRED) if force else (FAILED,) if requeue_failed else ()
        added = requeued = skipped = 0
        iterator = iter(items)
        while chunk := list(itertools.islice(iterator, batch)):
            # The chunk is read (which may mean parsing a file) before the write lock is taken.
            keys = [_checked_key(item) for item in chunk]
            new, again = self._enqueue_batch(keys, requeue_states, force, _now(now))
            added += new
            requeued += again
            skipped += len(keys) - new - again
        return EnqueueResult(added=added, requeued=requeued, skipped=skipped)

    def _enqueue_batch(
        self,
        keys: list[tuple[str, str]],
        requeue_states: tuple[str, ...],
        force: bool,
        now: float,
    ) -> tuple[int, int]:
        with self._lock:
            # An enqueue is a promise to the operator (and the inbox moves its file away once
            # the ids are committed), so it must survive a power cut: synchronous=FULL makes
            # this commit fsync the WAL. Worker transitions stay at NORMAL; losing one of
            # those only repeats work.
            self._conn.execute("PRAGMA synchronous=FULL")
            try:
                with self._write() as conn:
                    requeued = self._requeue_batch(conn, keys, requeue_states, force, now)
                    before = conn.total_changes
                    conn.executemany(
                        "INSERT INTO jobs (id_type, ext_id, state, attempts,"
                        " not_before, created_at, updated_at, force, session_at)"
                        f" VALUES (?, ?, '{PENDING}', 0, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (ext_id, id_type) DO NOTHING",
                        (
                            (id_type, ext_id, now, now, now, force, session_time(id_type, ext_id, now))
                            for id_type, ext_id in keys
                        ),
                    )
                    added = conn.total_changes - before
            finally:
                self._conn.execute("PRAGMA synchronous=NORMAL")
        return added, requeued

    @staticmethod
    def _requeue_batch(
        conn: sqlite3.Connection,
        keys: list[tuple[str, str]],
        states: tuple[str, ...],
        force: bool,
        now: float,
    ) -> int:
        if not states:
            return 0
        running = 0
        if force:
            conn.executemany(
                f"UPDATE jobs SET force = 1 WHERE ext_id = ? AND id_type = ? AND state = '{PENDING}'",
                ((e, t) for t, e in keys),
            )
            before = conn.total_changes
            conn.executemany(
                f"UPDATE jobs SET force = {FORCE_AFTER_RUN} WHERE ext_id = ? AND id_type = ?"
                f" AND state = '{RUNNING}'",
                ((e, t) for t, e in keys),
            )
            running = conn.total_changes - before
        # A forced job starts over: every part is fetched again.
        fresh = ", last_error = NULL, force = 1" if force else ""
        placeholders = ", ".join(f"'{s}'" for s in states)
        before = conn.total_changes
        conn.executemany(
            f"UPDATE jobs SET state = '{PENDING}', attempts = 0, not_before = :now, updated_at = :now,"
            f" first_deferred_at = NULL{fresh}"
            f" WHERE ext_id = :ext_id AND id_type = :id_type AND state IN ({placeholders})",
            ({"now": now, "ext_id": e, "id_type": t} for t, e in keys),
        )
        return conn.total_changes - before + running

    def record_archived(
        self, items: Iterable[tuple[str, str, str | None]], *, now: float | None = None
    ) -> int:
        """Rows for sessions the archive already holds (``archiver state rebuild``).

        Each item is ``(id_type, ext_id, failure reason or None)``: the row is done (failed,
        with the reason, when the manifest records a failed part). Ids the store already knows are left as they are. Returns how many
        rows were added.
        """
        now = _now(now)
        rows = (
            (*_checked_key((t, e)), FAILED if why else DONE, why, now, session_time(t, e, now))
            for t, e, why in items
        )
        with self._write() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO jobs (id_type, ext_id, state, attempts, not_before, last_error,"
                " created_at, updated_at, session_at) VALUES (?1, ?2, ?3, 0, ?5, ?4, ?5, ?5, ?6)"
                " ON CONFLICT (ext_id, id_type) DO NOTHING",
                rows,
            )
            return conn.total_changes - before

    # -- the worker's side ------------------------------------------------------------------

    def claim(self, limit: int = 1, *, now: float | None = None) -> list[Job]:
        """Move up to ``limit`` due jobs to running (attempts + 1), oldest ``not_before`` first."""
        now = _now(now)
        with self._write() as conn:
            rows = conn.execute(CLAIM_SQL, (now, limit)).fetchall()
            conn.executemany(
                f"UPDATE jobs SET state = '{RUNNING}', attempts = attempts + 1, updated_at = ?,"
                f" force = MIN(force, 1) WHERE id = ?",
                ((now, row[0]) for row in rows),
            )
        return [replace(_job(row), state=RUNNING, attempts=row[4] + 1, updated_at=now) for row in rows]

    def complete(self, job_id: int, *, now: float | None = None) -> None:
        """The job is archived: done, with its last error (and any force mark) cleared."""
        self._update_one(
            job_id, f"state = '{DONE}', last_error = NULL, force = (force = {FORCE_AFTER_RUN}) * {FORCE_AFTER_RUN},"
            " updated_at = :now", now=_now(now),
        )

    def defer(self, job_id: int, until: float, reason: str, *, now: float | None = None) -> None:
        """The media is not ready yet: try again at ``until``; remembers when this first happened."""
        self._update_one(
            job_id,
            f"state = '{DEFERRED}', not_before = :until, last_error = :reason, updated_at = :now,"
            " first_deferred_at = COALESCE(first_deferred_at, :now)",
            until=until,
            reason=reason,
            now=_now(now),
        )

    def retry_later(self, job_id: int, until: float, reason: str, *, now: float | None = None) -> None:
        """A transient failure: back to pending, due at ``until``."""
        self._update_one(
            job_id,
            f"state = '{PENDING}', not_before = :until, last_error = :reason, updated_at = :now",
            until=until,
            reason=reason,
            now=_now(now),
        )

    def release(self, job_id: int, *, now: float | None = None) -> None:
        """Give a claimed job back untouched (shutdown): pending, and the attempt does not count."""
        self._update_one(
            job_id,
            f"state = '{PENDING}', attempts = MAX(attempts - 1, 0), updated_at = :now",
            now=_now(now),
        )

    def fail(self, job_id: int, reason: str, *, now: float | None = None) -> None:
        """Retrying cannot help (or attempts are used up): failed, with the reason."""
        self._update_one(
            job_id, f"state = '{FAILED}', last_error = :reason, updated_at = :now", reason=reason, now=_now(now)
        )

    def recover_running(self, *, now: float | None = None) -> int:
        """At start: jobs a crashed run left running go back to pending; returns how many.

        Their attempt still counts, so a session that crashes the daemon every time it is
        fetched ends up failed instead of taking the daemon down forever.
        """
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE jobs SET state = '{PENDING}', updated_at = ? WHERE state = '{RUNNING}'", (_now(now),)
            )
            return cursor.rowcount

    # -- the operator's side ----------------------------------------------------------------

    def retry(
        self,
        *,
        failed: bool = False,
        deferred: bool = False,
        ext_ids: Sequence[str] = (),
        now: float | None = None,
    ) -> int:
        """Make jobs due now with their attempts reset; returns how many rows changed.

        ``failed``/``deferred`` select every row in that state; ``ext_ids`` selects rows of
        those ids (of either type) that are failed, deferred or pending. Done and running
        rows are never touched (``enqueue(force=True)`` fetches a done session again). Parts
        already archived stay recorded, so they are not fetched again.
        """
        now = _now(now)
        reset = (
            f"UPDATE jobs SET state = '{PENDING}', attempts = 0, not_before = ?1, updated_at = ?1,"
            " first_deferred_at = NULL"
        )
        changed = 0
        for state, wanted in ((FAILED, failed), (DEFERRED, deferred)):
            while wanted:
                with self._write() as conn:
                    cursor = conn.execute(
                        f"{reset} WHERE id IN (SELECT id FROM jobs WHERE state = ?2 LIMIT {_CHUNK})",
                        (now, state),
                    )
                changed += cursor.rowcount
                wanted = cursor.rowcount > 0
        for start in range(0, len(ext_ids), _IN_CHUNK):
            chunk = list(ext_ids[start : start + _IN_CHUNK])
            marks = ", ".join(f"?{i}" for i in range(2, len(chunk) + 2))
            with self._write() as conn:
                cursor = conn.execute(
                    f"{reset} WHERE ext_id IN ({marks}) AND state IN ('{FAILED}', '{DEFERRED}', '{PENDING}')",
                    (now, *chunk),
                )
            changed += cursor.rowcount
        return changed

    def counts(self) -> dict[str, int]:
        """Jobs per state; every state is a key."""
        with self._lock:
            return self._counts(self._conn)

    @staticmethod
    def _counts(conn: sqlite3.Connection) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for state, count in conn.execute(COUNTS_SQL):
            counts[state] = count
        return counts

    def next_due(self) -> float | None:
        """The earliest ``not_before`` of a pending or deferred job (when the sweeper should look)."""
        with self._lock:
            return self._conn.execute(NEXT_DUE_SQL).fetchone()[0]

    def get(self, id_type: str, ext_id: str) -> Job | None:
        """The job of one id, or None."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE ext_id = ? AND id_type = ?", (ext_id, id_type)
            ).fetchone()
        return None if row is None else _job(row)

    def get_job(self, job_id: int) -> Job | None:
        """The job with this row id, or None."""
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def status(self, *, recent: int = 10) -> StoreStatus:
        """Counts by state, the oldest pending job's age and the latest errors, in one snapshot."""
        with self._read() as conn:
            counts = self._counts(conn)
            oldest = conn.execute(OLDEST_PENDING_SQL).fetchone()[0]
            errors = [RecentError(*row) for row in conn.execute(RECENT_ERRORS_SQL, (recent,))]
        return StoreStatus(counts=counts, total=sum(counts.values()), oldest_pending_at=oldest, recent_errors=errors)

    def iter_jobs(self, state: str | None = None, *, page: int = 1000) -> Iterator[Job]:
        """Every job (or those in ``state``) in row order, read a page at a time.

        Not a snapshot: rows changed while the iteration runs may be seen in either state.
        """
        # "+state" keeps SQLite walking the table in rowid order instead of the state index,
        # so each page continues where the last one stopped and the whole walk is linear.
        where = "id > ?" if state is None else "id > ? AND +state = ?"
        last = 0
        while True:
            params: tuple[Any, ...] = (last,) if state is None else (last, state)
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE {where} ORDER BY id LIMIT {int(page)}", params
                ).fetchall()
            for row in rows:
                yield _job(row)
            if len(rows) < page:
                return
            last = rows[-1][0]

    def backlog(self) -> tuple[int, float | None]:
        """The jobs still to do (pending, deferred), and the earliest of their session times."""
        with self._lock:
            count, earliest = self._conn.execute(BACKLOG_SQL).fetchone()
        return count, earliest

    def at_risk(self, retention: float, now: float, step: float, backlog: int) -> tuple[int, int]:
        """Of ``backlog`` jobs archived in deadline order, one every ``step`` seconds from
        ``now``: (how many would be archived after their deadline, how many are past it
        already). Reads only the jobs that can miss it (see AT_RISK_SQL)."""
        horizon = now + backlog * step - retention
        params = {"retention": retention, "now": now, "step": step, "horizon": horizon}
        with self._lock:
            late, past = self._conn.execute(AT_RISK_SQL, params).fetchone()
        return late, past

    # -- call-details records ---------------------------------------------------------------

    def put_call_records(self, records: Iterable[tuple[str, str]], *, now: float | None = None) -> None:
        """Keep ``(session_id, record JSON)`` pairs, replacing older copies."""
        rows = [(sid, text, _now(now)) for sid, text in records]
        if not rows:
            return
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO call_records (session_id, record, fetched_at) VALUES (?, ?, ?)"
                " ON CONFLICT (session_id) DO UPDATE SET record = excluded.record, fetched_at = excluded.fetched_at",
                rows,
            )

    def call_record(self, session_id: str) -> str | None:
        """The stored call-details record (JSON) of a session, or None."""
        with self._lock:
            row = self._conn.execute("SELECT record FROM call_records WHERE session_id = ?", (session_id,)).fetchone()
        return None if row is None else row[0]

    # -- metadata and maintenance -----------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A value of the key/value table (discovery watermarks and the like), or None."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the key/value table."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- the shared API budget ---------------------------------------------------------------

    def budget_take(
        self, name: str, limit: int, window: float, now: float, *, ahead: int = 0
    ) -> tuple[float, list[int]]:
        """Take one request of budget ``name`` (at most ``limit`` per ``window`` seconds, counted
        by every process on this file), and up to ``ahead`` more while that leaves the window
        at most half full: ``(0, slot ids)``, or ``(seconds to wait, [])``."""
        with self._write() as conn:
            conn.execute("DELETE FROM budget WHERE name = ? AND at <= ?", (name, now - window))
            paused = conn.execute("SELECT value FROM meta WHERE key = ?", (f"budget.{name}.paused_until",)).fetchone()
            if paused is not None and float(paused[0]) > now:
                return float(paused[0]) - now, []
            (count,) = conn.execute("SELECT COUNT(*) FROM budget WHERE name = ?", (name,)).fetchone()
            if count >= limit:
                # The request that must leave the window before there is room again.
                (leaving,) = conn.execute(
                    "SELECT at FROM budget WHERE name = ? ORDER BY at DESC LIMIT 1 OFFSET ?", (name, limit - 1)
                ).fetchone()
                return max(0.001, leaving + window - now), []
            take = 1 + max(0, min(ahead, limit // 2 - count - 1))
            return 0.0, [
                conn.execute("INSERT INTO budget (name, at) VALUES (?, ?)", (name, now)).lastrowid
                for _ in range(take)
            ]

    def budget_release(self, slots: Sequence[int]) -> None:
        """Slots taken ahead and not used: they no longer count."""
        with self._write() as conn:
            conn.executemany("DELETE FROM budget WHERE id = ?", ((slot,) for slot in slots))

    def budget_settle(self, slot: int, at: float) -> None:
        """The request of ``slot`` was answered at ``at``: the server counted it by then."""
        with self._write() as conn:
            conn.execute("UPDATE budget SET at = MAX(at, ?) WHERE id = ?", (at, slot))

    def budget_pause(self, name: str, until: float) -> None:
        """Hold budget ``name`` in every process until ``until`` (after a 429)."""
        key = f"budget.{name}.paused_until"
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                " SET value = MAX(CAST(value AS REAL), CAST(excluded.value AS REAL))",
                (key, repr(until)),
            )

    def add_meta_counts(self, deltas: dict[str, float]) -> None:
        """Add to numeric values of the key/value table in one transaction (missing keys start at 0)."""
        with self._write() as conn:
            for key, delta in deltas.items():
                row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
                try:
                    value = float(row[0]) if row else 0.0
                except ValueError:
                    value = 0.0
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, repr(value + delta)),
                )

    def integrity_check(self) -> str:
        """SQLite's own check of the file; ``"ok"`` when healthy."""
        with self._lock:
            return "\n".join(row[0] for row in self._conn.execute("PRAGMA integrity_check"))


_Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]


class _Batches:
    """The store calls of one event loop, run by one thread of their own (see JobStore.soon).

    The thread takes every call waiting when it is free, runs them in order, and hands all
    their answers back to the loop with one ``call_soon_threadsafe``: no executor, no task
    on the loop to start each batch.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self.unanswered = 0
        self.answered = asyncio.Event()
        self.answered.set()
        self.thread = threading.Thread(target=self._serve, name="store-calls", daemon=True)
        self.thread.start()

    def submit(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        self.unanswered += 1
        self.answered.clear()
        self.queue.put((func, args, kwargs, future))
        return future

    def stop(self) -> None:
        """End the thread once the calls already handed to it have run (their answers reach
        the loop if it still runs)."""
        self.queue.put(None)

    def _serve(self) -> None:
        while True:
            first = self.queue.get()
            batch = [first]
            while True:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            calls = [call for call in batch if call is not None]
            outcomes = _run_batch(calls)
            try:
                self.loop.call_soon_threadsafe(self._answer, calls, outcomes)
            except RuntimeError:  # the loop is closed: nobody waits for the answers
                pass
            if None in batch:
                return

    def _answer(self, calls: list[_Call], outcomes: list[tuple[bool, Any]]) -> None:
        for (*_, future), (ok, value) in zip(calls, outcomes):
            if not future.done():
                future.set_result(value) if ok else future.set_exception(value)
        self.unanswered -= len(calls)
        if self.unanswered == 0:
            self.answered.set()


def _run_batch(batch: list[_Call]) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = []
    for func, args, kwargs, _future in batch:
        try:
            outcomes.append((True, func(*args, **kwargs)))
        except Exception as exc:
            outcomes.append((False, exc))
    return outcomes


class StateLock:
    """An exclusive ``flock`` on ``<state_dir>/archiver.lock`` (released by the kernel on death).

    One process at a time works on a state directory: the daemon, ``once``, ``backfill`` and
    ``state rebuild`` hold it."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "archiver.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateLocked(f"another archiver is already running on {self.path.parent}{_holder(self.path)}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def holder(self) -> str:
        """`` (pid N)`` when another process holds the lock now, else ``""``; takes nothing."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return ""
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(self.path) or " (pid unknown)"
        finally:
            os.close(fd)
        return ""

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(path: Path) -> str:
    """`` (pid N)`` of the lock's holder, as it wrote it, or nothing."""
    try:
        pid = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
