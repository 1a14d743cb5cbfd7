"""Tests for archiver.inline, the streaming parser of Fetch Call Recording v1 bodies.

The parser is checked against a reference built from ``json.loads`` and ``base64.b64decode``:
the bodies come from hypothesis (random audio, mime types, escaping styles, extra members,
whitespace) and are fed in random chunks, down to one byte at a time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import tracemalloc
import unittest.mock
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver import inline
from archiver.errors import ProtocolError, TooLargeError
from archiver.inline import (
    MAX_DEPTH,
    InlineRecordingParser,
    RecordingData,
    RecordingEnd,
    RecordingStart,
)

Recording = tuple[str, bytes]  # (mime, audio)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- driving the parser -------------------------------------------------------------------


def chunked(body: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``body`` split at the given offsets (any order, duplicates and out-of-range ignored)."""
    points = sorted({cut for cut in cuts if 0 < cut < len(body)})
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


def every(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)] or [b""]


def run(chunks: Iterable[bytes], *, max_item_size: int | None = None) -> list[Recording]:
    """Feed ``chunks`` and close; return the recordings after checking the event stream."""
    parser = InlineRecordingParser(max_item_size=max_item_size)
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.close()
    recordings = recordings_from(events)
    assert parser.recordings_seen == len(recordings)
    return recordings


def recordings_from(events: list) -> list[Recording]:
    """Check the order and sizes of the events and put each recording's data together."""
    recordings: list[Recording] = []
    current: tuple[str, list[bytes]] | None = None
    for event in events:
        if isinstance(event, RecordingStart):
            assert current is None and event.index == len(recordings)
            current = (event.mime, [])
        elif isinstance(event, RecordingData):
            assert current is not None and event.data, "data outside a recording, or empty"
            current[1].append(event.data)
        else:
            assert isinstance(event, RecordingEnd) and current is not None
            data = b"".join(current[1])
            assert (event.index, event.size) == (len(recordings), len(data))
            recordings.append((current[0], data))
            current = None
    assert current is None
    return recordings


def rejects(chunks: Iterable[bytes], **kwargs: object) -> ProtocolError | TooLargeError:
    """Run the parser and return the error it must raise: ProtocolError or TooLargeError."""
    try:
        run(chunks, **kwargs)  # type: ignore[arg-type]
    except (ProtocolError, TooLargeError) as exc:
        return exc
    raise AssertionError("the parser accepted the body")


def assert_shows_little_of(message: str, body: bytes) -> None:
    """Error messages quote at most 40 characters of the body."""
    text = body.decode("latin-1")
    for i in range(len(message) - 40):
        assert message[i : i + 41] not in text, f"message quotes the body: {message!r}"


# -- the reference ------------------------------------------------------------------------


class _Pairs(list):
    """A JSON object as the list of its members, so duplicates stay visible."""


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _depth(value: object) -> int:
    if isinstance(value, _Pairs):
        return 1 + max((_depth(v) for _, v in value), default=0)
    if isinstance(value, list):  # after _Pairs, which is a list too
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def reference(body: bytes) -> list[Recording]:
    """What the parser must produce for ``body``; ValueError when it must reject it."""
    doc = json.loads(body.decode("utf-8"), object_pairs_hook=_Pairs, parse_constant=_reject_constant)
    if not isinstance(doc, _Pairs):
        raise ValueError("not an object")
    found = [value for key, value in doc if key == "recording"]
    if len(found) > 1:
        raise ValueError("duplicate recording")
    if any(_depth(value) > MAX_DEPTH for key, value in doc if key != "recording"):
        raise ValueError("too deep")
    items = found[0] if found else None
    if items is None:
        return []
    if not isinstance(items, list) or isinstance(items, _Pairs):
        raise ValueError("recording is not an array")
    return [reference_item(item) for item in items]


TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_REFERENCE_MIME = re.compile(f"[{re.escape(TCHAR)}]+/[{re.escape(TCHAR)}]+")


