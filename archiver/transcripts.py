"""Call transcripts: a session's conversation history, fetched from getMessagesV2.

The document written as ``transcript.json`` is::

    {"sessionId": "...", "messages": [...], "text": "..."}

``messages`` are the API's message records, unchanged, oldest first and each once (the API
lists newest first, and a message arriving while we page shows up twice); ``text`` is a plain
rendering, one line per message: ``<time> <speaker>: <text>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from .analytics import AnalyticsClient, around, kore_time
from .ids import object_id_time

CALLER, BOT, AGENT = "caller", "bot", "agent"
_LINE_BREAKS = re.compile(r"\s*[\r\n\u2028\u2029]+\s*")


async def fetch_transcript(analytics: AnalyticsClient, session_id: str) -> dict[str, Any]:
    """Page getMessagesV2 for one session and return the ``transcript.json`` document."""
    date_from = date_to = None
    started = object_id_time(session_id)
    if started is not None:
        date_from, date_to = around(started)
    collected: list[dict[str, Any]] = []
    seen: set[str] = set()
    skip = 0
    while True:
        page = await analytics.get_messages(
            [session_id], skip=skip, limit=analytics.messages_page_size, date_from=date_from, date_to=date_to
        )
        for message in page.items:
            key = _identity(message)
            if key not in seen:
                seen.add(key)
                collected.append(message)
        skip += len(page.items)
        if not page.more_available:
            break
    messages = chronological(collected)
    return {"sessionId": session_id, "messages": messages, "text": render_text(messages)}


def render_text(messages: Iterable[dict[str, Any]]) -> str:
    """One line per message, oldest first: ``<ISO time> <speaker>: <text>``.

    The speaker is ``caller`` for incoming messages and ``bot`` for outgoing ones, or ``agent``
    when a human agent wrote them. Text components are joined with a space and line breaks
    inside them folded, so a line is always one message; a message without text shows its
    component types in brackets.
    """
    lines = [f"{_time(m)} {speaker(m)}: {_text(m)}" for m in chronological(list(messages))]
    return "".join(line + "\n" for line in lines)


def speaker(message: dict[str, Any]) -> str:
    """``caller``, ``bot`` or ``agent`` (the raw type for anything else)."""
    kind = message.get("type")
    if kind == "incoming":
        return CALLER
    if kind == "outgoing":
        author = message.get("author")
        author_type = author.get("type") if isinstance(author, dict) else None
        return AGENT if isinstance(author_type, str) and author_type.lower() == "agent" else BOT
    return str(kind or "unknown")


def chronological(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages oldest first; those without a readable time keep their order, at the end."""
    keyed = [(_when(m), index, m) for index, m in enumerate(messages)]
    dated = sorted((k for k in keyed if k[0] is not None), key=lambda k: (k[0], k[1]))
    undated = [k for k in keyed if k[0] is None]
    return [m for _, _, m in dated + undated]


def _when(message: dict[str, Any]) -> datetime | None:
    value = message.get("createdOn")
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return None
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return None


def _time(message: dict[str, Any]) -> str:
    when = _when(message)
    return kore_time(when) if when is not None else "-"


def _text(message: dict[str, Any]) -> str:
    components = message.get("components")
    if not isinstance(components, list):
        return ""
    texts, others = [], []
    for component in components:
        if not isinstance(component, dict):
            continue
        data = component.get("data")
        text = data.get("text") if isinstance(data, dict) else None
        if component.get("cT") == "text" and isinstance(text, str):
            texts.append(_LINE_BREAKS.sub(" ", text.strip()))
        else:
            others.append(str(component.get("cT") or "component"))
    if texts:
        return " ".join(texts)
    return " ".join(f"[{kind}]" for kind in others)


def _identity(message: dict[str, Any]) -> str:
    """The message's ``_id``, or its whole content when it has none."""
    ident = message.get("_id")
    if isinstance(ident, str) and ident:
        return ident
    return json.dumps(message, sort_keys=True, default=str)
