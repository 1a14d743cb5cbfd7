"""Call Details v2: the vendor's record of every call, and ``call.json`` beside the audio.

``POST {host}/agentassist/api/public/analytics/account/{accountId}/v2/interactionDetails``
(scope "SmartAssist Analytics") lists the calls started in a date range. Its quirks, all
handled here:

- the path root is not the bot's, and the account id goes in the path *and* the
  ``accountId`` header, the bot id in the ``iId`` header;
- ``offset`` counts pages (at most 10) and ``limit`` is at most 100, so one query reaches
  1,100 records. A busier range is cut in two until every part fits (:meth:`CallDetails.walk`);
- ``startDate``/``endDate`` are ``"yyyy-mm-dd HH:mm:ss"`` in the zone of ``timeZoneOffset``
  (always 0 here: UTC). Whether ``endDate`` includes its own second is not documented, so
  the two halves of a split share their middle second and records are de-duplicated by
  ``sessionId``: a call on the boundary is asked for twice and kept once, whichever way the
  vendor reads the range;
- every field is optional. A record without a valid ``sessionId`` is dropped (and counted);
  an answer without a ``data`` list is refused, never read as "no calls".

The calls spend a budget of their own (``[call_details]``): the vendor's documents do not say
whether they share the recordings' bucket.

:class:`CallRecords` is what archiving uses: the stored record of a session (discovery
through call details stores every record it finds, so those sessions cost no call), else one
query around the session's time, whose records are all stored for the sessions nearby.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from yarl import URL

from .client import KoreClient
from .config import Config
from .errors import ProtocolError
from .ids import object_id_time, session_id_problem
from .ratelimit import RateLimiter
from .store import JobStore

log = logging.getLogger("archiver.calldetails")

PATH = "/agentassist/api/public/analytics/account/{account}/v2/interactionDetails"
MAX_LIMIT = 100
MAX_OFFSET = 10  # pages 0..10: eleven pages per query
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_RANGE = 7 * 86400  # the API refuses a longer range
CALL_FILE = "call.json"
CALL_FORMAT = 1
VOICE = "voice"
ENDPOINT = "call_details"


def call_details_limiter(config: Config) -> RateLimiter:
    """The Call Details budget of ``[call_details]``."""
    return RateLimiter(config.call_details.requests_per_minute, config.call_details.rate_window)


def api_time(seconds: int) -> str:
    """``yyyy-mm-dd HH:mm:ss`` in UTC, the format the API takes."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime(DATE_FORMAT)


@dataclass(frozen=True)
class CallPage:
    """One page: its records as returned and ``numResults`` (None when absent)."""

    records: tuple[dict[str, Any], ...]
    total: int | None


@dataclass
class WalkStats:
    """What a walk cost and found."""

    calls: int = 0
    windows: int = 0  # ranges paged to their end
    splits: int = 0
    records: int = 0  # distinct records with a valid sessionId
    invalid: int = 0  # records dropped for a missing or invalid sessionId
    truncated: list[tuple[int, int]] = field(default_factory=list)  # one-second ranges over 1,100 calls