def reference_item(item: object) -> Recording:
    if not isinstance(item, str):
        raise ValueError("item is not a string")
    head, comma, data = item.partition(",")
    if not comma or len(head) > 512 or not head.lower().startswith("data:"):
        raise ValueError("not a data: URI")
    if not head.lower().endswith(";base64"):
        raise ValueError("not base64")
    mime, *params = head[5:-7].split(";")
    if len(mime) > 100 or not _REFERENCE_MIME.fullmatch(mime):
        raise ValueError("bad mime")
    if not all(p and all(" " <= c <= "~" for c in p) for p in params):
        raise ValueError("bad parameter")
    data = re.sub("[ \t\r\n]", "", data)
    # b64decode(validate=True) takes "AAAA====" and "AAAA=": padding is checked here.
    if len(data) % 4 or not re.fullmatch("[A-Za-z0-9+/]*={0,2}", data):
        raise ValueError("bad length or padding")
    return mime.lower(), base64.b64decode(data.encode("ascii"), validate=True)


# -- generating bodies --------------------------------------------------------------------


def escape_char(c: str, rng: random.Random) -> str:
    """``c`` spelled as a JSON escape, one way or another."""
    if c == "/" and rng.random() < 0.5:
        return "\\/"
    return f"\\u{ord(c):04x}" if rng.random() < 0.5 else f"\\u{ord(c):04X}"


def spell_base64(b64: str, style: str, rng: random.Random) -> str:
    """The raw JSON string content for ``b64`` in one of the ways encoders write it."""
    if style == "plain":
        return b64
    if style == "slash":
        return b64.replace("/", "\\/")
    if style == "u002f":
        return re.sub("/", lambda _: rng.choice(["\\u002f", "\\u002F"]), b64)
    if style == "wrapped":
        newline = rng.choice(["\\n", "\\r\\n"])
        return newline.join(b64[i : i + 76] for i in range(0, len(b64), 76)).replace("/", "\\/")
    # "mixed": any character escaped any way, whitespace anywhere.
    out = []
    for c in b64:
        roll = rng.random()
        if roll < 0.08:
            out.append(rng.choice(["\\n", "\\r", "\\t", " ", "\\u0020", "\\u000A", "\\r\\n"]))
        out.append(escape_char(c, rng) if roll > 0.8 or (c == "/" and roll > 0.3) else c)
    return "".join(out)


def spell_text(text: str, rng: random.Random, rate: float) -> str:
    """``text`` (printable ASCII without quote or backslash) with some characters escaped."""
    return "".join(escape_char(c, rng) if rng.random() < rate else c for c in text)


token = st.text(alphabet=TCHAR, min_size=1, max_size=30)
mimes = st.builds(lambda t, s: f"{t}/{s}", token, token)
params = st.lists(
    st.sampled_from([";codecs=opus", "; codecs=pcm", ";rate=8000", ";charset=utf-8"]), max_size=2
)
styles = st.sampled_from(["plain", "slash", "u002f", "wrapped", "mixed"])
whitespace = st.sampled_from(["", "", " ", "\n", "\t", "\r\n  "])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["recording", "a", "é", "k\\"]) | st.text(max_size=5), inner, max_size=3
        )
    ),
    max_leaves=10,
)


