"""The state directory: what it holds, backing it up, and rebuilding it from the archive.

``<daemon.state_dir>`` holds:

    jobs.sqlite3 (+ -wal, -shm)     the job queue, discovery watermark, Analytics budget
    catalog.sqlite3 (+ -wal, -shm)  the catalog (``archiver find``), rebuildable from the archive
    deletions.jsonl                 the deletion audit log (unless ``delete.audit_log`` moves it)
    exports.jsonl                   the export log
    archiver.lock                   the lock that keeps two archivers off one state directory

``archiver state backup FILE`` writes a tar file of consistent copies: the two databases by
SQLite's online backup (safe while the daemon writes them) and the logs up to their last
complete line. ``archiver state rebuild`` recreates what the archive can tell: the catalog,
and a job row (done) for every archived session, so a lost state directory never makes the
archiver fetch a session again or delete one twice.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .archive_reader import ArchiveReader, StoredSession
from .targets import open_reader
from .atomicfile import fsync_dir
from .catalog import FILE_NAME as CATALOG_FILE, Catalog
from .config import Config
from .audit import AUDIT_LOG_NAME, audit_log_path, last_lines
from .manifest import gone_at_vendor
from .errors import ArchiverError, StateFileError
from .store import FILE_NAME as JOBS_FILE, JobStore

log = logging.getLogger("archiver.state")

EXPORT_LOG_NAME = "exports.jsonl"
_JOB_BATCH = 5_000


# -- backup ------------------------------------------------------------------------------------


@dataclass
class BackupResult:
    """What went into a backup file."""

    path: Path
    members: list[tuple[str, int]] = field(default_factory=list)  # (name, bytes)


def backup(config: Config, target: Path) -> BackupResult:
    """Write a tar file (gzip when ``target`` ends in .gz or .tgz) of the state; atomic."""
    state_dir = config.daemon.state_dir
    target = Path(target)
    if target.exists():
        raise ArchiverError(f"{target} exists already; give a new file name")
    if not state_dir.is_dir():
        raise ArchiverError(f"the state directory {state_dir} does not exist: nothing to back up")
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = "w:gz" if target.name.endswith((".gz", ".tgz")) else "w"
    result = BackupResult(target)
    with tempfile.TemporaryDirectory(prefix=".state-backup-", dir=target.parent) as scratch:
        temp = Path(scratch) / "backup.tar"
        with tarfile.open(temp, mode) as tar:
            for database in _databases(state_dir):
                copy = Path(scratch) / database.name
                _sqlite_backup(database, copy)
                tar.add(copy, arcname=database.name)
                result.members.append((database.name, copy.stat().st_size))
            for log_path in _logs(config):
                data = _complete_lines(log_path)
                info = tarfile.TarInfo(log_path.name)
                info.size, info.mtime, info.mode = len(data), int(time.time()), 0o640
                tar.addfile(info, io.BytesIO(data))
                result.members.append((log_path.name, len(data)))
            manifest = json.dumps({"backup_of": str(state_dir), "host": socket.gethostname(),
                                   "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "members": dict(result.members)}, indent=2).encode()
            info = tarfile.TarInfo("BACKUP.json")
            info.size, info.mtime, info.mode = len(manifest), int(time.time()), 0o640
            tar.addfile(info, io.BytesIO(manifest))
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.link(temp, target)  # never replaces a file that appeared meanwhile
    fsync_dir(target.parent)
    return result


def _databases(state_dir: Path) -> Iterator[Path]:
    for name in (JOBS_FILE, CATALOG_FILE):
        if (state_dir / name).is_file():
            yield state_dir / name


def _sqlite_backup(source_path: Path, copy: Path) -> None:
    """SQLite's online backup: one consistent snapshot, taken without blocking the daemon's writes.

    A plain connection, not the store's own: opening a store may write its schema, which
    would wait for the daemon's write lock."""
    source = sqlite3.connect(source_path, timeout=30.0)
    try:
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file in the tar
        finally:
            target.close()
    finally:
        source.close()


