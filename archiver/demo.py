"""``archiver demo``: the whole product in one command, against the bundled simulator.

Starts the simulator on loopback, drops a file of session ids into an inbox, archives them
with the v2 API (signed media URLs) and a second batch with the v1 API (inline base64),
voicemails and transcriptions included, then prints the tree and a summary.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from urllib.parse import urlsplit

from .config import Config, load_config
from .errors import ConfigError
from .manifest import MANIFEST
from .service import run_once
from .simulator import Simulator, SimConfig

DEMO_SECRET = "demo-client-secret"
# Sessions of 2025-11-12..15 (ObjectIds: the first 8 hex digits are the creation time).
V2_SESSIONS = ["6914a3c0aa01bb02cc03dd04", "6914a3c0aa01bb02cc03dd05", "6915f540aa01bb02cc03dd06", "691747c0aa01bb02cc03dd07"]
V1_SESSIONS = ["691899a0aa01bb02cc03dd08", "demo-session-without-objectid"]


def s3_section(url: str) -> str:
    """The [archive]/[s3] tables for ``--s3 URL``: ``http(s)://host[:port]/bucket[/prefix]`` for an
    S3-compatible server (path-style), or ``s3://bucket[/prefix]`` for AWS. Credentials come
    from the standard AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile...)."""
    parts = urlsplit(url)
    bucket, _, prefix = parts.path.lstrip("/").partition("/")
    if parts.scheme == "s3":
        bucket, _, prefix = f"{parts.netloc}{parts.path}".partition("/")
        endpoint, style = "", "auto"
    elif parts.scheme in ("http", "https") and parts.hostname:
        endpoint, style = f"{parts.scheme}://{parts.netloc}", "path"
    else:
        raise ConfigError("--s3", f"expected http(s)://host[:port]/bucket[/prefix] or s3://bucket[/prefix], got {url!r}")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else "demo/"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return f"""
[s3]
endpoint_url = "{endpoint}"
region = "{region}"
bucket = "{bucket}"
prefix = "{prefix}"
addressing_style = "{style}"
"""


def demo_config(base: Path, sim: Simulator, recordings_api: str, s3_url: str = "") -> Config:
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
target = "{'s3' if s3_url else 'file'}"

[daemon]
state_dir = "{base / 'state'}"
inbox_dir = "{base / 'inbox'}"
inbox_settle_time = "0s"
concurrency = 4

[observability]
log_format = "text"
log_level = "WARNING"
http_listen = ""
""" + (s3_section(s3_url) if s3_url else "")
    path = base / f"archiver-{recordings_api}.toml"
    path.write_text(text)
    return load_config(path, env={"ARCHIVER_KORE_CLIENT_SECRET": DEMO_SECRET})


async def run_demo(base: Path, s3_url: str = "") -> int:
    """Run the demo into ``base`` (or, with ``s3_url``, into that bucket); returns the exit code."""
    base = base.resolve()
    if s3_url:
        s3_section(s3_url)  # a bad URL is said before anything starts
    (base / "inbox").mkdir(parents=True, exist_ok=True)
    sim_config = SimConfig(client_secret=DEMO_SECRET, voicemail_rate=0.6, min_size=48_000, max_size=400_000, rate_limit=600)
    async with Simulator(sim_config) as sim:
        print(f"simulator: API {sim.api_url}, media {sim.media_url}")
        drop = base / "inbox" / ".ids.txt.tmp"
        drop.write_text("# dropped by the demo\n" + "\n".join(V2_SESSIONS) + "\nnot a valid id!\n")
        os.replace(drop, base / "inbox" / "calls.txt")  # write elsewhere, rename in
        if s3_url:
            config = demo_config(base, sim, "v2", s3_url)
            await _ensure_bucket(config)
        print("\n== v2 recordings (signed media URLs) + voicemail, fed through the inbox")
        code_v2 = await _run_once(demo_config(base, sim, "v2", s3_url), [])
        print("\n== v1 recordings (inline base64, decoded while streaming)")
        code_v1 = await _run_once(demo_config(base, sim, "v1", s3_url), [("session", s) for s in V1_SESSIONS])
    if s3_url:
        await _print_bucket(config)
        print(f"\ninbox results: {sorted(p.name for p in (base / 'inbox' / 'processed').iterdir())}")
        print(f"verify the objects: archiver verify --config {base / 'archiver-v2.toml'} [--deep]")
        return max(code_v2, code_v1)
    print(f"\n== archive tree under {base / 'archive'}")
    _print_tree(base / "archive")
    print(f"\ninbox results: {sorted(p.name for p in (base / 'inbox' / 'processed').iterdir())}")
    print(f"see the manifests: find {base / 'archive'} -name {MANIFEST}")
    return max(code_v2, code_v1)


async def _run_once(config: Config, ids: list[tuple[str, str]]) -> int:
    """One ``archiver once``: its summary printed, its exit code returned."""
    result = await run_once(config, ids)
    print("\n".join(result.summary()))
    return result.exit_code


async def _ensure_bucket(config: Config) -> None:
    """Create the demo's bucket on a loopback S3 server when it does not exist yet (never elsewhere)."""
    from .config import is_loopback_host
    from .s3 import s3_client, translated

    async with s3_client(config) as client:
        try:
            await client.head_bucket(Bucket=config.s3.bucket)
            return
        except Exception:  # absent, or not ours to look at: creating it below says which
            if not is_loopback_host(urlsplit(config.s3.endpoint_url).hostname or ""):
                raise ConfigError("--s3", f"bucket {config.s3.bucket} is not reachable; create it first") from None
        with translated(f"creating the demo bucket {config.s3.bucket}"):
            await client.create_bucket(Bucket=config.s3.bucket)
        print(f"created the bucket {config.s3.bucket} on {config.s3.endpoint_url}")


async def _print_bucket(config: Config, out=None) -> None:
    from .s3 import Bucket, bucket_url, s3_client

    out = out or sys.stdout
    print(f"\n== objects under {bucket_url(config)}", file=out)
    async with s3_client(config) as client:
        async for key, size in Bucket(config, client).list_keys(config.s3.prefix):
            print(f"  {key}  ({size} bytes)", file=out)


def _print_tree(root: Path, out=None) -> None:
    out = out or sys.stdout
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        depth = Path(dirpath).relative_to(root).parts
        print(f"{'  ' * len(depth)}{Path(dirpath).name}/", file=out)
        for name in sorted(files):
            size = (Path(dirpath) / name).stat().st_size
            print(f"{'  ' * (len(depth) + 1)}{name}  ({size} bytes)", file=out)
