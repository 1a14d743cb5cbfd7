"""Never stuck: whatever the vendor does (answers with "wait a year", drips one byte a second,
goes away for minutes), the archiver neither hangs nor spends its work, and comes back by itself.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, Awaitable, Callable

import pytest
from aiohttp import web

from archiver.client import KoreClient, api_session
from archiver.errors import RateLimited
from archiver.metrics import Metrics

from .conftest import make_config

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
