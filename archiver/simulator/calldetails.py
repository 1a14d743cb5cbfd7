"""The simulated Call Details v2 records: the vendor's record of every call.

``POST /agentassist/api/public/analytics/account/{accountId}/v2/interactionDetails`` (alias
``.../v2/calldetails``) lists the sessions of the Analytics population (and the configured
ObjectId sessions) whose start falls in ``startDate``..``endDate``, oldest first. Each voice
record agrees with what the other endpoints serve for the same id: ``isVoicemail`` is "YES"
exactly when the voicemail API has a file for it, ``sessionStartTime``/``sessionEndTime``
are the sessions history's, and its agent, queue, direction and dispositions are drawn from
``sha256(seed, "calldetails", session_id)``. Chat sessions get the thinner chat record.

Quirks kept from the vendor's reference: ``offset`` counts pages (at most 10) and ``limit``
is at most 100, so one query reaches 1,100 records; dates are ``"yyyy-mm-dd HH:mm:ss"`` in
the zone ``timeZoneOffset`` names (minutes, minus east of GMT); the range is at most 7 days.
``numResults`` is the number of records the query matched (all pages).
"""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

from .analytics import CHAT, iso
from .sessions import _digest, _uuidish
from .spec import SessionRecord, SessionSpec, SimConfig

MAX_LIMIT = 100
MAX_OFFSET = 10
MAX_RANGE = 7 * 86400.0
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

AGENTS = [
    ("Maria Lopez", "maria.lopez"), ("Tom Becker", "tom.becker"), ("Aiko Tanaka", "aiko.tanaka"),
    ("Sam Okafor", "sam.okafor"), ("Lena Novak", "lena.novak"), ("Raj Mehta", "raj.mehta"),
]
QUEUES = [("Billing", "qu-billing"), ("Support", "qu-support"), ("Sales", "qu-sales"), ("Retention", "qu-retention")]
DISPOSITIONS = ["Resolved", "Callback requested", "Escalated", "Information given", "Wrong number"]
REMARKS = ["Customer satisfied.", "Follow up next week.", "Sent a confirmation e-mail.", ""]
_OWN_NUMBERS = ["+18005550100", "+18005550111", "+18005550122"]
_FINAL = {"agent": "Completed", "selfService": "Self-Service", "dropOff": "Abandoned"}


def parse_date(value: Any, offset_minutes: int) -> float:
    """Unix seconds from ``"yyyy-mm-dd HH:mm:ss"`` local to ``offset_minutes``; ValueError otherwise."""
    if not isinstance(value, str) or len(value) != 19:
        raise ValueError(value)
    local = datetime.strptime(value, DATE_FORMAT).replace(tzinfo=timezone.utc)
    # timeZoneOffset follows JavaScript's getTimezoneOffset: UTC = local + offset.
    return local.timestamp() + offset_minutes * 60


def call_record(cfg: SimConfig, record: SessionRecord, spec: SessionSpec) -> dict[str, Any]:
    """The call-details record of one session."""
    sid = record.session_id
    rng = random.Random(int.from_bytes(_digest(cfg.seed, "calldetails", sid), "big"))
    base: dict[str, Any] = {
        "conversationId": _uuidish("c", cfg.seed, "conversation-of", sid),
        "sessionId": sid,
        "sessionStartTime": iso(record.start),
        "sessionEndTime": iso(record.end),
        "userId": record.user_id,
    }
    if record.channel == CHAT:
        return {**base, "channel": "Chat", "finalStatus": _FINAL[record.containment]}
    # Every draw happens whatever the session, so one session's fields do not move another's.
    inbound = rng.random() >= 0.2
    customer = "+1" + "".join(str(rng.randrange(10)) for _ in range(10))
    own = rng.choice(_OWN_NUMBERS)
    queue_name, queue_id = rng.choice(QUEUES)
    agent_name, agent_login = rng.choice(AGENTS)
    disposition = rng.choice(DISPOSITIONS)
    remark = rng.choice(REMARKS)
    talk = rng.randint(10, max(11, int(record.end - record.start)))
    voicemail = bool(spec.voicemails)
    inbound = inbound or voicemail  # a voicemail is left by a caller
    handled = record.containment == "agent" and not voicemail
    caller, callee = (customer, own) if inbound else (own, customer)
    destination: dict[str, Any] = {
        "queueId": queue_id,
        "queueName": queue_name,
        "EnterTime": iso(record.start + 5),
    }
    if handled:
        destination["respondingAgent"] = {
            "agentId": _uuidish("a", cfg.seed, "agent", agent_login)[:26],
            "name": agent_name,
            "email": f"{agent_login}@example.com",
            "status": "accepted",
            "interactionDuration": talk,
            "afterCallWorkDuration": rng.randint(0, 120),
            "acceptedTime": iso(record.start + 8),
        }
    return {
        **base,
        "channel": "Voice",
        "isVoicemail": "YES" if voicemail else "NO",
        "Direction": "Inbound" if inbound else "Outbound",
        "finalStatus": "Voicemail" if voicemail else _FINAL[record.containment],
        "smartStatus": "Handled" if handled else "Unhandled",
        "disconnectingEvent": "customer" if rng.random() < 0.6 else "agent" if handled else "system",
        "dispositions": [disposition] if handled else [],
        "dispositionRemarks": [remark] if handled and remark else [],
        "metaInfo": {"caller": caller, "callee": callee, "dialedNumber": callee, "userId": record.user_id},
        "destinations": [destination] if record.containment != "selfService" or voicemail else [],
    }


def wanted_channel(record: dict[str, Any], channels: list[str] | None) -> bool:
    """The ``channels`` filter: lower-case names (``voice``, ``chat``); None keeps every record."""
    return channels is None or str(record.get("channel", "")).lower() in channels