@st.composite
def items(draw: st.DrawFn, max_audio: int = 600) -> tuple[str, Recording]:
    """A recording: the raw JSON string content and the (mime, audio) it must give."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    audio = draw(st.binary(max_size=max_audio))
    mime = draw(mimes)
    scheme = "".join(rng.choice([c, c.upper()]) for c in "data:")
    marker = "".join(rng.choice([c, c.upper()]) for c in ";base64")
    header = spell_text(
        scheme + mime + "".join(draw(params)) + marker + ",", rng, draw(st.sampled_from([0, 0.1]))
    )
    b64 = spell_base64(base64.b64encode(audio).decode(), draw(styles), rng)
    return header + b64, (mime.lower(), audio)


@st.composite
def bodies(draw: st.DrawFn, max_items: int = 3, max_audio: int = 600) -> tuple[bytes, list[Recording]]:
    """A valid v1 body and the recordings in it."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    recordings = draw(st.lists(items(max_audio), max_size=max_items))
    ws = lambda: draw(whitespace)  # noqa: E731
    if recordings:
        value = "[" + ",".join(ws() + '"' + raw + '"' + ws() for raw, _ in recordings) + "]"
    else:
        value = draw(st.sampled_from(["[]", "[ ]", "null"]))
    key = '"' + spell_text("recording", rng, draw(st.sampled_from([0, 0, 0.3]))) + '"'
    members = [
        (
            json.dumps(k, ensure_ascii=draw(st.booleans())),
            json.dumps(v, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1]))),
        )
        for k, v in draw(
            st.dictionaries(st.text(max_size=6).filter(lambda k: k != "recording"), json_values, max_size=3)
        ).items()
    ]
    if recordings or draw(st.booleans()):
        members.insert(draw(st.integers(0, len(members))), (key, value))
    text = ws() + "{" + ",".join(f"{ws()}{k}{ws()}:{ws()}{v}{ws()}" for k, v in members) + "}" + ws()
    return text.encode(), [recording for _, recording in recordings]


@st.composite
def chunkings(draw: st.DrawFn, body: bytes) -> list[bytes]:
    mode = draw(st.sampled_from(["whole", "bytes", "fixed", "random"]))
    if mode == "whole":
        return [body]
    if mode == "bytes":
        return every(body, 1)
    if mode == "fixed":
        return every(body, draw(st.integers(2, 9)))
    return chunked(body, draw(st.lists(st.integers(0, len(body)), max_size=30)))


# -- correctness --------------------------------------------------------------------------


@FUZZ
@given(st.data())
def test_random_bodies_in_random_chunks_give_the_encoded_audio(data: st.DataObject) -> None:
    body, expected = data.draw(bodies())
    assert reference(body) == expected  # the generator makes valid bodies
    assert run(data.draw(chunkings(body))) == expected


@settings(FUZZ, max_examples=100)
@given(st.data(), st.sampled_from([6, 7, 13, 64]))
def test_escapes_cut_by_the_decoding_blocks(data: st.DataObject, block_size: int) -> None:
    # Big feeds are decoded a block at a time; small blocks put their boundaries everywhere.
    # Six is the least that always gets past an escape held back at a boundary.
    body, expected = data.draw(bodies())
    with unittest.mock.patch.object(inline, "_BLOCK_SIZE", block_size):
        assert run(data.draw(chunkings(body))) == expected


@settings(max_examples=20, deadline=None)
@given(bodies(max_items=2, max_audio=20_000), st.integers(1, 4096))
def test_larger_recordings_in_fixed_chunks(generated: tuple[bytes, list[Recording]], size: int) -> None:
    body, expected = generated
    assert run(every(body, size)) == expected


ESCAPES_BODY = (
    b'{"a\\"b": "x\\\\y\\u00e9", "n": [1.5e-3, -0, true, false, null, {}], '
    b'"\\u0072ecording": [ "data:audio\\/x-wav;codecs=1;BASE64,'
    b"AAA\\/\\u002f\\u002F\\u002b\\u002B+\\n\\r\\t \\u000a"
    b'\\u0041\\u0041=", "data:audio/mpeg;base64,", "dAtA:a/b;base64,QQ\\u003d\\u003D"], '
    b'"z": {"recording": 1}}'
)
ESCAPES_EXPECTED = [
    ("audio/x-wav", base64.b64decode("AAA///+++AA=")),
    ("audio/mpeg", b""),
    ("a/b", b"A"),
]


def test_every_escape_kind_decodes() -> None:
    assert reference(ESCAPES_BODY) == ESCAPES_EXPECTED
    assert run([ESCAPES_BODY]) == ESCAPES_EXPECTED


@pytest.mark.parametrize("size", range(1, 10))
def test_escapes_split_by_fixed_chunk_sizes(size: int) -> None:
    assert run(every(ESCAPES_BODY, size)) == ESCAPES_EXPECTED


