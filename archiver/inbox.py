"""The inbox: a folder where operators and other programs drop files of ids to archive.

A file is taken only once it is complete: hidden files, temporary names (``*.tmp``,
``*.part``, ...) and files modified within the settle time are left alone, so writers should
write elsewhere (or under a temporary name) and rename the file in. A taken file is parsed
(see :func:`parse_ids` for the formats), its ids are committed to the job store, and only then
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

import csv
import errno
import itertools
import json
import logging
import os
import re
import stat
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from . import ids
from .atomicfile import fsync_dir
from .config import format_size
from .errors import UnparseableFile, UnsafeInputError  # UnparseableFile is raised from here
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

MAX_LINE = 4096  # bytes; longer lines are reported invalid, never held in memory whole
MAX_SHOWN = 80  # characters of an invalid value shown in a report
REPORT_LIMIT = 10_000  # invalid lines listed in one report; the rest are only counted
_SNIFF_LINES = 1000  # lines looked at to find the first one with content
# Ids per store transaction. Larger than the store's default: a file's ids arrive in random
# order, and each transaction rewrites every ext_id index page it touches, so fewer, larger
# transactions write far less (a million random ids: ~12 s instead of ~22 s). Each still
# holds the write lock for well under a second.
ENQUEUE_BATCH = 50_000
_BOM = b"\xef\xbb\xbf"
_INLINE_COMMENT = re.compile(r"\s#.*")


# -- the parser -----------------------------------------------------------------------------


class ParsedItem(NamedTuple):
    """A valid id read from a file."""

    id_type: str
    ext_id: str
    line: int


class InvalidItem(NamedTuple):
    """Something in a file that is not a valid id; ``value`` is already made safe to show."""

    line: int
    reason: str
    value: str


Item = ParsedItem | InvalidItem


def shown(value: str | bytes) -> str:
    """``value`` as it may appear in a report or log: at most 80 characters, controls escaped."""
    if isinstance(value, bytes):
        value = value[: MAX_SHOWN * 4].decode("utf-8", "backslashreplace")
    escaped = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in value[:MAX_SHOWN])
    if len(escaped) > MAX_SHOWN or len(value) > MAX_SHOWN:
        return escaped[: MAX_SHOWN - 3] + "..."
    return escaped


def _item(id_type: str, value: str, line: int) -> Item:
    value = value.strip()
    problem = ids.id_problem(id_type, value)
    if problem is not None:
        return InvalidItem(line, f"invalid {id_type} id ({problem})", shown(value))
    return ParsedItem(id_type, value, line)


def _column_type(name: str) -> str | None:
    """The id type a CSV column or JSON key names: sessionId, session_id, userId, User ID, ..."""
    key = re.sub(r"[\s_-]", "", name).lower()
    return {"sessionid": ids.SESSION, "userid": ids.USER}.get(key)


def _list_key_type(name: str) -> str | None:
    """The id type of a JSON key holding a list of ids: sessionIds, session_ids, userIds, ..."""
    key = re.sub(r"[\s_-]", "", name).lower()
    return {"sessionids": ids.SESSION, "userids": ids.USER}.get(key)


class _Line(NamedTuple):
    number: int
    data: bytes  # without the line ending; for an overlong line, only its first MAX_LINE bytes
    too_long: bool


def _read_lines(stream: BinaryIO) -> Iterator[_Line]:
    """Lines with bounded memory: a line longer than MAX_LINE is cut and flagged."""
    number = 0
    while chunk := stream.readline(MAX_LINE + 1):
        number += 1
        data = chunk.removesuffix(b"\n").removesuffix(b"\r")
        if number == 1:
            data = data.removeprefix(_BOM)
        if len(chunk) > MAX_LINE and not chunk.endswith(b"\n"):
            while (rest := stream.readline(65536)) and not rest.endswith(b"\n"):
                pass
            yield _Line(number, data[:MAX_LINE], True)
        else:
            yield _Line(number, data, False)


def _decoded(line: _Line) -> str | InvalidItem:
    """The line's text, or why it cannot be read."""
    if line.too_long:
        return InvalidItem(line.number, f"line longer than {MAX_LINE} bytes", shown(line.data))
    try:
        return line.data.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidItem(line.number, "not valid UTF-8", shown(line.data))


def _is_blank_or_comment(text: str) -> bool:
    stripped = text.strip()
    return not stripped or stripped.startswith("#")


class _CsvHeader(NamedTuple):
    delimiter: str
    column: int
    id_type: str
    name: str


