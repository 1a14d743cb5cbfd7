"""The manifest format: one session's ``manifest.json`` and the part files it is built from.

A session has parts (``call``, ``recordings``, ``voicemail``, ``transcript``). While a session is being
archived, each finished part is recorded in a hidden part file in the session directory
(``.<part>.part.json``), so an interrupted session does not fetch a finished part again.
``manifest.json`` is written last, from the part files, and its presence means the session is
archived; the part files are then removed. Every file here is written through ``atomicfile``
(temp file, fsync, rename, directory fsync).

The manifest::

    {"format": 1, "archiver": "...", "bot_id": "...", "id_type": "session", "id": "...",
     "archived_at": "...Z", "parts": {"<part>": {"status": "success", ...}},
     "files": [{"path": "recordings/a.wav", "size": 1, "sha256": "...", "kind": "audio", ...}],
     "deletion": {"at": "...Z", "dry_run": false, "state": "deleted", "result": "deleted", "message": "..."}}

``deletion`` is written before DELETE is sent (``state: "pending"``) and again with its
answer (see ``deletion.py``). Audio entries also carry how the vendor named the file
(``offered_name``, ``position``) and what proves it whole (``length_source``, ``unproven``;
see ``completeness.py``). This module is the only one that spells these file names, and says
what counts as deleted; the others import them from here.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from .atomicfile import TEMP_SUFFIX, write_json, write_json_sync

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
# The parts of a session, in the order they are fetched. The first two are also the names of
# the session's subdirectories (see ``layout.py``).
RECORDINGS = "recordings"
VOICEMAIL = "voicemail"
TRANSCRIPT = "transcript"
CALL = "call"  # the call-details record, call.json (calldetails.py); first: it can spare the voicemail call
PARTS = (CALL, RECORDINGS, VOICEMAIL, TRANSCRIPT)
PART_SUFFIX = ".part.json"
# Part files were once written through a temp file of this name; one may still lie in a
# session directory written by an older version, and is no sign of damage.
_LEGACY_PART_TEMP = ".part.tmp"
NO_MANIFEST = f"the session is not archived (no {MANIFEST})"
# The states a deletion record goes through (see ``deletion.py``).
PENDING = "pending"  # written, fsynced, before DELETE is sent
DELETED = "deleted"  # the vendor confirmed it
POSSIBLY_DELETED = "possibly_deleted"  # sent, and no answer says whether it happened
# What counts as deleted at the vendor: not archived over, not deleted again, not requeued.
GONE = frozenset({PENDING, DELETED, POSSIBLY_DELETED})

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def now_iso() -> str:
    """The time stamps of manifests, sidecars and the audit log: UTC, seconds, ``Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- part files ---------------------------------------------------------------------------------


def part_file(directory: Path, part: str) -> Path:
    """The hidden file recording one finished part of a session not archived yet."""
    return directory / f".{part}{PART_SUFFIX}"


def is_work_file(rel: PurePosixPath) -> bool:
    """Hidden files an archive run writes while it works: temp files anywhere, part files at the top."""
    name = rel.name
    if name.startswith(".") and name.endswith(TEMP_SUFFIX):
        return True
    if len(rel.parts) == 1:
        return any(name in (f".{part}{PART_SUFFIX}", f".{part}{_LEGACY_PART_TEMP}") for part in PARTS)
    return False


def read_part(directory: Path, part: str) -> dict[str, Any] | None:
    """A finished part recorded earlier, or None."""
    return read_json(part_file(directory, part))


def write_part_sync(directory: Path, part: str, data: dict[str, Any]) -> None:
    """Record a finished part (blocking: in a worker thread)."""
    write_json_sync(part_file(directory, part), data)


async def write_part(directory: Path, part: str, data: dict[str, Any]) -> None:
    """Record a finished part."""
    await write_json(part_file(directory, part), data)


def remove_parts(directory: Path, parts: Any = PARTS) -> None:
    """Remove the part files of ``parts`` (blocking)."""
    for part in parts:
        part_file(directory, part).unlink(missing_ok=True)


def seed_part_files(directory: Path, manifest: dict[str, Any]) -> None:
    """Rebuild the part files of the parts a manifest holds, so only its failed parts are
    fetched again (blocking)."""
    files = manifest.get("files") or []
    for name, part in (manifest.get("parts") or {}).items():
        if name not in PARTS or not isinstance(part, dict) or part.get("status") == "failed":
            continue
        own = [f for f in files if isinstance(f, dict) and str(f.get("path", "")).startswith(f"{name}/")]
        write_part_sync(directory, name, dict(part, files=own))


