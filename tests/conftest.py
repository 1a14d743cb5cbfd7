"""Shared fixtures: the simulator over loopback, configurations pointing at it, and helpers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest

from archiver.config import Config, load_config
from archiver.simulator import Faults, SimConfig, Simulator

from .benchmarks.harness import write_toml

SECRET = "sim-client-secret-for-tests"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the long variants of the suites")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long variant: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def sim_config(**overrides: Any) -> SimConfig:
    """A simulator with test credentials, no rate limit and small files unless told otherwise."""
    values: dict[str, Any] = {"client_secret": SECRET, "rate_limit": 0, "min_size": 2_000, "max_size": 300_000}
    values.update(overrides)
    return SimConfig(**values)


@asynccontextmanager
async def simulators(configure: Callable[..., SimConfig] = sim_config) -> AsyncIterator[Callable[..., Any]]:
    """The one simulator factory: ``await start(**SimConfig fields)`` starts one, configured
    by ``configure``; all are closed on leaving."""
    started: list[Simulator] = []

    async def start(**overrides: Any) -> Simulator:
        sim = Simulator(configure(**overrides))
        await sim.start()
        started.append(sim)
        return sim

    try:
        yield start
    finally:
        for sim in started:
            await sim.close()


@pytest.fixture
async def simulator() -> AsyncIterator[Callable[..., Any]]:
    """``await simulator(**SimConfig fields)`` starts one (test defaults); closed after the test."""
    async with simulators() as start:
        yield start


@pytest.fixture
async def vendor() -> AsyncIterator[Any]:
    """A crafted vendor on loopback (``tests/vendor.py``), each answer scripted by the test."""
    from .vendor import Vendor

    server = Vendor()
    await server.start()
    yield server
    await server.close()


def make_config(tmp_path: Path, sim: Simulator, **settings: Any) -> Config:
    """A Config for ``sim`` rooted in ``tmp_path``; ``settings`` are ``section__key=value``."""
    values: dict[str, dict[str, Any]] = {
        "kore": {
            "host": sim.api_url, "bot_id": sim.config.bot_id, "client_id": sim.config.client_id,
            "requests_per_minute": 100000, "rate_window": "60s",
        },
        "media": {"allow_private_addresses": True, "chunk_size": "256KiB"},
        "archive": {"root": str(tmp_path / "archive"), "min_free_space": 0},
        "http": {"backoff_initial": "10ms", "backoff_max": "50ms", "max_attempts": 6, "read_timeout": "10s"},
        "daemon": {
            "state_dir": str(tmp_path / "state"), "inbox_dir": str(tmp_path / "inbox"),
            "inbox_settle_time": "0s", "sweep_interval": "1s", "inbox_scan_interval": "1s",
            "defer_delay": "1s", "grace_period": "5s",
        },
        "observability": {"http_listen": "", "log_format": "json", "log_level": "DEBUG"},
    }
    for name, value in settings.items():
        section, key = name.split("__", 1)
        values.setdefault(section, {})[key] = value
    path = write_toml(tmp_path / "archiver.toml", values)
    return load_config(path, env={"ARCHIVER_KORE_CLIENT_SECRET": SECRET})


@asynccontextmanager
async def archiver_for(config: Config) -> AsyncIterator[Any]:
    """A session archiver with its own HTTP sessions, for tests that drive it directly."""
    from archiver.archive import SessionArchiver
    from archiver.client import KoreClient, api_session
    from archiver.download import MediaDownloader, media_session
    from archiver.metrics import Metrics

    metrics = Metrics()
    async with api_session(config) as api, media_session(config) as media:
        client = KoreClient(config, api, metrics=metrics)
        yield SessionArchiver(config, client, MediaDownloader(config, media, metrics=metrics), metrics)


def enqueue_sessions(config: Config, session_ids: Any, **options: Any) -> None:
    """Queue ``session_ids`` as session jobs in the configured state directory."""
    from archiver.store import JobStore

    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", sid) for sid in session_ids], **options)


@asynccontextmanager
async def running(config: Config, **options: Any) -> AsyncIterator[Any]:
    """The daemon (``Service(config, **options)``) started in this loop and ready; stopped and
    awaited on leaving, whatever happened inside."""
    from archiver.service import Service

    service = Service(config, **options)
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 30)
        yield service
    finally:
        service.stop()
        await asyncio.wait_for(task, 30)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def temp_files(root: Path) -> list[Path]:
    """Anything left with a temp name below ``root``."""
    return [p for p in root.rglob("*") if p.name.endswith((".incomplete", ".tmp")) or ".part" in p.name]


def assert_archived(config: Config, sim: Simulator, session_id: str, *, recordings: bool = True) -> dict[str, Any]:
    """The session's files are on disk, complete, and byte-identical to what the simulator serves."""
    from archiver.layout import session_dir

    directory = session_dir(config.archive.root, config.kore.bot_id, "session", session_id)
    manifest = json.loads((directory / "manifest.json").read_text())
    spec = sim.session(session_id)
    audio = [f for f in manifest["files"] if f["kind"] == "audio"]
    expected = []
    if recordings:
        expected += [sim.media_sha256(m) for m in spec.recordings]
    if config.kore.fetch_voicemail:
        expected += [sim.media_sha256(m) for m in spec.voicemails]
    assert sorted(f["sha256"] for f in audio) == sorted(expected)
    for entry in manifest["files"]:
        path = directory / entry["path"]
        assert path.stat().st_size == entry["size"]
        assert sha256_file(path) == entry["sha256"]
    return manifest


