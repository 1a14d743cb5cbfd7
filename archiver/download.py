"""Streaming media downloads from signed, expiring URLs.

One download = one temp file (see ``atomicfile``) fed from the network in large chunks.
A connection that breaks mid-body is resumed with ``Range`` from the bytes already on disk;
a server that answers a ranged request with 200 is read again from zero (its body starts at
byte 0); ``Content-Range`` and ``Content-Length`` are checked; the size cap is enforced while
streaming. The media host is another origin: it never gets the ``auth`` header or cookies,
and redirects are followed here, hop by hop, each hop checked by ``netguard``.

A refused (403/410) or expired URL raises :class:`MediaRefusedError` at once: retrying a
dead signature is pointless; the caller asks the API for a fresh one.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from . import completeness
from .atomicfile import AtomicFile
from .breaker import CircuitBreaker
from .config import Config, format_size
from .errors import (
    MediaRefusedError,
    PermanentError,
    ProtocolError,
    TooLargeError,
    TransientError,
    UnsafeInputError,
    VendorDown,
    is_transient,
)
from .metrics import Metrics
from .netguard import GuardedResolver, check_media_url
from .redact import redact_url
from .retry import RetryPolicy
from .transport import TRANSPORT_ERRORS, deadline, translated

log = logging.getLogger("archiver.download")

_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
# Answers that are pages and error documents, never audio (a proxy's login page, say).
_DOCUMENT_TYPE_RE = re.compile(r"\s*(text/html|text/xml|application/(json|xml|xhtml\+xml|problem\+json))\b", re.I)
# mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# A signed URL this close to its expiry is renewed before use rather than failing mid-body.
EXPIRY_MARGIN = 30.0
# How often a download holding a partial file looks whether its host is back.
HOST_POLL = 1.0
# Requests asking what follows a body that ended without a declared length. Each one that
# brings more bytes is progress; a server trickling 206 answers without a total stops here,
# and the file is kept unproven.
MAX_CONFIRMATIONS = 8
_UNSATISFIED_RANGE_RE = re.compile(r"bytes \*/(\d+)")


@dataclass(frozen=True)
class DownloadResult:
    """What was written: final path, size, sha256, and facts for the sidecar."""

    path: Path
    size: int
    sha256: str
    content_type: str
    source: str  # the URL without its query: safe to store
    resumes: int
    length_source: str = completeness.NONE  # what proves the size (see ``completeness``)
    unproven: str | None = None  # why the file is not proven complete, when it is not


def url_expiry(url: str) -> float | None:
    """The ``e=`` expiry of a signed media URL, when it carries one."""
    value = URL(url).query.get("e")
    return float(value) if value and value.isascii() and value.isdigit() else None


class MediaDownloader:
    """Downloads media URLs into the archive; shared by all workers."""

    def __init__(
        self,
        config: Config,
        http: aiohttp.ClientSession,
        *,
        metrics: Metrics | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """``breaker``: the media host's circuit breaker (shared by every worker), if any."""
        self.config = config
        self.media = config.media
        self.http = http
        self.metrics = metrics or Metrics()
        self.retry = retry or RetryPolicy.from_config(config.http, config.kore.max_retry_after)
        self._slots = asyncio.Semaphore(config.media.concurrency)
        self.breaker = breaker

    async def download(
        self, url: str, final_path: Path, *, then: Callable[[DownloadResult], None] | None = None
    ) -> DownloadResult:
        """Fetch ``url`` into ``final_path`` atomically (resuming across broken connections).

        ``then(result)``, if given, runs in the worker thread that committed the file, as soon
        as it is in place (see ``AtomicFile.commit``).
        """
        try:
            expiry = url_expiry(url)
            URL(url, encoded=True)
        except ValueError:  # yarl cannot read it (a bad port, a broken IPv6 literal): refuse it
            raise UnsafeInputError(f"media URL cannot be parsed: {redact_url(url)}") from None
        if expiry is not None and expiry < time.time() + EXPIRY_MARGIN:
            raise MediaRefusedError(f"media URL expired at {int(expiry)}: {redact_url(url)}")
        async with self._slots:
            started = time.monotonic()
            result = await self._download(url, final_path, then)
            self.metrics.download_seconds.observe(time.monotonic() - started)
            return result

    async def _download(
        self, url: str, final_path: Path, then: Callable[[DownloadResult], None] | None
    ) -> DownloadResult:
        state = _Transfer(URL(url, encoded=True))
        async with AtomicFile(final_path) as out:
            attempt = 0  # attempts since bytes last arrived
            waited = False  # for the media host, with bytes on disk (said once)
            while True:
                attempt += 1
                before = out.size
                try:
                    tail = await self._fetch_once(state, out)
                    if not self._must_confirm(state):
                        break
                    # The body ended and nothing declared its length: it may have been cut.
                    # Ask for what follows it (416: nothing; 206: more, appended).
                    await out.write_pieces(tail)
                    state.confirming = True
                    state.confirmations += 1
                    attempt = 0
                    continue
                except VendorDown:
                    if not out.size or self.breaker is None:
                        raise  # nothing to keep: the job waits in the queue, the worker is free
                    # Bytes on disk are worth a wait: a blip must not cost a large file again.
                    if not waited:
                        log.info("media %s: the media host is down; keeping the %d bytes so far until it answers",
                                 redact_url(url), out.size)
                        waited = True
                    await self._host_back()
                    attempt = 0
                except TransientError as exc:
                    if out.size > before:
                        # A resume that received bytes has not failed: only attempts without
                        # progress count (as huggingface_hub does). A server dripping a byte per
                        # connection is bounded by media.min_rate and daemon.session_timeout.
                        attempt = 1
                    if attempt >= self.retry.max_attempts or not is_transient(exc):
                        raise
                    delay = exc.retry_after if exc.retry_after is not None else self.retry.backoff(attempt)
                    self.metrics.retries.labels("media").inc()
                    log.info(
                        "media %s: %s; resuming at byte %d in %.1fs (attempt %d)",
                        redact_url(url), exc, out.size, delay, attempt,
                        extra={"kv_attempt": attempt},
                    )
                    await asyncio.sleep(delay)

            size = out.size + sum(len(piece) for piece in tail)
            source, unproven = state.proof(size)
            if unproven:
                log.warning("media %s: kept, not proven complete: %s", redact_url(url), unproven)

            def result() -> DownloadResult:
                return DownloadResult(
                    final_path, out.size, out.sha256, state.content_type, redact_url(url), state.resumes,
                    source, unproven,
                )

            after = None if then is None else (lambda: then(result()))
            await out.commit(expected_size=state.total, tail=tail, then=after)
            return result()

    async def _host_back(self) -> None:
        """Wait (holding the partial file) until the media host is up again or a probe is due;
        the session deadline and the shutdown's cancel bound the wait."""
        assert self.breaker is not None
        while not self.breaker.up and (wait := self.breaker.seconds_to_probe()) > 0:
            await asyncio.sleep(min(wait, HOST_POLL))

    @staticmethod
    def _must_confirm(state: "_Transfer") -> bool:
        """True when the body's end is not proven and one more request may prove it."""
        return state.total is None and not state.range_ignored and state.confirmations < MAX_CONFIRMATIONS

    async def _fetch_once(self, state: "_Transfer", out: AtomicFile) -> list[bytes]:
        """One request (following redirects); appends to ``out`` from ``out.size`` on.

        Returns the body's last bytes, not yet written: ``commit()`` writes them.
        """
        offset = out.size
        headers = {"Accept-Encoding": "identity", "Accept": "*/*"}
        if offset or state.confirming:
            headers["Range"] = f"bytes={offset}-"
            if not state.confirming:
                state.resumes += 1
                self.metrics.resumes.inc()
        probe = self.breaker.admit() if self.breaker is not None else False
        try:
            return await self._request(state, out, offset, headers)
        except TransientError as exc:
            if exc.status is not None and exc.status >= 500:
                self._host_failed(exc)
            raise
        finally:
            if probe:
                self.breaker.abandoned()

    async def _request(
        self, state: "_Transfer", out: AtomicFile, offset: int, headers: dict[str, str]
    ) -> list[bytes]:
        what = f"media {redact_url(str(state.url))}"
        limit = self.config.http.header_timeout
        try:
            with translated(what, on_transient=self._host_failed):
                async with deadline(limit, f"{what}: the answer's headers took longer than http.header_timeout ({limit:g}s)"):
                    resp = await self._open(state.url, headers)
        except ValueError as exc:  # a host IDNA cannot encode, a redirect to an unreadable URL
            raise UnsafeInputError(f"media URL cannot be used ({type(exc).__name__}): {redact_url(str(state.url))}") from None
        async with resp:
            if resp.status < 500 and self.breaker is not None:
                self.breaker.succeeded()
            await self._check_answer(resp, state, out, offset)
            with translated(what, on_transient=self._host_failed):
                return await self._stream_body(resp, state, out)

    def _host_failed(self, error: TransientError) -> None:
        """A connection error, timeout or 5xx counts against the media host; once its breaker
        opens, :class:`VendorDown` ends the download (the job waits, no attempt spent)."""
        if isinstance(error, VendorDown):
            return
        self.metrics.connection_errors.labels("media").inc()
        if self.breaker is None:
            return
        self.breaker.failed(str(error))
        if not self.breaker.up:
            raise VendorDown(f"{error}; the media host is unreachable, waiting for it", host=self.breaker.host) from error

    async def _open(self, url: URL, headers: dict[str, str]) -> aiohttp.ClientResponse:
        """GET with redirects followed by hand, each hop re-checked; no auth, no cookies."""
        for _hop in range(self.media.max_redirects + 1):
            check_media_url(url, self.media)
            resp = await self.http.get(url, headers=headers, allow_redirects=False)
            if resp.status not in (301, 302, 303, 307, 308):
                return resp
            location = resp.headers.get("Location")
            resp.release()
            if not location:
                raise ProtocolError(f"media redirect without Location from {redact_url(str(url))}")
            url = url.join(URL(location, encoded=True))
        raise UnsafeInputError(f"media URL redirected more than {self.media.max_redirects} times")

    async def _check_answer(self, resp: aiohttp.ClientResponse, state: "_Transfer", out: AtomicFile, offset: int) -> None:
        shown = redact_url(str(state.url))
        status = resp.status
        if status in (401, 403, 410):
            raise MediaRefusedError(f"media URL refused (HTTP {status}): {shown}")
        if status == 408 or status == 429 or status >= 500:
            raise TransientError(f"media HTTP {status}: {shown}", status=status)
        if status == 416 and offset and state.total == offset:
            return  # we already hold every byte; nothing left to send
        if status == 416 and state.confirming and state.total is None:
            self._confirmed_end(resp, state, offset)
            return
        if status not in (200, 206):
            raise PermanentError(f"media HTTP {status}: {shown}", status=status)
        encoding = resp.headers.get("Content-Encoding", "identity").lower()
        if encoding not in ("identity", ""):
            raise ProtocolError(f"media sent Content-Encoding {encoding!r} though identity was asked for")
        state.content_type = resp.headers.get("Content-Type", "application/octet-stream")[:100]
        if _DOCUMENT_TYPE_RE.match(state.content_type):
            # A proxy's login or error page answered 200 is not a recording; never archive it as one.
            raise ProtocolError(f"media answered with a {state.content_type.split(';')[0]!r} document, not audio: {shown}")
        length = resp.content_length
        if status == 200:
            if offset:
                # The server ignored Range: its body starts at byte 0, so must our file.
                log.info("media %s ignored Range; restarting from zero", shown)
                await out.restart()
            if state.confirming and length is None:
                state.range_ignored = True  # no length, no ranges: the end cannot be proven
            state.total = length
            state.length_source = completeness.CONTENT_LENGTH
        else:
            match = _CONTENT_RANGE_RE.fullmatch(resp.headers.get("Content-Range", "").strip())
            if not match or int(match.group(1)) != offset:
                raise ProtocolError(f"media answered 206 with a Content-Range that does not start at {offset}")
            total = None if match.group(3) == "*" else int(match.group(3))
            if state.total is not None and total is not None and total != state.total:
                raise ProtocolError("media size changed between requests")
            if length is not None and length != int(match.group(2)) - offset + 1:
                raise ProtocolError("media Content-Length does not match Content-Range")
            if state.total is None and total is not None:
                state.length_source = completeness.CONTENT_RANGE
            state.total = total if total is not None else state.total
        if state.total is not None and state.total > self.media.max_file_size:
            raise TooLargeError(f"media of {state.total} bytes is over media.max_file_size ({self.media.max_file_size})")

    @staticmethod
    def _confirmed_end(resp: aiohttp.ClientResponse, state: "_Transfer", offset: int) -> None:
        """A 416 to ``Range: bytes=<size>-``: nothing follows our bytes, unless its
        ``Content-Range: bytes */<total>`` says the file is longer than what we hold."""
        match = _UNSATISFIED_RANGE_RE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if match and int(match.group(1)) != offset:
            raise ProtocolError(
                f"media declares {match.group(1)} bytes but refuses the range after byte {offset}"
            )
        state.total = offset
        state.length_source = completeness.RANGE_416

    async def _stream_body(self, resp: aiohttp.ClientResponse, state: "_Transfer", out: AtomicFile) -> list[bytes]:
        """Append the body to ``out``; the last pieces (under a chunk) are returned, not written,
        so that they go to disk with the fsync: a small file costs one thread hop in all."""
        if resp.status == 416:
            return []
        chunk_size = self.media.chunk_size
        cap = self.media.max_file_size
        # The pieces are the bytes objects the connection delivered, gathered (not copied)
        # until they make a chunk, then written with one writev: copying every byte through a
        # buffer once more cost a third of the loop's time on a large file.
        pieces: list[bytes] = []
        held = 0
        floor = _RateFloor(self.media.min_rate, self.config.http.read_timeout)
        try:
            async for piece, _ in resp.content.iter_chunks():
                if not piece:
                    continue
                position = out.size + held
                if position < completeness.WAV_HEAD:
                    state.head[position:] = piece[: completeness.WAV_HEAD - position]
                pieces.append(piece)
                held += len(piece)
                if floor.too_slow(len(piece)):
                    await out.write_pieces(pieces)  # kept: the resume starts after them
                    raise TransientError(
                        f"media {redact_url(str(state.url))}: slower than media.min_rate "
                        f"({self.media.min_rate} bytes/s over {floor.window:g}s)"
                    )
                if out.size + held > cap:
                    raise TooLargeError(f"media is over media.max_file_size ({format_size(cap)})")
                if state.total is not None and out.size + held > state.total:
                    raise ProtocolError("media body is longer than its Content-Length")
                if held >= chunk_size:
                    await out.write_pieces(pieces)
                    pieces, held = [], 0
        except TRANSPORT_ERRORS:
            # Keep every byte that arrived before the break: the resume starts after them.
            if pieces:
                await out.write_pieces(pieces)
            raise
        if state.total is not None and out.size + held != state.total:
            if pieces:
                await out.write_pieces(pieces)  # kept: the resume starts after them
            raise TransientError(f"media body ended at {out.size} of {state.total} bytes")
        return pieces


