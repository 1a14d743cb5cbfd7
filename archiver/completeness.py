"""Proof that an archived recording is whole, recorded as its ``length_source``.

A body that simply stopped proves nothing: a connection closed cleanly after 30,000 of
102,404 bytes looks exactly like a finished answer when no length was declared. A recording
counts as complete only when its size equals a length the vendor declared:

    content_length   the 200 answer's Content-Length
    content_range    the total in a 206 answer's Content-Range
    range_416        no length was declared; asked for ``Range: bytes=<size>-``, the server
                     answered 416 (nothing after it)
    inline_json      a v1 inline item: its JSON string and the body around it were closed

and, for a WAV file whose RIFF header carries real sizes (not the 0 or 0xFFFFFFFF that a
streamed WAV is written with), when those sizes agree with the file. Anything else is
``none``, with the reason in ``unproven``: the file is kept, and the vendor's copy is never
deleted on its strength.
"""

from __future__ import annotations

from typing import Any

CONTENT_LENGTH = "content_length"
CONTENT_RANGE = "content_range"
RANGE_416 = "range_416"
INLINE_JSON = "inline_json"
NONE = "none"
PROVEN = frozenset({CONTENT_LENGTH, CONTENT_RANGE, RANGE_416, INLINE_JSON})

WAV_HEAD = 4096
"""Bytes of a file's start kept to read its RIFF header and find its data chunk."""
_PLACEHOLDERS = (0, 0xFFFFFFFF)


def wav_problem(head: bytes, size: int) -> str | None:
    """Why a WAV file of ``size`` bytes starting with ``head`` is cut, or None.

    Only sizes the header really declares are compared: streamed WAVs carry placeholders.
    Files that are not RIFF/WAVE are not judged here.
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    riff = int.from_bytes(head[4:8], "little")
    if riff not in _PLACEHOLDERS and riff + 8 != size:
        return f"its RIFF header declares {riff + 8} bytes, the file has {size}"
    position = 12
    while position + 8 <= len(head):
        chunk, length = head[position:position + 4], int.from_bytes(head[position + 4:position + 8], "little")
        if chunk == b"data":
            end = position + 8 + length
            if length not in _PLACEHOLDERS and end > size:
                return f"its data chunk declares {length} bytes, ending at {end}, the file has {size}"
            return None
        position += 8 + length + (length & 1)
    return None


def unproven_reason(entry: dict[str, Any]) -> str | None:
    """Why a manifest audio entry is not proven complete, or None when it is."""
    source = entry.get("length_source")
    if source is None:
        return "no proof of completeness was recorded (archived before proofs were kept)"
    if source not in PROVEN:
        return str(entry.get("unproven") or f"length source {str(source)[:40]!r} proves nothing")
    if entry.get("unproven"):
        return str(entry["unproven"])
    return None
