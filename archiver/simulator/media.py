"""The simulated media host (where ``fileUrl`` points): an S3-like GET/HEAD with ranges.

Checks, in S3's order: signature (403), expiry (403 "Request has expired"), existence (404),
then the Range header (206 / 416). Every answer sets a ``simsession`` cookie, so tests can
prove a client never sends cookies back.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import datetime, timezone

from aiohttp import web

from . import content
from .signing import Verdict
from .spec import MediaSpec
from .state import SimState, recording_middleware
from .transfer import Ending, send_body

_PIECE = 512 * 1024
_SLOW_PIECE = 8 * 1024
_SERVER_ERRORS = (500, 502, 503)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_SIGNATURE_MSG = "The request signature we calculated does not match the signature you provided."


class Unsatisfiable(Exception):
    """The Range header asks for bytes the file does not have."""


def xml_error(status: int, code: str, message: str, **extra: str) -> web.Response:
    """An S3-style XML error document."""
    fields = "".join(f"<{k}>{v}</{k}>" for k, v in extra.items())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>{fields}"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) for a single-range header, None to serve the whole file.

    Headers that are not one well-formed byte range are ignored, as RFC 9110 allows.
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if not match or not (match[1] or match[2]):
        return None
    if not match[1]:  # suffix range: the last N bytes
        suffix = int(match[2])
        if suffix == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size
    start = int(match[1])
    end = int(match[2]) + 1 if match[2] else size
    if end <= start and match[2]:  # "bytes=5-2" is malformed, not unsatisfiable
        return None
    if start >= size:
        raise Unsatisfiable
    return start, min(end, size)


class MediaHost:
    """Request handling for the media host."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET or HEAD one file."""
        state = self.state
        if state.roll("media_5xx"):
            status = state.choice(_SERVER_ERRORS)
            return xml_error(status, "InternalError", "We encountered an internal error. Please try again.")
        path = request.rel_url.raw_path
        verdict = state.signer.verify(path, dict(request.query), time.time())
        if verdict is Verdict.BAD_SIGNATURE:
            return xml_error(403, "SignatureDoesNotMatch", _SIGNATURE_MSG)
        if verdict is Verdict.EXPIRED:
            expires = datetime.fromtimestamp(int(request.query["e"]), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            now = datetime.now(tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            return xml_error(403, "AccessDenied", "Request has expired", Expires=expires, ServerTime=now)
        media = state.media_at(path)
        if media is None:
            return xml_error(404, "NoSuchKey", "The specified key does not exist.")
        try:
            span = self._span(request, media)
        except Unsatisfiable:
            resp = xml_error(416, "InvalidRange", "The requested range is not satisfiable")
            resp.headers["Content-Range"] = f"bytes */{media.size}"
            return resp
        return await self._send(request, media, span)

    def _span(self, request: web.Request, media: MediaSpec) -> tuple[int, int] | None:
        """The requested byte span, or None for the whole file."""
        header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if header and if_range is not None and if_range != _etag(media):
            return None
        span = parse_range(header, media.size)
        if span is not None and request.method == "GET" and self.state.roll("ignore_range"):
            return None
        return span

    async def _send(self, request: web.Request, media: MediaSpec, span: tuple[int, int] | None) -> web.StreamResponse:
        start, end = span or (0, media.size)
        resp = web.StreamResponse(status=206 if span else 200)
        resp.content_type = "audio/wav"
        if self.state.roll("no_length"):
            resp.enable_chunked_encoding()
        else:
            resp.content_length = end - start
        resp.headers["Accept-Ranges"] = "bytes"
        resp.headers["ETag"] = _etag(media)
        if span:
            resp.headers["Content-Range"] = f"bytes {start}-{end - 1}/{media.size}"
        await resp.prepare(request)
        if request.method == "HEAD" or end == start:
            return resp
        await self._body(request, resp, media, start, end)
        return resp

    async def _body(
        self, request: web.Request, resp: web.StreamResponse, media: MediaSpec, start: int, end: int
    ) -> None:
        state, stats, path = self.state, self.state.stats, request.path
        stop_at, ending = None, Ending.RESET
        if end - start >= 2:  # a body can only be broken off between its first and last byte
            if state.roll("media_reset"):
                stop_at = state.pick(1, end - start - 1)
            elif state.roll("media_truncate"):
                stop_at, ending = state.pick(1, end - start - 1), Ending.TRUNCATE
        slow = state.roll("slow_body")
        sent = 0

        def on_sent(n: int) -> None:
            nonlocal sent
            sent += n
            stats.media_bytes_served[path] += n

        try:
            whole = await send_body(
                resp,
                request,
                content.iter_range(media, start, end, _PIECE),
                on_sent=on_sent,
                stop_at=stop_at,
                ending=ending,
                slow_piece=_SLOW_PIECE if slow else 0,
                slow_delay=state.config.faults.slow_body_delay if slow else 0.0,
            )
        finally:
            if sent:
                stats.media_ranges.setdefault(path, []).append((start, start + sent))
        if whole:
            stats.media_completions[path] += 1


def _etag(media: MediaSpec) -> str:
    return f'"{media.seed & 0xFFFFFFFFFFFF:012x}{media.size:x}"'


async def _set_cookie(request: web.Request, resp: web.StreamResponse) -> None:
    # A header, not resp.set_cookie(): cookies are serialised before this hook runs.
    resp.headers.add("Set-Cookie", f"simsession={secrets.token_hex(8)}; Path=/; HttpOnly")


def build_app(state: SimState) -> web.Application:
    """The media host's application."""
    app = web.Application(
        middlewares=[recording_middleware(state, "media", lambda: state.config.media_latency, _error)]
    )
    host = MediaHost(state)
    app.router.add_get("/{path:.*}", host.handle)  # also answers HEAD
    app.on_response_prepare.append(_set_cookie)
    return app


def _error(status: int, reason: str) -> web.Response:
    if status == 405:
        return xml_error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
    return xml_error(status, reason.replace(" ", ""), reason)
