"""The simulated Kore.ai API server.

Every endpoint is one row of ``ENDPOINTS``: name, method, path under the bot, scope, rate-limit
group and handler. Each path is routed to one dispatcher that answers Kore's 405 for methods
it does not serve, and every request then goes through the same gate, in Kore's order:

    auth (401) -> injected 429 -> rate limit (429) -> injected 5xx -> handler (412 / 200)

Adding the Analytics endpoints is a new row and a new limit group in ``_limit_windows``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from . import auth, bodies, sessions
from .bodies import kore_error
from .ratelimit import retry_after_header
from .spec import MediaSpec, SimConfig
from .state import ENDPOINT, SimState, recording_middleware
from .transfer import Ending, send_body

PREFIXES = ("/api/public", "/api/1.1/public")
CONTACT_CENTER = "contact_center"
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}")
_SERVER_ERRORS = (500, 502, 503)


class InvalidArguments(Exception):
    """The request's query is missing or malformed (Kore answers 412)."""


@dataclass(frozen=True)
class Endpoint:
    """One API operation."""

    name: str
    method: str
    path: str  # below {prefix}/bot/{bot_id}
    scope: str
    limit_group: str
    handler: Callable[[Api, web.Request], Awaitable[web.StreamResponse]]


class Api:
    """Request handling for the API server."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def serve(self, endpoint: Endpoint, request: web.Request) -> web.StreamResponse:
        """Run the common gate, then the endpoint's handler."""
        request[ENDPOINT] = endpoint.name
        state, cfg = self.state, self.state.config
        refusal = auth.check(cfg, state.jtis, request.match_info["bot_id"], request.headers.get("auth"), endpoint.scope)
        if refusal:
            return kore_error(401, refusal)
        if state.roll("api_429"):
            return self._too_many(1.0)
        wait = state.limiter.acquire(*_limit_windows(endpoint.limit_group, cfg), time.monotonic())
        if wait is not None:
            return self._too_many(wait)
        if state.roll("api_5xx"):
            status = state.choice(_SERVER_ERRORS)
            return web.Response(status=status, text=f"{status} simulated server error")
        try:
            return await endpoint.handler(self, request)
        except InvalidArguments:
            return kore_error(412, bodies.VALIDATION_MSG)

    def _too_many(self, wait: float) -> web.Response:
        self.state.stats.rate_limited += 1
        headers = {"Retry-After": retry_after_header(wait)} if self.state.config.retry_after_header else None
        return kore_error(429, bodies.RATE_LIMIT_MSG, headers)

    # -- handlers ------------------------------------------------------------------------

    async def v1_recordings(self, request: web.Request) -> web.StreamResponse:
        """Inline base64 recordings, streamed: a long call never sits whole in memory."""
        medias = [m for sid in self._sessions(request) for m in self.state.live_recordings(sid)]
        resp = web.StreamResponse()
        resp.content_type = bodies.JSON
        resp.charset = "utf-8"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        stop_at = None
        if self.state.roll("api_reset"):
            stop_at = self.state.pick(1, bodies.v1_min_size(medias) - 1)
        pieces = bodies.v1_pieces(medias, self.state.config.escape_slashes)
        await send_body(resp, request, pieces, on_sent=_ignore, stop_at=stop_at, ending=Ending.RESET)
        return resp

    async def v2_recordings(self, request: web.Request) -> web.Response:
        """Signed URLs, or a status saying why there are none (yet)."""
        statuses = {sid: self.state.v2_status(sid) for sid in self._sessions(request)}
        status = _combined_status(list(statuses.values()))
        files: list[tuple[str, str]] = []
        if status == "success":
            expired = self.state.roll("expired_url")
            for sid, sid_status in statuses.items():
                if sid_status == "success":
                    files += self._signed(sid, "recording", self.state.session(sid).recordings, expired)
        return bodies.json_response({"status": status, "recording": bodies.media_entries(files)})

    async def delete_recordings(self, request: web.Request) -> web.Response:
        """Delete a session's call recordings."""
        session_id = _arg(request, "sessionId", _SESSION_ID)
        if session_id is None:
            raise InvalidArguments
        self.state.delete(session_id)
        return bodies.json_response({"message": "Call recordings deleted successfully", "sessionId": session_id})

    async def voicemail(self, request: web.Request) -> web.Response:
        """Voicemail URLs and, with transcription=true, their transcription records."""
        session_id = _arg(request, "sessionId", _SESSION_ID)
        transcription = request.query.get("transcription", "false").lower()
        if session_id is None or transcription not in ("true", "false"):
            raise InvalidArguments
        spec = self.state.session(session_id)
        expired = bool(spec.voicemails) and self.state.roll("expired_url")
        files = self._signed(session_id, "voicemail", spec.voicemails, expired)
        records = sessions.transcription_records(self.state.config, session_id, spec) if transcription == "true" else []
        key = sessions.voicemail_key(self.state.config, session_id)
        return bodies.json_response({"status": "success", key: bodies.media_entries(files), "transcriptions": records})

    # -- helpers -------------------------------------------------------------------------

    def _sessions(self, request: web.Request) -> list[str]:
        """The session ids a request is about: ``sessionId``, else all of ``userId``'s."""
        if "sessionId" in request.query:
            session_id = _arg(request, "sessionId", _SESSION_ID)
            if session_id is None:
                raise InvalidArguments
            return [session_id]
        user_id = _arg(request, "userId", _USER_ID)
        if user_id is None or ".." in user_id:
            raise InvalidArguments
        return self.state.user_sessions(user_id)

    def _signed(self, session_id: str, kind: str, medias: list[MediaSpec], expired: bool) -> list[tuple[str, str]]:
        sign = self.state.signed_url
        return [(m.file_name, sign(session_id, kind, i, expired=expired)) for i, m in enumerate(medias)]