def test_escapes_split_at_every_position() -> None:
    for cut in range(1, len(ESCAPES_BODY)):
        assert run(chunked(ESCAPES_BODY, [cut])) == ESCAPES_EXPECTED, cut
    for cut in range(1, len(ESCAPES_BODY) - 3):
        assert run(chunked(ESCAPES_BODY, [cut, cut + 1, cut + 3])) == ESCAPES_EXPECTED, cut


@pytest.mark.parametrize(
    "body",
    [b'{"recording": []}', b'{"recording": null}', b"{}", b' {"other": "x"} \n', b'{"recording":[]}\r\n'],
)
def test_bodies_without_recordings(body: bytes) -> None:
    assert run([body]) == []
    assert run(every(body, 1)) == []


def test_mime_parameters_are_dropped_and_the_type_lower_cased() -> None:
    body = b'{"recording": ["data:Audio/WEBM; codecs=opus;base64,T2dnUw=="]}'
    assert run([body]) == [("audio/webm", b"OggS")]


def test_one_data_event_per_recording_per_chunk() -> None:
    audio = os.urandom(300_000)
    b64 = base64.b64encode(audio).replace(b"/", b"\\/")
    body = b'{"recording": ["data:audio/wav;base64,' + b64 + b'", "data:audio/wav;base64,' + b64 + b'"]}'
    events = InlineRecordingParser().feed(body)  # several decoding blocks, one event
    assert [type(e) for e in events] == [RecordingStart, RecordingData, RecordingEnd] * 2
    assert recordings_from(events) == [("audio/wav", audio)] * 2
    parser = InlineRecordingParser()
    sizes = [
        sum(isinstance(e, RecordingData) for e in parser.feed(chunk)) for chunk in every(body, 64 * 1024)
    ]
    assert max(sizes) <= 2  # the end of one recording and the start of the next


def test_memory_stays_at_a_chunk_whatever_the_recording_size() -> None:
    chunk_size = 64 * 1024
    audio = os.urandom(3 * 1024 * 1024) * 6  # an 18 MiB recording: about 25 MB of base64
    b64 = base64.b64encode(audio).replace(b"/", b"\\/")
    body = b'{"sessionId": "x", "recording": ["data:audio/wav;base64,' + b64 + b'"]}'
    digest = hashlib.sha256()
    parser = InlineRecordingParser()
    tracemalloc.start()  # counts what is allocated from here on: not the body itself
    try:
        for at in range(0, len(body), chunk_size):
            for event in parser.feed(body[at : at + chunk_size]):
                if isinstance(event, RecordingData):
                    digest.update(event.data)
            assert parser.buffered_bytes <= 16
        parser.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.digest() == hashlib.sha256(audio).digest()
    assert peak < 8 * chunk_size  # a few chunks in flight; keeping the recording would be MBs


# -- errors -------------------------------------------------------------------------------


def body_with(item: str) -> bytes:
    return ('{"recording": ["' + item + '"]}').encode()


