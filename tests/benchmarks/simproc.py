"""The project's simulator in a process of its own, for the rate-limited benchmark.

    python -m tests.benchmarks.simproc --rate-limit 100 --rate-window 10 [--secret S]

Prints ``{"api_url": ..., "bot_id": ..., "client_id": ...}`` once both servers listen. On
SIGTERM or SIGINT it stops and prints what its API server saw, as one JSON line:
``{"api": [[arrival_seconds, status], ...], "rate_limited": N}`` (arrival times are
``time.monotonic()`` in this process: only their differences mean anything).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from archiver.simulator import SimConfig, Simulator


async def run(config: SimConfig) -> None:
    sim = Simulator(config)
    await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(json.dumps({"api_url": sim.api_url, "bot_id": config.bot_id, "client_id": config.client_id}), flush=True)
    try:
        await stop.wait()
    finally:
        await sim.close()
    api = [[r.at, r.status] for r in sim.requests if r.server == "api"]
    print(json.dumps({"api": api, "rate_limited": sim.stats.rate_limited}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-limit", type=int, default=60, help="requests per window (0: no limit)")
    parser.add_argument("--rate-window", type=float, default=60.0, help="window length in seconds")
    parser.add_argument("--secret", default="bench-client-secret")
    parser.add_argument("--min-size", type=int, default=2_000)
    parser.add_argument("--max-size", type=int, default=20_000)
    args = parser.parse_args(argv)
    config = SimConfig(
        client_secret=args.secret,
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
        min_size=args.min_size,
        max_size=args.max_size,
    )
    asyncio.run(run(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
