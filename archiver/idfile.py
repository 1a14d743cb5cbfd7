"""Id files: the formats of the files of ids dropped in the inbox (or given to ``once --ids``).

:func:`parse_ids` reads one file, streaming, and yields each id it holds, validated, or the
reason a line or element is not one. Formats: one session id per line (blank lines, ``#``
comments, CRLF and a UTF-8 BOM tolerated), CSV with a sessionId/session_id/userId/user_id
column, JSON (a list of ids or of objects, or an object of such lists) and NDJSON.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
from collections.abc import Generator, Iterator
from typing import BinaryIO, NamedTuple

from . import ids
from .errors import UnparseableFile  # raised from here

MAX_LINE = 4096  # bytes; longer lines are reported invalid, never held in memory whole
MAX_SHOWN = 80  # characters of an invalid value shown in a report
_SNIFF_LINES = 1000  # lines looked at to find the first one with content
_BOM = b"\xef\xbb\xbf"
_INLINE_COMMENT = re.compile(r"\s#.*")


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


__all__ = ["MAX_LINE", "MAX_SHOWN", "ParsedItem", "InvalidItem", "Item", "UnparseableFile", "parse_ids", "shown"]