def _csv_header(text: str) -> _CsvHeader | None:
    """The id column of a CSV header line (comma, semicolon or tab separated), if it has one."""
    for delimiter in (",", ";", "\t"):
        if delimiter not in text and delimiter != ",":
            continue
        try:
            names = next(csv.reader([text], delimiter=delimiter))
        except (csv.Error, StopIteration):
            continue
        found = {}
        for index, name in enumerate(names):
            id_type = _column_type(name)
            if id_type is not None:
                found.setdefault(id_type, (index, name.strip()))
        # A session column wins over a user column when a file has both.
        for id_type in (ids.SESSION, ids.USER):
            if id_type in found:
                index, name = found[id_type]
                return _CsvHeader(delimiter, index, id_type, name)
    return None


def _first_content(stream: BinaryIO) -> str | None:
    """The first line with content (not blank, not a # comment), or None."""
    for line in itertools.islice(_read_lines(stream), _SNIFF_LINES):
        text = _decoded(line)
        if isinstance(text, InvalidItem):
            return None
        if not _is_blank_or_comment(text):
            return text.strip()
    return None


def _sniff(stream: BinaryIO) -> str:
    """Guess the format of a file whose name does not say."""
    first = _first_content(stream)
    if first is None:
        return "lines"
    if first.startswith("["):
        return "json"
    if first.startswith("{"):
        # One complete object on the first line is NDJSON; an object spread over lines is JSON.
        try:
            return "ndjson" if isinstance(json.loads(first), dict) else "json"
        except (ValueError, RecursionError):
            return "json"
    if _csv_header(first) is not None:
        return "csv"
    return "lines"


def _format_from_name(name: str) -> str | None:
    suffix = os.path.splitext(name)[1].lower()
    return {".csv": "csv", ".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson"}.get(suffix)


def parse_ids(stream: BinaryIO, name: str, *, max_bytes: int | None = None) -> Iterator[Item]:
    """Read the ids of one inbox file, streaming; ``stream`` must be seekable.

    The format comes from the name (``.csv``, ``.json``, ``.ndjson``/``.jsonl``) or, for any
    other name, from the content: a first character ``[`` or ``{`` means JSON or NDJSON, a
    header line naming a sessionId/session_id/userId/user_id column means CSV, anything else
    is one session id per line (blank lines, ``#`` comments, CRLF and a UTF-8 BOM tolerated).

    Yields a :class:`ParsedItem` per valid id (validated: it is safe to use) and an
    :class:`InvalidItem` per line or element that is not one, with its line number. Raises
    :class:`UnparseableFile` when the file as a whole cannot be read in its format (truncated
    JSON, a CSV without an id column, UTF-16 text); that happens before any item is yielded.

    Line formats are read with bounded memory whatever the size. A JSON document is read
    whole; ``max_bytes`` caps that read (a longer document is unparseable).
    """
    start = stream.tell()
    if stream.read(2) in (b"\xff\xfe", b"\xfe\xff"):
        raise UnparseableFile("UTF-16 text; save the file as UTF-8")
    stream.seek(start)
    fmt = _format_from_name(name)
    if fmt is None:
        fmt = _sniff(stream)
        stream.seek(start)
    if fmt == "csv":
        yield from _parse_csv(stream, start)
    elif fmt == "json":
        yield from _parse_json(stream, start, max_bytes)
    elif fmt == "ndjson":
        yield from _parse_ndjson(stream)
    else:
        yield from _parse_lines(stream)


def _parse_lines(stream: BinaryIO) -> Iterator[Item]:
    for line in _read_lines(stream):
        text = _decoded(line)
        if isinstance(text, InvalidItem):
            yield text
            continue
        text = text.strip()
        if not text or text[0] == "#":
            continue
        if "#" in text:
            # An id never contains "#": "abc  # note" is the id abc with a comment.
            text = _INLINE_COMMENT.sub("", text)
        yield _item(ids.SESSION, text, line.number)


def _parse_csv(stream: BinaryIO, start: int) -> Iterator[Item]:
    lines = _read_lines(stream)
    header = None
    for line in lines:
        text = _decoded(line)
        if isinstance(text, InvalidItem):
            raise UnparseableFile(f"CSV header (line {line.number}): {text.reason}")
        if _is_blank_or_comment(text):
            continue
        header = _csv_header(text)
        if header is None:
            if not any(d in text for d in (",", ";", "\t")):
                # A .csv of one unnamed column is a plain list of ids.
                stream.seek(start)
                yield from _parse_lines(stream)
                return
            raise UnparseableFile(
                f"CSV header (line {line.number}) has no sessionId, session_id, userId or user_id column"
            )
        break
    if header is None:
        return
    for line in lines:
        text = _decoded(line)
        if isinstance(text, InvalidItem):
            yield text
            continue
        if _is_blank_or_comment(text):
            continue
        yield _csv_row(text, header, line.number)


