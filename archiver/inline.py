"""Streaming extraction of the audio inside a Fetch Call Recording v1 body.

The v1 API answers ``{"recording": ["data:audio/wav;base64,UklGR...", ...]}``: each recording
is a base64 ``data:`` URI inside a JSON string, hundreds of MB for a long call.
:class:`InlineRecordingParser` is fed the body chunk by chunk as it arrives and hands back
the decoded audio as it goes, so memory stays at a chunk or two whatever the recording's size::

    parser = InlineRecordingParser(max_item_size=cap)
    async for chunk in response.content.iter_chunked(64 * 1024):
        for event in parser.feed(chunk):
            ...  # RecordingStart, then RecordingData (in order), then RecordingEnd, per item
    parser.close()  # raises ProtocolError when the body stopped early

Events already returned are not taken back when a later chunk turns out to be malformed: a
caller treats the body as failed as a whole when ``feed`` or ``close`` raises.

The JSON framing around the recordings (other keys and their values, whitespace) is small and
is walked by a character-level state machine. The base64 inside a recording is handled a
whole chunk at a time with bytes operations that run in C (find, replace, a2b_base64): a
Python loop per byte there would cap throughput at a few MB/s.

What is accepted is plain JSON (RFC 8259, UTF-8) with these rules on top:

* the top level is an object; its ``recording`` member is an array of strings or null, and
  may appear once; other members, at any depth up to 64, are checked and skipped;
* each item is ``data:<type>/<subtype>[;param...];base64,<base64>`` after JSON unescaping,
  the mime type made of token characters, at most 100 of them; parameters are dropped;
* whitespace (space, tab, CR, LF) inside the base64 is ignored; the rest must be standard
  base64 with correct padding.
"""

from __future__ import annotations

