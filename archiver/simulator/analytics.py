"""The simulated tenant's Analytics data: a population of sessions over time and their messages.

Each UTC day holds ``sessions_per_day`` sessions drawn from ``sha256(seed, "population", day)``:
ObjectId ids whose first 8 hex digits are the start time, a channel (``rtm`` chat for a
``chat_session_rate`` fraction, ``korevg`` voice for the rest), a containment type and a
duration. A ``late_session_rate`` fraction reaches the sessions history only
``late_session_delay`` seconds after it started (Kore's analytics are filled asynchronously);
the others are listed from their start.

Conversations are drawn from the session id alone, so every id, in the population or not,
has the same messages in every run. Ids outside the population are voice sessions.
"""

from __future__ import annotations

import functools
import random
from datetime import datetime, timedelta, timezone
from typing import Any

from .sessions import _TOPICS, _digest, _uuidish, session_time
from .spec import SessionRecord, SimConfig

DAY = 86400
VOICE, CHAT = "korevg", "rtm"
CONTAINMENT_TYPES = ("selfService", "agent", "dropOff")
_MAX_DURATION = 900

_BOT_LINES = [
    "Thank you for calling. How can I help you today?",
    "I can help with that. Can you confirm your account number?",
    "Thanks. Let me look that up for you.",
    "I found your account. Is there anything else?",
    "Is this about your most recent order?",
    "One moment, please.",
]
_CALLER_LINES = [
    "Yes, that's right.",
    "Sure, it's on the letter you sent me.",
    "No, that's everything, thank you.",
    "Can you repeat that, please?",
    "I already tried that yesterday.",
]
_AGENT_LINES = [
    "Hello, this is your agent speaking. I have your details here.",
    "I have fixed that for you now.",
    "You will get a confirmation by e-mail.",
    "Is there anything else I can do for you?",
]
_HANDOFF = "Let me connect you to an agent."