# -- the manifest -------------------------------------------------------------------------------


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file, or None when it is missing, unreadable or not an object."""
    try:
        with open(path, "rb") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load(directory: Path) -> dict[str, Any] | None:
    """The manifest of a session directory as it is (no checks), or None."""
    return read_json(directory / MANIFEST)


def read_manifest(directory: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, None) or (None, why it cannot be used): checked format, files list and id."""
    try:
        with open(directory / MANIFEST, "rb") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None, NO_MANIFEST
    except OSError as exc:
        return None, f"cannot read: {exc.strerror}"
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    why = manifest_problem(data, directory.name)
    return (None, why) if why else (data, None)


def manifest_problem(data: Any, name: str) -> str | None:
    """Why a parsed manifest cannot be used for the session directory ``name``, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("format") != MANIFEST_FORMAT:
        return f"unknown format {str(data.get('format'))[:20]!r} (expected {MANIFEST_FORMAT})"
    if not isinstance(data.get("files"), list):
        return "'files' is missing or not a list"
    if data.get("id") != name:
        return f"belongs to id {str(data.get('id'))[:130]!r}, not to this directory"
    return None


def exists(directory: Path) -> bool:
    """True when the directory holds a manifest (anything by that name, even a dangling link)."""
    return os.path.lexists(directory / MANIFEST)


def commit(directory: Path, manifest: dict[str, Any], parts: Any = PARTS) -> None:
    """Write the manifest (atomically, durably); it now holds what the part files held, so
    they go. Their removal is not made durable: a part file that comes back after a crash
    beside a complete manifest is removed by the next attempt (and a part that was never
    recorded in a file is no loss either: its files have their sidecars, which is what the
    next attempt looks for)."""
    write_json_sync(directory / MANIFEST, manifest)
    remove_parts(directory, parts)


async def rewrite(directory: Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically (used to add the ``deletion`` record)."""
    await write_json(Path(directory) / MANIFEST, manifest)


def entry_problem(entry: Any) -> str | None:
    """Why a manifest ``files`` entry is unusable, or None. Its path must stay inside the session."""
    if not isinstance(entry, dict):
        return "not an object"
    path = entry.get("path")
    if not isinstance(path, str) or not path or "\x00" in path:
        return "path is missing or not a string"
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        return f"path {path!r} leaves the session directory"
    if path == MANIFEST:
        return "lists the manifest itself"
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return f"{path}: size is not a whole number of bytes"
    if not isinstance(entry.get("sha256"), str) or not _SHA256_RE.fullmatch(entry["sha256"]):
        return f"{path}: sha256 is not 64 lowercase hex digits"
    return None


def failed_parts(manifest: dict[str, Any]) -> list[str]:
    """The parts the vendor reported as failed (fetched again on the next attempt)."""
    parts = manifest.get("parts") or {}
    return [name for name, part in parts.items() if isinstance(part, dict) and part.get("status") == "failed"]


def deletion_state(record: Any) -> str | None:
    """The state of a deletion record (the manifest's ``deletion`` or an audit-log line; older
    records have only ``result``), or None for a dry run or no record."""
    if not isinstance(record, dict) or record.get("dry_run") is True:
        return None
    state = record.get("state", record.get("result"))
    return state if isinstance(state, str) else None


def gone_at_vendor(record: Any) -> bool:
    """What counts as deleted: a record saying the vendor's recordings are deleted, possibly
    deleted, or about to be (an intent with no answer after it). A record that does not say
    ``dry_run`` counts: when in doubt, the archive is what must be kept."""
    return deletion_state(record) in GONE


def recordings_deleted(manifest: dict[str, Any] | None) -> bool:
    """True when the manifest's ``deletion`` record counts as deleted (see ``gone_at_vendor``)."""
    return gone_at_vendor((manifest or {}).get("deletion"))


def with_deletion(manifest: dict[str, Any], at: str, dry_run: bool, state: str, message: str) -> dict[str, Any]:
    """The manifest with a ``deletion`` record, everything else unchanged."""
    return dict(manifest, deletion={"at": at, "dry_run": dry_run, "state": state, "result": state, "message": message})


__all__ = [
    "MANIFEST", "MANIFEST_FORMAT", "RECORDINGS", "VOICEMAIL", "TRANSCRIPT", "CALL", "PARTS", "NO_MANIFEST",
    "now_iso", "part_file", "is_work_file", "read_part", "write_part", "write_part_sync", "remove_parts",
    "seed_part_files", "read_json", "load", "read_manifest", "manifest_problem", "exists", "commit", "rewrite",
    "entry_problem", "failed_parts", "recordings_deleted", "with_deletion", "deletion_state", "gone_at_vendor",
    "PENDING", "DELETED", "POSSIBLY_DELETED", "GONE",
]
