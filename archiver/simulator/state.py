"""What the simulated tenant knows and remembers, shared by the API server and the media host.

Session specs, deletions, v2 poll counts, the media signing key, the fault dice and the
record of what happened all live here, so the two servers stay thin.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from . import analytics, calldetails, content, sessions
from .auth import JtiStore
from .ratelimit import RollingLimiter
from .signing import Signer
from .spec import MediaSpec, SeenRequest, SessionRecord, SessionSpec, SimConfig, SimStats

KINDS = {"recording": "rec", "voicemail": "vm"}
_TOKEN_KIND = {v: k for k, v in KINDS.items()}
_MEDIA_PATH = re.compile(r"/api/getMediaStream/smartassistrecording/SIM/([^/]+)/([^/]+)/(rec|vm)-(\d{1,6})\.wav")
ENDPOINT = "sim.endpoint"  # request key (a plain string: aiohttp < 3.14 has no RequestKey)
SEEN = "sim.seen"  # request key: the SeenRequest being recorded
# How long a handed-out URL has been dead when the expired_url fault fires.
_EXPIRED_BY = 3600


class SimState:
    """The simulator's data and bookkeeping."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = SimStats()
        self.requests: list[SeenRequest] = []
        self.media_url = ""
        self.signer = Signer()
        self.jtis = JtiStore()
        self.limiter = RollingLimiter()
        self._dice = random.Random(config.seed)
        self._nonces = random.Random(f"nonce:{config.seed}")
        self._specs: dict[str, SessionSpec] = {}
        self._user_of: dict[str, str] = {}
        self._polls: dict[str, int] = {}
        self._sha: dict[tuple[int, int], str] = {}
        self._call_records: dict[str, dict] = {}

    # -- sessions --------------------------------------------------------------------------

    def session(self, session_id: str) -> SessionSpec:
        """The configured override, or the spec derived from the id (cached once derived)."""
        override = self.config.sessions.get(session_id)
        if override is not None:
            return override
        spec = self._specs.get(session_id)
        if spec is None:
            spec = sessions.derive_session(self.config, session_id, self._user_of.get(session_id, ""))
            self._specs[session_id] = spec
        return spec

    def user_sessions(self, user_id: str) -> list[str]:
        """The session ids that belong to ``user_id``."""
        ids = sessions.user_session_ids(self.config, user_id)
        for sid in ids:
            self._user_of[sid] = user_id
            if sid in self._specs:
                self._specs[sid].user_id = user_id
        return ids

    def v2_status(self, session_id: str) -> str:
        """The v2 status for one more call on this session (counts the poll)."""
        if session_id in self.stats.deleted:
            return "media_unavailable"
        spec = self.session(session_id)
        polls = self._polls[session_id] = self._polls.get(session_id, 0) + 1
        if polls <= spec.not_ready_polls:
            return "call_in_progress" if polls == 1 else "media_in_progress"
        if spec.v2_status != "success":
            return spec.v2_status
        return "success" if spec.recordings else "media_unavailable"

    def live_recordings(self, session_id: str) -> list[MediaSpec]:
        """The recordings v1 hands out: none once deleted or when the session has failed."""
        spec = self.session(session_id)
        if session_id in self.stats.deleted or spec.v2_status != "success":
            return []
        return spec.recordings

    def delete(self, session_id: str) -> None:
        """Remove the session's call recordings (voicemails stay, as with Kore)."""
        self.stats.deleted.add(session_id)

    # -- analytics -------------------------------------------------------------------------

    def now(self) -> float:
        """The tenant's clock for the Analytics population: ``config.now`` or the wall clock."""
        return time.time() if self.config.now is None else self.config.now

    def population(self, start: float, end: float) -> list[SessionRecord]:
        """Every session of the population started in [start, end], newest first."""
        return analytics.population(self.config, start, end)

    def record(self, session_id: str) -> SessionRecord:
        """The sessions-history record of any session id."""
        return analytics.record_of(self.config, session_id)

    def messages(self, session_id: str) -> list[dict]:
        """The conversation of ``session_id``, oldest first."""
        return analytics.messages(self.config, self.record(session_id))

    def call_records(self, start: float, end: float) -> list[dict]:
        """Call-details records of the sessions started in [start, end], oldest first, each
        with its start time under ``_start``: the population's visible sessions and the
        configured ObjectId sessions."""
        now = self.now()
        found = {r.session_id: r for r in self.population(start, end) if r.visible_at <= now}
        for session_id in self.config.sessions:
            when = sessions.session_time(session_id).timestamp()
            if sessions._OBJECT_ID.fullmatch(session_id) and start <= when <= end and session_id not in found:
                found[session_id] = self.record(session_id)
        ordered = sorted(found.values(), key=lambda r: (r.start, r.session_id))
        return [self._call_record(r) for r in ordered]

    def _call_record(self, record: SessionRecord) -> dict:
        cached = self._call_records.get(record.session_id)
        if cached is None:
            spec = self.session(record.session_id)
            cached = {**calldetails.call_record(self.config, record, spec), "_start": record.start}
            self._call_records[record.session_id] = cached
        return cached

    # -- media -----------------------------------------------------------------------------

    def media_path(self, session_id: str, kind: str = "recording", index: int = 0) -> str:
        """The media host path of one file (``kind``: "recording" or "voicemail")."""
        bot = self.config.bot_id
        return f"/api/getMediaStream/smartassistrecording/SIM/{bot}/{session_id}/{KINDS[kind]}-{index}.wav"

    def signed_url(self, session_id: str, kind: str = "recording", index: int = 0, *, expired: bool = False) -> str:
        """A fresh signed URL for one file; ``expired`` makes its e= lie in the past."""
        path = self.media_path(session_id, kind, index)
        now = int(time.time())
        expires = now - _EXPIRED_BY if expired else now + int(self.config.url_ttl)
        query = self.signer.query(path, expires, self._nonces.randrange(10**9, 10**10))
        return f"{self.media_url}{path}?e={query['e']}&n={query['n']}&s={query['s']}"

    def media_at(self, path: str) -> MediaSpec | None:
        """The file a media path names, or None when there is no such file (any more)."""
        match = _MEDIA_PATH.fullmatch(path)
        if not match or match[1] != self.config.bot_id:
            return None
        session_id, kind, index = match[2], _TOKEN_KIND[match[3]], int(match[4])
        spec = self.session(session_id)
        if kind == "recording":
            files = [] if session_id in self.stats.deleted else spec.recordings
        else:
            files = spec.voicemails
        return files[index] if index < len(files) else None

    def sha256(self, media: MediaSpec) -> str:
        """Hex sha256 of the whole file, computed once per (seed, size)."""
        key = (media.seed, media.size)
        if key not in self._sha:
            self._sha[key] = content.sha256(media)
        return self._sha[key]

    # -- faults and records ----------------------------------------------------------------

    def roll(self, fault: str) -> bool:
        """Throw the dice for one fault knob; counts the fault when it fires."""
        chance = getattr(self.config.faults, fault)
        if chance <= 0 or self._dice.random() >= chance:
            return False
        self.stats.faults_injected[fault] += 1
        return True

    def pick(self, low: int, high: int) -> int:
        """A deterministic integer in [low, high] from the fault dice."""
        return self._dice.randint(low, high)

    def choice(self, options: tuple[int, ...]) -> int:
        """A deterministic pick from the fault dice."""
        return self._dice.choice(options)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def recording_middleware(
    state: SimState, server: str, latency: Callable[[], float], error: Callable[[int, str], web.Response]
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Record every request, add the configured latency, and answer routing errors in the
    server's own dialect (``error(status, reason)``)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen = SeenRequest(
            server, request.method, request.path, dict(request.query), dict(request.headers), at=time.monotonic()
        )
        state.requests.append(seen)
        request[SEEN] = seen
        delay = latency()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            resp = error(exc.status, exc.reason)
        seen.status = resp.status if resp.prepared or not _aborted(request) else 0
        if server == "api":
            state.stats.api_calls[(request.get(ENDPOINT, "unknown"), seen.status)] += 1
        return resp

    return middleware


def _aborted(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()
