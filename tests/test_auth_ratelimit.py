"""JWT signing, the client-side rate limiter, the retry policy and sd_notify."""

from __future__ import annotations

import asyncio
import os
import socket

import jwt
import pytest

from archiver.auth import TokenSigner
from archiver.config import KoreConfig, Secret
from archiver.errors import PermanentError, TransientError
from archiver.ratelimit import RateLimiter
from archiver.retry import RetryPolicy
from archiver.sdnotify import Notifier

KORE = KoreConfig(bot_id="st-b", client_id="cs-client", client_secret=Secret("the-secret-of-32-bytes-or-more!!"), token_ttl=3000)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_token_claims_and_caching():
    clock = Clock()
    signer = TokenSigner(KORE, clock)
    token = signer.token()
    claims = jwt.decode(token, "the-secret-of-32-bytes-or-more!!", algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})
    assert claims["appId"] == "cs-client" and claims["sub"] == "cs-client"
    assert claims["exp"] - claims["iat"] <= 3600 and "jti" not in claims  # a cached token must not carry one
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    clock.now += 1000
    assert signer.token() == token  # cached while far from expiry
    clock.now += 1800  # within the refresh margin of exp
    assert signer.token() != token
    assert signer.signed == 2


def test_jti_per_request_and_invalidate():
    signer = TokenSigner(KoreConfig(client_id="c", client_secret=Secret("k" * 32), jti_per_request=True), Clock())
    first, second = signer.token(), signer.token()
    assert jwt.decode(first, "k" * 32, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})["jti"] != jwt.decode(
        second, "k" * 32, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False}
    )["jti"]
    plain = TokenSigner(KORE, Clock())
    token = plain.token()
    plain.invalidate()
    assert plain.token() == token and plain.signed == 2  # signed again (same second, same claims)


async def test_rate_limiter_spaces_requests_over_the_window():
    clock = Clock(0.0)
    limiter = RateLimiter(3, 1.0, margin=0.0, clock=clock)
    for _ in range(3):
        await limiter.acquire()
    assert limiter.delay() == pytest.approx(1.0)
    clock.now = 0.6
    assert limiter.delay() == pytest.approx(0.4)
    clock.now = 1.0
    assert limiter.delay() == 0.0
    limiter.pause(5)
    assert limiter.delay() == pytest.approx(5.0)


async def test_rate_limiter_never_exceeds_the_budget_in_any_window():
    loop = asyncio.get_running_loop()
    limiter = RateLimiter(5, 0.3, margin=0.0, clock=loop.time)
    stamps: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        stamps.append(loop.time())

    await asyncio.gather(*(one() for _ in range(12)))
    for index in range(len(stamps) - 5):
        assert stamps[index + 5] - stamps[index] >= 0.3 - 1e-3


async def test_retry_policy_retries_transient_only_and_honours_retry_after():
    policy = RetryPolicy(max_attempts=3, backoff_initial=0.001, backoff_max=0.002)
    calls = []
    waits = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("boom", retry_after=0.01 if len(calls) == 1 else None)
        return "ok"

    assert await policy.call(flaky, on_retry=lambda exc, n, delay: waits.append(delay)) == "ok"
    assert waits[0] == pytest.approx(0.01) and waits[1] <= 0.002

    # A permanent error is not retried; a transient one is, up to max_attempts.
    for error, tries in ((PermanentError("no"), 1), (TransientError("again"), 3)):

        async def failing(error: Exception = error) -> None:
            calls.append(1)
            raise error

        calls.clear()
        with pytest.raises(type(error)):
            await policy.call(failing)
        assert len(calls) == tries


def test_notifier_sends_datagrams_and_reads_the_watchdog(tmp_path):
    path = str(tmp_path / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
        assert notifier.watchdog_interval == 1.0
        assert notifier.notify(ready=1, status="pending=3")
        assert receiver.recv(1024) == b"READY=1\nSTATUS=pending=3"
    finally:
        receiver.close()
    assert not Notifier({}).notify(ready=1)
    assert Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval is None
