"""The simulated tenant's data: sessions derived from their id, users, transcription records.

There is no registry: any session id is served, and what it holds is drawn from
``sha256(f"{seed}:{session_id}")``, so the same id gives the same session in every run and
every process.
"""

from __future__ import annotations

import hashlib
import random
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from .spec import MediaSpec, SessionSpec, SimConfig

_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
# Sessions without an ObjectId time get this one (the vendor sample's day).
_FALLBACK_TIME = datetime(2025, 2, 11, 13, 57, 19, tzinfo=timezone.utc)
_YEAR_2025 = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp())

_CALLERS = ["Anna", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas"]
_TOPICS = [
    "my last invoice", "the delivery on Tuesday", "a change to my booking", "my account password",
    "the broken charger", "a refund I was promised", "my new contract", "the appointment tomorrow",
]
_ASKS = ["Please call me back.", "Thanks, bye.", "I will try again later.", "My number is on file."]


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


def _hex(*parts: object, length: int = 32) -> str:
    return _digest(*parts).hex()[:length]


def _uuidish(prefix: str, *parts: object) -> str:
    h = _hex(*parts)
    return f"{prefix}-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def derive_session(cfg: SimConfig, session_id: str, user_id: str = "") -> SessionSpec:
    """The deterministic session behind ``session_id`` under ``cfg``."""
    rng = random.Random(int.from_bytes(_digest(cfg.seed, session_id), "big"))
    low, high = sorted((max(cfg.min_size, 44), max(cfg.max_size, 44)))
    # Every draw happens whatever the rates, so changing one rate does not reshuffle the rest.
    has_media = rng.random() >= cfg.no_media_rate
    rec = MediaSpec(f"{session_id}-merged.wav", rng.randint(low, high), rng.getrandbits(63))
    has_voicemail = rng.random() < cfg.voicemail_rate
    vm = MediaSpec(f"voicemail_{session_id}.wav", rng.randint(low, high), rng.getrandbits(63))
    text = f"Hi, this is {rng.choice(_CALLERS)} calling about {rng.choice(_TOPICS)}. {rng.choice(_ASKS)}"
    not_ready = rng.random() < cfg.faults.not_ready_rate
    return SessionSpec(
        recordings=[rec] if has_media else [],
        voicemails=[vm] if has_voicemail else [],
        transcript_texts=[text] if has_voicemail else [],
        not_ready_polls=cfg.faults.not_ready_polls if not_ready else 0,
        user_id=user_id or _uuidish("u", cfg.seed, "user-of", session_id),
    )


def user_session_ids(cfg: SimConfig, user_id: str, count: int = 2) -> list[str]:
    """``count`` ObjectId-shaped session ids that belong to ``user_id`` (time within 2025)."""
    ids = []
    for i in range(count):
        h = _digest(cfg.seed, "user", user_id, i)
        when = _YEAR_2025 + int.from_bytes(h[:4], "big") % (365 * 86400)
        ids.append(f"{when:08x}{h[4:12].hex()}")
    return ids


def session_time(session_id: str) -> datetime:
    """The creation time an ObjectId carries, or a fixed time for other ids."""
    if _OBJECT_ID.fullmatch(session_id):
        return datetime.fromtimestamp(int(session_id[:8], 16), tz=timezone.utc)
    return _FALLBACK_TIME


def voicemail_key(cfg: SimConfig, session_id: str) -> str:
    """The key the voicemail list is sent under: the sample's and the docs' spelling."""
    mode = cfg.voicemail_key
    if mode == "auto":
        mode = "space" if _digest(cfg.seed, "vmkey", session_id)[0] & 1 else "underscore"
    return "voicemail recording" if mode == "space" else "voicemail_recording"


def transcription_records(cfg: SimConfig, session_id: str, spec: SessionSpec) -> list[dict[str, Any]]:
    """Message-store records shaped like the vendor's voicemail sample, one per text."""
    return [_record(cfg, session_id, spec.user_id, i, text) for i, text in enumerate(spec.transcript_texts)]


def _record(cfg: SimConfig, session_id: str, user_id: str, index: int, text: str) -> dict[str, Any]:
    created = session_time(session_id) + timedelta(seconds=23 + index, milliseconds=32)
    iso = created.strftime("%Y-%m-%dT%H:%M:%S.") + f"{created.microsecond // 1000:03d}Z"
    author = user_id or _uuidish("u", cfg.seed, "user-of", session_id)
    channel = {
        "handle": {"userId": author, "taskBotId": cfg.bot_id},
        "from": author,
        "botInfo": {"chatBot": "SmartAssist", "taskBotId": cfg.bot_id},
        "type": "korevg",
        "cc": ["", ""],
        "bcc": ["", ""],
    }
    return {
        "_id": _uuidish("ms", cfg.seed, "msg", session_id, index),
        "botId": cfg.bot_id,
        "type": "incoming",
        "status": "received",
        "channels": [channel],
        "components": [
            {
                "_id": _uuidish("cp", cfg.seed, "cp", session_id, index),
                "cT": "text",
                "data": {"text": text},
                "thumbnails": [],
            }
        ],
        "createdBy": author,
        "createdOn": iso,
        "lmodifiedBy": author,
        "lmodifiedOn": iso,
        "sessionId": session_id,
        "isBB": 0,
        "isD": 0,
        "ms": 1,
        "chnl": "korevg",
        "lang": "en",
        "sT": 1,
        "author": {"id": author, "type": "VOICEMAIL"},
        "__lModifiedOn__": created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "timestampValue": int(created.timestamp() * 1000),
        "__v": 0,
        "resourceid": "messagestore",
    }
