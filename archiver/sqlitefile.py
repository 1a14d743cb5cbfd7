"""One SQLite file of the state directory: how the job store and the catalog open it.

Both are shared by the threads of a process (one connection behind a lock) and by several
processes (WAL). ``isolation_level=None``: transactions are begun and ended explicitly, so a
write takes the write lock up front (``BEGIN IMMEDIATE``) and cannot deadlock upgrading a
read lock while another process writes. A read-only open (``mode=ro``) never creates or
changes the file: a command run as root leaves nothing behind that the service's user could
not write.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from .errors import ConfigError

KEY = "daemon.state_dir"  # the setting an operator fixes when one of these files is wrong


def connect(path: Path, *, busy_timeout: float, read_only: bool) -> sqlite3.Connection:
    """A connection for one lock-guarded user; the parent directory is made for a writer."""
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    target = f"file:{quote(str(path.absolute()))}?mode=ro" if read_only else str(path)
    return sqlite3.connect(target, timeout=busy_timeout, isolation_level=None, check_same_thread=False, uri=read_only)


def check_version(conn: sqlite3.Connection, what: str, known: int) -> int:
    """The file's schema version; ConfigError when it is newer than this archiver knows."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > known:
        raise ConfigError(KEY, f"the {what} has schema version {version}; this archiver knows up to {known}")
    return version


def use_wal(conn: sqlite3.Connection, what: str, *, wait: float = 30.0) -> None:
    """WAL, synchronous=NORMAL. WAL needs memory shared between processes: it does not work on
    network file systems, and without it a command would block the daemon (and the other way round)."""
    mode = _switch_to_wal(conn, wait)
    if str(mode).lower() != "wal":
        raise ConfigError(KEY, f"the {what} cannot use WAL mode there (got {mode!r}); use a local file system")
    conn.execute("PRAGMA synchronous=NORMAL")


def _switch_to_wal(conn: sqlite3.Connection, wait: float) -> str:
    """``PRAGMA journal_mode=WAL``, waiting for the lock it needs. Turning a *new* file to WAL
    takes an exclusive lock for which SQLite calls no busy handler: a second thread or process
    opening the same new file at that moment got "database is locked" at once (two workers
    cataloguing their first sessions together; ``enqueue`` beside a starting daemon)."""
    deadline = time.monotonic() + wait
    pause = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


@contextmanager
def write_transaction(conn: sqlite3.Connection, lock: threading.RLock) -> Iterator[sqlite3.Connection]:
    """A write transaction, holding the database's write lock from the start."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        finally:
            # After an error (in the body or in COMMIT itself, say a full disk) the connection
            # must not be left inside a transaction; SQLite may already have rolled it back.
            if conn.in_transaction:
                conn.execute("ROLLBACK")


def create_schema(
    conn: sqlite3.Connection,
    lock: threading.RLock,
    what: str,
    schema: str,
    known: int,
    migrate: Callable[[sqlite3.Connection, int], None] | None = None,
) -> None:
    """Bring the file to schema ``known``: ``migrate(conn, version)`` for an older one, then
    ``schema``'s statements (``;``-separated, each idempotent), in one write transaction, so
    that of two processes opening a new file at once one creates it."""
    with write_transaction(conn, lock) as conn:
        version = check_version(conn, what, known)
        if migrate is not None and version:
            migrate(conn, version)
        # Statement by statement: executescript() would commit the transaction first.
        for statement in schema.split(";"):
            if statement.strip():
                conn.execute(statement)
        if version < known:
            conn.execute(f"PRAGMA user_version={known}")


__all__ = ["connect", "check_version", "use_wal", "write_transaction", "create_schema"]
