"""``archiver demo``: the whole product in one command, against the bundled simulator.

Starts the simulator on loopback, drops a file of session ids into an inbox, archives them
with the v2 API (signed media URLs) and a second batch with the v1 API (inline base64),
voicemails and transcriptions included, then prints the tree and a summary.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .config import Config, load_config
from .manifest import MANIFEST
from .simulator import Simulator, SimConfig

DEMO_SECRET = "demo-client-secret"
# Sessions of 2025-11-12..15 (ObjectIds: the first 8 hex digits are the creation time).
V2_SESSIONS = ["6914a3c0aa01bb02cc03dd04", "6914a3c0aa01bb02cc03dd05", "6915f540aa01bb02cc03dd06", "691747c0aa01bb02cc03dd07"]
V1_SESSIONS = ["691899a0aa01bb02cc03dd08", "demo-session-without-objectid"]


def demo_config(base: Path, sim: Simulator, recordings_api: str) -> Config:
    """A configuration pointing at the simulator, written like a user's TOML file."""
    text = f"""
[kore]
host = "{sim.api_url}"
path_prefix = "/api/public"
bot_id = "{sim.config.bot_id}"
client_id = "{sim.config.client_id}"
recordings_api = "{recordings_api}"
requests_per_minute = 600

[media]
allow_private_addresses = true

[archive]
root = "{base / 'archive'}"
min_free_space = "10MiB"

[daemon]
state_dir = "{base / 'state'}"
inbox_dir = "{base / 'inbox'}"
inbox_settle_time = "0s"
concurrency = 4

[observability]
log_format = "text"
log_level = "WARNING"
http_listen = ""
"""
    path = base / f"archiver-{recordings_api}.toml"
    path.write_text(text)
    return load_config(path, env={"ARCHIVER_KORE_CLIENT_SECRET": DEMO_SECRET})


async def run_demo(base: Path) -> int:
    """Run the demo into ``base``; returns the exit code."""
    from .cli import run_once

    base = base.resolve()
    (base / "inbox").mkdir(parents=True, exist_ok=True)
    sim_config = SimConfig(client_secret=DEMO_SECRET, voicemail_rate=0.6, min_size=48_000, max_size=400_000, rate_limit=600)
    async with Simulator(sim_config) as sim:
        print(f"simulator: API {sim.api_url}, media {sim.media_url}")
        drop = base / "inbox" / ".ids.txt.tmp"
        drop.write_text("# dropped by the demo\n" + "\n".join(V2_SESSIONS) + "\nnot a valid id!\n")
        os.replace(drop, base / "inbox" / "calls.txt")  # write elsewhere, rename in
        print("\n== v2 recordings (signed media URLs) + voicemail, fed through the inbox")
        code_v2 = await run_once(demo_config(base, sim, "v2"), [])
        print("\n== v1 recordings (inline base64, decoded while streaming)")
        code_v1 = await run_once(demo_config(base, sim, "v1"), [("session", s) for s in V1_SESSIONS])
    print(f"\n== archive tree under {base / 'archive'}")
    _print_tree(base / "archive")
    print(f"\ninbox results: {sorted(p.name for p in (base / 'inbox' / 'processed').iterdir())}")
    print(f"see the manifests: find {base / 'archive'} -name {MANIFEST}")
    return max(code_v2, code_v1)


def _print_tree(root: Path, out=None) -> None:
    out = out or sys.stdout
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        depth = Path(dirpath).relative_to(root).parts
        print(f"{'  ' * len(depth)}{Path(dirpath).name}/", file=out)
        for name in sorted(files):
            size = (Path(dirpath) / name).stat().st_size
            print(f"{'  ' * (len(depth) + 1)}{name}  ({size} bytes)", file=out)
