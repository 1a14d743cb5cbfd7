"""The simulated Kore.ai API server.

Every endpoint is one row of ``ENDPOINTS``: name, method, path under the bot, scope, rate-limit
group and handler. Each path is routed to one dispatcher that answers Kore's 405 for methods
it does not serve, and every request then goes through the same gate, in Kore's order:

    auth (401) -> injected 429 -> rate limit (429) -> injected 5xx -> handler (412 / 200)

Two limit groups: Contact Center (recordings, delete, voicemail; per account) and Analytics
(getSessions, getMessagesV2; per bot, a minute and an hour window at once), and a third for
Call Details v2 (per account; the vendor does not say whether it shares the Contact Center
bucket, so the simulator keeps it apart and tests can set either limit).

The Analytics endpoints serve the population of ``analytics.py``:

- ``POST getSessions``: body ``dateFrom``/``dateTo`` (``yyyy-mm-dd`` or ISO 8601; both ends
  included; ``dateTo`` defaults to now and ``dateFrom`` to 7 days before it; an explicit range
  of 7 days or more is a 412), ``skip`` (or ``offset``), ``limit`` (cut to
  ``sessions_page_max``), ``userId``, ``sessionType``, or ``sessionId`` (up to 50 ids; every
  other filter, dates and ``containmentType`` included, is then ignored). Query
  ``containmentType``. Only sessions visible at ``now`` are listed, newest first. There is no
  channel filter, as in Kore's reference: a client keeps the channel it wants itself.
- ``GET|POST getMessagesV2``: ``sessionId`` (a JSON array in the body; comma-separated or
  repeated in the query), ``skip``/``offset``, ``limit`` (at most 10,000), ``dateFrom``/
  ``dateTo`` (on ``createdOn``), ``channelType`` (default ``rtm``, as Kore's GET: a voice
  transcript needs ``korevg``). Newest first.

Call Details v2 lives outside the bot's path (``CALL_DETAILS_PATHS``, see ``calldetails.py``):
headers ``accountId`` (must match the path and the tenant) and ``iId`` (the bot id, in place
of the path's); ``offset`` (pages, at most 10) and ``limit`` (at most 100) in the query;
``startDate``/``endDate`` (``"yyyy-mm-dd HH:mm:ss"``, at most 7 days apart),
``timeZoneOffset`` and ``channels`` in the body. Both ends are included unless
``call_details_end_exclusive`` is set. Oldest first.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import analytics, auth, bodies, calldetails, sessions
from .bodies import kore_error
from .ratelimit import retry_after_header
from .spec import MediaSpec, SessionRecord, SimConfig
from .state import ENDPOINT, SEEN, SimState, recording_middleware
from .transfer import Ending, send_body

PREFIXES = ("/api/public", "/api/1.1/public")
CONTACT_CENTER = "contact_center"
ANALYTICS = "analytics"
CALL_DETAILS = "call_details"
CALL_DETAILS_PATHS = tuple(
    f"/agentassist/api/public/analytics/account/{{account_id}}/v2/{name}" for name in ("interactionDetails", "calldetails")
)
MAX_WINDOW = 7 * 86400.0  # getSessions: an explicit dateFrom..dateTo must be shorter
MAX_SESSION_IDS = 50  # getSessions' sessionId filter
MAX_MESSAGES_PAGE = 10_000  # getMessagesV2's largest page
MAX_MESSAGE_SESSIONS = 100
_CHANNEL = re.compile(r"[a-z][a-z0-9_]{0,31}")
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
        # Call details name the bot in the iId header instead of the path.
        bot_id = request.match_info.get("bot_id", request.headers.get("iId", ""))
        refusal = auth.check(cfg, state.jtis, bot_id, request.headers.get("auth"), endpoint.scope)
        if refusal:
            return kore_error(401, refusal)
        if state.roll("api_429"):
            return self._too_many(1.0, endpoint.limit_group)
        wait = state.limiter.acquire(*_limit_windows(endpoint.limit_group, cfg), time.monotonic())
        if wait is not None:
            return self._too_many(wait, endpoint.limit_group)
        if state.roll("api_5xx"):
            status = state.choice(_SERVER_ERRORS)
            return web.Response(status=status, text=f"{status} simulated server error")
        try:
            return await endpoint.handler(self, request)
        except InvalidArguments:
            return kore_error(412, bodies.VALIDATION_MSG)

    def _too_many(self, wait: float, group: str) -> web.Response:
        if group == ANALYTICS:
            self.state.stats.analytics_rate_limited += 1
        elif group == CALL_DETAILS:
            self.state.stats.call_details_rate_limited += 1
        else:
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
        status = self.state.config.faults.delete_status
        if status:
            return web.json_response({"errors": [{"msg": "simulated deletion failure", "code": status}]}, status=status)
        self.state.delete(session_id)
        if self.state.roll("delete_answer_lost") and request.transport is not None:
            request.transport.abort()  # deleted, and the answer never arrives
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

    async def get_sessions(self, request: web.Request) -> web.Response:
        """The sessions history: the population's visible sessions, newest first, a page at a time."""
        state, cfg = self.state, self.state.config
        args = await _json_body(request)
        now = state.now()
        skip, limit = _page(args, default=cfg.sessions_page_max, cap=cfg.sessions_page_max)
        if "sessionId" in args:
            records = self._sessions_by_id(args["sessionId"])
        else:
            records = self._sessions_by_filter(args, request.query.get("containmentType"), now)
        records = [r for r in records if r.visible_at <= now]
        page = records[skip : skip + limit]
        return bodies.json_response({
            "total": len(records),
            "moreAvailable": skip + len(page) < len(records),
            "sessions": [analytics.session_entry(cfg, r, now) for r in page],
        })

    async def get_messages(self, request: web.Request) -> web.Response:
        """A conversation history: the messages of the given sessions on one channel, newest first."""
        args = await _json_body(request) if request.method == "POST" else _query_args(request)
        session_ids = _session_ids(args.get("sessionId"), MAX_MESSAGE_SESSIONS)
        channel = args.get("channelType", analytics.CHAT)
        if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel):
            raise InvalidArguments
        skip, limit = _page(args, default=100, cap=MAX_MESSAGES_PAGE)
        date_from, date_to = _date(args, "dateFrom", None), _date(args, "dateTo", None)
        found = [
            m
            for sid in dict.fromkeys(session_ids)
            if self.state.record(sid).channel == channel
            for m in self.state.messages(sid)
            if (date_from is None or m["timestampValue"] >= date_from * 1000)
            and (date_to is None or m["timestampValue"] <= date_to * 1000)
        ]
        found.sort(key=lambda m: (m["timestampValue"], m["_id"]), reverse=True)
        page = found[skip : skip + limit]
        more = skip + len(page) < len(found)
        return bodies.json_response({"total": len(found), "moreAvailable": more, "messages": page})

    async def call_details(self, request: web.Request) -> web.Response:
        """Call Details v2: the records of the calls started in a date range, a page at a time."""
        cfg = self.state.config
        account = request.match_info["account_id"]
        if account != cfg.account_id:
            return kore_error(401, auth.SDK_CREDENTIALS)
        if request.headers.get("accountId") != account or not request.headers.get("iId"):
            raise InvalidArguments
        offset, limit = _integer(request.query.get("offset", "0")), _integer(request.query.get("limit", "10"))
        if not (0 <= offset <= calldetails.MAX_OFFSET and 1 <= limit <= calldetails.MAX_LIMIT):
            raise InvalidArguments
        args = await _json_body(request)
        zone = args.get("timeZoneOffset", 0)
        if isinstance(zone, bool) or not isinstance(zone, int) or abs(zone) > 14 * 60:
            raise InvalidArguments
        try:
            start = calldetails.parse_date(args.get("startDate"), zone)
            end = calldetails.parse_date(args.get("endDate"), zone)
        except ValueError:
            raise InvalidArguments from None
        if not 0 <= end - start <= calldetails.MAX_RANGE:
            raise InvalidArguments
        channels = args.get("channels")
        if channels is not None:
            if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
                raise InvalidArguments
            channels = [c.lower() for c in channels]
        records = [
            r for r in self.state.call_records(start, end)
            if calldetails.wanted_channel(r, channels)
            and (not cfg.call_details_end_exclusive or r["_start"] < end)
        ]
        page = records[offset * limit : (offset + 1) * limit]
        data = [{k: v for k, v in r.items() if k != "_start"} for r in page]
        return bodies.json_response({"numResults": len(records), "data": data})

    # -- helpers -------------------------------------------------------------------------

    def _sessions_by_id(self, value: Any) -> list[SessionRecord]:
        """getSessions' sessionId filter: the population's sessions among the ids."""
        wanted = _session_ids(value, MAX_SESSION_IDS)
        records = []
        for sid in dict.fromkeys(wanted):
            record = self.state.record(sid)
            if record in self.state.population(record.start, record.start):
                records.append(record)
        return analytics.newest_first(records)

    def _sessions_by_filter(self, args: dict[str, Any], containment: str | None, now: float) -> list[SessionRecord]:
        """getSessions' date range and filters."""
        if containment is not None and containment not in analytics.CONTAINMENT_TYPES:
            raise InvalidArguments
        date_to = _date(args, "dateTo", now)
        date_from = _date(args, "dateFrom", None)
        if date_from is None:
            date_from = date_to - MAX_WINDOW
        elif not 0 <= date_to - date_from < MAX_WINDOW:
            raise InvalidArguments
        user_id = args.get("userId")
        if user_id is not None and (not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id)):
            raise InvalidArguments
        session_type = args.get("sessionType")
        if session_type not in (None, "interactive", "non-interactive"):
            raise InvalidArguments
        if session_type == "non-interactive":
            return []  # every simulated session has user messages
        return [
            r
            for r in self.state.population(date_from, date_to)
            if (user_id is None or r.user_id == user_id) and (containment is None or r.containment == containment)
        ]

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
_SESSIONS, _HISTORY, _CALLS = "Bot Sessions", "Chat History", "SmartAssist Analytics"
ENDPOINTS = (
    Endpoint("v1_recordings", "GET", "/recordings", _RECORDINGS, CONTACT_CENTER, Api.v1_recordings),
    Endpoint("v2_recordings", "GET", "/v2/recordings", _RECORDINGS, CONTACT_CENTER, Api.v2_recordings),
    Endpoint("delete_recordings", "DELETE", "/v2/recordings", _DELETE, CONTACT_CENTER, Api.delete_recordings),
    Endpoint("voicemail", "GET", "/voicemail", _VOICEMAIL, CONTACT_CENTER, Api.voicemail),
    Endpoint("get_sessions", "POST", "/getSessions", _SESSIONS, ANALYTICS, Api.get_sessions),
    Endpoint("get_messages", "GET", "/getMessagesV2", _HISTORY, ANALYTICS, Api.get_messages),
    Endpoint("get_messages", "POST", "/getMessagesV2", _HISTORY, ANALYTICS, Api.get_messages),
)
CALL_DETAILS_ENDPOINT = Endpoint("call_details", "POST", "", _CALLS, CALL_DETAILS, Api.call_details)


