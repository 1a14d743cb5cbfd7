"""Deleting the vendor's call recordings once a session is safely archived (opt-in).

Deleting is the one thing the archiver does that cannot be undone, so it happens only after
every check passes, and never when one fails:

1. ``delete.enabled`` is on;
2. the session's ``manifest.json`` is readable, belongs to this session, and does not
   already record a deletion (a session is deleted once);
3. its ``recordings`` part ended in ``success`` and lists at least one audio file;
4. every recording audio file it lists is on disk and re-reads to the manifest's size and
   sha256 (the files were fsynced when written; this proves they still hold those bytes);
5. the audit log can be opened for appending.

Then ``DELETE /v2/recordings`` is sent once (the client never retries it), or, with
``delete.dry_run``, nothing is sent. Either way what happened is recorded twice: as one JSON
line appended (``O_APPEND``, fsynced) to the audit log, and as a ``deletion`` object in the
manifest, rewritten atomically with everything else unchanged. A failed call is recorded the
same way; the session stays archived and a later call may try again.

Voicemails are not touched: the API deletes call recordings only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Awaitable, Callable

from .archive import now_iso
from .atomicfile import FILE_MODE, fsync_dir, write_json
from .catalog import record_session
from .client import READY, KoreClient
from .config import Config
from .errors import ArchiverError
from .ids import SESSION, session_id_problem
from .layout import RECORDINGS
from .redact import scrub
from .verify import check_file, entry_problem, read_manifest, recordings_deleted

log = logging.getLogger("archiver.deletion")

AUDIT_LOG_NAME = "deletions.jsonl"
MAX_MESSAGE = 300

# Outcomes of delete_after_archive.
DISABLED = "disabled"  # delete.enabled is off: nothing was looked at or recorded
REFUSED = "refused"  # a check failed: nothing was sent or recorded
ALREADY_DELETED = "already_deleted"  # the manifest records an earlier deletion
DRY_RUN = "dry_run"  # recorded what would be deleted; nothing was sent
DELETED = "deleted"  # the API confirmed the deletion
ERROR = "error"  # the call failed; recorded, the session stays archived

# Proves recording entries kept outside the session directory: why not, or None.
Proof = Callable[[Path, list[dict[str, Any]]], Awaitable[str | None]]
# Deletions running when their worker is cancelled finish (and are recorded) on their own.
_in_flight: set[asyncio.Task[Any]] = set()


@dataclass(frozen=True)
class DeletionOutcome:
    """What ``delete_after_archive`` did for one session, and why."""

    session_id: str
    status: str
    reason: str = ""
    files: tuple[str, ...] = ()  # the recording files checked (paths within the session)
    recorded: bool = False  # written to both the audit log and the manifest

    @property
    def deleted(self) -> bool:
        return self.status == DELETED


class _Refused(Exception):
    """A check failed; the message says which."""


def audit_log_path(config: Config) -> Path:
    """``delete.audit_log``, or ``<daemon.state_dir>/deletions.jsonl``."""
    return Path(config.delete.audit_log) if config.delete.audit_log else config.daemon.state_dir / AUDIT_LOG_NAME


async def delete_after_archive(
    config: Config, client: KoreClient, directory: Path, session_id: str, *, proof: Proof | None = None
) -> DeletionOutcome:
    """Delete the vendor's recordings of an archived session when every check passes (see the module doc).

    ``proof`` replaces re-reading the files from disk (check 4) for an archive kept elsewhere:
    it is given the recording entries and returns why they are not proven, or None."""
    if not config.delete.enabled:
        return DeletionOutcome(session_id, DISABLED)
    try:
        manifest = await asyncio.to_thread(_read_checked_manifest, directory, session_id)
        if recordings_deleted(manifest):
            return DeletionOutcome(session_id, ALREADY_DELETED, "the manifest records an earlier deletion")
        files = await asyncio.to_thread(_checked_recordings, directory, manifest, proof is None)
        if proof is not None and (problem := await proof(directory, files)) is not None:
            raise _Refused(problem)
        audit_fd = await asyncio.to_thread(_open_audit_log, audit_log_path(config))
    except _Refused as exc:
        log.warning(
            "not deleting the recordings of %s: %s", session_id, exc,
            extra={"kv_session": session_id, "kv_reason": str(exc)},
        )
        return DeletionOutcome(session_id, REFUSED, str(exc))
    task = asyncio.ensure_future(_send_and_record(config, client, directory, session_id, manifest, files, audit_fd))
    _in_flight.add(task)
    task.add_done_callback(_in_flight.discard)
    # Once the request may have left, cancelling the worker must not lose the record of it.
    return await asyncio.shield(task)


# -- checks (blocking: run in a thread) --------------------------------------------------------


def _read_checked_manifest(directory: Path, session_id: str) -> dict[str, Any]:
    problem = session_id_problem(session_id)
    if problem:
        raise _Refused(f"invalid session id: {problem}")
    if Path(directory).name != session_id:
        raise _Refused(f"{directory} is not the directory of session {session_id}")
    manifest, why = read_manifest(Path(directory))
    if manifest is None:
        raise _Refused(f"manifest.json: {why}")
    if manifest.get("id_type") != SESSION:
        raise _Refused("the manifest is not a session's (recordings looked up by user are not deleted)")
    return manifest


def _checked_recordings(directory: Path, manifest: dict[str, Any], reread: bool = True) -> list[dict[str, Any]]:
    """The recording audio entries, each re-read to its size and sha256; raises _Refused otherwise."""
    part = (manifest.get("parts") or {}).get(RECORDINGS)
    status = part.get("status") if isinstance(part, dict) else None
    if status != READY:
        raise _Refused(f"the recordings part is {str(status)[:40]!r}, not {READY!r}")
    files: list[dict[str, Any]] = []
    for index, entry in enumerate(manifest["files"]):
        problem = entry_problem(entry)
        if problem is not None:
            raise _Refused(f"manifest files[{index}]: {problem}")
        if entry.get("kind") == "audio" and PurePosixPath(entry["path"]).parts[0] == RECORDINGS:
            files.append(entry)
    if not files:
        raise _Refused("the manifest lists no recording audio file")
    for entry in files if reread else ():
        found = check_file(Path(directory), entry)
        if found is not None:
            raise _Refused(f"{found.path}: {found.kind}: {found.detail}")
    return files


def _open_audit_log(path: Path) -> int:
    """An append-only descriptor on the audit log (created, and its directory fsynced, if new)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        if created:
            fsync_dir(path.parent)
    except OSError as exc:
        raise _Refused(f"cannot open the audit log {path}: {exc.strerror}") from None
    return fd