class CallDetails:
    """The Call Details v2 client of one account."""

    def __init__(self, client: KoreClient, *, limiter: RateLimiter | None = None, page_size: int | None = None) -> None:
        config = client.config
        if not config.kore.account_id:
            raise ValueError("Call Details need kore.account_id")
        self.client = client
        self.account_id = config.kore.account_id
        self.bot_id = config.kore.bot_id
        self.limiter = limiter or call_details_limiter(config)
        self.page_size = page_size or config.call_details.page_size
        self.url = URL(config.kore.host.rstrip("/") + PATH.format(account=self.account_id))

    async def page(self, start: int, end: int, offset: int) -> CallPage:
        """One page (``offset`` counted in pages) of the calls started in [start, end] (UTC seconds)."""
        if not 0 <= offset <= MAX_OFFSET:
            raise ValueError(f"offset must be between 0 and {MAX_OFFSET}")
        body = {"startDate": api_time(start), "endDate": api_time(end), "timeZoneOffset": 0, "channels": [VOICE]}
        data = await self.client.request_json(
            ENDPOINT, "POST", "", {"offset": str(offset), "limit": str(self.page_size)}, body=body,
            limiter=self.limiter, url=self.url, headers={"accountId": self.account_id, "iId": self.bot_id},
        )
        records = data.get("data")
        if not isinstance(records, list):
            # "{}" must not read as "no calls that day": coverage would prove a lie.
            raise ProtocolError(f"{ENDPOINT}: the answer has no 'data' list")
        total = data.get("numResults")
        if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
            raise ProtocolError(f"{ENDPOINT}: 'numResults' is not a count")
        return CallPage(tuple(r for r in records if isinstance(r, dict)), total)

    async def walk(self, start: float, end: float, stats: WalkStats | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """Every call started in [start, end], each once, a page of new records at a time.

        A range whose records do not fit in one query is cut in two at its middle second,
        both halves keeping that second, until each fits; see the module docstring.
        """
        stats = stats if stats is not None else WalkStats()
        seen: set[str] = set()
        # Oldest range first: a stack whose top is the earliest half.
        todo = [(int(start), int(end if end == int(end) else int(end) + 1))]
        while todo:
            low, high = todo.pop()
            if high - low > MAX_RANGE:
                middle = low + MAX_RANGE
                todo += [(middle, high), (low, middle)]
                continue
            complete = True
            reach = self.page_size * (MAX_OFFSET + 1)
            for offset in range(MAX_OFFSET + 1):
                page = await self.page(low, high, offset)
                stats.calls += 1
                _check_range(page.records, low, high)
                fresh = self._fresh(page.records, seen, stats)
                if fresh:
                    yield fresh
                full = len(page.records) >= self.page_size
                if offset == 0 and full and page.total is not None and page.total > reach and high - low >= 2:
                    complete = False  # known too busy: no need to page it
                    break
                # Only a short page ends a range: numResults is a hint, not a promise.
                if not full:
                    break
            else:
                complete = False  # eleven full pages: there may be more
            if complete:
                stats.windows += 1
            elif high - low >= 2:
                middle = (low + high) // 2
                stats.splits += 1
                todo += [(middle, high), (low, middle)]
            else:
                stats.windows += 1
                stats.truncated.append((low, high))
                log.error(
                    "call details: over %d calls started within %s..%s; only %d could be read",
                    reach, api_time(low), api_time(high), reach,
                )

    @staticmethod
    def _fresh(records: tuple[dict[str, Any], ...], seen: set[str], stats: WalkStats) -> list[dict[str, Any]]:
        fresh = []
        for record in records:
            session_id = record.get("sessionId")
            if not isinstance(session_id, str) or session_id_problem(session_id) is not None:
                stats.invalid += 1
                continue
            if session_id not in seen:
                seen.add(session_id)
                fresh.append(record)
        stats.records += len(fresh)
        return fresh


def vendor_deadline(config: Config, session_id: str) -> float | None:
    """When the vendor deletes a session's recordings: its ObjectId time plus
    ``kore.vendor_retention``; None when either is unknown."""
    created = object_id_time(session_id)
    if created is None or not config.kore.vendor_retention:
        return None
    return created.timestamp() + config.kore.vendor_retention


def _check_range(records: tuple[dict[str, Any], ...], low: int, high: int) -> None:
    """Refuse a page of calls that all started outside the range asked for: a server that
    ignores the dates would make every half of a split answer the same, down to each second."""
    times = [t for t in (record_time(r) for r in records) if t is not None]
    if times and all(not low - 1 <= t <= high + 1 for t in times):
        raise ProtocolError(f"{ENDPOINT}: every call on the page started outside the range asked for")


# -- the record's content ----------------------------------------------------------------------


def is_voice(record: dict[str, Any]) -> bool:
    """A voice call (``channel`` "Voice"; a record without a channel counts as voice)."""
    channel = record.get("channel")
    return channel is None or (isinstance(channel, str) and channel.lower() == VOICE)


def has_voicemail(record: dict[str, Any]) -> bool | None:
    """``isVoicemail``: True for "YES", False for "NO", None when absent or anything else."""
    value = record.get("isVoicemail")
    if isinstance(value, str) and value.strip().upper() in {"YES", "NO"}:
        return value.strip().upper() == "YES"
    return None


def omit(record: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``record`` without the dotted ``paths`` (applied inside lists too)."""
    result = json.loads(json.dumps(record))
    for path in paths:
        _drop(result, path.split("."))
    return result


def _drop(node: Any, keys: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _drop(item, keys)
    elif isinstance(node, dict):
        if len(keys) == 1:
            node.pop(keys[0], None)
        elif keys[0] in node:
            _drop(node[keys[0]], keys[1:])


def record_time(record: dict[str, Any], key: str = "sessionStartTime") -> float | None:
    """Unix seconds of a time field: ISO 8601, ``yyyy-mm-dd HH:mm:ss`` (UTC) or epoch ms/s."""
    value = record.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value / 1000.0 if value > 10**11 else float(value)
    if not isinstance(value, str) or not value or len(value) > 40:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def session_start(record: dict[str, Any]) -> float | None:
    """When the call started: ``sessionStartTime``, else the session id's ObjectId time."""
    started = record_time(record)
    if started is None:
        created = object_id_time(str(record.get("sessionId", "")))
        started = created.timestamp() if created else None
    return started


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _strings(values: Any) -> list[str]:
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []


def normalise(record: dict[str, Any]) -> dict[str, Any]:
    """The fields auditors ask for, under stable names, whatever the record left out."""
    meta = record.get("metaInfo") if isinstance(record.get("metaInfo"), dict) else {}
    destinations = [d for d in record.get("destinations") or [] if isinstance(d, dict)]
    agents = []
    for destination in destinations:
        agent = destination.get("respondingAgent")
        if isinstance(agent, dict):
            agents.append({k: agent.get(f) for k, f in (("id", "agentId"), ("name", "name"), ("email", "email"))})
    start, end = record_time(record), record_time(record, "sessionEndTime")
    direction = record.get("Direction", record.get("direction"))
    return {
        "session_id": record.get("sessionId"),
        "conversation_id": record.get("conversationId"),
        "channel": record.get("channel"),
        "direction": direction if isinstance(direction, str) else None,
        "caller": meta.get("caller"),
        "callee": meta.get("callee"),
        "dialed_number": meta.get("dialedNumber"),
        "start": _iso(start),
        "end": _iso(end),
        "duration_seconds": round(end - start, 3) if start is not None and end is not None else None,
        "queues": [d["queueName"] for d in destinations if isinstance(d.get("queueName"), str)],
        "agents": agents,
        "dispositions": _strings(record.get("dispositions")),
        "disposition_remarks": _strings(record.get("dispositionRemarks")),
        "voicemail": has_voicemail(record),
        "final_status": record.get("finalStatus"),
    }


def call_document(record: dict[str, Any], omitted: tuple[str, ...], fetched_at: str) -> dict[str, Any]:
    """The content of ``call.json``: the record as stored (fields in ``omitted`` already left
    out) and its normalised block without the normalised names listed in ``omitted``."""
    normalised = {k: v for k, v in normalise(record).items() if k not in omitted}
    return {
        "format": CALL_FORMAT,
        "api": "call_details_v2",
        "session_id": record.get("sessionId"),
        "fetched_at": fetched_at,
        "omitted_fields": list(omitted),
        "normalised": normalised,
        "record": record,
    }


# -- records kept in the job store -------------------------------------------------------------


class CallRecords:
    """The call-details record of a session: from the job store, else from the API."""

    def __init__(self, config: Config, store: JobStore | None, calls: CallDetails) -> None:
        """``store`` None: nothing is kept between lookups (a bare archiver in a test, say)."""
        self.config = config
        self.store = store
        self.calls = calls
        self.omitted = config.call_details.omit_fields

    def prepare(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as it may be kept: without the fields the site leaves out."""
        return omit(record, self.omitted) if self.omitted else record

    async def keep(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store voice records (fields left out first); returns what was stored."""
        kept = [self.prepare(r) for r in records if is_voice(r)]
        if self.store is not None:
            rows = [(r["sessionId"], json.dumps(r, separators=(",", ":"))) for r in kept]
            await asyncio.to_thread(self.store.put_call_records, rows)
        return kept

    async def stored(self, session_id: str) -> dict[str, Any] | None:
        """The stored record of a session, or None."""
        if self.store is None:
            return None
        text = await self.store.run(self.store.call_record, session_id)
        if text is None:
            return None
        try:
            record = json.loads(text)
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    async def record_for(self, session_id: str) -> dict[str, Any] | None:
        """The session's record: stored, else asked for around its ObjectId time (None when the
        vendor lists none there, or the id carries no time)."""
        record = await self.stored(session_id)
        if record is not None:
            return record
        created = object_id_time(session_id)
        if created is None:
            return None
        half = self.config.call_details.lookup_window / 2
        at = created.timestamp()
        found = None
        async for batch in self.calls.walk(at - half, at + half):
            for kept in await self.keep(batch):
                if kept.get("sessionId") == session_id:
                    found = kept
        return found
