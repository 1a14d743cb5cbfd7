"""Benchmark: one inbox file of a million ids into a fresh job store.

    python tests/benchmarks/bench_enqueue.py [--ids 1000000] [--keep]

Writes ``inbox/ids.txt`` (distinct 24-hex session ids in random order, one per line) in a
temporary directory, then runs the inbox scan into a new store in a child process, so that the
peak RSS reported (``ru_maxrss``) is that of the scan alone. (Linux carries the parent's peak
over into a child at exec, so this script itself stays small: the ids are generated, not
remembered.) Then it times
``JobStore.status()`` and one ``claim()`` on the full store, as ``archiver status`` and a
worker would see it.

Passes (exit status 0, ``"ok": true`` on the last line, which is JSON) when every id is queued,
the scan takes under 30 s, peak RSS stays under 200 MiB and status answers in under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCAN_LIMIT_S = 30.0
RSS_LIMIT_MIB = 200.0
STATUS_LIMIT_S = 1.0


# i -> (i * odd + offset) mod 2**96 is a bijection: distinct ids, scattered over the key space
# (the worst case for the store's index), without remembering the ones already written.
_MULTIPLIER = 0x9E3779B97F4A7C15F39CC061 | 1
_OFFSET = 0x5DEECE66D2545F4914F6CDD1D


def write_inbox_file(path: Path, count: int) -> None:
    """``count`` distinct ObjectId-like ids in scattered order, with a comment and a blank line."""
    with open(path, "w", encoding="ascii", newline="\n") as out:
        out.write("# benchmark ids\n\n")
        for start in range(0, count, 10_000):
            out.writelines(
                f"{(i * _MULTIPLIER + _OFFSET) % 2**96:024x}\n" for i in range(start, min(start + 10_000, count))
            )
    old = time.time() - 3600  # long settled
    os.utime(path, (old, old))


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def child(workdir: Path) -> dict[str, object]:
    """The measured part: runs in a fresh interpreter."""
    sys.path.insert(0, str(REPO))
    from archiver.config import DaemonConfig
    from archiver.inbox import Inbox
    from archiver.store import JobStore

    store = JobStore.open_in(workdir / "state")
    inbox = Inbox(DaemonConfig(inbox_dir=workdir / "inbox"), store)
    started = time.perf_counter()
    outcomes = inbox.scan()
    scan_s = time.perf_counter() - started

    started = time.perf_counter()
    status = store.status()
    status_s = time.perf_counter() - started

    started = time.perf_counter()
    claimed = store.claim(4)
    claim_s = time.perf_counter() - started
    store.close()
    return {
        "outcomes": [(o.name, o.disposition, o.accepted, o.invalid) for o in outcomes],
        "counts": status.counts,
        "scan_s": round(scan_s, 3),
        "status_s": round(status_s, 4),
        "claim_s": round(claim_s, 4),
        "claimed": len(claimed),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def run(count: int, keep: bool) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-enqueue-"))
    try:
        (workdir / "inbox").mkdir()
        started = time.perf_counter()
        write_inbox_file(workdir / "inbox" / "ids.txt", count)
        write_s = time.perf_counter() - started
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(workdir)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"benchmark child failed ({done.returncode}):\n{done.stderr}")
        figures = json.loads(done.stdout)
        figures["ids"] = count
        figures["write_s"] = round(write_s, 3)
        store_bytes = sum(p.stat().st_size for p in (workdir / "state").glob("jobs.sqlite3*"))
        figures["file_mib"] = round(store_bytes / 2**20, 1)
    finally:
        if keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    figures["ok"] = (
        figures["outcomes"] == [["ids.txt", "processed", count, 0]]
        and figures["counts"]["pending"] == count  # type: ignore[index]
        and figures["claimed"] == min(4, count)
        and figures["scan_s"] < SCAN_LIMIT_S  # type: ignore[operator]
        and figures["peak_rss_mib"] < RSS_LIMIT_MIB  # type: ignore[operator]
        and figures["status_s"] < STATUS_LIMIT_S  # type: ignore[operator]
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000, help="ids in the inbox file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    figures = run(args.ids, args.keep)
    print(f"ids:        {figures['ids']:,} (file written in {figures['write_s']} s)")
    print(f"inbox scan: {figures['scan_s']} s (limit {SCAN_LIMIT_S:g} s)")
    print(f"peak RSS:   {figures['peak_rss_mib']} MiB (limit {RSS_LIMIT_MIB:g} MiB)")
    print(f"status():   {figures['status_s']} s (limit {STATUS_LIMIT_S:g} s); claim(4): {figures['claim_s']} s")
    print(f"store file: {figures['file_mib']} MiB")
    print(f"result:     {'ok' if figures['ok'] else 'FAILED'}")
    print(json.dumps(figures))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
