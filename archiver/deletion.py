"""Deleting the vendor's call recordings once a session is safely archived (opt-in).

Deleting is the one thing the archiver does that cannot be undone, so it happens only after
every check passes, and never when one fails:

1. ``delete.enabled`` is on;
2. the session's manifest is readable, belongs to this session, and does not
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
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Awaitable, Callable

from . import manifest as mf
from .audit import append, audit_log_path, open_audit_log
from .catalog import record_session
from .client import READY, KoreClient
from .config import Config
from .errors import ArchiverError
from .ids import SESSION, session_id_problem
from .manifest import DELETED, MANIFEST, RECORDINGS, entry_problem, now_iso, read_manifest, recordings_deleted
from .redact import scrub
from .verify import check_file

log = logging.getLogger("archiver.deletion")

MAX_MESSAGE = 300

# Outcomes of delete_after_archive.
DISABLED = "disabled"  # delete.enabled is off: nothing was looked at or recorded
REFUSED = "refused"  # a check failed: nothing was sent or recorded
ALREADY_DELETED = "already_deleted"  # the manifest records an earlier deletion
DRY_RUN = "dry_run"  # recorded what would be deleted; nothing was sent
# DELETED (from manifest.py): the API confirmed the deletion
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
        audit_fd = await asyncio.to_thread(_open_audit_log, config)
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
        raise _Refused(f"{MANIFEST}: {why}")
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


def _open_audit_log(config: Config) -> int:
    path = audit_log_path(config)
    try:
        return open_audit_log(path)
    except OSError as exc:
        raise _Refused(f"cannot open the audit log {path}: {exc.strerror}") from None


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
        recorded = await asyncio.to_thread(append, audit_fd, entry)
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


async def _record_in_manifest(
    config: Config,
    directory: Path, manifest: dict[str, Any], at: str, dry_run: bool, status: str, message: str
) -> bool:
    """Rewrite the manifest with a ``deletion`` object; False (logged) when that fails."""
    updated = mf.with_deletion(manifest, at, dry_run, status, message)
    try:
        await mf.rewrite(Path(directory), updated)
    except (OSError, ArchiverError) as exc:  # a full disk is a DiskFullError
        log.error("could not record the deletion in the manifest of %s: %s", directory.name, exc)
        return False
    await asyncio.to_thread(record_session, config, Path(directory), updated)
    return True


__all__ = [
    "DeletionOutcome", "delete_after_archive",
    "DISABLED", "REFUSED", "ALREADY_DELETED", "DRY_RUN", "DELETED", "ERROR",
]
