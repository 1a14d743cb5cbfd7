"""Never stuck: whatever the vendor does (answers with "wait a year", drips one byte a second,
goes away for minutes), the archiver neither hangs nor spends its work, and comes back by itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from archiver.client import KoreClient, api_session
from archiver.errors import RateLimited
from archiver.metrics import Metrics
from archiver.service import Service
from archiver.store import JobStore

from .conftest import assert_archived, enqueue_sessions, make_config, wait_for

BOT = "st-stuck-bot"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Crafted:
    """A scripted Kore API on loopback: ``answers`` are consumed in order, the last one repeats."""

    def __init__(self, answers: list[Handler]) -> None:
        self.answers = answers
        self.seen: list[float] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> "Crafted":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(time.monotonic())
        answer = self.answers[min(len(self.seen), len(self.answers)) - 1]
        return await answer(request)


def crafted_config(tmp_path, server: Crafted, **settings: Any):
    """A configuration pointing at a crafted API."""
    fake = SimpleNamespace(api_url=server.url, config=SimpleNamespace(bot_id=BOT, client_id="cs-stuck"))
    return make_config(tmp_path, fake, **settings)


async def empty_recordings(request: web.Request) -> web.Response:
    return web.json_response({"status": "success", "recording": []})


def too_many(retry_after: str) -> Handler:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"errors": [{"msg": "Too many requests"}]}, status=429,
                                 headers={"Retry-After": retry_after})
    return answer


# -- Retry-After ------------------------------------------------------------------------------

async def test_a_retry_after_of_a_year_is_cut_to_the_default_fifteen_minutes(tmp_path):
    async with Crafted([too_many("31536000")]) as server:
        config = crafted_config(tmp_path, server, http__max_attempts=1)
        async with api_session(config) as http:
            client = KoreClient(config, http, metrics=Metrics())
            with pytest.raises(RateLimited) as caught:
                await client.recordings_v2("session", "67ab573f3685d1ba99541234")
    assert caught.value.retry_after == 900.0
    assert 0 < client.limiter.delay() <= 900.0


async def test_one_retry_after_of_a_year_does_not_stop_the_workers(tmp_path):
    async with Crafted([too_many("31536000"), empty_recordings]) as server:
        config = crafted_config(tmp_path, server, kore__max_retry_after="200ms")
        async with api_session(config) as http:
            client = KoreClient(config, http, metrics=Metrics())
            answer = await asyncio.wait_for(client.recordings_v2("session", "67ab573f3685d1ba99541234"), 10)
    assert answer.status == "success" and len(server.seen) == 2
    assert server.seen[1] - server.seen[0] >= 0.2


# -- outages ----------------------------------------------------------------------------------

def session_ids(count: int, salt: int) -> list[str]:
    return [f"{0x67800000 + n * 7919:08x}{salt:04x}beef{n:08x}" for n in range(count)]


def scrape(text: str, name: str) -> float:
    """One sample of the Prometheus text format, by its full name with labels."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported")


@pytest.mark.parametrize("host", ["api", "media"])
async def test_an_outage_longer_than_every_retry_pauses_the_queue_and_it_resumes_by_itself(tmp_path, simulator, host):
    sim = await simulator(seed=5, voicemail_rate=0.5, media_latency=0.01)
    config = make_config(
        tmp_path, sim,
        # Every retry of a call, and of a whole session, spent in well under a second.
        http__max_attempts=2, daemon__max_attempts=2, daemon__concurrency=4,
        daemon__breaker_threshold=3, daemon__breaker_probe_initial="100ms", daemon__breaker_probe_max="300ms",
        observability__http_listen="127.0.0.1:0",
    )
    ids = session_ids(16, 7)
    enqueue_sessions(config, ids)
    await sim.stop_host(host)
    service = Service(config)
    running = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 10)
        breaker = getattr(service.breakers, host)
        await wait_for(lambda: not breaker.up, what=f"the {host} breaker to open")
        url = f"http://127.0.0.1:{service.health_server.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/healthz") as resp:
                health = await resp.json()
                assert resp.status == 200 and health["degraded"] and not health["vendor"][host]["up"]
            async with http.get(url + "/readyz") as resp:
                assert resp.status == 503 and "outage" in (await resp.json())["reasons"][0]
            async with http.get(url + "/metrics") as resp:
                metrics = await resp.text()
        assert scrape(metrics, f'archiver_vendor_up{{host="{host}"}}') == 0
        assert scrape(metrics, 'archiver_downloads_paused{reason="outage"}') == 1
        endpoint = "media" if host == "media" else "v2_recordings"
        assert scrape(metrics, f'archiver_connection_errors_total{{endpoint="{endpoint}"}}') >= 3
        # Down for many times what every retry would take, probes failing all along.
        down_since = time.monotonic()
        await wait_for(lambda: time.monotonic() - down_since > 2.0, what="the outage to last")
        assert service.store.counts().get("failed", 0) == 0
        await sim.start_host(host)
        await wait_for(lambda: service.store.counts().get("done", 0) == len(ids), timeout=30, what="every session")
        assert breaker.up and service.pool.stats.failed == 0
    finally:
        service.stop()
        await asyncio.wait_for(running, 15)
    with JobStore.open_in(config.daemon.state_dir) as store:
        assert {state: n for state, n in store.counts().items() if n} == {"done": len(ids)}
        # The outage spent no attempt of its own: every job took one, or two when a request of
        # its failed before the breaker had seen enough failures to open (an ordinary transient
        # failure, counted as one; at most breaker_threshold - 1 of those).
        attempts = [job.attempts for job in store.iter_jobs()]
        assert max(attempts) <= 2 and sum(attempts) - len(attempts) < 3
    for sid in ids:
        assert_archived(config, sim, sid)


