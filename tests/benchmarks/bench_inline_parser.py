"""Throughput of InlineRecordingParser on a body whose base64 escapes every "/".

Not part of the test run (timing on shared machines is noisy). Run it by hand:

    python tests/benchmarks/bench_inline_parser.py [--mb 64] [--chunk-kib 64] [--style slash]

It prints MB/s of body fed (the body is almost all base64), best of a few rounds, per CPU
second of this process and per wall-clock second: the first is steadier on a busy machine.
binascii.a2b_base64 alone on the same data is printed as the ceiling for this machine.

Passes (exit status 0, ``"ok": true`` on the last line, which is JSON) when the parser's CPU
rate reaches ``--target`` MB/s (300 by default).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from archiver.inline import InlineRecordingParser, RecordingData

STYLES = {
    "plain": lambda b64: b64,
    "slash": lambda b64: b64.replace(b"/", b"\\/"),
    "u002f": lambda b64: b64.replace(b"/", b"\\u002f"),
    "wrapped": lambda b64: b"\\n".join(b64[i : i + 76] for i in range(0, len(b64), 76)).replace(b"/", b"\\/"),
}


def make_body(megabytes: int, style: str) -> tuple[bytes, bytes]:
    """A v1 body of about ``megabytes`` MB and the audio it carries."""
    audio = os.urandom(megabytes * 1_000_000 * 3 // 4)
    b64 = STYLES[style](base64.b64encode(audio))
    body = b'{"sessionId": "67ab573f0000000000000000", "recording": ["data:audio\\/wav;base64,' + b64 + b'"]}'
    return body, audio


def run_once(chunks: list[bytes]) -> tuple[float, float, bytes]:
    """Parse the body once; return wall seconds, CPU seconds and the audio's sha256."""
    parser = InlineRecordingParser()
    digest = hashlib.sha256()
    wall, cpu = time.perf_counter(), time.process_time()
    for chunk in chunks:
        for event in parser.feed(chunk):
            if isinstance(event, RecordingData):
                digest.update(event.data)
    parser.close()
    return time.perf_counter() - wall, time.process_time() - cpu, digest.digest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64, help="body size in MB (default 64)")
    parser.add_argument("--chunk-kib", type=int, default=64, help="chunk size in KiB (default 64)")
    parser.add_argument("--style", choices=sorted(STYLES), default="slash")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--target", type=float, default=300.0, help="MB/s of CPU time to pass")
    args = parser.parse_args()

    body, audio = make_body(args.mb, args.style)
    size = args.chunk_kib * 1024
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    expected = hashlib.sha256(audio).digest()
    # Hashing the output is timed too: measure it alone and take it off.
    started = time.process_time()
    hashlib.sha256(audio).digest()
    hashing = time.process_time() - started

    best_wall = best_cpu = float("inf")
    for _ in range(args.rounds):
        wall, cpu, digest = run_once(chunks)
        if digest != expected:
            raise SystemExit("decoded audio differs from the input")
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
    megabytes = len(body) / 1e6
    parser_rate = megabytes / (best_cpu - hashing)
    print(
        f"{args.style}: {megabytes:.1f} MB body in {args.chunk_kib} KiB chunks, best of {args.rounds}: "
        f"{parser_rate:.0f} MB/s of CPU time, "
        f"{megabytes / (best_wall - hashing):.0f} MB/s wall clock (sha256 of the output excluded)"
    )
    floor_rate = a2b_base64_rate(base64.b64encode(audio), size, args.rounds)
    print(
        f"baseline: binascii.a2b_base64 alone on the same base64 without escapes: {floor_rate:.0f} MB/s "
        f"of CPU time; the parser runs at {parser_rate / floor_rate:.0%} of it"
    )
    ok = parser_rate >= args.target
    result = {
        "benchmark": "inline_parser",
        "style": args.style,
        "chunk_kib": args.chunk_kib,
        "mb_per_s": round(parser_rate),
        "a2b_base64_mb_per_s": round(floor_rate),
        "target_mb_per_s": args.target,
        "ok": ok,
    }
    print(json.dumps(result))
    if not ok:
        raise SystemExit(1)


def a2b_base64_rate(b64: bytes, chunk_size: int, rounds: int) -> float:
    """MB/s of the C decoder by itself: the ceiling for any parser built on it."""
    chunk_size -= chunk_size % 4
    chunks = [b64[i : i + chunk_size] for i in range(0, len(b64), chunk_size)]
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for chunk in chunks:
            binascii.a2b_base64(chunk, strict_mode=True)
        best = min(best, time.process_time() - started)
    return len(b64) / 1e6 / best


if __name__ == "__main__":
    main()
