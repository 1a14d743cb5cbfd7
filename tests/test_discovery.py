"""Session discovery by date, the Analytics budget, and call transcripts, against the simulator."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from archiver.analytics import AnalyticsClient, Page, analytics_limiter, utc
from archiver.client import KoreClient, api_session
from archiver.config import Config
from archiver.discovery import WATERMARK_KEY, Discovery, DiscoveryResult, plan_windows
from archiver.errors import TransientError
from archiver.ratelimit import MultiWindowLimiter
from archiver.simulator import Simulator
from archiver.store import JobStore
from archiver.transcripts import fetch_transcript, render_text

from .conftest import make_config

DAY, HOUR = 86400.0, 3600.0
# An instant off every hour and day boundary, so windows cut days at odd places.
T_END = datetime(2025, 3, 31, 3, 25, 45, tzinfo=timezone.utc).timestamp()
NO_ANALYTICS_LIMIT = {"analytics_per_minute": 0, "analytics_per_hour": 0}
DISCOVERY = {
    "discovery__page_size": 7, "discovery__window": "3d", "discovery__overlap": "2h", "discovery__lookback": "1d",
    "analytics__requests_per_minute": 100000, "analytics__requests_per_hour": 100000,
}


@asynccontextmanager
async def kore(config: Config, **analytics_options: Any) -> AsyncIterator[tuple[KoreClient, AnalyticsClient]]:
    """A KoreClient for ``config`` and an AnalyticsClient on it."""
    async with api_session(config) as http:
        client = KoreClient(config, http)
        yield client, AnalyticsClient(client, **analytics_options)


def voice_ids(sim: Simulator, start: float, end: float, at: float) -> set[str]:
    """The voice sessions started in [start, end] that getSessions lists at ``at``."""
    return {r.session_id for r in sim.population(start, end) if r.channel == "korevg" and r.visible_at <= at}


def queued(store: JobStore) -> list[str]:
    return [job.ext_id for job in store.iter_jobs()]


def session_calls(sim: Simulator) -> list[Any]:
    return [r for r in sim.requests if r.path.endswith("/getSessions")]


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def watermark(store: JobStore) -> float:
    value = store.get_meta(WATERMARK_KEY)
    assert value is not None
    return seconds(value)


# -- windows and the limiter ----------------------------------------------------------------


def test_windows_cover_the_range_and_share_a_second() -> None:
    windows = list(plan_windows(0.0, 10 * DAY + 5, 3 * DAY))
    assert [end for _, end in windows] == [3 * DAY, 6 * DAY, 9 * DAY, 10 * DAY + 5]
    assert [start for start, _ in windows] == [0.0, 3 * DAY - 1, 6 * DAY - 1, 9 * DAY - 1]
    assert list(plan_windows(5.0, 5.0, DAY)) == []
    # Even a window configured just under 7 days stays clear of getSessions' limit, edge included.
    assert all(end - start < 7 * DAY - 30 for start, end in plan_windows(0.0, 30 * DAY, 7 * DAY - 0.5))


def test_multi_window_limiter_keeps_every_window() -> None:
    now = [0.0]
    limiter = MultiWindowLimiter([(3, 10.0), (2, 1.0)], margin=0.0, clock=lambda: now[0])
    assert (limiter.limit, limiter.window) == (2, 1.0)  # the shortest window is the base one
    for at in (0.0, 0.0):
        now[0] = at
        assert limiter.delay() == 0
        asyncio.run(limiter.acquire())
    assert limiter.delay() == pytest.approx(1.0)  # the minute-like window is full
    now[0] = 1.5
    asyncio.run(limiter.acquire())
    now[0] = 2.6  # the short window has room again, the long one (3 in 10 s) has not
    assert limiter.delay() == pytest.approx(10.0 - 2.6)
    now[0] = 10.0
    assert limiter.delay() == 0


# -- discovery -----------------------------------------------------------------------------


@pytest.mark.parametrize("page_max", [100, 5])  # 5: the server cuts our pages of 7
async def test_backfill_finds_every_voice_session_once(simulator, tmp_path: Path, page_max: int) -> None:
    sim = await simulator(sessions_per_day=12, chat_session_rate=0.3, sessions_page_max=page_max, now=T_END,
                          **NO_ANALYTICS_LIMIT)
    config = make_config(tmp_path, sim, **DISCOVERY)
    start, end = T_END - 30 * DAY, T_END
    expected = voice_ids(sim, start, end, T_END)
    chats = {r.session_id for r in sim.population(start, end) if r.channel == "rtm"}
    assert len(expected) > 200 and len(chats) > 50
    async with kore(config) as (client, analytics):
        with JobStore.open_in(config.daemon.state_dir) as store:
            result = await Discovery(config, client, store, analytics=analytics).backfill(utc(start), utc(end))
            ids = queued(store)
            assert store.get_meta(WATERMARK_KEY) is None  # a backfill leaves the watermark alone
    assert sorted(ids) == sorted(expected)  # every voice session, each once, and no chat session
    assert result.added == len(expected) and result.seen == result.added + result.known
    assert result.ignored >= len(chats)
    calls = session_calls(sim)
    assert result.windows == 10 and result.pages == len(calls) > 5 * result.windows
    assert sim.stats.api_calls[("get_sessions", 200)] == len(calls)
    spans = sorted((seconds(c.body["dateFrom"]), seconds(c.body["dateTo"])) for c in calls if c.body["skip"] == 0)
    assert spans[0][0] == start and spans[-1][1] == end
    assert all(0 < b - a < 7 * DAY for a, b in spans)
    assert all(nxt[0] <= prev[1] for prev, nxt in zip(spans, spans[1:]))  # no gap between windows


async def test_late_sessions_are_found_by_the_next_run(simulator, tmp_path: Path) -> None:
    first, second = T_END, T_END + 1.5 * HOUR
    sim = await simulator(sessions_per_day=200, late_session_rate=0.5, late_session_delay=1.5 * HOUR, now=first,
                          **NO_ANALYTICS_LIMIT)
    config = make_config(tmp_path, sim, **{**DISCOVERY, "discovery__window": "6h"})
    clock = [first]
    async with kore(config) as (client, analytics):
        with JobStore.open_in(config.daemon.state_dir) as store:
            result = await Discovery(config, client, store, clock=lambda: clock[0], analytics=analytics).run()
            assert sorted(queued(store)) == sorted(voice_ids(sim, first - DAY, first, first))
            assert watermark(store) == first
        assert result.windows == 4 and result.added == result.seen
        missed = voice_ids(sim, first - DAY, first, second) - voice_ids(sim, first - DAY, first, first)
        assert len(missed) >= 3  # listed only after the first run

        clock[0] = sim.config.now = second
        before = len(session_calls(sim))
        with JobStore.open_in(config.daemon.state_dir) as store:  # a new connection, a new Discovery
            result = await Discovery(config, client, store, clock=lambda: clock[0], analytics=analytics).run()
            ids = queued(store)
            assert watermark(store) == second
    assert sorted(ids) == sorted(voice_ids(sim, first - DAY, second, second))
    assert missed <= set(ids)
    resumed = session_calls(sim)[before]
    assert seconds(resumed.body["dateFrom"]) == first - 2 * HOUR  # the persisted watermark less the overlap
    assert result.added == len(ids) - len(voice_ids(sim, first - DAY, first, first))
    assert result.known > 0  # the overlap lists sessions again; they are not queued twice


async def test_watermark_advances_only_after_a_window_is_complete(simulator, tmp_path: Path) -> None:
    sim = await simulator(sessions_per_day=100, now=T_END, **NO_ANALYTICS_LIMIT)
    config = make_config(tmp_path, sim, **{**DISCOVERY, "discovery__window": "6h"})

    class Failing(AnalyticsClient):
        windows: list[datetime] = []

        async def get_sessions(self, date_from: datetime, date_to: datetime, **kwargs: Any) -> Page:
            if date_to not in self.windows:
                self.windows.append(date_to)
            if len(self.windows) == 3 and kwargs["skip"] > 0:  # the third window's second page
                raise TransientError("get_sessions: connection failed")
            return await super().get_sessions(date_from, date_to, **kwargs)

    async with api_session(config) as http:
        client = KoreClient(config, http)
        with JobStore.open_in(config.daemon.state_dir) as store:
            discovery = Discovery(config, client, store, clock=lambda: T_END, analytics=Failing(client))
            with pytest.raises(TransientError):
                await discovery.run()
            completed = Failing.windows[1].timestamp()
            assert watermark(store) == completed < T_END
            await discovery.run()  # takes up from the watermark, less the overlap
            assert watermark(store) == T_END
            assert sorted(queued(store)) == sorted(voice_ids(sim, T_END - DAY, T_END, T_END))


async def test_discovery_never_breaches_the_hourly_limit(simulator, tmp_path: Path) -> None:
    # A simulated day of runs every 30 minutes, with the budget scaled down: 20 calls per
    # 1-second "hour" and 6 per 0.25-second "minute", on both sides.
    sim = await simulator(sessions_per_day=96, now=T_END, analytics_per_minute=6, analytics_minute_window=0.25,
                          analytics_per_hour=20, analytics_hour_window=1.0)
    config = make_config(tmp_path, sim, **{
        **DISCOVERY, "discovery__window": "6h", "discovery__overlap": "1h", "discovery__lookback": "2h",
        "analytics__requests_per_minute": 6, "analytics__requests_per_hour": 20,
    })
    limiter = analytics_limiter(config.analytics, minute=0.25, hour=1.0, margin=0.05)
    clock = [T_END]
    async with kore(config, limiter=limiter) as (client, analytics):
        with JobStore.open_in(config.daemon.state_dir) as store:
            discovery = Discovery(config, client, store, clock=lambda: clock[0], analytics=analytics)
            started = time.monotonic()
            for step in range(49):
                clock[0] = sim.config.now = T_END + step * 1800
                await discovery.run()
            elapsed = time.monotonic() - started
            ids = queued(store)
    arrivals = [c.at for c in session_calls(sim)]
    assert sim.stats.analytics_rate_limited == 0
    assert len(arrivals) > 40  # more than twice the hourly budget
    assert all(b - a >= 1.0 for a, b in zip(arrivals, arrivals[20:]))  # never 21 in an "hour"
    assert all(b - a >= 0.25 for a, b in zip(arrivals, arrivals[6:]))  # never 7 in a "minute"
    assert elapsed >= len(arrivals) / 20 - 1  # the limiter made discovery wait
    assert sorted(ids) == sorted(voice_ids(sim, T_END - 2 * HOUR, clock[0], clock[0]))


async def test_the_analytics_budget_is_separate_from_the_contact_center_one(simulator, tmp_path: Path) -> None:
    sim = await simulator(sessions_per_day=24, now=T_END, rate_limit=2, rate_window=60.0,
                          analytics_per_minute=3, analytics_minute_window=60.0, analytics_per_hour=0)
    config = make_config(tmp_path, sim, **{
        **DISCOVERY, "discovery__page_size": 100, "analytics__requests_per_minute": 3,
        "kore__requests_per_minute": 2, "kore__rate_window": "60s",
    })
    async with kore(config) as (client, analytics):
        with JobStore.open_in(config.daemon.state_dir) as store:
            discovery = Discovery(config, client, store, analytics=analytics)

            async def scenario() -> None:
                await client.recordings_v2("session", "67ab573f3685d1ba99540001")
                await client.recordings_v2("session", "67ab573f3685d1ba99540002")  # Contact Center budget spent
                assert client.limiter.delay() > 50
                result = await discovery.backfill(utc(T_END - 2 * DAY), utc(T_END))  # one page per day
                assert result.pages == 1 and result.added > 0
                await analytics.get_sessions(utc(T_END - DAY), utc(T_END), skip=0, limit=1)
                await analytics.get_sessions(utc(T_END - DAY), utc(T_END), skip=1, limit=1)  # Analytics budget spent

            await asyncio.wait_for(scenario(), 10)  # nothing waited for a minute
    assert analytics.limiter is not client.limiter
    assert analytics.limiter.delay() > 50 and client.limiter.delay() > 50
    assert sim.stats.rate_limited == 0 and sim.stats.analytics_rate_limited == 0


# -- transcripts ---------------------------------------------------------------------------


def expected_text(messages: list[dict]) -> str:
    names = {("incoming", "USER"): "caller", ("outgoing", "BOT"): "bot", ("outgoing", "AGENT"): "agent"}
    return "".join(
        f"{m['createdOn']} {names[(m['type'], m['author']['type'])]}: {m['components'][0]['data']['text']}\n"
        for m in messages
    )


async def test_transcripts_match_the_conversation_across_pages(simulator, tmp_path: Path) -> None:
    sim = await simulator(sessions_per_day=24, now=T_END, **NO_ANALYTICS_LIMIT)
    config = make_config(tmp_path, sim)
    voice = [r for r in sim.population(T_END - 3 * DAY, T_END) if r.channel == "korevg"]
    agent = next(r.session_id for r in voice if r.containment == "agent" and len(sim.messages(r.session_id)) > 9)
    chat = next(r.session_id for r in sim.population(T_END - 3 * DAY, T_END) if r.channel == "rtm")
    outsider = "67ab573f3685d1ba99540001"  # not in the population: a voice session all the same
    documents = {}
    async with kore(config, messages_page_size=4) as (_, analytics):
        for session_id in (agent, outsider):
            before = len(sim.requests)
            document = documents[session_id] = await fetch_transcript(analytics, session_id)
            expected = sim.messages(session_id)
            assert document == {"sessionId": session_id, "messages": expected, "text": expected_text(expected)}
            calls = sim.requests[before:]
            assert len(calls) == math.ceil(len(expected) / 4)
            body = calls[0].body
            assert body["sessionId"] == [session_id] and body["channelType"] == "korevg" and body["limit"] == 4
            assert seconds(body["dateFrom"]) < sim.record(session_id).start < seconds(body["dateTo"])
        # getMessagesV2 is asked for voice (korevg) messages: a chat session has none.
        assert await fetch_transcript(analytics, chat) == {"sessionId": chat, "messages": [], "text": ""}
    assert " bot: Let me connect you to an agent.\n" in documents[agent]["text"]
    assert " agent: " in documents[agent]["text"]
    assert sim.stats.analytics_rate_limited == 0


async def test_transcript_pages_that_repeat_a_message_keep_it_once() -> None:
    messages = [
        {"_id": f"ms-{i}", "type": "incoming" if i % 2 else "outgoing", "createdOn": f"2025-02-11T13:57:{i:02d}.000Z",
         "components": [{"cT": "text", "data": {"text": f"line {i}"}}]}
        for i in range(5)
    ]
    newest_first = messages[::-1]
    # A message arriving while we page pushes the older ones down: ms-2 is served twice.
    pages = [Page(tuple(newest_first[0:3]), 5, True), Page(tuple(newest_first[2:5]), 5, False)]

    class Stub:
        messages_page_size = 3

        async def get_messages(self, ids: list[str], **kwargs: Any) -> Page:
            return pages.pop(0)

    document = await fetch_transcript(Stub(), "not-an-objectid")  # type: ignore[arg-type]
    assert [m["_id"] for m in document["messages"]] == [f"ms-{i}" for i in range(5)]
    assert document["text"].count("\n") == 5


def test_render_text() -> None:
    messages = [
        {"type": "outgoing", "createdOn": "2025-02-11T13:58:00.500Z", "author": {"type": "AGENT"},
         "components": [{"cT": "text", "data": {"text": "Fixed.\nAnything else?"}}]},
        {"type": "incoming", "createdOn": "2025-02-11T13:57:30Z",
         "components": [{"cT": "text", "data": {"text": "Hi"}}, {"cT": "text", "data": {"text": "there"}}]},
        {"type": "outgoing", "createdOn": "2025-02-11T13:57:19.000Z", "author": {"type": "BOT"},
         "components": [{"cT": "text", "data": {"text": "  Welcome  "}}]},
        {"type": "outgoing", "createdOn": "2025-02-11T13:57:45.000+00:00", "components": [{"cT": "template"}]},
        {"type": "incoming", "components": [{"cT": "text", "data": {"text": "no time"}}]},
    ]
    assert render_text(messages) == (
        "2025-02-11T13:57:19.000Z bot: Welcome\n"
        "2025-02-11T13:57:30.000Z caller: Hi there\n"
        "2025-02-11T13:57:45.000Z bot: [template]\n"
        "2025-02-11T13:58:00.500Z agent: Fixed. Anything else?\n"
        "- caller: no time\n"
    )
    assert render_text([]) == ""


def test_discovery_results_add_up() -> None:
    total = DiscoveryResult(windows=1, pages=2, seen=3, added=2, known=1) + DiscoveryResult(1, 1, 1, 0, 1, 4)
    assert total == DiscoveryResult(windows=2, pages=3, seen=4, added=2, known=2, ignored=4)


async def test_the_hourly_budget_survives_a_restart(tmp_path, simulator):
    """Calls made by an earlier process still count against the hour after a restart."""
    from archiver.analytics import AnalyticsClient, analytics_limiter
    from archiver.client import KoreClient, api_session
    from archiver.store import JobStore

    from .conftest import make_config

    sim = await simulator(sessions_per_day=4, analytics_per_minute=0, analytics_per_hour=0)
    config = make_config(tmp_path, sim, analytics__requests_per_minute=100, analytics__requests_per_hour=3)
    now = datetime.now(timezone.utc)
    with JobStore.open_in(config.daemon.state_dir) as store:
        async with api_session(config) as http:
            first = AnalyticsClient(KoreClient(config, http), ledger=store,
                                    limiter=analytics_limiter(config.analytics, minute=5.0, hour=600.0))
            for _ in range(3):
                await first.get_sessions(now - timedelta(hours=1), now, skip=0, limit=10)
            assert first.limiter.delay() > 500
            # A new process (new client, same store) starts with the hour already spent.
            second = AnalyticsClient(KoreClient(config, http), ledger=store,
                                     limiter=analytics_limiter(config.analytics, minute=5.0, hour=600.0))
            assert second.limiter.delay() > 500
            # Without the ledger it would not know.
            third = AnalyticsClient(KoreClient(config, http),
                                    limiter=analytics_limiter(config.analytics, minute=5.0, hour=600.0))
            assert third.limiter.delay() == 0
