"""Scenario 4 (many sessions, latency-bound) for two checkouts of the archiver, alternating.

    python tests/benchmarks/bench_versions.py OLD_CHECKOUT [NEW_CHECKOUT] [--reps 5] [--sessions 2000]

Timings on this kind of machine drift by 10% from one minute to the next, so a figure from
another day says little about a change. This runs ``archiver once`` of each checkout in turn
(``git worktree add /tmp/before <commit>`` makes the older one) against one media/API server
(100 ms API latency, 50 ms media latency, 256 KiB a session, concurrency 32), keeps every
output until the end as the suite does, checks each run archived every session, and prints
each side's walls, their medians and the ratio NEW/OLD as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.harness import REPO, child_env, fresh_dir, server_process, session_ids, write_config  # noqa: E402
from tests.benchmarks.scenarios import write_random_file  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="a checkout of the archiver (the reference)")
    parser.add_argument("new", type=Path, nargs="?", default=REPO, help="another (default: this one)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=2000)
    args = parser.parse_args(argv)
    trees = [args.old.resolve(), args.new.resolve()]
    for tree in trees:
        if not (tree / "archiver" / "__main__.py").is_file():
            parser.error(f"{tree} is not a checkout of the archiver")
    walls: list[list[float]] = [[], []]  # old, new (the same checkout twice is allowed)
    work = Path(tempfile.mkdtemp(prefix="bench-versions-"))
    try:
        clip = work / "clip.wav"
        write_random_file(clip, 256 * 1024)
        ids = work / "ids.txt"
        ids.write_text("\n".join(session_ids(args.sessions)) + "\n")
        argv_server = ["-m", "tests.benchmarks.server", "--media", str(clip),
                       "--api-latency", "0.1", "--media-latency", "0.05"]  # fmt: skip
        with server_process(argv_server, log=work / "server.log") as server:
            for rep in range(args.reps):
                for side in (0, 1) if rep % 2 == 0 else (1, 0):
                    walls[side].append(_once(trees[side], server.ready["url"], work, ids, args.sessions))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    old, new = (statistics.median(side) for side in walls)
    print(json.dumps({
        "sessions": args.sessions, "old": str(trees[0]), "new": str(trees[1]),
        "old_walls": [round(w, 2) for w in walls[0]], "new_walls": [round(w, 2) for w in walls[1]],
        "old_median": round(old, 2), "new_median": round(new, 2), "ratio": round(new / old, 3),
    }))
    return 0


def _once(tree: Path, url: str, work: Path, ids: Path, sessions: int) -> float:
    os.sync()  # what an earlier run left dirty is not written back during this one
    run = fresh_dir(work, "run")
    config = write_config(run, url, kore={"fetch_voicemail": False}, media={"concurrency": 32},
                          daemon={"concurrency": 32})  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "archiver", "once", "--config", str(config), "--ids", str(ids)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env(PYTHONPATH=str(tree)), cwd=tree,
    )
    wall = time.perf_counter() - started
    archived = sum(1 for _ in (run / "archive").rglob("manifest.json"))
    if done.returncode != 0 or archived != sessions:
        raise SystemExit(f"{tree}: exit {done.returncode}, {archived} of {sessions} sessions archived")
    return wall


if __name__ == "__main__":
    raise SystemExit(main())