BAD_BODIES = {
    "not json": b"hello",
    "empty": b"",
    "only whitespace": b" \n ",
    "array at the top": b'[{"recording": []}]',
    "string at the top": b'"data:audio/wav;base64,AAAA"',
    "bom": b'\xef\xbb\xbf{"recording": []}',
    "truncated object": b'{"recording": []',
    "truncated in an item": body_with("data:audio/wav;base64,AAAA")[:-3],
    "truncated in an escape": body_with("data:audio/wav;base64,AAAA")[:-3] + b"\\u00",
    "trailing data": b'{"recording": []} {}',
    "trailing comma": b'{"recording": [],}',
    "trailing comma in array": b'{"recording": ["data:a/b;base64,",]}',
    "missing colon": b'{"recording" []}',
    "item is a number": b'{"recording": [1]}',
    "item is null": b'{"recording": [null]}',
    "item is an object": b'{"recording": [{"data": "x"}]}',
    "recording is a string": b'{"recording": "data:audio/wav;base64,AAAA"}',
    "recording is an object": b'{"recording": {}}',
    "recording twice": b'{"recording": [], "recording": []}',
    "recording twice, escaped": b'{"recording": null, "\\u0072ecording": []}',
    "not a data uri": body_with("hello"),
    "http url": body_with("https://example.com/a.wav"),
    "no base64 marker": body_with("data:audio/wav,AAAA"),
    "no comma": body_with("data:audio/wav;base64"),
    "empty mime": body_with("data:;base64,AAAA"),
    "mime without subtype": body_with("data:audio;base64,AAAA"),
    "mime with a space": body_with("data:audio/x wav;base64,AAAA"),
    "mime with a non-token character": body_with("data:audio/x(wav);base64,AAAA"),
    "mime too long": body_with("data:audio/" + "x" * 95 + ";base64,AAAA"),
    "empty parameter": body_with("data:audio/wav;;base64,AAAA"),
    "header too long": body_with("data:audio/wav;" + "a=b;" * 200 + "base64,AAAA"),
    "non-ascii in the header": body_with("data:audio/wäv;base64,AAAA"),
    "invalid base64 character": body_with("data:audio/wav;base64,AA*A"),
    "escaped non-ascii": body_with("data:audio/wav;base64,AAA\\u00e9"),
    "escaped quote": body_with('data:audio/wav;base64,AAA\\"'),
    "escaped quote after whole quanta": b'{"recording": ["data:a/b;base64,AAAA\\"]}',
    # "\\nr" is a backslash then "nr"; replacing escapes blindly would drop all three.
    "escaped backslash": body_with("data:audio/wav;base64,AA\\\\nrAA"),
    # Replacing "\n" everywhere would also take the second backslash of "\\" and the "n".
    "escaped backslash after an escape": body_with("data:audio/wav;base64,AA\\n\\\\nrAA"),
    "invalid escape": body_with("data:audio/wav;base64,AA\\xAA"),
    # "\u005c" is a backslash, which must not go on to form an escape with the "n".
    "unicode-escaped backslash": body_with("data:audio/wav;base64,AA\\u005cnAA"),
    "escaped form feed": body_with("data:audio/wav;base64,AAAA\\f"),
    "raw newline": body_with("data:audio/wav;base64,AAAA\nAAAA"),
    "raw tab": body_with("data:audio/wav;base64,AAAA\tAAAA"),
    "length 5": body_with("data:audio/wav;base64,AAAAA"),
    "short padding": body_with("data:audio/wav;base64,AA="),
    "padding in the middle": body_with("data:audio/wav;base64,AA==AAAA"),
    "excess padding": body_with("data:audio/wav;base64,AAAA===="),
    "padding alone": body_with("data:audio/wav;base64,===="),
    "padding then more": body_with("data:audio/wav;base64,AAA=" + "A" * 400),
    "bad number": b'{"x": 01, "recording": []}',
    "bad literal": b'{"x": tru, "recording": []}',
    "nan": b'{"x": NaN, "recording": []}',
    "control character in a skipped string": b'{"x": "a\x01b", "recording": []}',
    "invalid utf-8 in a skipped string": b'{"x": "\xff", "recording": []}',
    # "\xc2" then "\x80" would be valid if the "A" between them were overlooked.
    "cut utf-8 sequence in a skipped string": b'{"x": "\xc2A\x80", "recording": []}',
    "invalid escape in a skipped string": b'{"x": "\\q", "recording": []}',
    "invalid unicode escape in a key": b'{"\\u12G4": 1, "recording": []}',
    "too deep": b'{"x": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b', "recording": []}',
    "too deep in objects": b'{"x": ' + b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1) + b"}",
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_malformed_bodies_raise_protocol_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        reference(body)
    for chunks in ([body], every(body, 1), every(body, 3)):
        exc = rejects(chunks)
        assert type(exc) is ProtocolError
        assert_shows_little_of(str(exc), body)


NOTICED_ONLY_AT_CLOSE = {
    "empty",
    "only whitespace",
    "truncated object",
    "truncated in an item",
    "truncated in an escape",
}


