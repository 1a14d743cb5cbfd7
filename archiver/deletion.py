"""Deleting the vendor's call recordings once a session is proven archived (opt-in).

Deleting is the one thing the archiver does that cannot be undone. It is made safe by
construction, in four steps, each for a reason:

1. **Prove the copy.** The manifest is readable and this session's; its recordings part is
   ``success``; every recording file re-reads to the manifest's size and sha256; and every
   one is proven *complete* (``length_source``, see ``completeness``): a file's own sha256
   proves only that it has not changed since it was written, not that it was whole.
2. **Ask again.** Right before deleting, the v2 listing is fetched afresh, and the vendor's
   recordings must match the archived ones one to one (``identity``: URL path, then
   ``fileName``, then position; never two vendor items to one file). The manifest says what
   the vendor had *then*: a leg added since, or files v1 never returned, would be deleted
   unarchived. Anything unmatched: not deleted (archive it again first).
3. **Write ahead.** The intent (``deletion: {state: "pending"}``) is appended to the audit log
   and written into the manifest, both fsynced, before DELETE is sent. A crash, a kill or a
   lost answer after that point leaves a record saying the recordings may be gone.
4. **Send once, record the answer.** ``DELETE /v2/recordings`` is sent once (never retried).
   A success is ``deleted``; a definite refusal (an HTTP 4xx answer) is ``error``, and a
   later run may try again; anything else (a timeout, a cut connection, a 5xx) is
   ``possibly_deleted``. The result is appended to the audit log and written to the manifest.

A session whose manifest *or* audit log says ``pending``, ``deleted`` or ``possibly_deleted``
is treated as deleted at the vendor from then on: not deleted again, never archived over,
not requeued by ``verify``. With ``delete.dry_run`` steps 1 and 2 run, nothing is sent, and a
``dry_run`` record is written.

Voicemails are not touched: the API deletes call recordings only.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Awaitable, Callable

from . import identity
from . import manifest as mf
from .archive import media_identities
from .audit import append, audit_log_path, last_lines, open_audit_log
from .catalog import record_session
from .client import READY, KoreClient
from .completeness import unproven_reason
from .config import Config
from .errors import ArchiverError, AuthError, PermanentError, RateLimited
from .ids import SESSION, session_id_problem
from .manifest import (
    DELETED, MANIFEST, PENDING, POSSIBLY_DELETED, RECORDINGS, entry_problem, gone_at_vendor, now_iso, read_manifest,
)
from .redact import scrub
from .verify import check_file

log = logging.getLogger("archiver.deletion")

MAX_MESSAGE = 300

# Outcomes of delete_after_archive.
DISABLED = "disabled"  # delete.enabled is off: nothing was looked at or recorded
REFUSED = "refused"  # a check failed: nothing was sent or recorded
ALREADY_DELETED = "already_deleted"  # a record says the recordings are (or may be) gone already
DRY_RUN = "dry_run"  # recorded what would be deleted; nothing was sent
# DELETED, POSSIBLY_DELETED (from manifest.py): the API confirmed it; sent, no answer says
ERROR = "error"  # the API refused the deletion: recorded, the session stays archived
# States of a ``deletion`` record beside those (PENDING is in manifest.py with what counts as deleted).
NOT_SENT = "not_sent"  # the intent was written, then DELETE was not sent after all

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
    """Delete the vendor's recordings of an archived session when it is proven (see the module doc).

    ``proof`` replaces re-reading the files from disk for an archive kept elsewhere: it is
    given the recording entries and returns why they are not proven, or None."""
    if not config.delete.enabled:
        return DeletionOutcome(session_id, DISABLED)
    try:
        manifest = await asyncio.to_thread(_read_checked_manifest, directory, session_id)
        earlier = await asyncio.to_thread(last_lines, config, {session_id})
        for record, where in ((manifest.get("deletion"), "manifest"), (earlier.get(session_id), "audit log")):
            if gone_at_vendor(record):
                state = mf.deletion_state(record)
                return DeletionOutcome(session_id, ALREADY_DELETED, f"the {where} records the recordings as {state}")
        files = await asyncio.to_thread(_checked_recordings, directory, manifest, proof is None)
        if proof is not None and (problem := await proof(directory, files)) is not None:
            raise _Refused(problem)
        await _matches_the_vendor_now(client, session_id, files)
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
    # Once the intent is written, cancelling the worker must not lose the record of what followed.
    return await asyncio.shield(task)


# -- step 1: prove the copy (blocking: run in a thread) -----------------------------------------


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
    """The recording audio entries, each re-read (unless ``reread`` is off: kept elsewhere)
    and proven complete; raises _Refused otherwise."""
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
    for entry in files:
        found = check_file(Path(directory), entry) if reread else None
        if found is not None:
            raise _Refused(f"{found.path}: {found.kind}: {found.detail}")
        why = unproven_reason(entry)
        if why is not None:
            raise _Refused(f"{entry['path']} is not proven complete: {why}")
    return files


# -- step 2: ask again -------------------------------------------------------------------------


async def _matches_the_vendor_now(client: KoreClient, session_id: str, files: list[dict[str, Any]]) -> None:
    """Fetch the v2 listing afresh; every vendor recording must match one archived file, one to one."""
    try:
        answer = await client.recordings_v2(SESSION, session_id)
    except ArchiverError as exc:
        raise _Refused(f"could not ask the vendor what it holds now: {_clean(str(exc))}") from None
    if answer.status != READY or not answer.items:
        raise _Refused(f"the vendor now answers {answer.status!r} with {len(answer.items)} recording(s)")
    archived = [_archived_identity(entry) for entry in files]
    pairs = identity.match(media_identities(answer.items), archived)
    unmatched = len(answer.items) - len(pairs)
    if unmatched or len(answer.items) != len(files):
        raise _Refused(
            f"the vendor now lists {len(answer.items)} recording(s), {len(files)} archived, "
            f"{unmatched} not matched to an archived file: archive the session again first"
        )


def _archived_identity(entry: dict[str, Any]) -> identity.Identity:
    source = entry.get("source")
    position = entry.get("position")
    return identity.Identity(
        identity.url_path(source) if isinstance(source, str) and source != "inline" else "",
        str(entry.get("offered_name") or ""),
        position if isinstance(position, int) and not isinstance(position, bool) else -1,
    )


def _open_audit_log(path: Path) -> int:
    try:
        return open_audit_log(path)
    except OSError as exc:
        raise _Refused(f"cannot open the audit log {path}: {exc.strerror}") from None


# -- steps 3 and 4: write ahead, send once, record the answer -----------------------------------


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
    record = _Record(config, directory, session_id, manifest, files, audit_fd, dry_run)
    try:
        if dry_run:
            status, message = DRY_RUN, f"dry run: would delete {len(files)} recording file(s)"
        else:
            if not await record.write(PENDING, f"about to delete {len(files)} recording file(s)"):
                # The intent is not on disk in both places: do not send. Say so in the audit
                # log if it holds the intent; if even that fails, the intent stays: "possibly".
                await record.write(NOT_SENT, "the intent could not be recorded; DELETE was not sent")
                raise _Refused("the intent to delete could not be recorded; DELETE was not sent")
            status, message = await _call(client, session_id)
        recorded = await record.write(status, message)
    except _Refused as exc:
        log.error("not deleting the recordings of %s: %s", session_id, exc, extra={"kv_session": session_id})
        return DeletionOutcome(session_id, REFUSED, str(exc), tuple(f["path"] for f in files))
    finally:
        os.close(audit_fd)
    level = logging.INFO if status in (DELETED, DRY_RUN) else logging.WARNING
    log.log(
        level, "recordings of %s: %s (%s)", session_id, status, message,
        extra={"kv_session": session_id, "kv_result": status, "kv_dry_run": dry_run},
    )
    return DeletionOutcome(session_id, status, message, tuple(f["path"] for f in files), recorded)


async def _call(client: KoreClient, session_id: str) -> tuple[str, str]:
    """Send the DELETE once: (DELETED, the API's message), (ERROR, why) when the vendor clearly
    refused, or (POSSIBLY_DELETED, why) when nothing says whether it happened."""
    try:
        answer = await client.delete_recordings(session_id)
    except (RateLimited, AuthError) as exc:  # refused before it was acted on
        return ERROR, _clean(str(exc))
    except PermanentError as exc:
        if exc.status is not None and 400 <= exc.status < 500:
            return ERROR, _clean(str(exc))
        return POSSIBLY_DELETED, _clean(str(exc) or type(exc).__name__)
    except Exception as exc:  # a timeout, a cut connection, a 5xx: it may have happened
        return POSSIBLY_DELETED, _clean(str(exc) or type(exc).__name__)
    message = answer.get("message")
    return DELETED, _clean(message if isinstance(message, str) and message else "deleted")


def _clean(text: str) -> str:
    return scrub(text)[:MAX_MESSAGE]


class _Record:
    """Writes one deletion's records: an audit line (fsynced) and the manifest's ``deletion``."""

    def __init__(
        self, config: Config, directory: Path, session_id: str, manifest: dict[str, Any],
        files: list[dict[str, Any]], audit_fd: int, dry_run: bool,
    ) -> None:
        self.config, self.directory, self.session_id = config, Path(directory), session_id
        self.manifest, self.files, self.audit_fd, self.dry_run = manifest, files, audit_fd, dry_run

    async def write(self, state: str, message: str) -> bool:
        """Both records of ``state``; False (logged) when either could not be written."""
        at = now_iso()
        line = {
            "at": at,
            "bot_id": self.config.kore.bot_id,
            "session_id": self.session_id,
            "directory": str(self.directory),
            "dry_run": self.dry_run,
            "state": state,
            "result": state,
            "message": message,
            "files": [{"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in self.files],
        }
        logged = await asyncio.to_thread(append, self.audit_fd, line)
        updated = mf.with_deletion(self.manifest, at, self.dry_run, state, message)
        written = await _record_in_manifest(self.config, self.directory, updated)
        return logged and written


async def _record_in_manifest(config: Config, directory: Path, updated: dict[str, Any]) -> bool:
    """Rewrite the manifest with its new ``deletion`` record; False (logged) when that fails.

    A failed write after a pending one leaves ``pending`` in the manifest: read as "possibly
    deleted", which is what it is.
    """
    try:
        await mf.rewrite(Path(directory), updated)
    except (OSError, ArchiverError) as exc:  # a full disk is a DiskFullError
        log.error("could not record the deletion in the manifest of %s: %s", directory.name, exc)
        return False
    await asyncio.to_thread(record_session, config, Path(directory), updated)
    return True


__all__ = [
    "DeletionOutcome", "delete_after_archive",
    "DISABLED", "REFUSED", "ALREADY_DELETED", "DRY_RUN", "DELETED", "ERROR", "POSSIBLY_DELETED",
]