def _csv_row(text: str, header: _CsvHeader, number: int) -> Item:
    # Each line is parsed on its own: ids never span lines, and a stray quote then spoils
    # one line instead of the rest of the file.
    try:
        row = next(csv.reader([text], delimiter=header.delimiter))
    except (csv.Error, StopIteration) as exc:
        return InvalidItem(number, f"malformed CSV ({exc})", shown(text))
    if len(row) <= header.column:
        return InvalidItem(number, f"no {header.name} value", shown(text))
    return _item(header.id_type, row[header.column], number)


def _from_json_value(value: object, number: int, id_type: str | None = None) -> Iterator[Item]:
    """The ids of one JSON element: a string, or an object with an id or a list of ids."""
    if isinstance(value, str):
        yield _item(id_type or ids.SESSION, value, number)
        return
    if isinstance(value, dict):
        by_type: dict[str, object] = {}
        lists: list[tuple[str, object]] = []
        for key, inner in value.items():
            if (kind := _column_type(key)) is not None:
                by_type.setdefault(kind, inner)
            elif (kind := _list_key_type(key)) is not None:
                lists.append((kind, inner))
        for kind in (ids.SESSION, ids.USER):
            if kind in by_type:
                inner = by_type[kind]
                if isinstance(inner, str):
                    yield _item(kind, inner, number)
                else:
                    yield InvalidItem(number, f"{kind} id is not a string", _shown_json(inner))
                return
        if lists:
            for kind, inner in lists:
                yield from _from_json_list(inner, number, kind)
            return
    yield InvalidItem(number, "not an id string nor an object with sessionId or userId", _shown_json(value))


def _from_json_list(value: object, number: int, id_type: str) -> Iterator[Item]:
    if not isinstance(value, list):
        yield InvalidItem(number, f"{id_type} ids are not a list", _shown_json(value))
        return
    for element in value:
        if isinstance(element, str):
            yield _item(id_type, element, number)
        else:
            yield from _from_json_value(element, number, id_type)


def _shown_json(value: object) -> str:
    try:
        return shown(json.dumps(value)[: MAX_SHOWN + 1])
    except (ValueError, RecursionError):
        return "(unprintable)"


def _parse_ndjson(stream: BinaryIO) -> Iterator[Item]:
    for line in _read_lines(stream):
        text = _decoded(line)
        if isinstance(text, InvalidItem):
            yield text
            continue
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            yield InvalidItem(line.number, "not valid JSON", shown(text))
            continue
        yield from _from_json_value(value, line.number)


