"""How long ``inbox/processed/`` keeps the files it took (``daemon.inbox_retention``).

``processed/`` holds each file whose ids were queued, renamed ``<UTC stamp>-<name>``, with its
report of invalid lines beside it. Once older than the retention time both are removed: the
ids are in the job store and the archive is the record. The age is read from the stamp the
inbox put in the name (the file's own mtime is the producer's, kept by the rename), else from
the mtime. ``rejected/`` and ``quarantine/`` are never emptied: nothing in them was queued and
an operator has to look at them.
"""

from __future__ import annotations

import calendar
import logging
import os
import re
import time
from pathlib import Path

from .atomicfile import fsync_dir
from .inbox import PROCESSED

log = logging.getLogger("archiver.inbox")

_STAMP = re.compile(r"(\d{8}T\d{6}Z)-")


def prune_processed(inbox_dir: Path, keep: float, *, now: float | None = None) -> int:
    """Remove what ``processed/`` has held for longer than ``keep`` seconds (0: keep all); returns how many."""
    if keep <= 0:
        return 0
    directory = inbox_dir / PROCESSED
    cutoff = (time.time() if now is None else now) - keep
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    removed = 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False) and _taken_at(entry) < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    if removed:
        fsync_dir(directory)
        log.info(
            "removed %d files older than %.0f days from %s (daemon.inbox_retention)", removed, keep / 86400, directory
        )
    return removed


def _taken_at(entry: os.DirEntry[str]) -> float:
    match = _STAMP.match(entry.name)
    if match:
        try:
            return float(calendar.timegm(time.strptime(match.group(1), "%Y%m%dT%H%M%SZ")))
        except ValueError:
            pass
    return entry.stat(follow_symlinks=False).st_mtime
