"""The Kore.ai API client: recordings (v1 and v2), voicemail and delete.

HTTP answers become archiver errors here (see ``errors.py``); aiohttp exceptions do so in
``transport.py``, the boundary this client and the media downloader share. Every request waits for the shared rate limiter, carries a JWT
in the ``auth`` header (only ever to the configured API origin: redirects are not followed),
and is retried by the one retry policy when the failure is transient.
"""

from __future__ import annotations

import asyncio
import functools
import email.utils
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

import aiohttp
from yarl import URL

from .auth import TokenSigner
from .breaker import CircuitBreaker
from .config import Config
from .errors import (
    ArchiverError,
    AuthError,
    NotReadyError,
    PermanentError,
    ProtocolError,
    RateLimited,
    TooLargeError,
    TransientError,
    VendorDown,
)
from .ids import SESSION
from .metrics import Metrics
from .ratelimit import RateLimiter, SharedRateLimiter
from .redact import scrub
from .store import JobStore
from .retry import RetryPolicy
from .transport import TRANSPORT_ERRORS, deadline, keep_rate, translated

log = logging.getLogger("archiver.client")
T = TypeVar("T")
# JSON answers of the recording/voicemail APIs are small; anything bigger is hostile.
MAX_JSON_BODY = 32 * 1024 * 1024
# Seconds an error answer's body is read for its message, at most.
ERROR_BODY_WAIT = 10.0
READY = "success"
NOT_READY = frozenset({"call_in_progress", "media_in_progress"})
V2_STATUSES = frozenset({"success", "media_unavailable", "failed"}) | NOT_READY
# The voicemail sample answer spells its list "voicemail recording", the field table
# "voicemail_recording": both are read, and merged when an answer holds both.
VOICEMAIL_KEYS = ("voicemail recording", "voicemail_recording")


@dataclass(frozen=True)
class MediaItem:
    """One file the API offers: its (untrusted) name and signed URL (a secret: never shown)."""

    file_name: str
    url: str = field(repr=False)


@dataclass(frozen=True)
class RecordingsAnswer:
    """Fetch Call Recording v2."""

    status: str
    items: tuple[MediaItem, ...]


@dataclass(frozen=True)
class VoicemailAnswer:
    """Fetch Voicemail Recording."""

    status: str
    items: tuple[MediaItem, ...]
    transcriptions: tuple[dict[str, Any], ...]


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), None when absent or junk."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def kore_message(body: bytes) -> str:
    """Kore's ``errors[].msg`` joined, or a short excerpt of the body."""
    try:
        data = json.loads(body)
        messages = [str(e.get("msg", "")) for e in data.get("errors", []) if isinstance(e, dict)]
        text = "; ".join(m for m in messages if m)
    except (ValueError, AttributeError, TypeError, RecursionError):
        text = ""
    if not text:
        text = body[:200].decode("utf-8", "replace").strip() or "(empty body)"
    return scrub(text[:300])