def _parse_json(stream: BinaryIO, start: int, max_bytes: int | None) -> Iterator[Item]:
    # The whole document is read at once. That is bounded by the inbox's size cap (the scanner
    # passes it as max_bytes, in case the file grows while it is read), and walking the text
    # element by element (below) keeps only the text and one element in memory, never a
    # parsed list of every id.
    raw = stream.read() if max_bytes is None else stream.read(max_bytes + 1)
    if max_bytes is not None and len(raw) > max_bytes:
        raise UnparseableFile(f"JSON document larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise UnparseableFile(f"JSON is not valid UTF-8 (byte {exc.start})") from None
    del raw
    # Walk once to check the structure, then again to yield: a truncated or malformed document
    # is rejected before any of its ids is queued.
    try:
        for _ in _JsonWalker(text).items():
            pass
    except _TrailingData:
        # More values after the first one: really NDJSON under a .json name.
        stream.seek(start)
        yield from _parse_ndjson(stream)
        return
    yield from _JsonWalker(text).items()


class _TrailingData(Exception):
    pass


class _JsonWalker:
    """Reads the top-level array (or the id lists of a top-level object) one element at a time."""

    _decoder = json.JSONDecoder()
    _space = re.compile(r"[ \t\r\n]*")

    def __init__(self, text: str) -> None:
        self.text = text
        self._line = 1
        self._line_pos = 0

    def items(self) -> Iterator[Item]:
        pos = self._skip(0)
        if pos == len(self.text):
            return  # an empty document has no ids; the scanner reports it as empty
        start = pos
        found = True
        if self.text[pos] == "[":
            pos = yield from self._array(pos, None)
        elif self.text[pos] == "{":
            pos, found = yield from self._object(pos)
        else:
            raise UnparseableFile("JSON document is neither an array nor an object")
        if self._skip(pos) != len(self.text):
            raise _TrailingData
        if not found:
            # An object without id lists: one id ({"sessionId": ...}) or nothing usable,
            # which the item reports.
            value, _ = self._value(start)
            yield from _from_json_value(value, self.text.count("\n", 0, start) + 1)

    def _line_of(self, pos: int) -> int:
        # Positions only grow, so counting newlines since the last call is enough.
        self._line += self.text.count("\n", self._line_pos, pos)
        self._line_pos = pos
        return self._line

    def _skip(self, pos: int) -> int:
        return self._space.match(self.text, pos).end()  # type: ignore[union-attr]

    def _value(self, pos: int) -> tuple[object, int]:
        try:
            return self._decoder.raw_decode(self.text, pos)
        except json.JSONDecodeError as exc:
            if exc.msg.startswith("Unterminated") or self._skip(exc.pos) >= len(self.text):
                raise UnparseableFile(f"JSON ends early (truncated?) at line {exc.lineno}") from None
            raise UnparseableFile(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        except (ValueError, RecursionError) as exc:
            raise UnparseableFile(f"invalid JSON at line {self._line_of(pos)}: {exc}") from None

    def _char(self, pos: int, allowed: str | None = None) -> str:
        """The character at ``pos``, which must exist (and be one of ``allowed``)."""
        if pos >= len(self.text):
            raise UnparseableFile(f"JSON ends early (truncated?) at line {self._line_of(pos)}")
        char = self.text[pos]
        if allowed is not None and char not in allowed:
            raise UnparseableFile(f"invalid JSON at line {self._line_of(pos)}: expected one of {allowed!r}")
        return char

    def _array(self, pos: int, id_type: str | None) -> Generator[Item, None, int]:
        """Yield the ids of the array at ``pos``; returns the position after it."""
        pos = self._skip(pos + 1)
        if self._char(pos) == "]":
            return pos + 1
        while True:
            number = self._line_of(pos)
            value, pos = self._value(pos)
            if isinstance(value, str):
                yield _item(id_type or ids.SESSION, value, number)
            else:
                yield from _from_json_value(value, number, id_type)
            pos = self._skip(pos)
            if self._char(pos, ",]") == "]":
                return pos + 1
            pos = self._skip(pos + 1)

    def _object(self, pos: int) -> Generator[Item, None, tuple[int, bool]]:
        """Yield the ids of every id-list key of the object at ``pos``.

        Returns the position after the object and whether it had an id-list key.
        """
        found = False
        pos = self._skip(pos + 1)
        if self._char(pos, '"}') == "}":
            return pos + 1, False
        while True:
            key, pos = self._value(pos)
            pos = self._skip(pos)
            self._char(pos, ":")
            pos = self._skip(pos + 1)
            id_type = _list_key_type(key) if isinstance(key, str) else None
            if id_type is not None and pos < len(self.text) and self.text[pos] == "[":
                found = True
                pos = yield from self._array(pos, id_type)
            else:
                number = self._line_of(pos)
                value, pos = self._value(pos)
                if id_type is not None:
                    found = True
                    yield from _from_json_list(value, number, id_type)
            pos = self._skip(pos)
            if self._char(pos, ",}") == "}":
                break
            pos = self._skip(pos + 1)
            self._char(pos, '"')
        return pos + 1, found


# -- the scanner ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxSettings:
    """Where the inbox is and when a file in it may be taken."""

    inbox_dir: Path
    settle_time: float = 2.0
    max_file_size: int = 256 * 1024 * 1024


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
    """Write a small text file beside a moved file: temp file, fsync, rename, fsync dir."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.rename(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


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

    def __init__(self, settings: InboxSettings, store: JobStore, *, wants: frozenset[str] = frozenset()) -> None:
        self.settings = settings
        self.dir = Path(settings.inbox_dir)
        self._store = store
        self._wants = wants
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
        if st.st_size > self.settings.max_file_size:
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
        settle = self.settings.settle_time
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
                extra={"file": name},
            )
        return now - first >= settle

    def _oversize(self, size: int) -> str:
        limit = self.settings.max_file_size
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
            if st.st_size > self.settings.max_file_size:
                raise _MoveAside(self._oversize(st.st_size))
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def _ingest(self, path: Path, name: str, stream: BinaryIO, now: float, opened: os.stat_result) -> FileOutcome:
        report = _Report()

        def valid() -> Iterator[tuple[str, str]]:
            for item in parse_ids(stream, name, max_bytes=self.settings.max_file_size):
                if isinstance(item, ParsedItem):
                    yield item.id_type, item.ext_id
                else:
                    report.add(item)

        try:
            # enqueue() commits batch by batch as it reads; the file is moved only after the
            # last batch is committed. If the process dies in between, the file is still here
            # and is read again on the next scan: enqueue is idempotent, so nothing is queued
            # twice and nothing is lost.
            result = self._store.enqueue(valid(), wants=self._wants, batch=ENQUEUE_BATCH)
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
        "file": outcome.name,
        "disposition": outcome.disposition,
        "accepted": outcome.accepted,
        "invalid": outcome.invalid,
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
