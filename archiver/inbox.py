"""The inbox: a folder where operators and other programs drop files of ids to archive.

A file is taken only once it is complete: hidden files, temporary names (``*.tmp``,
``*.part``, ...) and files modified within the settle time are left alone, so writers should
write elsewhere (or under a temporary name) and rename the file in. A taken file is parsed
(see ``idfile.py`` for the formats), its ids are committed to the job store, and only then
is it moved away::

    inbox/
        ids.txt                                   dropped here
        processed/20261122T101500Z-ids.txt        ids committed
        processed/20261122T101500Z-ids.txt.report.txt   invalid lines, with line numbers
        rejected/<stamp>-junk.json (+ .reason.txt)      nothing in it could be read
        quarantine/<stamp>-link (+ .reason.txt)   symlinks, FIFOs, devices, directories,
                                                  files over the size limit: never read

Nothing dropped in the inbox is deleted or silently ignored: every file ends up in one of the
three folders with a note saying why, or stays where it is until it can be taken.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .atomicfile import fsync_dir, write_bytes_sync
from .config import DaemonConfig, format_size
from .errors import UnparseableFile, UnsafeInputError
from .idfile import InvalidItem, ParsedItem, parse_ids, shown
from .store import EnqueueResult, JobStore

log = logging.getLogger("archiver.inbox")

PROCESSED, REJECTED, QUARANTINE = "processed", "rejected", "quarantine"
# A file is claimed by renaming it in here before it is read; it is read and moved from here.
# The scanner used to read through a descriptor but move by name: a file put in place under
# the same name meanwhile was moved away unread. A later file under that name is a new file.
CLAIMED = ".claimed"
_OWN_DIRS = (PROCESSED, REJECTED, QUARANTINE, CLAIMED)
# A modification time this far ahead of our clock is "in the future", not "just written".
FUTURE_SLACK = 2.0
_CLAIMED_NAME = re.compile(r"\d+-(.*)", re.S)
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".swp", "~")

REPORT_LIMIT = 10_000  # invalid lines listed in one report; the rest are only counted
# Ids per store transaction. Each transaction holds the store's write lock, and a worker's
# claim waits for it: 50,000 ids a transaction kept claims waiting 0.2 s on an idle machine
# (over 1 s on a busy one); 10,000 keep that wait a fifth as long, for a slower ingest (a
# million random ids: about 22 s instead of 12 s, as each transaction rewrites the ext_id
# index pages it touches).
ENQUEUE_BATCH = 10_000


# -- the scanner ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FileOutcome:
    """What one scan did with one entry of the inbox.

    ``disposition`` is "processed", "rejected", "skipped" (left in place: too new, a temporary
    name, a read error) or "moved_aside" (to quarantine/). ``report`` is the note written
    beside the moved file: the invalid-lines report, or the reason file.
    """

    name: str
    disposition: str
    accepted: int
    invalid: int
    reason: str | None
    moved_to: Path | None
    report: Path | None


class _Report:
    """The invalid items of one file, the first REPORT_LIMIT of them kept for the report."""

    def __init__(self) -> None:
        self.count = 0
        self.lines: list[str] = []

    def add(self, item: InvalidItem) -> None:
        self.count += 1
        if len(self.lines) < REPORT_LIMIT:
            self.lines.append(f"line {item.line}: {item.reason}: {item.value}")

    def render(self, heading: list[str]) -> str:
        """The heading (as # comments), then one line per invalid item."""
        body = [*(f"# {h}" for h in heading), *self.lines]
        if self.count > len(self.lines):
            body.append(f"# ... and {self.count - len(self.lines)} more invalid lines")
        return "\n".join(body) + "\n"


def _write_note(path: Path, text: str) -> None:
    """Write a small text file beside a moved file, as every file is written (``atomicfile``)."""
    write_bytes_sync(path, text.encode("utf-8", "backslashreplace"))


def _is_left_alone(name: str) -> bool:
    return name.startswith(".") or name.endswith(TEMP_SUFFIXES)


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "not a regular file"


class _MoveAside(Exception):
    """Internal: the entry must go to quarantine/ unread."""


class Inbox:
    """Takes complete files from the inbox folder into the job store."""

    def __init__(self, daemon: DaemonConfig, store: JobStore) -> None:
        """``daemon``: the ``[daemon]`` settings (inbox_dir, inbox_settle_time, inbox_max_file_size)."""
        self.daemon = daemon
        self.dir = Path(daemon.inbox_dir)
        self._store = store
        # Files with a modification time in the future: (device, inode, size, mtime) -> when
        # first seen. Read once unchanged for the settle time; warned about once.
        self._future: dict[tuple[int, int, int, int], float] = {}
        self._future_seen: set[tuple[int, int, int, int]] = set()

    def scan(self, *, now: float | None = None) -> list[FileOutcome]:
        """Take every file that is ready; returns what happened to each entry looked at.

        Synchronous (the daemon runs it in a thread). Store errors propagate, leaving the file
        being read claimed, for the next scan. Files claimed by an earlier scan that did not
        finish them (a crash, a writer still at it) are read first.
        """
        now = time.time() if now is None else now
        self._prepare_dirs()
        self._future_seen = set()
        outcomes = []
        taken = [(self._read_claimed, name) for name in sorted(os.listdir(self.dir / CLAIMED))]
        taken += [(self._take, name) for name in sorted(os.listdir(self.dir)) if name not in _OWN_DIRS]
        for take, name in taken:
            outcome = take(name, now)
            if outcome is not None:
                _log(outcome)
                outcomes.append(outcome)
        self._future = {k: v for k, v in self._future.items() if k in self._future_seen}
        return outcomes

    def _prepare_dirs(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in _OWN_DIRS:
            path = self.dir / name
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                path.mkdir(exist_ok=True)
                continue
            if not stat.S_ISDIR(mode):
                # Moving files into a planted symlink would send them anywhere; stop instead.
                raise UnsafeInputError(f"{path} is not a directory ({_kind(mode)}); move it away")

    def _take(self, name: str, now: float) -> FileOutcome | None:
        if _is_left_alone(name):
            return _skipped(name, "hidden or temporary name")
        path = self.dir / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None  # gone since the listing
        if not self._settled(name, st, now):
            return _skipped(name, "modified too recently")
        if not stat.S_ISREG(st.st_mode):
            return self._quarantine(path, name, _kind(st.st_mode), now)
        if st.st_size > self.daemon.inbox_max_file_size:
            return self._quarantine(path, name, self._oversize(st.st_size), now)
        try:
            claimed = self._claim(name, now)
        except FileNotFoundError:
            return None  # gone since the lstat()
        except OSError as exc:
            return _skipped(name, f"cannot be claimed: {exc.strerror}")
        return self._read_claimed(claimed.name, now)

    def _claim(self, name: str, now: float) -> Path:
        """Rename an inbox file into the private work directory; its new path there."""
        base = os.fsdecode(os.fsencode(name)[:200])
        stamp = time.time_ns()
        target = self.dir / CLAIMED / f"{stamp}-{base}"
        while os.path.lexists(target):  # only the daemon scans the inbox
            stamp += 1
            target = self.dir / CLAIMED / f"{stamp}-{base}"
        os.rename(self.dir / name, target)
        fsync_dir(target.parent)
        fsync_dir(self.dir)
        return target

    def _read_claimed(self, claimed: str, now: float) -> FileOutcome | None:
        """Read a claimed file and move it from the work directory to where it belongs."""
        match = _CLAIMED_NAME.fullmatch(claimed)
        name = match.group(1) if match else claimed
        path = self.dir / CLAIMED / claimed
        try:
            fd, st = self._open(path)
        except _MoveAside as exc:
            return self._quarantine(path, name, str(exc), now)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._move(path, name, REJECTED, f"cannot be opened: {exc.strerror}", now, accepted=0, report=None)
        with os.fdopen(fd, "rb") as stream:
            if not self._settled(name, st, now):
                return _skipped(name, "modified too recently")  # still being written: read later
            return self._ingest(path, name, stream, now, st)

    def _settled(self, name: str, st: os.stat_result, now: float) -> bool:
        """True when the file has not been written to for the settle time.

        A modification time in the future (a producer's clock ahead of ours) would keep a
        file waiting, silently, until then: such a file is read once it has stayed unchanged
        for the settle time as seen by our clock, and a warning says so once.
        """
        settle = self.daemon.inbox_settle_time
        if st.st_mtime <= now - settle:
            return True
        if st.st_mtime <= now + FUTURE_SLACK:
            return False
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        self._future_seen.add(key)
        first = self._future.get(key)
        if first is None:
            first = self._future[key] = now
            log.warning(
                "inbox file %s has a modification time in the future (%s); it is read once unchanged"
                " for %gs, at %s", shown(name), _utc(st.st_mtime), settle, _utc(now + settle),
                extra={"kv_file": name},
            )
        return now - first >= settle

    def _oversize(self, size: int) -> str:
        limit = self.daemon.inbox_max_file_size
        return f"larger than the inbox size limit ({format_size(size)} > {format_size(limit)}, daemon.inbox_max_file_size)"

    def _open(self, path: Path) -> tuple[int, os.stat_result]:
        """Open a regular file without following a link or blocking on a FIFO.

        lstat() said regular file, but the entry may have been swapped since: O_NOFOLLOW
        refuses a link, O_NONBLOCK keeps a FIFO from blocking, and fstat() checks what was
        actually opened.
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _MoveAside("symbolic link") from None
            if exc.errno == errno.ENXIO:
                raise _MoveAside("not a regular file") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _MoveAside(_kind(st.st_mode))
            if st.st_size > self.daemon.inbox_max_file_size:
                raise _MoveAside(self._oversize(st.st_size))
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def _ingest(self, path: Path, name: str, stream: BinaryIO, now: float, opened: os.stat_result) -> FileOutcome:
        report = _Report()

        def valid() -> Iterator[tuple[str, str]]:
            for item in parse_ids(stream, name, max_bytes=self.daemon.inbox_max_file_size):
                if isinstance(item, ParsedItem):
                    yield item.id_type, item.ext_id
                else:
                    report.add(item)

        try:
            # enqueue() commits batch by batch as it reads; the file is moved only after the
            # last batch is committed. If the process dies in between, the file is still here
            # and is read again on the next scan: enqueue is idempotent, so nothing is queued
            # twice and nothing is lost.
            result = self._store.enqueue(valid(), batch=ENQUEUE_BATCH)
        except UnparseableFile as exc:
            if _changed_since(stream, opened):
                return _skipped(name, "changed while being read (a writer is still at it)")
            return self._move(path, name, REJECTED, str(exc), now, accepted=0, report=report)
        except OSError as exc:
            # A read error part way: leave the file for the next scan (enqueue is idempotent).
            return _skipped(name, f"read error: {exc.strerror}")
        if _changed_since(stream, opened):
            # Moving it now would carry the writer's newest lines away unread; the ids read so
            # far are queued (enqueue is idempotent), the next scan reads the file again.
            return _skipped(name, "changed while being read (a writer is still at it)")
        accepted = result.added + result.requeued + result.skipped
        if accepted == 0 and report.count > 0:
            return self._move(path, name, REJECTED, f"no valid ids ({report.count} invalid)", now, accepted=0, report=report)
        return self._move(path, name, PROCESSED, None, now, accepted=accepted, report=report, result=result)

    def _quarantine(self, path: Path, name: str, reason: str, now: float) -> FileOutcome:
        return self._move(path, name, QUARANTINE, reason, now, accepted=0, report=None)

    def _move(
        self,
        source: Path,
        name: str,
        folder: str,
        reason: str | None,
        now: float,
        *,
        accepted: int,
        report: _Report | None,
        result: EnqueueResult | None = None,
    ) -> FileOutcome:
        """Move an entry (never following it) from ``source`` into ``folder``, its note beside it."""
        target = self._target(folder, name, now)
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return _skipped(name, "vanished before it could be moved")
        fsync_dir(target.parent)
        fsync_dir(source.parent)
        invalid = report.count if report else 0
        note = self._note(name, folder, reason, accepted, invalid, report, result)
        note_path = None
        if note is not None:
            suffix = ".report.txt" if folder == PROCESSED else ".reason.txt"
            note_path = target.with_name(target.name + suffix)
            _write_note(note_path, note)
        disposition = {PROCESSED: "processed", REJECTED: "rejected", QUARANTINE: "moved_aside"}[folder]
        return FileOutcome(name, disposition, accepted, invalid, reason, target, note_path)

    def _target(self, folder: str, name: str, now: float) -> Path:
        """A new name in ``folder``: UTC timestamp, a counter if needed, the original name."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        # Keep room for the stamp and the note suffix within the usual 255-byte name limit.
        base = os.fsdecode(os.fsencode(name)[:200])
        directory = self.dir / folder
        target = directory / f"{stamp}-{base}"
        counter = 1
        # Only the daemon scans the inbox, so checking first is enough to avoid overwriting.
        while os.path.lexists(target):
            target = directory / f"{stamp}-{counter}-{base}"
            counter += 1
        return target

    @staticmethod
    def _note(
        name: str,
        folder: str,
        reason: str | None,
        accepted: int,
        invalid: int,
        report: _Report | None,
        result: EnqueueResult | None,
    ) -> str | None:
        heading = [f"file: {shown(name)}"]
        if reason is not None:
            # A reason file: the reason on its first line, then whatever invalid lines there were.
            return f"{reason}\n" + (report or _Report()).render(heading)
        if invalid == 0 and accepted > 0:
            return None  # a clean file needs no report
        if accepted == 0 and invalid == 0:
            heading.append("the file holds no ids (it is empty)")
        else:
            heading.append(f"accepted: {accepted} ids")
            if result is not None:
                heading.append(f"new: {result.added}, requeued: {result.requeued}, already known: {result.skipped}")
            heading.append(f"invalid: {invalid} (listed below; these were not queued)")
        assert report is not None
        return report.render(heading)


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _changed_since(stream: BinaryIO, opened: os.stat_result) -> bool:
    """True when the open file grew or was written to since it was opened."""
    now = os.fstat(stream.fileno())
    return (now.st_size, now.st_mtime_ns) != (opened.st_size, opened.st_mtime_ns)


def _skipped(name: str, reason: str) -> FileOutcome:
    return FileOutcome(name, "skipped", 0, 0, reason, None, None)


def _log(outcome: FileOutcome) -> None:
    extra = {
        "kv_file": outcome.name,
        "kv_disposition": outcome.disposition,
        "kv_accepted": outcome.accepted,
        "kv_invalid": outcome.invalid,
    }
    name = shown(outcome.name)  # a file name may hold newlines and other controls
    if outcome.disposition == "skipped":
        log.debug("inbox file %s skipped: %s", name, outcome.reason, extra=extra)
    elif outcome.disposition == "processed":
        log.info(
            "inbox file %s processed: %d ids accepted, %d invalid", name, outcome.accepted, outcome.invalid, extra=extra
        )
    else:
        log.warning("inbox file %s %s: %s", name, outcome.disposition, outcome.reason, extra=extra)