# -- S3: moto's server on loopback ---------------------------------------------------------------

S3_KEY_ID = "AKIATESTARCHIVER0001"
S3_SECRET = "s3-secret-key-for-tests-never-logged"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Any:
    """moto's S3 server, one process on 127.0.0.1 for the whole run; yields its URL."""
    import subprocess
    import sys
    import urllib.request

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto's S3 server did not start")
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


def s3_admin(endpoint: str) -> Any:
    """A plain boto3 client for the tests' own look at the bucket (same credentials)."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
        config=BotoConfig(request_checksum_calculation="when_required", response_checksum_validation="when_required"),
    )


_bucket_numbers = iter(range(1, 1_000_000))


def new_bucket(endpoint: str, *, lock: bool = False, versioning: bool = False) -> str:
    """A fresh bucket on the server (its own name per test)."""
    name = f"arch-{os.getpid()}-{next(_bucket_numbers)}"
    admin = s3_admin(endpoint)
    admin.create_bucket(Bucket=name, **({"ObjectLockEnabledForBucket": True} if lock else {}))
    if versioning and not lock:
        admin.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def s3_settings(tmp_path: Path, endpoint: str, bucket: str, **extra: Any) -> dict[str, Any]:
    """make_config settings for an S3 target on ``endpoint`` (the secret key in a file)."""
    secret = tmp_path / "s3-secret"
    secret.write_text(S3_SECRET + "\n")
    values = {
        "archive__target": "s3", "s3__endpoint_url": endpoint, "s3__bucket": bucket, "s3__prefix": "kore/",
        "s3__addressing_style": "path", "s3__access_key_id": S3_KEY_ID, "s3__secret_access_key_file": str(secret),
    }
    values.update(extra)
    return values


def bucket_objects(endpoint: str, bucket: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    """key -> HEAD answer (checksum mode) of every object in the bucket."""
    admin = s3_admin(endpoint)
    found = {}
    for page in admin.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents") or []:
            found[item["Key"]] = admin.head_object(Bucket=bucket, Key=item["Key"], ChecksumMode="ENABLED")
    return found


def object_sha256(endpoint: str, bucket: str, key: str) -> str:
    body = s3_admin(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
    return hashlib.sha256(body).hexdigest()


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true, failing after ``timeout`` (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


__all__ = [
    "Faults", "archiver_for", "make_config", "sha256_file", "temp_files", "assert_archived", "wait_for", "SECRET", "os",
    "run_with_deadline", "running", "enqueue_sessions",
]


def run_with_deadline(fn: Callable[[], Any], seconds: float = 10.0, what: str = "the call") -> Any:
    """Run blocking ``fn`` in a thread; fail (instead of hanging the suite) if it is still
    running after ``seconds``. Its exception, if any, is raised here."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed back to the test
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{what} hung (still running after {seconds:g}s)"
    if "error" in result:
        raise result["error"]
    return result["value"]