import binascii
import codecs
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from archiver.errors import ArchiverError, ProtocolError, TooLargeError

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted inside a skipped value."""
MAX_MIME_LENGTH = 100
MAX_HEADER_LENGTH = 512
"""Characters allowed before the comma of a data: URI (scheme, mime, parameters, ;base64)."""
MAX_NUMBER_LENGTH = 1024

RECORDING_KEY = "recording"
# The longest JSON spelling of "recording" is nine \uXXXX escapes: 54 bytes.
_MAX_KEY_BYTES = 64

_QUOTE = ord('"')
_BACKSLASH = ord("\\")
_EQUALS = ord("=")

_WHITESPACE = re.compile(rb"[ \t\r\n]*")
# A run of string content that is certainly valid: plain characters and complete escapes.
_STRING_RUN = re.compile(rb'(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+')
_UNICODE_ESCAPE = re.compile(rb"\\u[0-9a-fA-F]{4}")
_PARTIAL_ESCAPE = re.compile(rb"\\(?:u[0-9a-fA-F]{0,3})?")
_NUMBER_CHARS = re.compile(rb"[-+.eE0-9]*")
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_LITERALS = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}
_SIMPLE_ESCAPES = {
    ord('"'): '"', ord("\\"): "\\", ord("/"): "/",
    ord("b"): "\b", ord("f"): "\f", ord("n"): "\n", ord("r"): "\r", ord("t"): "\t",
}  # fmt: skip

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MIME = re.compile(f"{_TOKEN}/{_TOKEN}")

# Inside base64: any escape but "\/" (or a string ending in a backslash) needs _unescape.
_NOT_SLASH_ESCAPE = re.compile(rb"\\[^/]")
_ANY_ESCAPE = re.compile(rb'\\(?:u[0-9a-fA-F]{4}|["\\/bfnrt])')
_BASE64_WHITESPACE = frozenset(" \t\r\n")
_BASE64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_NOT_BASE64 = b"\x80"  # stands in for a decoded character that cannot be base64

# Base64 is decoded in blocks of at most this many body bytes (see _on_item_data).
_BLOCK_SIZE = 64 * 1024

_OBJECT = "object"
_ARRAY = "array"
_RECORDINGS = "recordings"


@dataclass(frozen=True, slots=True)
class RecordingStart:
    """A recording item begins; ``mime`` is its lower-cased ``type/subtype``."""

    index: int
    mime: str


@dataclass(frozen=True, slots=True)
class RecordingData:
    """The next decoded audio bytes of the current recording."""

    data: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"RecordingData(<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class RecordingEnd:
    """The recording ``index`` ended cleanly; ``size`` is its decoded length in bytes."""

    index: int
    size: int


Event = RecordingStart | RecordingData | RecordingEnd


class InlineRecordingParser:
    """Push parser for a Fetch Call Recording v1 body; see the module docstring."""

    def __init__(self, *, max_item_size: int | None = None) -> None:
        if max_item_size is not None and max_item_size < 0:
            raise ValueError("max_item_size must be >= 0")
        self._max_item_size = max_item_size
        self._buf = b""  # unparsed input; between feeds at most a partial token
        self._pos = 0
        self._offset = 0  # body offset of _buf[0], for error messages
        self._state: Callable[[], bool] = self._on_start
        self._stack: list[str] = []
        self._events: list[Event] = []
        self._error: ArchiverError | None = None
        self._closed = False
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._string_is_key = False
        self._key: bytearray | None = None  # raw bytes of a top-level key
        self._key_is_recording = False
        self._recording_key_seen = False
        self._literal = b""
        self._literal_matched = 0
        self._number = bytearray()
        self._header: list[str] = []
        self._item: _ItemDecoder | None = None
        self._next_index = 0

    @property
    def recordings_seen(self) -> int:
        """How many recordings have ended cleanly (RecordingEnd events) so far."""
        return self._next_index if self._item is None else self._next_index - 1

    @property
    def buffered_bytes(self) -> int:
        """Bytes the parser holds between feeds; stays small whatever the item size."""
        held = len(self._buf) - self._pos + len(self._number) + len(self._header)
        if self._key is not None:
            held += len(self._key)
        if self._item is not None:
            held += self._item.buffered_bytes
        return held

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse the next piece of the body; return the events it completes, in order.

        Raises ProtocolError for a malformed body and TooLargeError for a recording over
        ``max_item_size``, as soon as the chunk that shows it arrives; the parser is then
        spent and every later call raises too.
        """
        self._check_usable()
        self._buf = self._buf + chunk if self._buf else bytes(chunk)
        events = self._events = []
        try:
            while self._state():
                pass
            self._flush_data()
        except ArchiverError as exc:
            self._error = exc
            raise
        finally:
            self._events = []
        self._offset += self._pos
        self._buf = self._buf[self._pos :]
        self._pos = 0
        return events

    def close(self) -> list[Event]:
        """Declare the end of the body; raise ProtocolError if the JSON is not complete."""
        self._check_usable()
        self._closed = True
        if self._state != self._on_done:
            where = f"inside recording {self._item.index}" if self._item else "before the JSON was complete"
            self._error = ProtocolError(f"body ended {where} ({self._offset + len(self._buf)} bytes)")
            raise self._error
        return []

    def _check_usable(self) -> None:
        if self._error is not None:
            raise type(self._error)(f"parser failed earlier: {self._error}")
        if self._closed:
            raise RuntimeError("InlineRecordingParser used after close()")

    def _fail(self, problem: str, pos: int | None = None) -> ProtocolError:
        where = self._offset + (self._pos if pos is None else pos)
        return ProtocolError(f"recording body: {problem} at byte {where}")

    # -- JSON framing --------------------------------------------------------------------
    # Each _on_* handler consumes what it can from _buf at _pos. It returns True after a
    # state change (call the next handler) and False when it needs more input.

    def _next_char(self) -> int | None:
        """Skip whitespace; return the next byte without consuming it, or None at the end."""
        self._pos = _WHITESPACE.match(self._buf, self._pos).end()
        return self._buf[self._pos] if self._pos < len(self._buf) else None

    def _unexpected(self, c: int, expected: str) -> ProtocolError:
        return self._fail(f"expected {expected}, found {bytes([c])!r}")

    def _on_start(self) -> bool:
        c = self._next_char()
        if c is None:
            return False
        if c != ord("{"):
            raise self._fail("the body is not a JSON object")
        self._pos += 1
        self._stack.append(_OBJECT)
        self._state = self._on_key_or_close
        return True

    def _on_key_or_close(self) -> bool:
        c = self._next_char()
        if c is None:
            return False
        if c == ord("}"):
            return self._close_container(c)
        return self._on_key()

    def _on_key(self) -> bool:
        c = self._next_char()
        if c is None:
            return False
        if c != _QUOTE:
            raise self._unexpected(c, "a key")
        self._pos += 1
        self._begin_string(is_key=True)
        return True

    def _on_colon(self) -> bool:
        c = self._next_char()
        if c is None:
            return False
        if c != ord(":"):
            raise self._unexpected(c, "':'")
        self._pos += 1
        self._state = self._on_value
        return True

    def _on_value_or_close(self) -> bool:
        c = self._next_char()
        if c is None:
            return False
        if c == ord("]"):
            return self._close_container(c)
        self._state = self._on_value
        return True

    def _on_value(self) -> bool:
        c = self._next_char()
        if c is None:
            return False
        if self._stack[-1] is _RECORDINGS:
            return self._begin_item(c)
        if len(self._stack) == 1 and self._key_is_recording:
            return self._begin_recordings(c)
        return self._begin_skipped_value(c)

    def _on_comma_or_close(self) -> bool:
        c = self._next_char()
        if c is None:
            return False
        if c == ord(","):
            self._pos += 1
            self._state = self._on_key if self._stack[-1] is _OBJECT else self._on_value
            return True
        return self._close_container(c)

    def _on_done(self) -> bool:
        c = self._next_char()
        if c is not None:
            raise self._fail("data after the end of the JSON object")
        return False

    def _close_container(self, c: int) -> bool:
        expected = ord("}") if self._stack[-1] is _OBJECT else ord("]")
        if c != expected:
            raise self._unexpected(c, f"',' or {chr(expected)!r}")
        self._pos += 1
        self._stack.pop()
        self._after_value()
        return True

    def _after_value(self) -> None:
        self._state = self._on_comma_or_close if self._stack else self._on_done

    def _begin_recordings(self, c: int) -> bool:
        if c == ord("["):
            self._pos += 1
            self._stack.append(_RECORDINGS)
            self._state = self._on_value_or_close
            return True
        if c == ord("n"):
            return self._begin_literal(c)
        raise self._fail(f"{RECORDING_KEY!r} is neither an array nor null")

    def _begin_skipped_value(self, c: int) -> bool:
        if c == _QUOTE:
            self._pos += 1
            self._begin_string(is_key=False)
        elif c in b"{[":
            if len(self._stack) > MAX_DEPTH:
                raise self._fail(f"JSON nested deeper than {MAX_DEPTH}")
            self._pos += 1
            self._stack.append(_OBJECT if c == ord("{") else _ARRAY)
            self._state = self._on_key_or_close if c == ord("{") else self._on_value_or_close
        elif c == ord("-") or 0x30 <= c <= 0x39:
            self._number.clear()
            self._state = self._on_number
        elif c in _LITERALS:
            return self._begin_literal(c)
        else:
            raise self._unexpected(c, "a JSON value")
        return True

    def _begin_literal(self, c: int) -> bool:
        self._literal = _LITERALS[c]
        self._literal_matched = 0
        self._state = self._on_literal
        return True

    def _on_literal(self) -> bool:
        want = self._literal[self._literal_matched :]
        got = self._buf[self._pos : self._pos + len(want)]
        if not want.startswith(got):
            raise self._fail("invalid JSON literal")
        self._pos += len(got)
        self._literal_matched += len(got)
        if len(got) < len(want):
            return False
        self._after_value()
        return True

    def _on_number(self) -> bool:
        end = _NUMBER_CHARS.match(self._buf, self._pos).end()
        self._number += self._buf[self._pos : end]
        self._pos = end
        if len(self._number) > MAX_NUMBER_LENGTH:
            raise self._fail("number too long")
        if end == len(self._buf):
            return False
        if not _NUMBER.fullmatch(self._number):
            raise self._fail("invalid JSON number")
        self._number.clear()
        self._after_value()
        return True

    # -- strings that are keys or skipped values ------------------------------------------

    def _begin_string(self, *, is_key: bool) -> None:
        self._string_is_key = is_key
        # Only top-level keys are compared; other strings are checked and dropped.
        self._key = bytearray() if is_key and len(self._stack) == 1 else None
        self._state = self._on_string

    def _on_string(self) -> bool:
        buf, start = self._buf, self._pos
        end = _STRING_RUN.match(buf, start).end()
        self._take_string_bytes(buf[start:end], start)
        self._pos = end
        if end == len(buf):
            return False
        if buf[end] == _QUOTE:
            self._pos = end + 1
            self._end_string()
            return True
        if _PARTIAL_ESCAPE.fullmatch(buf, end):
            return False  # an escape cut by the end of the chunk
        raise self._fail("invalid escape or control character in a string", end)

    def _take_string_bytes(self, run: bytes, pos: int) -> None:
        # An ASCII run still goes through when a multi-byte sequence was cut before it.
        if not run.isascii() or self._utf8.getstate()[0]:
            try:
                self._utf8.decode(run)
            except UnicodeDecodeError:
                raise self._fail("string is not valid UTF-8", pos) from None
        if self._key is not None and len(self._key) <= _MAX_KEY_BYTES:
            self._key += run[: _MAX_KEY_BYTES + 1 - len(self._key)]

    def _end_string(self) -> None:
        try:
            self._utf8.decode(b"", True)
        except UnicodeDecodeError:
            raise self._fail("string is not valid UTF-8") from None
        if not self._string_is_key:
            self._after_value()
            return
        if self._key is not None:
            self._key_is_recording = self._key_matches()
            self._key = None
        self._state = self._on_colon

    def _key_matches(self) -> bool:
        if self._key is None or len(self._key) > _MAX_KEY_BYTES:
            return False
        if json.loads(b'"' + self._key + b'"') != RECORDING_KEY:
            return False
        if self._recording_key_seen:
            raise self._fail(f"duplicate {RECORDING_KEY!r} key")
        self._recording_key_seen = True
        return True

    # -- recording items ------------------------------------------------------------------

    def _begin_item(self, c: int) -> bool:
        if c != _QUOTE:
            raise self._fail(f"recording {self._next_index} is not a string")
        self._pos += 1
        self._header.clear()
        self._state = self._on_item_header
        return True

    def _on_item_header(self) -> bool:
        """Decode the ``data:...;base64`` prefix a character at a time, up to its comma."""
        buf, pos, header = self._buf, self._pos, self._header
        while pos < len(buf):
            c = buf[pos]
            if c == _BACKSLASH:
                length = self._escape_length(pos)
                if length is None:
                    break
                ch = _escape_value(buf[pos : pos + length])
                pos += length
            elif 0x20 <= c < 0x7F and c != _QUOTE:
                ch = chr(c)
                pos += 1
            else:
                raise self._not_a_data_uri(pos)
            if ch == ",":
                self._pos = pos
                self._begin_item_data("".join(header))
                return True
            header.append(ch)
            if not _may_become_header(header):
                raise self._not_a_data_uri(pos)
        self._pos = pos
        return False

    def _not_a_data_uri(self, pos: int) -> ProtocolError:
        return self._fail(f"recording {self._next_index} is not a data: URI with ;base64,", pos)

    def _escape_length(self, pos: int) -> int | None:
        """Length of the escape starting at ``pos``; None when the buffer ends inside it."""
        buf = self._buf
        if pos + 1 == len(buf):
            return None
        if buf[pos + 1] in _SIMPLE_ESCAPES:
            return 2
        if _UNICODE_ESCAPE.match(buf, pos):
            return 6
        if _PARTIAL_ESCAPE.fullmatch(buf, pos):
            return None
        raise self._fail("invalid escape in a string", pos)

    def _begin_item_data(self, header: str) -> None:
        index = self._next_index
        mime = _data_uri_mime(header)
        if mime is None:
            raise self._fail(f"recording {index} is not a data: URI with a valid mime type and ;base64,")
        self._events.append(RecordingStart(index, mime))
        self._item = _ItemDecoder(index, self._max_item_size)
        self._next_index += 1
        self._header.clear()
        self._state = self._on_item_data

    def _on_item_data(self) -> bool:
        """Decode the base64 of the current item, up to a block at a time."""
        buf, pos, item = self._buf, self._pos, self._item
        assert item is not None
        # Blocks of a bounded size keep the passes over the data (escape check, unescape,
        # decode) within the CPU cache even when a feed brings megabytes.
        limit = min(len(buf), pos + _BLOCK_SIZE)
        quote = buf.find(b'"', pos, limit)
        if quote < 0:
            # Hold back an escape that the block boundary may have cut ("\", "\u00").
            end = limit
            cut = buf.rfind(b"\\", max(pos, end - 5), end)
            if cut >= 0:
                end = cut
            if end > pos:
                item.feed(buf[pos:end])
            self._pos = end
            return limit < len(buf)
        # Any '"' ends the string: an escaped one would be invalid base64 anyway.
        if quote > pos:
            item.feed(buf[pos:quote])
        self._pos = quote + 1
        size = item.finish()
        self._flush_data()
        self._events.append(RecordingEnd(item.index, size))
        self._item = None
        self._after_value()
        return True

    def _flush_data(self) -> None:
        if self._item is not None and (data := self._item.take()):
            self._events.append(RecordingData(data))