class _RateFloor:
    """A minimum transfer rate, judged over windows of ``window`` seconds: aiohttp's read
    timeout is per read, so a body fed one byte a second would hold a worker for ever."""

    def __init__(self, rate: int, window: float) -> None:
        self.rate = rate
        self.window = window
        self._start = time.monotonic()
        self._bytes = 0

    def too_slow(self, received: int) -> bool:
        """Count ``received`` bytes; True when a whole window went by below the rate."""
        self._bytes += received
        now = time.monotonic()
        if not self.rate or now - self._start < self.window:
            return False
        slow = self._bytes < self.rate * (now - self._start)
        self._start, self._bytes = now, 0
        return slow


class _Transfer:
    """What is known about one media file across its requests."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.total: int | None = None
        self.content_type = "application/octet-stream"
        self.resumes = 0
        self.length_source = completeness.NONE
        self.confirming = False  # the next request asks what follows the bytes we hold
        self.confirmations = 0
        self.range_ignored = False
        self.head = bytearray()  # the file's first bytes, for its RIFF header

    def proof(self, size: int) -> tuple[str, str | None]:
        """(length_source, why the file is not proven complete or None) for a file of ``size``."""
        if self.total is None or self.total != size:
            if self.range_ignored:
                return completeness.NONE, "the server declared no length and ignores Range requests"
            return completeness.NONE, "the server declared no length and did not confirm the end"
        problem = completeness.wav_problem(bytes(self.head), size)
        if problem:
            return self.length_source, f"cut: {problem}"
        return self.length_source, None


def tune_allocator() -> None:
    """Keep glibc from handing the heap back to the kernel after every network read.

    A body arrives as reads of up to 256 KiB, each copied once more by the HTTP parser, and
    freed as soon as it is on disk. With glibc's default thresholds the top of the heap is
    trimmed after nearly every one, so the next read faults fresh zeroed pages in again: on
    a large download that doubled the CPU time of the event loop. Fixed thresholds (blocks
    up to 4 MiB from the heap, at most 32 MiB of it kept free) stop that. Elsewhere than on
    glibc this does nothing.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 4 * 1024 * 1024)
    mallopt(_M_TRIM_THRESHOLD, 32 * 1024 * 1024)


def media_session(config: Config) -> aiohttp.ClientSession:
    """The HTTP session for media hosts: no cookie jar, no default headers, guarded DNS."""
    tune_allocator()

    connector = aiohttp.TCPConnector(
        limit=max(config.media.concurrency * 2, 8),
        resolver=GuardedResolver(config.media.allow_private_addresses),
        enable_cleanup_closed=True,
    )
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=config.http.connect_timeout, sock_read=config.http.read_timeout
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        cookie_jar=aiohttp.DummyCookieJar(),
        read_bufsize=config.media.chunk_size,
        auto_decompress=False,
    )
