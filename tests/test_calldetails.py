"""Call Details v2: the simulator's endpoint and its quirks, the client's window splitting,
and hostile answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from archiver.calldetails import CallDetails, WalkStats, call_document, has_voicemail, normalise, omit
from archiver.client import KoreClient, api_session
from archiver.config import Config
from archiver.errors import ProtocolError
from archiver.simulator import Simulator

from .conftest import SECRET, make_config

DAY = 86400.0
WEEK_START = datetime(2025, 3, 10, tzinfo=timezone.utc).timestamp()
NOW = WEEK_START + 8 * DAY
PATH = "/agentassist/api/public/analytics/account/sim-account/v2/interactionDetails"


def cd_config(tmp_path: Path, sim: Simulator, **settings: Any) -> Config:
    settings.setdefault("call_details__requests_per_minute", 100000)
    return make_config(tmp_path, sim, kore__account_id="sim-account", **settings)


@asynccontextmanager
async def call_details(config: Config) -> AsyncIterator[CallDetails]:
    async with api_session(config) as http:
        yield CallDetails(KoreClient(config, http))


async def walk_all(calls: CallDetails, start: float, end: float, stats: WalkStats | None = None) -> dict[str, dict]:
    found: dict[str, dict] = {}
    async for batch in calls.walk(start, end, stats):
        for record in batch:
            assert record["sessionId"] not in found, "a record was yielded twice"
            found[record["sessionId"]] = record
    return found


def voice_ids(sim: Simulator, start: float, end: float) -> set[str]:
    return {r.session_id for r in sim.population(start, end) if r.channel == "korevg"}


async def raw_call(sim: Simulator, body: Any, *, query: str = "offset=0&limit=100", path: str = PATH,
                   headers: dict[str, str] | None = None, scope_ok: bool = True) -> tuple[int, Any]:
    """One hand-made request, to see the simulator's own answers to malformed ones."""
    import jwt

    token = jwt.encode({"appId": sim.config.client_id, "sub": "t"}, SECRET, algorithm="HS256")
    sent = {"auth": token, "accountId": "sim-account", "iId": sim.config.bot_id}
    sent.update(headers or {})
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sim.api_url}{path}?{query}", json=body, headers={k: v for k, v in sent.items() if v}) as resp:
            return resp.status, await resp.json(content_type=None)


def body(start: str = "2025-03-11 00:00:00", end: str = "2025-03-11 23:59:59", **extra: Any) -> dict[str, Any]:
    return {"startDate": start, "endDate": end, "timeZoneOffset": 0, **extra}


# -- the simulator ------------------------------------------------------------------------------


async def test_simulator_serves_the_quirks(simulator) -> None:
    sim = await simulator(sessions_per_day=300, now=NOW, call_details_per_minute=0)
    status, answer = await raw_call(sim, body())
    assert status == 200 and answer["numResults"] > 100 and len(answer["data"]) == 100
    day = datetime(2025, 3, 11, tzinfo=timezone.utc).timestamp()
    every = {r.session_id for r in sim.population(day, day + DAY - 1)}
    assert answer["numResults"] == len(every)  # chat records too without a channels filter
    # offset counts pages: page 1 continues where page 0 stopped.
    _, second = await raw_call(sim, body(), query="offset=1&limit=100")
    assert not {r["sessionId"] for r in answer["data"]} & {r["sessionId"] for r in second["data"]}
    # The alias path serves the same.
    assert (await raw_call(sim, body(), path=PATH.replace("interactionDetails", "calldetails")))[1] == answer
    for query in ("offset=11&limit=100", "offset=0&limit=101", "offset=-1&limit=10", "offset=0&limit=0"):
        assert (await raw_call(sim, body(), query=query))[0] == 412, query
    for bad in (body(end="2025-03-18 00:00:01"), body(start="2025-03-11T00:00:00Z"), body(end="2025-03-10 00:00:00"),
                {"startDate": "2025-03-11 00:00:00"}, body(timeZoneOffset="0")):
        assert (await raw_call(sim, bad))[0] == 412, bad
    assert (await raw_call(sim, body(), headers={"accountId": ""}))[0] == 412
    assert (await raw_call(sim, body(), headers={"iId": ""}))[0] == 401  # no bot: bad SDK credentials
    assert (await raw_call(sim, body(), path=PATH.replace("sim-account", "other")))[0] == 401
    # timeZoneOffset: minutes, minus east of GMT (India is -330).
    _, india = await raw_call(sim, body("2025-03-11 05:30:00", "2025-03-12 05:29:59", timeZoneOffset=-330))
    assert india["numResults"] == answer["numResults"]
    voice = await raw_call(sim, body(channels=["voice"]))
    assert all(r["channel"] == "Voice" for r in voice[1]["data"])
    sim.config.scopes = frozenset({"SmartAssist Recordings"})
    assert (await raw_call(sim, body()))[1]["errors"][0]["msg"] == "Permission denied. Scope is incorrect!"