class KoreClient:
    """Calls the Kore.ai Contact Center APIs for one bot."""

    def __init__(
        self,
        config: Config,
        http: aiohttp.ClientSession,
        *,
        signer: TokenSigner | None = None,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        metrics: Metrics | None = None,
        breaker: CircuitBreaker | None = None,
        store: JobStore | None = None,
    ) -> None:
        """``breaker``: the API host's circuit breaker (shared by every worker), if any;
        ``store``: the job store, where the Contact Center budget is shared with every process
        on the same state directory (without one, the budget is this process's alone)."""
        self.config = config
        self.kore = config.kore
        self.http = http
        self.signer = signer or TokenSigner(config.kore)
        if limiter is None and store is not None:
            limiter = SharedRateLimiter(config.kore.requests_per_minute, config.kore.rate_window, store)
        self.limiter = limiter or RateLimiter(config.kore.requests_per_minute, config.kore.rate_window)
        self.retry = retry or RetryPolicy.from_config(config.http, config.kore.max_retry_after)
        self.metrics = metrics or Metrics()
        self.breaker = breaker
        self._base = URL(self.kore.host.rstrip("/") + self.kore.path_prefix + f"/bot/{self.kore.bot_id}")
        self._retry_after_warned = False

    # -- public calls -------------------------------------------------------------------------

    async def recordings_v2(self, id_type: str, ext_id: str) -> RecordingsAnswer:
        """GET /v2/recordings: status and signed URLs."""
        data = await self.request_json("v2_recordings", "GET", "/v2/recordings", {self._key(id_type): ext_id})
        status = answer_status(data, "v2 recordings")
        return RecordingsAnswer(status, _media_items(data.get("recording"), "recording"))

    async def voicemail(self, session_id: str) -> VoicemailAnswer:
        """GET /voicemail with transcriptions."""
        data = await self.request_json(
            "voicemail", "GET", "/voicemail", {"sessionId": session_id, "transcription": "true"}
        )
        status = answer_status(data, "voicemail")
        raw = _merged_lists(data, VOICEMAIL_KEYS)
        transcriptions = data.get("transcriptions") or []
        if not isinstance(transcriptions, list):
            raise ProtocolError("voicemail: transcriptions is not a list")
        records = tuple(t for t in transcriptions if isinstance(t, dict))
        return VoicemailAnswer(status, _media_items(raw, "voicemail recording"), records)

    async def stream_recordings_v1(
        self, id_type: str, ext_id: str, consume: Callable[[aiohttp.ClientResponse], Awaitable[T]]
    ) -> T:
        """GET /recordings (v1) and hand the streaming response to ``consume``.

        The whole exchange is one attempt: a body broken mid-way is retried from the start,
        and ``consume`` must clean up what it wrote when it raises.
        """

        async def handle(resp: aiohttp.ClientResponse) -> T:
            _require_json(resp, "v1 recordings")
            # The body carries the audio: held to the media transfer floor, not a deadline.
            return await keep_rate(
                resp, consume(resp), self.config.media.min_rate, self.config.http.read_timeout,
                "v1 recordings: the answer's body is slower than media.min_rate",
            )

        return await self._call("v1_recordings", "GET", "/recordings", {self._key(id_type): ext_id}, handle)

    async def delete_recordings(self, session_id: str) -> dict[str, Any]:
        """DELETE /v2/recordings. Not idempotent in effect, so never retried after it was sent."""
        return await self.request_json(
            "delete_recordings", "DELETE", "/v2/recordings", {"sessionId": session_id}, retry=False
        )

    async def probe(self) -> RecordingsAnswer:
        """One cheap authenticated call proving host, credentials and scope (for ``archiver check``)."""
        return await self.recordings_v2(SESSION, "000000000000000000000000")

    # -- the one boundary ---------------------------------------------------------------------

    @staticmethod
    def _key(id_type: str) -> str:
        return "sessionId" if id_type == SESSION else "userId"

    async def request_json(
        self,
        endpoint: str,
        method: str,
        path: str,
        params: dict[str, str],
        *,
        retry: bool = True,
        body: dict[str, Any] | None = None,
        limiter: RateLimiter | None = None,
        url: URL | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One JSON call (retried when transient unless ``retry`` is False); ``body`` is sent as
        JSON, ``limiter`` replaces the Contact Center budget (the Analytics APIs have their own),
        ``url`` the bot's base (``path`` is then ignored), ``headers`` are added to the auth one."""
        async def handle(resp: aiohttp.ClientResponse) -> dict[str, Any]:
            _require_json(resp, endpoint)
            limit = self.config.http.body_timeout
            async with deadline(limit, f"{endpoint}: the answer's body took longer than http.body_timeout ({limit:g}s)"):
                body = await _read_capped(resp, MAX_JSON_BODY, endpoint)
            try:
                data = json.loads(body)
            except ValueError:
                raise ProtocolError(f"{endpoint}: the answer is not valid JSON") from None
            except RecursionError:
                # Nesting deep enough to exhaust the parser's stack is not an answer the API
                # gives; asking again gets the same bytes, so it is permanent, not retried.
                raise ProtocolError(f"{endpoint}: the answer's JSON is nested too deeply to read") from None
            if not isinstance(data, dict):
                raise ProtocolError(f"{endpoint}: the answer is not a JSON object")
            return data

        return await self._call(
            endpoint, method, path, params, handle, retry=retry, body=body, limiter=limiter, url=url, headers=headers
        )

    async def _call(
        self,
        endpoint: str,
        method: str,
        path: str,
        params: dict[str, str],
        handle: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        *,
        retry: bool = True,
        body: dict[str, Any] | None = None,
        limiter: RateLimiter | None = None,
        url: URL | None = None,
        headers: dict[str, str] | None = None,
    ) -> T:
        async def attempt() -> T:
            return await self._attempt(
                endpoint, method, path, params, handle, body, limiter or self.limiter, url=url, headers=headers
            )

        if not retry:
            return await attempt()

        def on_retry(exc: BaseException, number: int, delay: float) -> None:
            self.metrics.retries.labels(endpoint).inc()
            log.info(
                "%s: retrying after %s (attempt %d, waiting %.1fs)", endpoint, exc, number, delay,
                extra={"kv_endpoint": endpoint, "kv_attempt": number},
            )

        return await self.retry.call(attempt, on_retry=on_retry)

    async def _attempt(
        self,
        endpoint: str,
        method: str,
        path: str,
        params: dict[str, str],
        handle: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        body: dict[str, Any] | None,
        limiter: RateLimiter,
        *,
        url: URL | None = None,
        headers: dict[str, str] | None = None,
    ) -> T:
        base = url if url is not None else self._base.with_path(self._base.path + path)
        url = base.with_query(params)
        for signed_again in (False, True):
            slot = await limiter.acquire()
            probe = self.breaker.admit() if self.breaker is not None else False
            try:
                with translated(endpoint, on_transient=functools.partial(self._host_failed, endpoint)):
                    async with await self._send(endpoint, method, url, body, headers) as resp:
                        limiter.settle(slot)
                        self.metrics.api_calls.labels(endpoint, str(resp.status)).inc()
                        if resp.status < 500 and self.breaker is not None:
                            self.breaker.succeeded()
                        if resp.status == 401 and not signed_again:
                            # A token can be refused for reasons a new one fixes (clock skew, a
                            # revoked jti); one fresh signature, then the refusal is final.
                            self.signer.invalidate()
                            continue
                        if resp.status != 200:
                            await self._raise_for_status(endpoint, resp, limiter)
                        return await handle(resp)
            except TransientError as exc:
                if exc.status is not None and exc.status >= 500:
                    self._host_failed(endpoint, exc)
                raise
            finally:
                if probe:
                    self.breaker.abandoned()
        raise AssertionError("unreachable")

    async def _send(
        self, endpoint: str, method: str, url: URL, body: dict[str, Any] | None, headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        """Send one request and wait for its headers, at most http.header_timeout: aiohttp's
        read timeout is per read, so headers dripped a byte at a time would never time out."""
        limit = self.config.http.header_timeout
        async with deadline(limit, f"{endpoint}: the answer's headers took longer than http.header_timeout ({limit:g}s)"):
            return await self.http.request(
                method, url, headers={**(headers or {}), "auth": self.signer.token(), "Accept": "application/json"},
                json=body, allow_redirects=False,
            )

    def _host_failed(self, endpoint: str, error: TransientError) -> None:
        """Count a connection error, timeout or 5xx against the API host; once that opens its
        breaker, the caller gets :class:`VendorDown` (its job waits without spending an attempt)."""
        if isinstance(error, VendorDown):
            return
        self.metrics.connection_errors.labels(endpoint).inc()
        if self.breaker is None:
            return
        self.breaker.failed(str(error))
        if not self.breaker.up:
            raise VendorDown(f"{error}; the API host is unreachable, waiting for it", host=self.breaker.host) from error

    async def _raise_for_status(self, endpoint: str, resp: aiohttp.ClientResponse, limiter: RateLimiter) -> None:
        status = resp.status
        try:
            # The error text is a courtesy: a body that drips is not waited for.
            async with asyncio.timeout(min(self.config.http.body_timeout, ERROR_BODY_WAIT)):
                body = await _read_capped(resp, 64 * 1024, endpoint)
        except (ArchiverError, *TRANSPORT_ERRORS):
            body = b""
        message = f"{endpoint}: HTTP {status}: {kore_message(body)}"
        if status == 429:
            self.metrics.rate_limited.inc()
            delay = self._retry_after(endpoint, resp)
            # Without Retry-After the only safe assumption is that the window is full now.
            delay = limiter.window if delay is None else delay
            limiter.pause(delay)
            raise RateLimited(message, retry_after=delay, status=status)
        if status == 401:
            raise AuthError(message, status=status)
        if status == 408 or status >= 500:
            raise TransientError(message, retry_after=self._retry_after(endpoint, resp), status=status)
        if 300 <= status < 400:
            raise ProtocolError(f"{endpoint}: unexpected redirect (HTTP {status}); the API is not followed off-origin", status=status)
        raise PermanentError(message, status=status)

    def _retry_after(self, endpoint: str, resp: aiohttp.ClientResponse) -> float | None:
        """The server's Retry-After, at most ``kore.max_retry_after``: one answer saying "a year"
        would otherwise pause every worker for a year. Said once, with the value received."""
        hint = parse_retry_after(resp.headers.get("Retry-After"))
        cap = self.kore.max_retry_after
        if hint is None or hint <= cap:
            return hint
        if not self._retry_after_warned:
            self._retry_after_warned = True
            log.warning(
                "%s: the server asked to wait %.0fs (Retry-After: %s); waiting kore.max_retry_after (%.0fs) instead",
                endpoint, hint, scrub(resp.headers.get("Retry-After", ""))[:60], cap,
                extra={"kv_endpoint": endpoint, "kv_retry_after": hint},
            )
        return cap


def _require_json(resp: aiohttp.ClientResponse, endpoint: str) -> None:
    ctype = resp.headers.get("Content-Type", "")
    if "json" not in ctype.lower():
        raise ProtocolError(f"{endpoint}: expected a JSON answer, got content type {ctype[:60]!r}")


async def _read_capped(resp: aiohttp.ClientResponse, cap: int, what: str) -> bytes:
    """The (decompressed) body, refusing more than ``cap`` bytes: defeats huge and gzip-bomb bodies."""
    declared = resp.content_length
    if declared is not None and declared > cap and not resp.headers.get("Content-Encoding"):
        raise TooLargeError(f"{what}: answer of {declared} bytes is over the {cap}-byte limit")
    parts: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(256 * 1024):
        total += len(chunk)
        if total > cap:
            raise TooLargeError(f"{what}: answer is over the {cap}-byte limit")
        parts.append(chunk)
    return b"".join(parts)


def answer_status(data: dict[str, Any], what: str) -> str:
    """The ``status`` of a recordings or voicemail answer, validated.

    An answer without one (``{}``) is an error, never "success with nothing". A status the
    documents do not list (``processing``, ``pending``) is taken as "not ready": asking again
    later is safe, while reading it as "done, nothing there" would lose the media for good.
    """
    if "status" not in data:
        raise ProtocolError(f"{what}: the answer has no status")
    status = data["status"]
    if not isinstance(status, str):
        raise ProtocolError(f"{what}: status is not a string")
    if status not in V2_STATUSES:
        raise NotReadyError(f"{what}: unknown status {scrub(status[:40])!r}; asking again later", status=status[:40])
    return status


def _merged_lists(data: dict[str, Any], keys: tuple[str, ...]) -> list[Any] | None:
    """The lists under each of ``keys``, one after the other, a repeated entry taken once."""
    merged: list[Any] = []
    seen: set[tuple[str, str]] = set()
    present = False
    for key in keys:
        raw = data.get(key)
        if raw is None:
            continue
        if not isinstance(raw, list):
            raise ProtocolError(f"{key!r} is not a list")
        present = True
        for entry in raw:
            identity = (repr(entry.get("fileName")), repr(entry.get("fileUrl"))) if isinstance(entry, dict) else None
            if identity is not None and identity in seen:
                continue  # the same file under both keys is one file
            if identity is not None:
                seen.add(identity)
            merged.append(entry)
    return merged if present else None


def _media_items(raw: Any, key: str) -> tuple[MediaItem, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ProtocolError(f"{key!r} is not a list")
    items = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ProtocolError(f"{key}[{index}] is not an object")
        name, url = entry.get("fileName"), entry.get("fileUrl")
        if not isinstance(url, str) or not url:
            raise ProtocolError(f"{key}[{index}].fileUrl is missing")
        items.append(MediaItem(name if isinstance(name, str) else "", url))
    return tuple(items)


def not_ready(status: str, what: str) -> NotReadyError:
    """The error for an in-progress status."""
    return NotReadyError(f"{what}: {status}", status=status)


def api_session(config: Config) -> aiohttp.ClientSession:
    """The HTTP session for the Kore API origin (its own cookie-less session)."""
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=config.http.connect_timeout, sock_read=config.http.read_timeout
    )
    return aiohttp.ClientSession(
        timeout=timeout,
        cookie_jar=aiohttp.DummyCookieJar(),
        read_bufsize=256 * 1024,
        connector=aiohttp.TCPConnector(limit=max(config.daemon.concurrency * 2, 8)),
    )