def _logs(config: Config) -> list[Path]:
    paths = [audit_log_path(config), config.daemon.state_dir / EXPORT_LOG_NAME]
    return [p for p in paths if p.is_file()]


def _complete_lines(path: Path) -> bytes:
    """An append-only log up to its last complete line (a write may be under way)."""
    data = path.read_bytes()
    return data[: data.rfind(b"\n") + 1]


# -- rebuild -----------------------------------------------------------------------------------


@dataclass
class RebuildResult:
    """What ``state rebuild`` found and did."""

    source: str = ""
    sessions: int = 0
    jobs_added: int = 0
    failed_sessions: int = 0
    deleted_from_log: int = 0  # deletions the audit log knows and the manifests do not
    set_aside: list[Path] = field(default_factory=list)  # unreadable databases moved out of the way
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unusable manifests


def rebuild(config: Config, reader: ArchiveReader | None = None) -> RebuildResult:
    """Rebuild the catalog and add a job row for every archived session (blocking).

    The caller holds the state lock: the daemon must not run meanwhile.
    """
    if reader is None:
        with open_reader(config) as own:
            return rebuild(config, own)
    result = RebuildResult(source=reader.describe())
    state_dir = config.daemon.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    catalog = _open_or_set_aside(state_dir / CATALOG_FILE, lambda: Catalog.open_in(state_dir), result)
    store = _open_or_set_aside(state_dir / JOBS_FILE, lambda: JobStore.open_in(state_dir), result)
    try:
        pending: list[tuple[str, str, Any, str | None]] = []

        def seen(stored: StoredSession) -> None:
            failed = _failed_parts(stored.manifest)
            result.failed_sessions += bool(failed)
            why = f"the manifest records {', '.join(failed)} as failed (from state rebuild)" if failed else None
            pending.append((stored.id_type, stored.session_id, why))
            if len(pending) >= _JOB_BATCH:
                result.jobs_added += store.record_archived(pending)
                pending.clear()

        result.sessions = catalog.rebuild(_watching(reader, seen))
        result.jobs_added += store.record_archived(pending)
        result.deleted_from_log = catalog.mark_deleted(deletions_in_audit_log(config))
        result.skipped = list(getattr(reader, "skipped", []))
    finally:
        catalog.close()
        store.close()
    return result


class _watching:
    """A reader passing each session it yields to ``seen`` as well."""

    def __init__(self, reader: ArchiveReader, seen: Callable[[StoredSession], None]) -> None:
        self._reader, self._seen = reader, seen
        self.target = reader.target

    def sessions(self) -> Iterator[StoredSession]:
        for stored in self._reader.sessions():
            self._seen(stored)
            yield stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


def _open_or_set_aside(path: Path, opener: Callable[[], Any], result: RebuildResult) -> Any:
    """Open a database; one SQLite cannot read is renamed aside (kept, never deleted) and started afresh."""
    try:
        database = opener()
        if database.integrity_check() == "ok":
            return database
        database.close()
    except (sqlite3.DatabaseError, StateFileError):
        pass
    aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(Path(f"{aside}{suffix}"))
    result.set_aside.append(aside)
    log.warning("%s could not be read; moved to %s and started afresh", path, aside)
    return opener()


def _failed_parts(manifest: dict[str, Any]) -> list[str]:
    parts = manifest.get("parts") or {}
    return sorted(k for k, v in parts.items() if isinstance(v, dict) and v.get("status") == "failed")


def deletions_in_audit_log(config: Config) -> dict[str, dict[str, Any]]:
    """Session id -> {"at": ...}, for every session the audit log records as deleted (its last
    real line says ``deleted``, ``possibly_deleted`` or a ``pending`` intent)."""
    return {sid: {"at": line.get("at")} for sid, line in last_lines(config).items() if gone_at_vendor(line)}


__all__ = ["backup", "rebuild", "BackupResult", "RebuildResult", "deletions_in_audit_log", "EXPORT_LOG_NAME",
           "AUDIT_LOG_NAME"]
