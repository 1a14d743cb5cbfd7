"""The HTTP boundary: aiohttp and socket errors become archiver errors here, and only here.

Both the API client (``client.py``) and the media downloader (``download.py``) wrap their
network calls in :func:`translated`, which maps what aiohttp raises through one table,
most specific first, as httpx's ``map_exceptions`` does::

    asyncio.TimeoutError                               -> TransientError  (timed out)
    aiohttp.InvalidURL                                 -> ProtocolError
    aiohttp.ClientPayloadError  caused by a body that
        decompresses past aiohttp's cap (gzip bomb)    -> TooLargeError
        cannot be decoded (bad Content-Encoding)       -> ProtocolError
        anything else (a body cut short)               -> TransientError
    aiohttp.ClientResponseError (a malformed answer)   -> ProtocolError
    aiohttp.ClientError, OSError (resets, refusals)    -> TransientError  (connection failed)

Archiver errors raised inside pass through unchanged. Messages are scrubbed of secrets.
:func:`deadline` and :func:`keep_rate` bound what aiohttp's per-read timeout cannot (headers or
a body dripped a byte at a time).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

import aiohttp
from aiohttp.http_exceptions import ContentEncodingError

from .errors import ArchiverError, ProtocolError, TooLargeError, TransientError
from .redact import scrub

# aiohttp >= 3.13 caps what a compressed body may expand to; older versions have no such error.
_DECOMPRESS_TOO_LARGE = getattr(aiohttp.http_exceptions, "DecompressSizeError", None)

# What a network call can raise that is not ours: the errors the table below maps.
T = TypeVar("T")

TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (asyncio.TimeoutError, aiohttp.ClientError, OSError)


def _payload(exc: BaseException, what: str) -> ArchiverError:
    # aiohttp reports a body it cannot decompress, or one that decompresses past its limit
    # (a gzip bomb), the same way as a cut connection; fetching it again will not help.
    if _DECOMPRESS_TOO_LARGE is not None and isinstance(exc.__cause__, _DECOMPRESS_TOO_LARGE):
        return TooLargeError(f"{what}: the answer decompresses to over the size limit")
    if isinstance(exc.__cause__, ContentEncodingError):
        return ProtocolError(f"{what}: the answer's Content-Encoding cannot be decoded")
    return TransientError(f"{what}: the body was cut short ({type(exc).__name__})")


def _connection(exc: BaseException, what: str) -> ArchiverError:
    return TransientError(f"{what}: connection failed ({type(exc).__name__}: {scrub(str(exc))[:200]})")


# The one table, most specific first: the first class the error is an instance of decides.
ERROR_MAP: tuple[tuple[type[BaseException], Callable[[BaseException, str], ArchiverError]], ...] = (
    (asyncio.TimeoutError, lambda exc, what: TransientError(f"{what}: timed out")),
    (aiohttp.InvalidURL, lambda exc, what: ProtocolError(f"{what}: invalid URL")),
    (aiohttp.ClientPayloadError, _payload),
    (
        aiohttp.ClientResponseError,
        lambda exc, what: ProtocolError(f"{what}: malformed HTTP answer ({getattr(exc, 'status', '?')})"),
    ),
    (aiohttp.ClientError, _connection),
    (OSError, _connection),
)


def translate(exc: BaseException, what: str) -> ArchiverError:
    """The archiver error for a transport error raised while doing ``what``."""
    for kind, mapped in ERROR_MAP:
        if isinstance(exc, kind):
            return mapped(exc, what)
    return _connection(exc, what)


@contextmanager
def translated(what: str, *, on_transient: Callable[[TransientError], None] | None = None) -> Iterator[None]:
    """Run a network call, raising transport errors as archiver errors (``from`` the original).

    ``on_transient(error)`` sees each transient one first (the API client counts it against
    the host's circuit breaker, and may raise instead).
    """
    try:
        yield
    except ArchiverError:
        raise
    except TRANSPORT_ERRORS as exc:
        error = translate(exc, what)
        if on_transient is not None and isinstance(error, TransientError):
            on_transient(error)
        raise error from exc


@asynccontextmanager
async def deadline(seconds: float, message: str) -> AsyncIterator[None]:
    """Raise TransientError(message) when the block takes longer than ``seconds``; a timeout
    of the block's own (aiohttp's per-read one) goes through unchanged. Our deadline says
    nothing about the host being down, so the breaker does not count it."""
    try:
        async with asyncio.timeout(seconds) as scope:
            yield
    except TimeoutError:
        if scope.expired():
            raise TransientError(message) from None
        raise


async def keep_rate(resp: aiohttp.ClientResponse, work: Awaitable[T], rate: int, window: float, message: str) -> T:
    """Run ``work``, which reads ``resp``'s body, failing it with TransientError(message) when
    fewer than ``rate`` bytes a second arrive over a ``window`` (``rate`` 0: no floor)."""
    task = asyncio.ensure_future(work)
    if not rate:
        return await task
    seen = resp.content.total_bytes
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=window)
            if done:
                return task.result()
            total = resp.content.total_bytes
            if total - seen < rate * window:
                raise TransientError(message)
            seen = total
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})


__all__ = ["TRANSPORT_ERRORS", "ERROR_MAP", "translate", "translated", "deadline", "keep_rate"]
