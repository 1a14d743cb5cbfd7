"""Contact Center calls per archived session, with and without call details.

    python tests/benchmarks/bench_calls.py [--sessions 1000] [--voicemail 0.1]

One day of ``--sessions`` voice calls (``--voicemail`` of them with a voicemail) in the
simulator, discovered and archived twice in fresh directories:

- ``baseline``: discovery through getSessions, no ``kore.account_id``: a recordings call and
  a voicemail call for every session;
- ``call_details``: discovery through Call Details v2: each session's record stored with its
  job, the voicemail call made only when the record says there is one.

Counted from the simulator's side: every Contact Center call answered 200 (recordings,
voicemail, call details; discovery's calls included). Prints one JSON line; exit 0 when the
call-details run spends at most 1.15 calls per archived session (and archived them all).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from archiver.client import KoreClient, api_session  # noqa: E402
from archiver.config import Config, load_config  # noqa: E402
from archiver.discovery import Discovery  # noqa: E402
from archiver.service import Service  # noqa: E402
from archiver.simulator import SimConfig, Simulator  # noqa: E402
from archiver.store import JobStore  # noqa: E402

TARGET = 1.15
SECRET = "bench-secret-of-a-sensible-length-0123"
DAY0 = datetime(2025, 3, 10, tzinfo=timezone.utc).timestamp()
CONTACT_CENTER = {"v1_recordings", "v2_recordings", "voicemail", "call_details"}


def config_for(root: Path, sim: Simulator, call_details: bool) -> Config:
    lines = [
        "[kore]", f'host = "{sim.api_url}"', f'bot_id = "{sim.config.bot_id}"', f'client_id = "{sim.config.client_id}"',
        "requests_per_minute = 1000000",
        *([f'account_id = "{sim.config.account_id}"'] if call_details else []),
        "[media]", "allow_private_addresses = true",
        "[archive]", f'root = "{root / "archive"}"', "min_free_space = 0",
        "[daemon]", f'state_dir = "{root / "state"}"', f'inbox_dir = "{root / "inbox"}"', "concurrency = 16",
        "[discovery]", f'source = "{"call_details" if call_details else "get_sessions"}"',
        "requests_per_minute = 1000000", "requests_per_hour = 1000000", "window = \"1d\"",
        "[call_details]", "requests_per_minute = 1000000",
        "[observability]", 'http_listen = ""', 'log_level = "ERROR"', 'log_format = "json"',
    ]
    path = root / "archiver.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_config(path, env={"ARCHIVER_KORE_CLIENT_SECRET": SECRET})


async def one_run(sessions: int, voicemail: float, call_details: bool) -> dict[str, Any]:
    sim_config = SimConfig(
        client_secret=SECRET, rate_limit=0, call_details_per_minute=0, analytics_per_minute=0, analytics_per_hour=0,
        sessions_per_day=sessions, chat_session_rate=0.0, voicemail_rate=voicemail, min_size=256, max_size=2048,
        now=DAY0 + 2 * 86400, seed=7,
    )
    with tempfile.TemporaryDirectory() as tmp:
        async with Simulator(sim_config) as sim:
            config = config_for(Path(tmp), sim, call_details)
            started = time.monotonic()
            with JobStore.open_in(config.daemon.state_dir) as store:
                async with api_session(config) as http:
                    await Discovery(config, KoreClient(config, http), store).backfill(DAY0, DAY0 + 86399)
            stats = await Service(config, burst=True).run()
            elapsed = time.monotonic() - started
            calls: dict[str, int] = {}
            for (endpoint, status), count in sim.stats.api_calls.items():
                if status == 200 and endpoint in CONTACT_CENTER:
                    calls[endpoint] = calls.get(endpoint, 0) + count
            voicemails = sum(1 for r in sim.population(DAY0, DAY0 + 86399) if sim.session(r.session_id).voicemails)
    total = sum(calls.values())
    return {
        "archived": stats.done, "failed": stats.failed, "with_voicemail": voicemails, "calls": calls,
        "calls_per_session": round(total / stats.done, 4) if stats.done else None, "seconds": round(elapsed, 2),
    }


async def main(sessions: int, voicemail: float) -> dict[str, Any]:
    baseline = await one_run(sessions, voicemail, call_details=False)
    with_details = await one_run(sessions, voicemail, call_details=True)
    ok = (
        with_details["archived"] == sessions and with_details["failed"] == 0
        and with_details["calls_per_session"] is not None and with_details["calls_per_session"] <= TARGET
    )
    return {"sessions": sessions, "voicemail_rate": voicemail, "target": TARGET,
            "baseline": baseline, "call_details": with_details, "ok": ok}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--voicemail", type=float, default=0.1)
    args = parser.parse_args()
    result = asyncio.run(main(args.sessions, args.voicemail))
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)