_RECORDINGS, _VOICEMAIL, _DELETE = "SmartAssist Recordings", "SmartAssist Voicemail", "Delete Recordings"
ENDPOINTS = (
    Endpoint("v1_recordings", "GET", "/recordings", _RECORDINGS, CONTACT_CENTER, Api.v1_recordings),
    Endpoint("v2_recordings", "GET", "/v2/recordings", _RECORDINGS, CONTACT_CENTER, Api.v2_recordings),
    Endpoint("delete_recordings", "DELETE", "/v2/recordings", _DELETE, CONTACT_CENTER, Api.delete_recordings),
    Endpoint("voicemail", "GET", "/voicemail", _VOICEMAIL, CONTACT_CENTER, Api.voicemail),
)


def _limit_windows(group: str, cfg: SimConfig) -> tuple[str, list[tuple[int, float]]]:
    """The limiter key and (limit, window) pairs of a limit group, read from the config now."""
    if group == CONTACT_CENTER:
        return group, [(cfg.rate_limit, cfg.rate_window)]  # one account per simulator
    raise KeyError(group)


def _combined_status(statuses: list[str]) -> str:
    """One status for several sessions (a userId query): the first that is not plain."""
    for wanted in ("call_in_progress", "media_in_progress", "failed"):
        if wanted in statuses:
            return wanted
    return "success" if "success" in statuses else "media_unavailable"


def _arg(request: web.Request, name: str, pattern: re.Pattern[str]) -> str | None:
    value = request.query.get(name)
    return value if value is not None and pattern.fullmatch(value) else None


def _ignore(_: int) -> None:
    pass


def _error(status: int, reason: str) -> web.Response:
    if status == 405:
        return kore_error(405, bodies.METHOD_MSG)
    return kore_error(status, reason)


def build_app(state: SimState) -> web.Application:
    """The API server's application: every endpoint under both path prefixes."""
    app = web.Application(middlewares=[recording_middleware(state, "api", lambda: state.config.api_latency, _error)])
    handler = Api(state)
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in ENDPOINTS:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    for path, methods in by_path.items():
        for prefix in PREFIXES:
            app.router.add_route("*", f"{prefix}/bot/{{bot_id}}{path}", _dispatcher(handler, methods))
    return app


def _dispatcher(api: Api, methods: dict[str, Endpoint]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    first = next(iter(methods.values())).name

    async def dispatch(request: web.Request) -> web.StreamResponse:
        endpoint = methods.get(request.method)
        if endpoint is None:
            request[ENDPOINT] = first
            return kore_error(405, bodies.METHOD_MSG)
        return await api.serve(endpoint, request)

    return dispatch