# -- no hang ----------------------------------------------------------------------------------

class Drip:
    """A raw HTTP server that feeds its answers a byte at a time, by path:

    ``.../v2/recordings?sessionId=...drip-api...``: JSON headers, then the body dripped;
    ``...headers...``: the headers dripped, never ending; otherwise a media URL on this same
    server, whose path says how the audio comes (``/media/body``: dripped; ``/media/headers``).
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.server: asyncio.AbstractServer | None = None
        self.url = ""
        self.tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> "Drip":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode()
            if "/recordings?" in target and "drip-v1-body" in target:
                await self._drip(writer, b'{"recording": [' + b" " * 100_000 + b"]}", "application/json")
            elif "/v2/recordings" in target and "drip-api-body" in target:
                await self._drip(writer, b'{"status": "success", "recording": []}' + b" " * 100_000, "application/json")
            elif "/v2/recordings" in target and "drip-api-headers" in target:
                await self._drip_headers(writer)
            elif "/v2/recordings" in target:
                kind = "headers" if "media-headers" in target else "body"
                body = json.dumps({"status": "success", "recording": [
                    {"fileName": "a.wav", "fileUrl": f"{self.url}/media/{kind}"}]}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
            elif target.startswith("/media/headers"):
                await self._drip_headers(writer)
            else:
                await self._drip(writer, b"RIFF" + b"\0" * 100_000, "audio/wav")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.tasks.discard(asyncio.current_task())
            writer.close()

    async def _drip(self, writer: asyncio.StreamWriter, body: bytes, content_type: str) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                     % (content_type.encode(), len(body)))
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(self.interval)

    async def _drip_headers(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nX-Never-Ends: ")
        while True:
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(self.interval)


@pytest.mark.parametrize(
    "session", ["drip-api-body", "drip-api-headers", "drip-media-body", "drip-media-headers", "drip-v1-body"],
)
async def test_archiver_once_ends_whatever_a_server_drips(tmp_path, session):
    # Four sessions fed one byte at a time: aiohttp's read timeout (per read) never fires.
    ids = [f"{session}-{n}" for n in range(4)]
    async with Drip() as server:
        fake = SimpleNamespace(api_url=server.url, config=SimpleNamespace(bot_id=BOT, client_id="cs-stuck"))
        config = make_config(
            tmp_path, fake,
            kore__fetch_voicemail=False, kore__recordings_api="v1" if "v1" in session else "v2",
            http__read_timeout="2s", http__header_timeout="1s",
            http__body_timeout="1s", media__min_rate="1KiB", http__max_attempts=2, daemon__max_attempts=1,
        )
        with JobStore.open_in(config.daemon.state_dir) as store:
            store.enqueue([("session", sid) for sid in ids])
        started = time.monotonic()
        stats = await asyncio.wait_for(Service(config, burst=True).run(), 60)
    assert stats.failed == len(ids), stats.failures
    assert time.monotonic() - started < 30
    for _sid, reason in stats.failures:
        assert "took longer than http." in reason or "slower than media.min_rate" in reason


async def test_a_session_over_its_deadline_is_released_to_retry_later(tmp_path):
    # Fast enough for every other deadline (no minimum rate), too slow for the session's.
    async with Drip(interval=0.05) as server:
        fake = SimpleNamespace(api_url=server.url, config=SimpleNamespace(bot_id=BOT, client_id="cs-stuck"))
        config = make_config(
            tmp_path, fake, kore__fetch_voicemail=False, media__min_rate="0", daemon__session_timeout="1s",
            daemon__max_attempts=3, daemon__defer_delay="1s",
            # A released session waits at least backoff_initial: long enough for the poll below
            # to see it pending however loaded the machine is (10 ms let a busy run miss it).
            http__backoff_initial="3s", http__backoff_max="3s",
        )
        with JobStore.open_in(config.daemon.state_dir) as store:
            store.enqueue([("session", "drip-media-body-0")])
        service = Service(config)
        running = asyncio.create_task(service.run())
        try:
            await asyncio.wait_for(service.ready.wait(), 10)
            job = lambda: service.store.get("session", "drip-media-body-0")  # noqa: E731
            await wait_for(lambda: job().attempts >= 1 and job().state == "pending" and job().last_error,
                           timeout=20, what="the session to be released")
            assert "daemon.session_timeout" in job().last_error
            assert job().not_before > job().updated_at  # later, not at once
        finally:
            service.stop()
            await asyncio.wait_for(running, 15)


# -- stopping ---------------------------------------------------------------------------------

async def test_stopping_is_bounded_even_when_a_session_ignores_its_cancel(tmp_path, simulator, monkeypatch):
    from archiver import service as service_module
    from archiver.archive import SessionArchiver

    sim = await simulator()
    config = make_config(tmp_path, sim, daemon__grace_period="200ms", daemon__concurrency=1)
    enqueue_ids = session_ids(1, 9)
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", sid) for sid in enqueue_ids])
    let_go = asyncio.Event()
    started = asyncio.Event()

    async def stubborn(self, *args, **kwargs):
        started.set()
        while not let_go.is_set():  # a session stuck where a cancel cannot reach it
            try:
                await let_go.wait()
            except asyncio.CancelledError:
                continue
        raise asyncio.CancelledError

    monkeypatch.setattr(SessionArchiver, "archive", stubborn)
    monkeypatch.setattr(service_module, "CANCEL_DEADLINE", 0.5)
    service = Service(config)
    running = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(started.wait(), 10)
        began = time.monotonic()
        service.stop()
        await asyncio.wait_for(asyncio.shield(running), 10)
        assert time.monotonic() - began < 5 and service.forced
    finally:
        let_go.set()


def outage_config(tmp_path, sim, **extra):
    settings = dict(
        http__max_attempts=2, daemon__max_attempts=2, daemon__concurrency=4,
        daemon__breaker_threshold=3, daemon__breaker_probe_initial="100ms", daemon__breaker_probe_max="300ms",
    )
    return make_config(tmp_path, sim, **{**settings, **extra})


async def queued_during_outage(tmp_path, simulator, host: str, *, ids_seed: int, session_timeout: str):
    """Eight sessions queued and the simulator's ``host`` ("api" or "media") down: (sim, config, ids)."""
    sim = await simulator(seed=6, voicemail_rate=0.0)
    config = outage_config(tmp_path, sim, daemon__session_timeout=session_timeout)
    ids = session_ids(8, ids_seed)
    enqueue_sessions(config, ids)
    await sim.stop_host(host)
    return sim, config, ids


