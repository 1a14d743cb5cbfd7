"""call.json beside the audio, discovery through call details, and the voicemail call skipped
when the record says there is none: end to end against the simulator."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from archiver.calldetails import normalise
from archiver.client import KoreClient, api_session
from archiver.config import Config
from archiver.discovery import Discovery
from archiver.layout import session_dir
from archiver.service import Service
from archiver.simulator import Simulator
from archiver.store import JobStore

from .conftest import assert_archived, make_config, sha256_file

DAY = 86400.0
D0 = datetime(2025, 3, 10, tzinfo=timezone.utc).timestamp()
NOW = D0 + 2 * DAY
CC_ENDPOINTS = {"v1_recordings", "v2_recordings", "voicemail", "call_details"}


def config_for(tmp_path: Path, sim: Simulator, **settings: Any) -> Config:
    values = {
        "kore__account_id": "sim-account", "call_details__requests_per_minute": 100000,
        "discovery__source": "call_details", "discovery__window": "1d", "discovery__lookback": "1d",
        "analytics__requests_per_minute": 100000, "analytics__requests_per_hour": 100000,
        "daemon__concurrency": 4,
    }
    values.update(settings)
    return make_config(tmp_path, sim, **values)


async def discover(config: Config, start: float, end: float) -> Any:
    with JobStore.open_in(config.daemon.state_dir) as store:
        async with api_session(config) as http:
            return await Discovery(config, KoreClient(config, http), store).backfill(start, end)


def calls_by_endpoint(sim: Simulator) -> dict[str, int]:
    counts: dict[str, int] = {}
    for (endpoint, status), n in sim.stats.api_calls.items():
        if status == 200:
            counts[endpoint] = counts.get(endpoint, 0) + n
    return counts


def call_json(config: Config, session_id: str) -> dict[str, Any]:
    directory = session_dir(config.archive.root, config.kore.bot_id, "session", session_id)
    return json.loads((directory / "call.json").read_text())


async def test_discovered_calls_are_archived_with_their_record_and_no_needless_voicemail_call(simulator, tmp_path: Path) -> None:
    sim = await simulator(sessions_per_day=120, now=NOW, voicemail_rate=0.2, call_details_per_minute=0)
    config = config_for(tmp_path, sim)
    result = await discover(config, D0, D0 + DAY - 1)
    voice = {r.session_id for r in sim.population(D0, D0 + DAY - 1) if r.channel == "korevg"}
    with JobStore.open_in(config.daemon.state_dir) as store:
        assert {job.ext_id for job in store.iter_jobs()} == voice  # chat sessions are not queued
    assert result.added == len(voice) and result.ignored == 0
    discovery_calls = calls_by_endpoint(sim)["call_details"]
    stats = await Service(config, burst=True).run()
    assert stats.done == len(voice) and stats.failed == 0
    counts = calls_by_endpoint(sim)
    with_voicemail = {sid for sid in voice if sim.session(sid).voicemails}
    # No call-details call while archiving; one voicemail call per session that has one.
    assert counts["call_details"] == discovery_calls
    assert counts["voicemail"] == len(with_voicemail) and counts["v2_recordings"] == len(voice)
    for sid in voice:
        manifest = assert_archived(config, sim, sid)
        document = call_json(config, sid)
        [entry] = [f for f in manifest["files"] if f["path"] == "call.json"]
        directory = session_dir(config.archive.root, config.kore.bot_id, "session", sid)
        assert entry["sha256"] == sha256_file(directory / "call.json") and entry["kind"] == "call_details"
        assert document["record"]["sessionId"] == sid
        assert document["normalised"]["voicemail"] == (sid in with_voicemail)
        assert manifest["parts"]["voicemail"]["status"] == ("success" if sid in with_voicemail else "no_voicemail")
        assert document["normalised"] == normalise(document["record"])


async def test_once_fetches_call_json_for_given_ids_and_leaves_out_listed_fields(simulator, tmp_path: Path) -> None:
    sim = await simulator(sessions_per_day=1500, now=NOW, voicemail_rate=0.5, call_details_per_minute=0)
    config = config_for(
        tmp_path, sim, discovery__source="get_sessions",
        call_details__omit_fields=["metaInfo.caller", "metaInfo.callee", "metaInfo.dialedNumber", "caller", "callee"],
    )
    from archiver.cli import run_once

    # Six calls a few minutes apart: the lookup of the first finds the others' records too.
    ids = sorted(r.session_id for r in sim.population(D0 + 3600, D0 + 4000) if r.channel == "korevg")[:6]
    assert await run_once(config, [("session", sid) for sid in ids]) == 0
    for sid in ids:
        document = call_json(config, sid)
        text = json.dumps(document)
        assert "metaInfo" in document["record"] and "caller" not in document["record"]["metaInfo"]
        assert "caller" not in document["normalised"] and "callee" not in document["normalised"]
        assert document["normalised"]["dialed_number"] is None and "+1" not in json.dumps(document["record"]["metaInfo"])
        assert document["normalised"]["direction"] in {"Inbound", "Outbound"}, text
    # Nor are they kept in the job store.
    with JobStore.open_in(config.daemon.state_dir) as store:
        stored = [store.call_record(sid) for sid in ids]
    assert all(text is not None and '"caller"' not in text for text in stored)
    # One lookup served the neighbours too: fewer call-details calls than sessions.
    assert calls_by_endpoint(sim)["call_details"] < len(ids)


async def test_the_voicemail_skip_can_be_turned_off(simulator, tmp_path: Path) -> None:
    sim = await simulator(sessions_per_day=30, now=NOW, voicemail_rate=0.3, call_details_per_minute=0)
    config = config_for(tmp_path, sim, call_details__skip_voicemail=False)
    await discover(config, D0, D0 + DAY - 1)
    stats = await Service(config, burst=True).run()
    assert stats.done > 0 and calls_by_endpoint(sim)["voicemail"] == stats.done