@pytest.mark.parametrize(
    "body", [body for name, body in BAD_BODIES.items() if name not in NOTICED_ONLY_AT_CLOSE]
)
def test_errors_are_raised_by_the_feed_that_brings_them(body: bytes) -> None:
    # Waiting for close() would also mean buffering everything after the bad bytes.
    with pytest.raises(ProtocolError):
        InlineRecordingParser().feed(body + b" " * 100)


def test_deepest_allowed_nesting_is_accepted() -> None:
    body = b'{"x": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b', "recording": []}'
    assert run([body]) == []


def test_errors_quote_little_of_the_body() -> None:
    long_mime = "x" * 200
    body = body_with(f"data:audio/{long_mime};base64,AAAA")
    message = str(rejects([body]))
    assert long_mime[:41] not in message
    assert_shows_little_of(message, body)


def test_parser_refuses_to_go_on_after_an_error() -> None:
    parser = InlineRecordingParser()
    with pytest.raises(ProtocolError):
        parser.feed(b"[")
    with pytest.raises(ProtocolError, match="failed earlier"):
        parser.feed(b"{}")
    with pytest.raises(ProtocolError):
        parser.close()


def test_feed_after_close_is_a_programming_error() -> None:
    parser = InlineRecordingParser()
    parser.feed(b"{}")
    parser.close()
    with pytest.raises(RuntimeError):
        parser.feed(b" ")


# -- the size cap -------------------------------------------------------------------------


def test_max_item_size_stops_the_download_mid_stream() -> None:
    audio = os.urandom(100_000)
    body = body_with("data:audio/wav;base64," + base64.b64encode(audio).decode())
    parser = InlineRecordingParser(max_item_size=10_000)
    fed = 0
    with pytest.raises(TooLargeError):
        for chunk in every(body, 1024):
            fed += len(chunk)
            parser.feed(chunk)
    assert fed < 20_000  # the cap was noticed long before the end of the body


@pytest.mark.parametrize("size", [1, 7, 1024])
def test_max_item_size_applies_to_each_recording(size: int) -> None:
    audio = os.urandom(3000)
    item = "data:audio/wav;base64," + base64.b64encode(audio).decode()
    body = ('{"recording": ["' + item + '", "' + item + '"]}').encode()
    assert run(every(body, size), max_item_size=3000) == [("audio/wav", audio)] * 2
    assert isinstance(rejects(every(body, size), max_item_size=2999), TooLargeError)


# -- fuzzing ------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_arbitrary_bytes_only_raise_protocol_errors(body: bytes, cuts: list[int]) -> None:
    try:
        run(chunked(body, cuts))
    except ProtocolError as exc:
        assert_shows_little_of(str(exc), body)


NEAR_MISSES = b'{}[]":,\\/ \n\t0123456789-+.eEtrufalsn=AQZaz\xc3\xa9\xff\x00u'


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    """A valid body with a few bytes changed, dropped, added or repeated."""
    body = bytearray(draw(bodies(max_items=2, max_audio=60))[0])
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(body)))
        edit = draw(st.sampled_from(["replace", "delete", "insert", "repeat"]))
        byte = draw(st.sampled_from(NEAR_MISSES))
        if edit == "replace" and at < len(body):
            body[at] = byte
        elif edit == "delete":
            del body[at : at + draw(st.integers(1, 3))]
        elif edit == "insert":
            body[at:at] = bytes([byte])
        else:
            body[at:at] = body[at : at + draw(st.integers(1, 8))]
    return bytes(body)


@settings(FUZZ, max_examples=300)
@given(st.data())
def test_mutated_bodies_are_judged_like_the_reference(data: st.DataObject) -> None:
    body = data.draw(mutated_bodies())
    chunks = data.draw(chunkings(body))
    try:
        expected = reference(body)
    except ValueError:
        exc = rejects(chunks)
        assert type(exc) is ProtocolError
        assert_shows_little_of(str(exc), body)
    else:
        assert run(chunks) == expected