class _ItemDecoder:
    """Decodes one recording's base64, fed as pieces of its raw JSON string."""

    def __init__(self, index: int, max_size: int | None) -> None:
        self.index = index
        self.size = 0
        self._max_size = max_size
        self._carry = b""  # 0-3 base64 characters: a2b_base64 wants whole quanta
        self._padded = False
        self._pieces: list[bytes] = []

    @property
    def buffered_bytes(self) -> int:
        return len(self._carry) + sum(map(len, self._pieces))

    def feed(self, raw: bytes) -> None:
        """Decode ``raw``, a part of the JSON string that does not end inside an escape."""
        b64 = _clean_base64(raw)
        start = 0
        if self._carry:
            # Complete the carried quantum on its own rather than copying the whole chunk.
            start = min(4 - len(self._carry), len(b64))
            head = self._carry + b64[:start]
            if len(head) < 4:
                self._carry = head
                return
            self._decode(head, 0, 4)
        stop = len(b64) - (len(b64) - start) % 4
        self._carry = b64[stop:]
        if stop > start:
            self._decode(b64, start, stop)

    def _decode(self, b64: bytes, start: int, stop: int) -> None:
        """Decode ``b64[start:stop]``, whole quanta of base64 without escapes or whitespace."""
        # Strict mode refuses data after padding but takes "AAAA====": look at the last quantum.
        if self._padded or b64.find(b"=", stop - 4, stop - 2) >= 0:
            raise ProtocolError(f"recording {self.index}: base64 padding before the end")
        block = b64 if start == 0 and stop == len(b64) else memoryview(b64)[start:stop]
        try:
            decoded = binascii.a2b_base64(block, strict_mode=True)
        except binascii.Error as exc:
            raise ProtocolError(f"recording {self.index}: invalid base64 ({exc})") from exc
        self._padded = b64[stop - 1] == _EQUALS
        self.size += len(decoded)
        if self._max_size is not None and self.size > self._max_size:
            raise TooLargeError(f"recording {self.index} is larger than {self._max_size} bytes")
        self._pieces.append(decoded)

    def take(self) -> bytes:
        """The bytes decoded since the last call, as one block."""
        pieces, self._pieces = self._pieces, []
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def finish(self) -> int:
        """Check that the item ended on a whole base64 quantum; return its decoded size."""
        if self._carry:
            raise ProtocolError(f"recording {self.index}: base64 length is not a multiple of 4 (bad padding)")
        return self.size