async def test_archiver_once_waits_out_a_short_outage_and_archives_everything(tmp_path, simulator):
    sim, config, ids = await queued_during_outage(tmp_path, simulator, "media", ids_seed=10, session_timeout="60s")
    service = Service(config, burst=True)
    running = asyncio.create_task(service.run())
    await wait_for(lambda: service.breakers is not None and not service.breakers.media.up, what="the outage")
    await sim.start_host("media")
    stats = await asyncio.wait_for(running, 30)
    assert stats.done == len(ids) and stats.failed == 0
    for sid in ids:
        assert_archived(config, sim, sid, recordings=True)


async def test_archiver_once_gives_up_on_a_long_outage_keeping_every_job(tmp_path, simulator):
    sim, config, ids = await queued_during_outage(tmp_path, simulator, "api", ids_seed=11, session_timeout="1s")
    stats = await asyncio.wait_for(Service(config, burst=True).run(), 30)
    assert stats.failed == 0 and stats.done == 0
    with JobStore.open_in(config.daemon.state_dir) as store:
        assert store.counts()["pending"] == len(ids)
        assert all(job.attempts == 0 for job in store.iter_jobs())


async def test_a_media_outage_mid_file_keeps_the_bytes_already_on_disk(tmp_path, simulator):
    size = 3_000_000
    sim = await simulator(seed=8, voicemail_rate=0.0, min_size=size, max_size=size)
    sim.faults.slow_body = 1.0
    sim.faults.slow_body_delay = 0.01
    config = outage_config(tmp_path, sim, http__max_attempts=6, daemon__concurrency=1)
    sid = session_ids(1, 12)[0]
    path = sim.media_path(sid, "recording", 0)
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", sid)])
    service = Service(config)
    running = asyncio.create_task(service.run())
    try:
        await wait_for(lambda: sim.stats.media_bytes_served[path] > size // 3, timeout=30, what="a third of the file")
        await sim.stop_host("media")
        await wait_for(lambda: service.breakers is not None and not service.breakers.media.up, what="the outage")
        sim.faults.slow_body = 0.0
        await sim.start_host("media")
        await wait_for(lambda: service.store.counts()["done"] == 1, timeout=30, what="the session")
    finally:
        service.stop()
        await asyncio.wait_for(running, 15)
    assert_archived(config, sim, sid)
    # Resumed where it stopped: at most what was in flight at the cut is sent twice, not a third of the file.
    assert sim.stats.redundant_bytes(path) < size // 4, sim.stats.redundant_bytes(path)
    with JobStore.open_in(config.daemon.state_dir) as store:
        assert store.get("session", sid).attempts == 1