async def test_records_agree_with_the_other_endpoints(simulator, tmp_path: Path) -> None:
    sim = await simulator(sessions_per_day=200, now=NOW, voicemail_rate=0.3, call_details_per_minute=0)
    config = cd_config(tmp_path, sim)
    async with call_details(config) as calls:
        found = await walk_all(calls, WEEK_START, WEEK_START + DAY)
    assert set(found) == voice_ids(sim, WEEK_START, WEEK_START + DAY)
    flags = {sid: has_voicemail(r) for sid, r in found.items()}
    assert {sid for sid, f in flags.items() if f} == {sid for sid in found if sim.session(sid).voicemails}
    assert True in flags.values() and False in flags.values()
    for sid, record in found.items():
        entry = sim.record(sid)
        assert record["sessionStartTime"].startswith(datetime.fromtimestamp(entry.start, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    normals = [normalise(r) for r in found.values()]
    assert {n["direction"] for n in normals} == {"Inbound", "Outbound"}
    assert any(n["agents"] and n["agents"][0]["email"] for n in normals)
    assert any(n["dispositions"] for n in normals) and any(n["queues"] for n in normals)


# -- the client: splitting ----------------------------------------------------------------------


@pytest.mark.parametrize("exclusive", [False, True])
async def test_a_busy_week_is_found_completely(simulator, tmp_path: Path, exclusive: bool) -> None:
    # About 1,300 voice calls a day: over what one query reaches, so every day is split.
    sim = await simulator(sessions_per_day=1750, now=NOW, call_details_end_exclusive=exclusive, call_details_per_minute=0)
    config = cd_config(tmp_path, sim)
    stats = WalkStats()
    async with call_details(config) as calls:
        found = await walk_all(calls, WEEK_START, WEEK_START + 7 * DAY, stats)
    expected = voice_ids(sim, WEEK_START, WEEK_START + 7 * DAY)
    assert min(len(voice_ids(sim, WEEK_START + d * DAY, WEEK_START + (d + 1) * DAY - 1)) for d in range(7)) > 1100
    assert set(found) == expected
    assert stats.splits >= 7 and not stats.truncated and stats.records == len(expected)
    # Each range asked for reaches at most 1,100 records and spans at most 7 days.
    requests = [r for r in sim.requests if r.path == PATH]
    assert len(requests) == stats.calls
    assert all(int(r.query["offset"]) <= 10 and int(r.query["limit"]) <= 100 for r in requests)
    assert all(r.headers["accountId"] == "sim-account" and r.headers["iId"] == sim.config.bot_id for r in requests)


async def test_calls_on_the_split_second_are_kept_once(simulator, tmp_path: Path) -> None:
    """Many calls in the very second a busy range is cut at: asked for twice, kept once."""
    from archiver.simulator import SessionSpec

    sim = await simulator(sessions_per_day=0, now=NOW, call_details_per_minute=0)
    config = cd_config(tmp_path, sim, call_details__page_size=10)
    start, end = int(WEEK_START), int(WEEK_START) + 1000
    middle = (start + end) // 2
    ids = [f"{middle:08x}{n:016x}" for n in range(60)] + [f"{start + 3 * n:08x}{n:016x}" for n in range(80)]
    for sid in ids:
        sim.config.sessions[sid] = SessionSpec([], [], [])
    for exclusive in (False, True):
        sim.config.call_details_end_exclusive = exclusive
        stats = WalkStats()
        async with call_details(config) as calls:
            found = await walk_all(calls, start, end, stats)
        assert set(found) == set(ids) and stats.splits >= 1, exclusive


# -- hostile answers ----------------------------------------------------------------------------


@asynccontextmanager
async def crafted(answer: Any) -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.StreamResponse:
        payload = answer(request) if callable(answer) else answer
        return web.json_response(payload)

    app = web.Application()
    app.router.add_post(PATH, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def crafted_config(tmp_path: Path, url: str) -> Config:
    from archiver.config import load_config

    path = tmp_path / "c.toml"
    path.write_text(
        f'[kore]\nhost = "{url}"\nbot_id = "st-b"\nclient_id = "cs-c"\naccount_id = "sim-account"\n'
        f'[archive]\nroot = "{tmp_path / "a"}"\n[daemon]\nstate_dir = "{tmp_path / "s"}"\n'
        '[http]\nmax_attempts = 1\n[call_details]\nrequests_per_minute = 100000\n'
    )
    return load_config(path, env={"ARCHIVER_KORE_CLIENT_SECRET": "x"})


@pytest.mark.parametrize("answer", [{}, {"data": {}}, {"data": None, "numResults": 3}, {"data": [], "numResults": "3"}])
async def test_an_answer_without_a_data_list_is_refused(tmp_path: Path, answer: Any) -> None:
    async with crafted(answer) as url:
        async with call_details(crafted_config(tmp_path, url)) as calls:
            with pytest.raises(ProtocolError):
                await walk_all(calls, WEEK_START, WEEK_START + 60)


async def test_a_second_with_more_calls_than_a_query_reaches_is_reported(tmp_path: Path) -> None:
    """2,000 calls "in one second" and numResults absent: split to one second, then reported."""
    records = [{"sessionId": f"{int(WEEK_START):08x}{n:016x}", "channel": "Voice"} for n in range(2000)]

    def answer(request: web.Request) -> dict[str, Any]:
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        return {"data": records[offset * limit : (offset + 1) * limit] + [{"sessionId": "../x"}, "junk"]}

    async with crafted(answer) as url:
        stats = WalkStats()
        async with call_details(crafted_config(tmp_path, url)) as calls:
            found = await walk_all(calls, WEEK_START, WEEK_START + 4, stats)
    assert len(found) == 1100 and stats.truncated and stats.invalid > 0


def test_left_out_fields_are_gone_from_record_and_normalised_block() -> None:
    record = {"sessionId": "a" * 24, "metaInfo": {"caller": "+15550001", "callee": "+1800"},
              "destinations": [{"queueName": "Q", "respondingAgent": {"email": "x@y", "name": "N"}}]}
    kept = omit(record, ("metaInfo.caller", "destinations.respondingAgent.email"))
    document = call_document(kept, ("metaInfo.caller", "destinations.respondingAgent.email", "callee"), "t")
    text = json.dumps(document)
    assert "+15550001" not in text and "x@y" not in text
    assert "callee" not in document["normalised"] and document["normalised"]["caller"] is None
    assert document["record"]["metaInfo"] == {"callee": "+1800"} and record["metaInfo"]["caller"] == "+15550001"


async def test_a_server_that_ignores_the_dates_cannot_make_the_walk_explode(tmp_path: Path) -> None:
    """The same full page whatever is asked, and a huge numResults: halving would never end."""
    page = [{"sessionId": f"{int(WEEK_START):08x}{n:016x}", "channel": "Voice",
             "sessionStartTime": "2025-03-10T00:00:00.000Z"} for n in range(100)]
    requests: list[int] = []

    def answer(request: web.Request) -> dict[str, Any]:
        requests.append(1)
        return {"numResults": 10**9, "data": page}

    async with crafted(answer) as url:
        async with call_details(crafted_config(tmp_path, url)) as calls:
            with pytest.raises(ProtocolError, match="outside the range"):
                await walk_all(calls, WEEK_START, WEEK_START + 7 * DAY)
    assert len(requests) < 60  # one walk down the left edge, not one call per second


async def test_a_numresults_that_lies_small_does_not_end_the_paging(tmp_path: Path) -> None:
    records = [{"sessionId": f"{int(WEEK_START):08x}{n:016x}", "channel": "Voice"} for n in range(250)]

    def answer(request: web.Request) -> dict[str, Any]:
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        return {"numResults": 0, "data": records[offset * limit : (offset + 1) * limit]}

    async with crafted(answer) as url:
        async with call_details(crafted_config(tmp_path, url)) as calls:
            found = await walk_all(calls, WEEK_START, WEEK_START + 60)
    assert len(found) == 250