def _clean_base64(raw: bytes) -> bytes:
    """The base64 characters in ``raw``: JSON escapes decoded, whitespace dropped.

    Anything that is not base64 is left in for a2b_base64 to reject.
    """
    if b"\\" in raw:
        if raw.endswith(b"\\") or _NOT_SLASH_ESCAPE.search(raw):
            raw = _unescape(raw)
        else:
            # The usual case: encoders that escape every "/" and nothing else.
            raw = raw.replace(b"\\", b"")
    if b" " in raw:
        raw = raw.replace(b" ", b"")
    return raw


def _unescape(raw: bytes) -> bytes:
    """Decode the JSON escapes in a piece of a base64 string, one kind of escape at a time."""
    if b"\\\\" in raw or raw.endswith(b"\\"):
        # A backslash, escaped or cut: invalid base64 either way, only the error is left.
        return _ANY_ESCAPE.sub(_base64_value, raw)
    # Now every backslash starts an escape, so replacing all of one kind can neither hit
    # part of another escape nor make a new one. Encoders use one or two kinds ("\n",
    # "\u002f"), each done in one pass; what is left is "\/", for the one-byte delete.
    while found := _NOT_SLASH_ESCAPE.search(raw):
        escape = _ANY_ESCAPE.match(raw, found.start())
        if escape is None:
            return raw  # not a JSON escape: left for a2b_base64 to reject
        raw = raw.replace(escape[0], _base64_value(escape))
    return raw.replace(b"\\", b"")


