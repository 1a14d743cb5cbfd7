"""No secret leaks: a full scenario at DEBUG, then a search of everything the archiver wrote.

The daemon runs as a subprocess (``archiver run``, JSON logs at DEBUG, metrics served) over
v2 and voicemail sessions with a fresh JWT per request (``jti``), faults firing (5xx, 429,
resets, truncation, expired URLs), sessions that fail and sessions not ready yet; then the
operator commands run. The promise checked: the client secret, every JWT issued (and its
signature part) and the signature and nonce of every media URL handed out appear in none
of: the logs, the commands' output (exception texts included), sidecars, manifests, part
and report files, the metrics and health endpoints, or the job store (its WAL included).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from urllib.parse import parse_qs, urlsplit

import aiohttp

from archiver.cli import main as cli_main
from archiver.simulator import Faults, MediaSpec, SessionSpec
from archiver.store import JobStore

from .conftest import SECRET, make_config, wait_for

IDS = [f"6914a3c0aa01bb02cc05{n:04x}" for n in range(24)]
FAILED, WAITING = IDS[0], IDS[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_no_secret_reaches_logs_errors_files_metrics_or_the_store(tmp_path, simulator, capsys):
    sim = await simulator(
        enforce_jti=True, voicemail_rate=0.7, retry_after_header=False,
        faults=Faults(api_5xx=0.1, api_429=0.05, media_5xx=0.1, media_reset=0.1, media_truncate=0.1,
                      expired_url=0.2, ignore_range=0.3),
    )
    sim.config.sessions[FAILED] = SessionSpec(recordings=[MediaSpec("r.wav", 5_000, 1)], voicemails=[],
                                              transcript_texts=[], v2_status="failed")
    sim.config.sessions[WAITING] = SessionSpec(recordings=[MediaSpec("w.wav", 5_000, 2)], voicemails=[],
                                               transcript_texts=[], not_ready_polls=1000)
    handed_out: list[str] = []
    state = sim._state
    original = state.signed_url

    def recording(*args, **kwargs) -> str:
        url = original(*args, **kwargs)
        handed_out.append(url)
        return url

    state.signed_url = recording  # every media URL the API answers with, used or not
    port = free_port()
    config = make_config(
        tmp_path, sim, kore__jti_per_request=True, kore__rate_window="100ms", daemon__defer_delay="100ms",
        observability__http_listen=f"127.0.0.1:{port}", observability__log_level="DEBUG",
        observability__log_format="json", http__max_attempts=8,
    )
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", sid) for sid in IDS])
    config.daemon.inbox_dir.mkdir(parents=True)
    (config.daemon.inbox_dir / "upload.tmp").write_text("still arriving")  # logged at DEBUG
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "archiver", "run", "--config", str(tmp_path / "archiver.toml"),
            env={**os.environ, "ARCHIVER_KORE_CLIENT_SECRET": SECRET}, stdout=out, stderr=out,
        )

    def settled() -> bool:
        with JobStore.open_in(config.daemon.state_dir) as store:
            counts = store.counts()
        return counts.get("done", 0) == len(IDS) - 2 and counts.get("failed", 0) == 1

    try:
        await wait_for(settled, timeout=60, what="the scenario to settle")
        async with aiohttp.ClientSession() as http:
            served = [await (await http.get(f"http://127.0.0.1:{port}{path}")).text() for path in ("/metrics", "/healthz")]
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    capsys.readouterr()
    assert cli_main(["status", "--config", str(tmp_path / "archiver.toml")]) == 0
    assert cli_main(["status", "--json", "--config", str(tmp_path / "archiver.toml")]) == 0
    printed = capsys.readouterr()

    # What must never appear anywhere.
    tokens = {r.headers["auth"] for r in sim.requests if r.server == "api" and "auth" in r.headers}
    secrets = {"client secret": [SECRET], "JWT": sorted(tokens), "JWT signature": [t.rsplit(".", 1)[1] for t in tokens]}
    queries = [parse_qs(urlsplit(url).query) for url in handed_out]
    secrets["URL signature"] = [q["s"][0] for q in queries]
    secrets["URL nonce"] = [q["n"][0] for q in queries]
    assert len(tokens) > len(IDS) and len(handed_out) > len(IDS)  # a real scenario: many of each
    assert sim.stats.faults_injected["expired_url"] and sim.stats.faults_injected["media_reset"]

    # Where to look: every file below tmp_path (archive, state with its WAL, inbox, log), the
    # endpoints' answers and the commands' output.
    haystacks: dict[str, bytes] = {
        str(path): path.read_bytes() for path in tmp_path.rglob("*") if path.is_file() and path.name != "archiver.toml"
    }
    assert any(name.endswith("jobs.sqlite3") for name in haystacks)
    assert b'"level": "debug"' in haystacks[str(log)]  # DEBUG logging really was on
    with JobStore.open_in(config.daemon.state_dir) as store:
        errors = [job.last_error or "" for job in store.iter_jobs()]
    assert any("failed" in e for e in errors)
    haystacks["metrics"] = served[0].encode()
    haystacks["healthz"] = served[1].encode()
    haystacks["status output"] = (printed.out + printed.err).encode()
    haystacks["last errors"] = "\n".join(errors).encode()
    leaks = [
        (kind, where)
        for kind, values in secrets.items()
        for value in values
        for where, text in haystacks.items()
        if value.encode() in text
    ]
    assert leaks == []
    print(f"\nsecrets: {len(IDS)} sessions, {len(tokens)} JWTs and {len(handed_out)} signed URLs searched for "
          f"in {len(haystacks)} files and outputs: none found")