def _limit_windows(group: str, cfg: SimConfig) -> tuple[Hashable, list[tuple[int, float]]]:
    """The limiter key and (limit, window) pairs of a limit group, read from the config now."""
    if group == CONTACT_CENTER:
        return group, [(cfg.rate_limit, cfg.rate_window)]  # one account per simulator
    if group == ANALYTICS:
        windows = [
            (cfg.analytics_per_minute, cfg.analytics_minute_window),
            (cfg.analytics_per_hour, cfg.analytics_hour_window),
        ]
        return (group, cfg.bot_id), windows
    if group == CALL_DETAILS:
        return (group, cfg.account_id), [(cfg.call_details_per_minute, cfg.call_details_window)]
    raise KeyError(group)


async def _json_body(request: web.Request) -> dict[str, Any]:
    """A POST's JSON object (an empty body is ``{}``), recorded on the request's SeenRequest."""
    raw = await request.read()
    try:
        args = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise InvalidArguments from None
    if not isinstance(args, dict):
        raise InvalidArguments
    seen = request.get(SEEN)
    if seen is not None:
        seen.body = args
    return args


def _query_args(request: web.Request) -> dict[str, Any]:
    """A GET's arguments; ``sessionId`` may be repeated or comma-separated."""
    args: dict[str, Any] = {k: v for k, v in request.query.items() if k != "sessionId"}
    ids = [part for value in request.query.getall("sessionId", []) for part in value.split(",")]
    if ids:
        args["sessionId"] = ids
    return args


def _session_ids(value: Any, most: int) -> list[str]:
    """A non-empty list of at most ``most`` valid session ids, or 412."""
    if not isinstance(value, list) or not 1 <= len(value) <= most:
        raise InvalidArguments
    if not all(isinstance(v, str) and _SESSION_ID.fullmatch(v) for v in value):
        raise InvalidArguments
    return value


def _page(args: dict[str, Any], *, default: int, cap: int) -> tuple[int, int]:
    """``skip`` (or ``offset``) and ``limit``; a limit over ``cap`` is cut to it."""
    skip = _integer(args.get("skip", args.get("offset", 0)))
    limit = _integer(args.get("limit", default))
    if skip < 0 or limit < 1:
        raise InvalidArguments
    return skip, min(limit, cap)


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidArguments
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 12:
        return int(value)
    raise InvalidArguments


def _date(args: dict[str, Any], name: str, default: float | None) -> float | None:
    if name not in args:
        return default
    try:
        return analytics.parse_date(args[name])
    except ValueError:
        raise InvalidArguments from None


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
    for path in CALL_DETAILS_PATHS:
        app.router.add_route("*", path, _dispatcher(handler, {"POST": CALL_DETAILS_ENDPOINT}))
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
