"""Run the benchmark scenarios and print one table of figures and ratios.

    python -m tests.benchmarks [--only 1,2,4] [--reps 3] [--smoke] [--json FILE] [--keep]

0. fixed cost: ``archiver once`` with nothing to do (start to exit)
1. media streaming: one 1 GiB file over loopback, archiver vs ``curl -o``; peak RSS
2. inline (v1): one 512 MiB base64 recording in the JSON body, archiver vs
   ``curl | jq -r '.recording[0]' | cut -d, -f2 | base64 -d``; wall time and peak memory
3. API-bound: the simulator enforcing 100 requests per 10 s (600 a minute); sustained rate, 429s
4. latency-bound: 2,000 sessions of 256 KiB, 100 ms API and 50 ms media latency, concurrency 32;
   vs the ideal for that concurrency and vs ``aria2c -j 32 -i urls.txt``
5. CPU (user + sys) per archived session, measured on scenario 4
6. ``archiver status`` on a store of 1,000,000 jobs
7. S3: one 1 GiB recording downloaded into the spool, uploaded to moto's S3 server (a child
   on loopback) and proven, vs ``aws s3 cp`` of the same file to the same server; peak RSS

curl, jq and aria2c are installed with apt-get when missing (as root, or with sudo); awscli
from PyPI, into its own venv beside the interpreter's (it pins botocore to one release). The test
data (a few GiB at most) lives in a temporary directory that is removed at the end. Exit
status 0 when every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .harness import Row, ensure_tools, own_peak_rss_mib, render_table
from .scenarios import FULL, SCENARIOS, SMOKE, Scale


def machine() -> str:
    """One line about where the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def run(scale: Scale, only: list[str], work: Path) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    figures: dict[str, Any] = {}
    for key in only:
        started = time.perf_counter()
        print(f"scenario {key} ...", file=sys.stderr, flush=True)
        scenario_dir = work / f"scenario-{key}"
        scenario_dir.mkdir()
        got, raw = SCENARIOS[key](scale, scenario_dir)
        shutil.rmtree(scenario_dir, ignore_errors=True)
        rows += got
        figures[key] = raw
        print(f"scenario {key} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return rows, figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios to run, e.g. 1,4 (5 is part of 4)")
    parser.add_argument("--reps", type=int, help="repetitions of each comparison (default 3)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every scenario runs")
    parser.add_argument("--json", type=Path, help="also write the raw figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get missing tools")
    args = parser.parse_args(argv)
    scale = SMOKE if args.smoke else FULL
    if args.reps:
        scale = Scale(**{**scale.__dict__, "reps": args.reps})
    only = [key.strip() for key in args.only.split(",") if key.strip() and key.strip() != "5"]
    unknown = [key for key in only if key not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    if not args.no_install:
        still = ensure_tools(["curl", "jq", "aria2c"])
        if still:
            print(f"not installed, their comparisons are left out: {', '.join(still)}", file=sys.stderr)

    work = Path(tempfile.mkdtemp(prefix="archiver-bench-"))
    try:
        rows, figures = run(scale, only, work)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}")
    print(f"repetitions: {scale.reps} per comparison, sides alternating; medians")
    print()
    print(render_table(rows))
    if "4" in figures:
        print()
        print(f"* ideal = {figures['4']['ideal_definition']}")
    print(f"(driver peak RSS {own_peak_rss_mib():.0f} MiB: no child's figure can be below it)")
    failed = [row for row in rows if row.met is False]
    figures["rows"] = [row.__dict__ for row in rows]
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 1 if failed else 0