# -- the call and its records ------------------------------------------------------------------


async def _send_and_record(
    config: Config,
    client: KoreClient,
    directory: Path,
    session_id: str,
    manifest: dict[str, Any],
    files: list[dict[str, Any]],
    audit_fd: int,
) -> DeletionOutcome:
    dry_run = config.delete.dry_run
    try:
        if dry_run:
            status, message = DRY_RUN, f"dry run: would delete {len(files)} recording file(s)"
        else:
            status, message = await _call(client, session_id)
        at = now_iso()
        entry = _audit_entry(config, directory, session_id, files, at, dry_run, status, message)
        recorded = await asyncio.to_thread(_append, audit_fd, entry)
    finally:
        os.close(audit_fd)
    recorded = await _record_in_manifest(config, directory, manifest, at, dry_run, status, message) and recorded
    level = logging.WARNING if status == ERROR else logging.INFO
    log.log(
        level, "recordings of %s: %s (%s)", session_id, status, message,
        extra={"kv_session": session_id, "kv_result": status, "kv_dry_run": dry_run},
    )
    return DeletionOutcome(session_id, status, message, tuple(f["path"] for f in files), recorded)


async def _call(client: KoreClient, session_id: str) -> tuple[str, str]:
    """Send the DELETE once; (DELETED, the API's message) or (ERROR, why)."""
    try:
        answer = await client.delete_recordings(session_id)
    except Exception as exc:  # whatever went wrong, it is recorded, and the session stays archived
        return ERROR, _clean(str(exc) or type(exc).__name__)
    message = answer.get("message")
    return DELETED, _clean(message if isinstance(message, str) and message else "deleted")


def _clean(text: str) -> str:
    return scrub(text)[:MAX_MESSAGE]


def _audit_entry(
    config: Config,
    directory: Path,
    session_id: str,
    files: list[dict[str, Any]],
    at: str,
    dry_run: bool,
    status: str,
    message: str,
) -> dict[str, Any]:
    return {
        "at": at,
        "bot_id": config.kore.bot_id,
        "session_id": session_id,
        "directory": str(directory),
        "dry_run": dry_run,
        "result": status,
        "message": message,
        "files": [{"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in files],
    }


def _append(fd: int, entry: dict[str, Any]) -> bool:
    """Append one line and fsync it; False (logged) when the disk refuses."""
    line = (json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    view = memoryview(line)
    try:
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        log.error(
            "could not write the deletion audit log for %s: %s", entry["session_id"], exc.strerror,
            extra={"kv_session": entry["session_id"]},
        )
        return False
    return True


async def _record_in_manifest(
    config: Config,
    directory: Path, manifest: dict[str, Any], at: str, dry_run: bool, status: str, message: str
) -> bool:
    """Rewrite the manifest with a ``deletion`` object; False (logged) when that fails."""
    updated = dict(manifest, deletion={"at": at, "dry_run": dry_run, "result": status, "message": message})
    try:
        await write_json(Path(directory) / "manifest.json", updated)
    except (OSError, ArchiverError) as exc:  # a full disk is a DiskFullError
        log.error("could not record the deletion in the manifest of %s: %s", directory.name, exc)
        return False
    await asyncio.to_thread(record_session, config.daemon.state_dir, config.archive.root, Path(directory), updated)
    return True


# -- reading the audit log ---------------------------------------------------------------------


def deleted_in_audit_log(config: Config, session_ids: set[str]) -> set[str]:
    """Those of ``session_ids`` the audit log records as deleted (not dry runs), read line by line."""
    found: set[str] = set()
    try:
        with open(audit_log_path(config), "rb") as handle:
            for raw in handle:
                try:
                    entry = json.loads(raw)
                except ValueError:  # a line cut short by a crash
                    continue
                if (
                    isinstance(entry, dict) and entry.get("session_id") in session_ids
                    and entry.get("result") == DELETED and entry.get("dry_run") is False
                ):
                    found.add(entry["session_id"])
    except FileNotFoundError:
        pass
    return found


__all__ = [
    "DeletionOutcome", "delete_after_archive", "audit_log_path", "deleted_in_audit_log",
    "DISABLED", "REFUSED", "ALREADY_DELETED", "DRY_RUN", "DELETED", "ERROR",
]