def _base64_value(escape: re.Match[bytes]) -> bytes:
    """What an escape inside base64 contributes: its character, nothing for whitespace."""
    ch = _escape_value(escape[0])
    if ch in _BASE64_WHITESPACE:
        return b""
    return ch.encode() if ch in _BASE64_ALPHABET else _NOT_BASE64


def _escape_value(escape: bytes) -> str:
    """The character a complete, valid JSON escape stands for."""
    if len(escape) == 6:
        return chr(int(escape[2:], 16))
    return _SIMPLE_ESCAPES[escape[1]]


def _may_become_header(header: list[str]) -> bool:
    """Whether the start of an item can still be ``data:...;base64``: other strings fail early."""
    if len(header) > MAX_HEADER_LENGTH:
        return False
    return len(header) != 5 or "".join(header).lower() == "data:"


def is_audio_type(mime: str) -> bool:
    """True for the media types an inline recording may carry: ``audio/*`` or raw bytes.

    The parser extracts whatever type an item declares; the archive keeps only these. A page
    or document inline (``data:text/html``, an error's JSON) is not a recording: archived as
    ``recording-1.bin`` it would count a lost call as archived.
    """
    return mime.startswith("audio/") or mime == "application/octet-stream"


def _data_uri_mime(header: str) -> str | None:
    """The lower-cased mime type of ``data:<type>/<subtype>[;param...];base64``, or None."""
    lowered = header.lower()
    if not lowered.startswith("data:") or not lowered.endswith(";base64"):
        return None
    mime, *params = header[5:-7].split(";")
    if len(mime) > MAX_MIME_LENGTH or not _MIME.fullmatch(mime):
        return None
    if not all(param and param.isascii() and param.isprintable() for param in params):
        return None
    return mime.lower()
