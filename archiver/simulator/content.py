"""Deterministic WAV content, generated for any byte range without storing the file.

A file is a 44-byte RIFF/PCM header (8 kHz, 16-bit, mono) followed by noise. The noise is
cut from one precomputed pseudo-random pool: each 64 KiB block of a file is a slice of the
pool at an offset mixed from (file seed, block number), with the seed and block number
stamped into it. Every block therefore differs from every other block of every file, so a
client that resumes at the wrong offset ends up with a different sha256.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator

from .spec import MediaSpec

HEADER_SIZE = 44
BLOCK = 64 * 1024
SAMPLE_RATE = 8000
_POOL_SIZE = 4 * 1024 * 1024
_POOL = random.Random(0x5EED).randbytes(_POOL_SIZE + BLOCK)
_STAMP_AT = 64  # past the header, so block 0 keeps its stamp too
_MASK64 = (1 << 64) - 1


def wav_header(size: int) -> bytes:
    """The header of a ``size``-byte PCM WAV file (8 kHz, 16-bit, mono)."""
    if size < HEADER_SIZE:
        raise ValueError(f"a WAV file has at least {HEADER_SIZE} bytes, not {size}")
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", size - 8, b"WAVE",
        b"fmt ", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16,
        b"data", size - HEADER_SIZE,
    )  # fmt: skip


def _mix(seed: int, block: int) -> int:
    """splitmix64 of (seed, block): a cheap, well-spread pool offset."""
    z = (seed * 0x9E3779B97F4A7C15 + block * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _block(media: MediaSpec, index: int) -> bytes:
    """Block ``index`` of the file (the last one may be short)."""
    start = index * BLOCK
    length = min(BLOCK, media.size - start)
    offset = _mix(media.seed, index) % _POOL_SIZE
    data = bytearray(_POOL[offset : offset + length])
    stamp = struct.pack("<QQ", media.seed & _MASK64, index)
    data[_STAMP_AT : _STAMP_AT + len(stamp)] = stamp[: max(0, length - _STAMP_AT)]
    if index == 0:
        data[:HEADER_SIZE] = wav_header(media.size)
    return bytes(data)


def read(media: MediaSpec, start: int = 0, end: int | None = None) -> bytes:
    """Bytes [start, end) of the file; ``end`` defaults to the end of the file."""
    end = media.size if end is None else min(end, media.size)
    if start < 0 or start >= end:
        return b""
    first, last = start // BLOCK, (end - 1) // BLOCK
    data = b"".join(_block(media, i) for i in range(first, last + 1))
    skip = start - first * BLOCK
    return data[skip : skip + end - start]


def iter_range(media: MediaSpec, start: int, end: int, piece: int = 1024 * 1024) -> Iterator[bytes]:
    """Bytes [start, end) of the file in pieces of at most ``piece`` bytes."""
    pos = start
    while pos < end:
        stop = min(end, pos + piece)
        yield read(media, pos, stop)
        pos = stop


def sha256(media: MediaSpec) -> str:
    """Hex sha256 of the whole file (reads it all once; callers cache the result)."""
    digest = hashlib.sha256()
    for piece in iter_range(media, 0, media.size, 4 * 1024 * 1024):
        digest.update(piece)
    return digest.hexdigest()
