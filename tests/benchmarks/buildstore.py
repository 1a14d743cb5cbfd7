"""Build a job store of many jobs, quickly, for the ``archiver status`` benchmark.

    python -m tests.benchmarks.buildstore STATE_DIR --jobs 1000000

The ids go in through ``JobStore.enqueue`` (batched transactions, as the inbox does); then
one statement per state spreads them the way a store looks after months of service: most
jobs done, a backlog pending, some deferred, a few failed with their errors. Prints
``{"jobs": N, "seconds": S}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from archiver.store import JobStore

# i -> (i * odd + offset) mod 2**96 is a bijection: distinct ids, scattered over the key space.
_MULTIPLIER = 0x9E3779B97F4A7C15F39CC061 | 1
_OFFSET = 0x5DEECE66D2545F4914F6CDD1D


def build(state_dir: Path, jobs: int) -> None:
    with JobStore.open_in(state_dir) as store:
        ids = (("session", f"{(i * _MULTIPLIER + _OFFSET) % 2**96:024x}") for i in range(jobs))
        store.enqueue(ids, batch=50_000)
        # Straight to the table: going through claim/complete a million times would measure
        # the builder, not the status command. Row ids are in enqueue order.
        now = time.time()
        conn = store._conn  # the benchmark's own store
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE jobs SET state = 'done', attempts = 1, updated_at = ? WHERE id % 100 < 70", (now,))
        conn.execute(
            "UPDATE jobs SET state = 'deferred', attempts = 1, last_error = 'recordings: media_in_progress',"
            " not_before = ?, updated_at = ?, first_deferred_at = ? WHERE id % 100 BETWEEN 70 AND 73",
            (now + 600, now, now),
        )
        conn.execute(
            "UPDATE jobs SET state = 'failed', attempts = 8, last_error = 'gave up after 8 attempts: HTTP 503',"
            " updated_at = ? - id WHERE id % 100 = 74",
            (now,),
        )
        conn.execute("COMMIT")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    build(args.state_dir, args.jobs)
    print(json.dumps({"jobs": args.jobs, "seconds": round(time.perf_counter() - started, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
