"""The deletion audit log: one JSON line per deletion decided, appended and fsynced.

The log lives at ``delete.audit_log`` or ``<daemon.state_dir>/deletions.jsonl``. Each line
records one call (or dry run) of ``deletion.py``: when, which session and directory, the
result, the vendor's message and the recording files (path, size, sha256) proven before the
call. Lines are only ever appended (``O_APPEND``); a line cut short by a crash is skipped
when the log is read back.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from .atomicfile import FILE_MODE, fsync_dir
from .config import Config
from .manifest import gone_at_vendor

log = logging.getLogger("archiver.audit")

AUDIT_LOG_NAME = "deletions.jsonl"
_BLOCK = 1024 * 1024


def audit_log_path(config: Config) -> Path:
    """``delete.audit_log``, or ``<daemon.state_dir>/deletions.jsonl``."""
    return Path(config.delete.audit_log) if config.delete.audit_log else config.daemon.state_dir / AUDIT_LOG_NAME


def open_audit_log(path: Path) -> int:
    """An append-only descriptor on the audit log (created, and its directory fsynced, if new).

    Raises OSError when it cannot be opened: a deletion that cannot be recorded must not happen.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    if created:
        fsync_dir(path.parent)
    return fd


def append(fd: int, entry: dict[str, Any]) -> bool:
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


def last_lines(config: Config, session_ids: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """The last real (not dry-run) line of each session (of ``session_ids``, or all) in the log.

    The last line wins: an intent (``pending``) is followed by the answer when there was one.
    """
    found: dict[str, dict[str, Any]] = {}
    try:
        with open(audit_log_path(config), "rb") as handle:
            lines = handle if session_ids is None else _lines_naming(handle, session_ids)
            for raw in lines:
                try:
                    entry = json.loads(raw)
                except ValueError:  # a line cut short by a crash
                    continue
                if not isinstance(entry, dict) or not isinstance(entry.get("session_id"), str):
                    continue
                if (session_ids is None or entry["session_id"] in session_ids) and entry.get("dry_run") is False:
                    found[entry["session_id"]] = entry
    except FileNotFoundError:
        pass
    return found


def _lines_naming(handle: BinaryIO, session_ids: set[str]) -> Iterator[bytes]:
    """The lines of the log that name one of ``session_ids``, found block by block.

    The log grows by a line or two per deletion, for years; it is asked about one session
    before each deletion. Searching each 1 MiB block for the ids in C and parsing only the
    lines around a hit keeps that at a read of the file, not a JSON parse of every line.
    """
    needles = [sid.encode("utf-8", "surrogateescape") for sid in session_ids]
    carry = b""
    while block := handle.read(_BLOCK):
        block = carry + block
        cut = block.rfind(b"\n") + 1
        block, carry = block[:cut], block[cut:]
        if any(needle in block for needle in needles):
            yield from (line for line in block.splitlines() if any(needle in line for needle in needles))
    if carry and any(needle in carry for needle in needles):
        yield carry


def deleted_in_audit_log(config: Config, session_ids: set[str] | None = None) -> set[str]:
    """Those of ``session_ids`` (or all) the audit log records as deleted, possibly deleted, or
    about to be deleted with no answer after (see ``manifest.gone_at_vendor``)."""
    return {sid for sid, entry in last_lines(config, session_ids).items() if gone_at_vendor(entry)}


__all__ = ["AUDIT_LOG_NAME", "audit_log_path", "open_audit_log", "append", "last_lines", "deleted_in_audit_log"]
