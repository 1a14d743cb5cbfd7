"""The simulator's vocabulary: its configuration, the fault knobs, what a session holds and
what the simulator recorded.

Everything here is a plain mutable dataclass on purpose: tests change ``sim.config`` and
``sim.config.faults`` between requests, and the servers read them on every request.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SCOPES = frozenset(
    {
        "SmartAssist Recordings", "SmartAssist Voicemail", "Delete Recordings", "Bot Sessions", "Chat History",
        "SmartAssist Analytics",
    }
)


@dataclass
class Faults:
    """Misbehaviour on demand; probabilities in [0, 1], rolled per request."""

    api_5xx: float = 0.0  # the API answers 500/502/503 with a small body
    api_429: float = 0.0  # the API answers 429 whatever the limiter says
    api_reset: float = 0.0  # v1: abort the connection part-way through the JSON body
    media_5xx: float = 0.0
    media_reset: float = 0.0  # abort the TCP connection part-way through the body
    media_truncate: float = 0.0  # full Content-Length, then a clean EOF part-way through
    ignore_range: float = 0.0  # answer a ranged GET with 200 and the whole file
    no_length: float = 0.0  # media without Content-Length (chunked); a truncation then ends it cleanly
    delete_status: int = 0  # DELETE /v2/recordings answers this HTTP status and deletes nothing (0: off)
    delete_answer_lost: float = 0.0  # DELETE deletes, then the connection drops before the answer
    slow_body: float = 0.0  # send the body in small pieces, slow_body_delay apart
    slow_body_delay: float = 0.05
    expired_url: float = 0.0  # the API hands out media URLs whose e= is already past
    not_ready_rate: float = 0.0  # fraction of derived sessions that start not ready
    not_ready_polls: int = 2


@dataclass
class MediaSpec:
    """One audio file: the name the API reports, its whole size and its content seed."""

    file_name: str
    size: int  # bytes of the whole WAV file, header included (>= 44)
    seed: int


@dataclass
class SessionSpec:
    """What the vendor holds for one session id."""

    recordings: list[MediaSpec]
    voicemails: list[MediaSpec]
    transcript_texts: list[str]
    v2_status: str = "success"
    not_ready_polls: int = 0  # v2 calls answered call_in_progress / media_in_progress first
    user_id: str = ""


@dataclass
class SimConfig:
    """How the simulated tenant is set up and how it behaves."""

    bot_id: str = "st-sim-bot"
    client_id: str = "cs-sim-client"
    client_secret: str = "sim-client-secret"
    scopes: frozenset[str] = DEFAULT_SCOPES
    enforce_jti: bool = False
    rate_limit: int = 60  # Contact Center requests per rolling window per account; 0 disables
    rate_window: float = 60.0
    retry_after_header: bool = True
    url_ttl: float = 86400.0
    min_size: int = 4096
    max_size: int = 65536
    voicemail_rate: float = 0.5
    no_media_rate: float = 0.0
    escape_slashes: bool = True
    voicemail_key: str = "auto"  # "auto" (alternates per session) | "space" | "underscore"
    api_latency: float = 0.0
    media_latency: float = 0.0
    seed: int = 0
    faults: Faults = field(default_factory=Faults)
    sessions: dict[str, SessionSpec] = field(default_factory=dict)
    # The Analytics APIs (getSessions, getMessagesV2): a population of sessions over time.
    sessions_per_day: int = 0  # sessions started per UTC day; 0: the sessions history is empty
    chat_session_rate: float = 0.25  # fraction of them on the "rtm" chat channel, the rest "korevg" voice
    late_session_rate: float = 0.0  # fraction listed only late_session_delay seconds after they started
    late_session_delay: float = 3600.0
    sessions_page_max: int = 100  # getSessions serves at most this many per page (larger limits are cut)
    now: float | None = None  # the tenant's clock (Unix seconds) for the population; None: wall clock
    # Analytics rate limit per bot: both rolling windows at once, separate from the Contact Center one.
    analytics_per_minute: int = 60  # 0 disables this window
    analytics_minute_window: float = 60.0
    analytics_per_hour: int = 1800  # 0 disables this window
    analytics_hour_window: float = 3600.0
    # Call Details v2 (per account): its own rolling window; 0 disables it.
    account_id: str = "sim-account"
    call_details_per_minute: int = 60
    call_details_window: float = 60.0
    call_details_end_exclusive: bool = False  # endDate excludes its own second (the vendor does not say)


@dataclass(frozen=True)
class SessionRecord:
    """One session of the Analytics population, as the sessions history knows it."""

    session_id: str  # a 24-hex ObjectId whose first 8 hex digits are ``start``
    start: float  # Unix seconds
    end: float
    channel: str  # "korevg" (voice) or "rtm" (chat)
    user_id: str
    containment: str  # "selfService" | "agent" | "dropOff"
    visible_at: float  # when getSessions starts listing it (after ``start`` for late arrivals)

    @property
    def late(self) -> bool:
        """True when the session reaches the sessions history after it started."""
        return self.visible_at > self.start


@dataclass
class SeenRequest:
    """One request as either server received it, and the status it was sent (0: none)."""

    server: str  # "api" | "media"
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0
    at: float = 0.0  # time.monotonic() when it arrived
    body: Any = None  # the parsed JSON body of an Analytics request, None for the others


@dataclass
class SimStats:
    """Counters a test asserts on.

    Whether a media file was downloaded to completion exactly once, resumes included::

        path = urlsplit(file_url).path          # or sim.media_path(session_id, "recording", 0)
        assert sim.stats.full_transfers(path, media.size) == 1   # every byte delivered >= once
        assert sim.stats.redundant_bytes(path) == 0              # and no byte more than once

    ``media_ranges`` keeps, per media path, the ``(start, end)`` byte span each GET body
    actually put on the socket (a reset or truncated answer contributes the part it sent).
    """

    api_calls: Counter[tuple[str, int]] = field(default_factory=Counter)
    rate_limited: int = 0  # 429s of the Contact Center group (recordings, delete, voicemail)
    analytics_rate_limited: int = 0  # 429s of the Analytics group (getSessions, getMessagesV2)
    call_details_rate_limited: int = 0  # 429s of Call Details v2
    media_bytes_served: Counter[str] = field(default_factory=Counter)
    media_completions: Counter[str] = field(default_factory=Counter)
    media_ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    faults_injected: Counter[str] = field(default_factory=Counter)

    def full_transfers(self, path: str, size: int) -> int:
        """How many times every byte of the file was delivered (0: never completely)."""
        return _min_depth(self.media_ranges.get(path, []), size)

    def redundant_bytes(self, path: str) -> int:
        """Bytes served for ``path`` beyond the first delivery of each byte."""
        return self.media_bytes_served[path] - _union_size(self.media_ranges.get(path, []))


def _min_depth(spans: list[tuple[int, int]], size: int) -> int:
    """The smallest number of spans covering any byte of [0, size)."""
    if size <= 0:
        return 0
    events: list[tuple[int, int]] = []
    for start, end in spans:
        start, end = max(start, 0), min(end, size)
        if end > start:
            events += [(start, 1), (end, -1)]
    events.sort()
    depth, pos, lowest = 0, 0, None
    for at, delta in events:
        if at > pos:
            lowest = depth if lowest is None else min(lowest, depth)
        depth += delta
        pos = max(pos, at)
    if pos < size:  # a tail nothing covered
        lowest = 0
    return lowest or 0


def _union_size(spans: list[tuple[int, int]]) -> int:
    total, reach = 0, 0
    for start, end in sorted(spans):
        start = max(start, reach)
        if end > start:
            total += end - start
            reach = end
    return total