def population(cfg: SimConfig, start: float, end: float) -> list[SessionRecord]:
    """Every session started in [start, end] (both included), newest first, visible or not."""
    if cfg.sessions_per_day <= 0 or end < start:
        return []
    found = [
        record
        for day in range(int(start // DAY), int(end // DAY) + 1)
        for record in _day(cfg.seed, day, cfg.sessions_per_day, cfg.chat_session_rate,
                           cfg.late_session_rate, cfg.late_session_delay)
        if start <= record.start <= end
    ]
    return newest_first(found)


def newest_first(records: list[SessionRecord]) -> list[SessionRecord]:
    """The order the sessions history lists sessions in: start time descending."""
    return sorted(records, key=lambda r: (r.start, r.session_id), reverse=True)


def record_of(cfg: SimConfig, session_id: str) -> SessionRecord:
    """The population's record of ``session_id``, or a voice session derived from the id."""
    started = session_time(session_id).timestamp()
    if cfg.sessions_per_day > 0:
        for record in population(cfg, started, started):
            if record.session_id == session_id:
                return record
    rng = random.Random(int.from_bytes(_digest(cfg.seed, "record", session_id), "big"))
    duration = rng.randint(20, _MAX_DURATION)
    containment = rng.choice(CONTAINMENT_TYPES)
    user = _uuidish("u", cfg.seed, "user-of", session_id)
    return SessionRecord(session_id, started, started + duration, VOICE, user, containment, started)


@functools.lru_cache(maxsize=512)
def _day(
    seed: int, day: int, count: int, chat_rate: float, late_rate: float, late_delay: float
) -> tuple[SessionRecord, ...]:
    rng = random.Random(int.from_bytes(_digest(seed, "population", day), "big"))
    records = []
    for _ in range(count):
        # Every draw happens whatever the rates, so changing one does not reshuffle the rest.
        started = day * DAY + rng.randrange(DAY)
        session_id = f"{started:08x}{rng.getrandbits(64):016x}"
        chat = rng.random() < chat_rate
        late = rng.random() < late_rate
        duration = rng.randint(20, _MAX_DURATION)
        containment = rng.choice(CONTAINMENT_TYPES)
        records.append(
            SessionRecord(
                session_id=session_id,
                start=float(started),
                end=float(started + duration),
                channel=CHAT if chat else VOICE,
                user_id=_uuidish("u", seed, "user-of", session_id),
                containment=containment,
                visible_at=float(started) + (late_delay if late else 0.0),
            )
        )
    return tuple(records)


def session_entry(cfg: SimConfig, record: SessionRecord, now: float) -> dict[str, Any]:
    """One element of getSessions' ``sessions``."""
    closed = record.end <= now
    return {
        "sessionId": record.session_id,
        "botId": cfg.bot_id,
        "channel": record.channel,
        "userId": record.user_id,
        "start_time": iso(record.start),
        "end_time": iso(record.end) if closed else None,
        "sessionStatus": "closed" if closed else "active",
        "containmentType": record.containment,
        "tags": {"userTags": [], "sessionTags": []},
        "language": "en",
    }


def messages(cfg: SimConfig, record: SessionRecord) -> list[dict[str, Any]]:
    """The session's conversation, oldest first: the bot speaks first, then caller and bot
    (or, after a hand-off, an agent) take turns."""
    sid = record.session_id
    rng = random.Random(int.from_bytes(_digest(cfg.seed, "conversation", sid), "big"))
    count = rng.randint(3, 30)
    # The bot hands over on one of its own turns (even indexes), half way through.
    handoff = (count // 2) & ~1 if record.containment == "agent" and count >= 4 else None
    step_ms = max(1, int((record.end - record.start) * 1000) // (count + 1))
    topic = rng.choice(_TOPICS)
    result = []
    for index in range(count):
        at_ms = int(record.start * 1000) + step_ms * (index + 1) + rng.randrange(step_ms // 2 + 1)
        incoming = index % 2 == 1
        if incoming:
            author_type, author = "USER", record.user_id
            text = f"Hi, I'm calling about {topic}." if index == 1 else rng.choice(_CALLER_LINES)
        elif index == handoff:
            author_type, author, text = "BOT", cfg.bot_id, _HANDOFF
        elif handoff is not None and index > handoff:
            author_type, author = "AGENT", _uuidish("a", cfg.seed, "agent-of", sid)
            text = rng.choice(_AGENT_LINES)
        else:
            author_type, author = "BOT", cfg.bot_id
            text = _BOT_LINES[0] if index == 0 else rng.choice(_BOT_LINES[1:])
        result.append(_message(cfg, record, index, at_ms, incoming, author_type, author, text))
    return result


def _message(
    cfg: SimConfig, record: SessionRecord, index: int, at_ms: int, incoming: bool,
    author_type: str, author: str, text: str,
) -> dict[str, Any]:
    created = iso(at_ms / 1000)
    sid = record.session_id
    return {
        "_id": _uuidish("ms", cfg.seed, "conversation", sid, index),
        "type": "incoming" if incoming else "outgoing",
        "status": "received" if incoming else "sent",
        "botId": cfg.bot_id,
        "createdBy": author,
        "createdOn": created,
        "lmodifiedOn": created,
        "sessionId": sid,
        "chnl": record.channel,
        "channels": [{"type": record.channel}],
        "components": [
            {"_id": _uuidish("cp", cfg.seed, "conversation", sid, index), "cT": "text",
             "data": {"text": text}, "thumbnails": []}
        ],
        "author": {"id": author, "type": author_type},
        "lang": "en",
        "timestampValue": at_ms,
    }


def iso(seconds: float) -> str:
    """``2025-02-11T13:57:19.000Z``: Kore's time format (UTC, milliseconds)."""
    when = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=round(seconds * 1000))
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_date(value: Any) -> float:
    """Unix seconds from ``yyyy-mm-dd`` (midnight UTC) or ISO 8601 (``Z`` or an offset;
    no offset means UTC). Raises ValueError otherwise."""
    if not isinstance(value, str) or not value or len(value) > 40:
        raise ValueError(value)
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()
