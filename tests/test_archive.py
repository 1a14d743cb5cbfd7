"""One session end to end against the simulator over loopback: APIs, downloads, files on disk."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from archiver.archive import SessionArchiver
from archiver.client import KoreClient, api_session
from archiver.errors import AuthError, NotReadyError, ProtocolError, TooLargeError
from archiver.layout import session_dir
from archiver.simulator import MediaSpec, SessionSpec

from .conftest import archiver_for, SECRET, assert_archived, make_config, sha256_file, temp_files

SID = "67ab573f3685d1ba99541234"




def on_media_request(archiver: SessionArchiver, number: int, action) -> None:
    """Run ``action`` just before the ``number``-th media request (to switch faults on or off)."""
    original = archiver.downloader._fetch_once
    calls = 0

    async def fetch_once(state, out):
        nonlocal calls
        calls += 1
        if calls == number:
            action()
        return await original(state, out)

    archiver.downloader._fetch_once = fetch_once


def media_requests(sim):
    return [r for r in sim.requests if r.server == "media"]


def api_requests(sim):
    return [r for r in sim.requests if r.server == "api"]


async def test_v2_recording_and_voicemail_with_transcription(tmp_path, simulator):
    sim = await simulator(voicemail_rate=1.0)
    config = make_config(tmp_path, sim)
    async with archiver_for(config) as archiver:
        result = await archiver.archive("session", SID)
    assert result.outcome == "done" and result.files == 2
    manifest = assert_archived(config, sim, SID)
    directory = session_dir(config.archive.root, config.kore.bot_id, "session", SID)
    assert directory == config.archive.root / config.kore.bot_id / "2025" / "02" / "11" / SID
    paths = sorted(f["path"] for f in manifest["files"])
    assert paths == sorted([
        f"recordings/{SID}-merged.wav", f"recordings/{SID}-merged.wav.json",
        f"voicemail/voicemail_{SID}.wav", f"voicemail/voicemail_{SID}.wav.json",
        f"voicemail/voicemail_{SID}.wav.transcription.json",
    ])
    sidecar = json.loads((directory / f"recordings/{SID}-merged.wav.json").read_text())
    assert sidecar["sha256"] == sim.media_sha256(sim.session(SID).recordings[0])
    assert "?" not in sidecar["source"] and sidecar["source"].startswith(sim.media_url)
    transcription = json.loads((directory / f"voicemail/voicemail_{SID}.wav.transcription.json").read_text())
    assert transcription["text"] == "\n".join(sim.session(SID).transcript_texts)
    assert transcription["records"][0]["author"]["type"] == "VOICEMAIL"
    assert manifest["parts"]["recordings"]["status"] == "success"
    assert not temp_files(tmp_path)
    # The JWT goes to the API only; the media host never sees it nor a cookie back.
    assert all("auth" in r.headers for r in api_requests(sim))
    for request in media_requests(sim):
        assert "auth" not in {k.lower() for k in request.headers}
        assert "cookie" not in {k.lower() for k in request.headers}
        assert request.headers.get("Accept-Encoding") == "identity"
    # Nothing with a query string (signature, nonce) was stored anywhere.
    for path in directory.rglob("*.json"):
        assert "s=" not in path.read_text() and "n=" not in path.read_text()


async def test_v1_inline_recording_with_escaped_slashes(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.0, escape_slashes=True, min_size=300_000, max_size=600_000)
    config = make_config(tmp_path, sim, kore__recordings_api="v1")
    async with archiver_for(config) as archiver:
        result = await archiver.archive("session", SID)
    assert result.outcome == "done"
    manifest = assert_archived(config, sim, SID)
    assert [f["path"] for f in manifest["files"] if f["kind"] == "audio"] == ["recordings/recording-1.wav"]
    assert manifest["parts"]["voicemail"]["status"] == "no_voicemail"
    assert not media_requests(sim)


async def test_recordings_by_user_id(tmp_path, simulator):
    sim = await simulator()
    config = make_config(tmp_path, sim)
    async with archiver_for(config) as archiver:
        result = await archiver.archive("user", "agent@example.com")
    sessions = sim.user_sessions("agent@example.com")
    expected = sorted(sim.media_sha256(m) for s in sessions for m in sim.session(s).recordings)
    manifest = json.loads((result.directory / "manifest.json").read_text())
    assert result.directory.parent.name == "users"
    assert sorted(f["sha256"] for f in manifest["files"] if f["kind"] == "audio") == expected
    assert "voicemail" not in manifest["parts"]


async def archive_through(tmp_path, simulator, fault: str, heal_after: int, min_size: int, max_size: int):
    """Archive SID while ``fault`` hits every media body until request ``heal_after``; the
    archive must be complete. Returns the simulator."""
    sim = await simulator(voicemail_rate=0.0, min_size=min_size, max_size=max_size)
    config = make_config(tmp_path, sim)
    setattr(sim.faults, fault, 1.0)
    async with archiver_for(config) as archiver:
        on_media_request(archiver, heal_after, lambda: setattr(sim.faults, fault, 0.0))
        await archiver.archive("session", SID)
    assert_archived(config, sim, SID)
    return sim


async def test_reset_mid_body_resumes_with_range_and_downloads_each_byte_once(tmp_path, simulator):
    sim = await archive_through(tmp_path, simulator, "media_reset", 3, 2_000_000, 3_000_000)
    ranged = [r for r in media_requests(sim) if "Range" in r.headers]
    assert ranged, "expected at least one resumed request"
    path = sim.media_path(SID, "recording", 0)
    size = sim.session(SID).recordings[0].size
    assert sim.stats.full_transfers(path, size) == 1
    # A TCP reset discards what sat unread in our socket buffer; only that is fetched again.
    assert sim.stats.redundant_bytes(path) < 512 * 1024
    assert all(int(r.headers["Range"][6:-1]) > 0 for r in ranged)
    assert not temp_files(tmp_path)


async def test_truncated_body_is_detected_and_completed(tmp_path, simulator):
    sim = await archive_through(tmp_path, simulator, "media_truncate", 2, 1_000_000, 2_000_000)
    assert sim.stats.faults_injected["media_truncate"] >= 1


async def test_ignored_range_restarts_from_zero(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.0, min_size=1_500_000, max_size=2_000_000, seed=3)
    config = make_config(tmp_path, sim)
    sim.faults.media_reset = 1.0  # first answer breaks ...
    sim.faults.ignore_range = 1.0  # ... and the resume is answered with 200 from byte 0
    async with archiver_for(config) as archiver:
        on_media_request(archiver, 2, lambda: setattr(sim.faults, "media_reset", 0.0))
        await archiver.archive("session", SID)
    assert_archived(config, sim, SID)
    second = media_requests(sim)[1]
    assert "Range" in second.headers and second.status == 200


async def test_server_errors_and_rate_limits_are_retried(tmp_path, simulator):
    sim = await simulator(voicemail_rate=1.0)
    # No Retry-After: the client must pause for a whole window (200 ms here) on each 429.
    config = make_config(tmp_path, sim, kore__rate_window="200ms", http__max_attempts=10)
    sim.faults.api_5xx = 0.3
    sim.faults.api_429 = 0.3
    sim.faults.media_5xx = 0.3
    sim.config.retry_after_header = False
    ids = [f"67ab573f3685d1ba995412{n:02d}" for n in range(8)]
    async with archiver_for(config) as archiver:
        for sid in ids:
            await archiver.archive("session", sid)
    for sid in ids:
        assert_archived(config, sim, sid)
    assert sim.stats.rate_limited >= 1
    assert sum(count for (endpoint, status), count in sim.stats.api_calls.items() if status >= 500) >= 1


async def test_slow_body_is_waited_for(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.0, min_size=100_000, max_size=150_000)
    config = make_config(tmp_path, sim)
    sim.faults.slow_body = 1.0
    sim.faults.slow_body_delay = 0.005
    async with archiver_for(config) as archiver:
        await archiver.archive("session", SID)
    assert_archived(config, sim, SID)


async def test_expired_url_is_refreshed_from_the_api(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.0)
    config = make_config(tmp_path, sim)
    sim.faults.expired_url = 1.0
    async with archiver_for(config) as archiver:
        archiver.client.recordings_v2 = _clear_fault_after_first(archiver.client.recordings_v2, sim)
        await archiver.archive("session", SID)
    assert_archived(config, sim, SID)
    v2_calls = [r for r in api_requests(sim) if r.path.endswith("/v2/recordings")]
    assert len(v2_calls) == 2
    # The expired URL was recognised from its e= and never sent to the media host.
    assert len(media_requests(sim)) == 1


def _clear_fault_after_first(func, sim):
    async def wrapper(*args, **kwargs):
        answer = await func(*args, **kwargs)
        sim.faults.expired_url = 0.0
        return answer

    return wrapper


async def test_refused_url_is_refreshed(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.0)
    config = make_config(tmp_path, sim)
    async with archiver_for(config) as archiver:
        original = archiver.client.recordings_v2
        calls = 0

        async def tampered(*args, **kwargs):
            nonlocal calls
            calls += 1
            answer = await original(*args, **kwargs)
            if calls == 1:  # a URL whose signature the media host refuses (403)
                item = answer.items[0]
                answer = type(answer)(answer.status, (type(item)(item.file_name, item.url.replace("s=", "s=x")),))
            return answer

        archiver.client.recordings_v2 = tampered
        await archiver.archive("session", SID)
    assert_archived(config, sim, SID)
    assert [r.status for r in media_requests(sim)] == [403, 200]


async def test_not_ready_then_ready(tmp_path, simulator):
    sid = "67ab573f3685d1ba99549999"
    sim = await simulator(voicemail_rate=1.0)
    sim.config.sessions[sid] = SessionSpec(
        recordings=[MediaSpec(f"{sid}-merged.wav", 50_000, 7)], voicemails=[MediaSpec("vm.wav", 9_000, 8)],
        transcript_texts=["hello"], not_ready_polls=2,
    )
    config = make_config(tmp_path, sim)
    async with archiver_for(config) as archiver:
        for _ in range(2):
            with pytest.raises(NotReadyError):
                await archiver.archive("session", sid)
        directory = archiver.directory("session", sid)
        assert not (directory / "manifest.json").exists()
        assert (directory / ".voicemail.part.json").exists()  # the ready part is kept
        await archiver.archive("session", sid)
    assert_archived(config, sim, sid)
    voicemail_calls = [r for r in api_requests(sim) if r.path.endswith("/voicemail")]
    assert len(voicemail_calls) == 1  # not asked again once archived
    assert not list(directory.glob(".*.part.json"))


async def test_no_media_and_vendor_statuses_are_recorded(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.0, no_media_rate=1.0)
    config = make_config(tmp_path, sim)
    failed_sid = "67ab573f3685d1ba99540001"
    sim.config.sessions[failed_sid] = SessionSpec(recordings=[MediaSpec("x.wav", 100, 1)], voicemails=[], transcript_texts=[], v2_status="failed")
    async with archiver_for(config) as archiver:
        result = await archiver.archive("session", SID)
        failed = await archiver.archive("session", failed_sid)
    assert result.outcome == "done" and result.parts == {"recordings": "media_unavailable", "voicemail": "no_voicemail"}
    assert failed.outcome == "failed" and "recordings" in failed.reason


async def test_hostile_file_names_stay_inside_the_session_directory(tmp_path, simulator):
    sim = await simulator()
    names = ["../x", "/etc/passwd", "dir\\file", "%2E%2E%2Ffoo", "..", "a\x00b\x01c", "n" * 300, "same.wav", "same.wav"]
    sim.config.sessions[SID] = SessionSpec(
        recordings=[MediaSpec(name, 1_000 + i, i) for i, name in enumerate(names)], voicemails=[], transcript_texts=[]
    )
    config = make_config(tmp_path, sim)
    async with archiver_for(config) as archiver:
        result = await archiver.archive("session", SID)
    directory = result.directory
    written = sorted(p.name for p in (directory / "recordings").iterdir() if not p.name.endswith(".json"))
    assert len(written) == len(names)
    for path in tmp_path.rglob("*"):
        assert path.is_relative_to(tmp_path / "archive") or path.parent == tmp_path or path.is_relative_to(tmp_path / "state")
    assert not (tmp_path / "x").exists() and not (tmp_path / "archive" / "x").exists()
    assert_archived(config, sim, SID)
    manifest = json.loads((directory / "manifest.json").read_text())
    offered = sorted(json.loads((directory / e["path"]).read_text())["offered_name"] for e in manifest["files"] if e["kind"] == "sidecar")
    assert offered == sorted(names)


async def test_size_cap_stops_the_download(tmp_path, simulator):
    sim = await simulator(voicemail_rate=0.0, min_size=200_000, max_size=200_000)
    config = make_config(tmp_path, sim, media__max_file_size="100KiB")
    async with archiver_for(config) as archiver:
        with pytest.raises(TooLargeError):
            await archiver.archive("session", SID)
    assert not temp_files(tmp_path)
    assert not list((tmp_path / "archive").rglob("*.wav"))


async def test_auth_errors_show_kores_message_after_one_fresh_signature(tmp_path, simulator):
    sim = await simulator()
    config = make_config(tmp_path, sim)
    sim.config.client_secret = "something-else"
    async with archiver_for(config) as archiver:
        with pytest.raises(AuthError, match="Invalid JWT token"):
            await archiver.archive("session", SID)
        assert archiver.client.signer.signed == 2
    sim.config.client_secret = SECRET
    sim.config.scopes = frozenset({"SmartAssist Voicemail"})
    async with archiver_for(config) as archiver:
        with pytest.raises(AuthError, match="Permission denied. Scope is incorrect!"):
            await archiver.archive("session", SID)


async def test_second_run_is_a_no_op(tmp_path, simulator):
    sim = await simulator(voicemail_rate=1.0)
    config = make_config(tmp_path, sim)
    async with archiver_for(config) as archiver:
        await archiver.archive("session", SID)
        before = len(sim.requests)
        result = await archiver.archive("session", SID)
    assert result.outcome == "done" and len(sim.requests) == before


async def test_wrong_content_type_and_invalid_json_are_protocol_errors(tmp_path):
    """A crafted API on loopback answers each call with one lie, in turn."""
    from aiohttp import web

    answers = [
        lambda: web.Response(status=200, body=b"<html>", content_type="text/html"),
        lambda: web.Response(status=200, body=b"{not json", content_type="application/json"),
        lambda: web.Response(status=302, headers={"Location": "https://evil.example/"}),
        lambda: web.json_response({"status": "weird", "recording": []}),
    ]
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return answers[len(seen) - 1]()

    app = web.Application()
    app.router.add_get("/api/public/bot/st-b/v2/recordings", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        from archiver.config import load_config

        path = tmp_path / "c.toml"
        path.write_text(
            f'[kore]\nhost = "http://127.0.0.1:{port}"\nbot_id = "st-b"\nclient_id = "cs-c"\n'
            "[http]\nmax_attempts = 1\n"
        )
        config = load_config(path, env={"ARCHIVER_KORE_CLIENT_SECRET": "secret-1234"})
        async with api_session(config) as http:
            client = KoreClient(config, http)
            for expected in ("content type", "not valid JSON", "redirect"):
                with pytest.raises(ProtocolError, match=expected):
                    await client.recordings_v2("session", SID)
            # A status the documents do not list is "not ready": asked again later, never "done".
            with pytest.raises(NotReadyError, match="unknown status 'weird'"):
                await client.recordings_v2("session", SID)
    finally:
        await runner.cleanup()
    assert seen == [f"/api/public/bot/st-b/v2/recordings?sessionId={SID}"] * 4


def test_sha256_helper_matches(tmp_path: Path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert urlsplit("http://h/p?q").query == "q"


async def test_files_completed_by_an_interrupted_attempt_are_not_fetched_again(tmp_path, simulator):
    sim = await simulator(voicemail_rate=1.0)
    config = make_config(tmp_path, sim)
    async with archiver_for(config) as archiver:
        result = await archiver.archive("session", SID)
        # As if killed after the files and sidecars were written, before the manifest.
        (result.directory / "manifest.json").unlink()
        before = len(media_requests(sim))
        again = await archiver.archive("session", SID)
        assert len(media_requests(sim)) == before
        assert again.files == 2
        assert_archived(config, sim, SID)
        # A forced re-archive fetches everything again.
        await archiver.archive("session", SID, force=True)
        assert len(media_requests(sim)) == before + 2
        # A sidecar that does not match the file on disk is not trusted.
        audio = next((result.directory / "recordings").glob("*.wav"))
        audio.write_bytes(audio.read_bytes()[:-10])
        (result.directory / "manifest.json").unlink()
        await archiver.archive("session", SID)
        assert len(media_requests(sim)) == before + 3
        # A crash after the sidecar's rename reached the disk and the audio's did not (their
        # directory is fsynced once, after both): the sidecar describes no file, fetched again.
        audio.unlink()
        (result.directory / "manifest.json").unlink()
        await archiver.archive("session", SID)
        assert len(media_requests(sim)) == before + 4
    assert_archived(config, sim, SID)


async def test_resumes_that_receive_bytes_do_not_use_up_the_attempts(tmp_path, simulator):
    """Every answer is cut part-way, more times than http.max_attempts: each resume brought
    bytes, so the download goes on to the end instead of failing the session."""
    sim = await simulator(voicemail_rate=0.0, min_size=1_000_000, max_size=1_200_000)
    config = make_config(tmp_path, sim, http__max_attempts=2, http__backoff_initial="0s", http__backoff_max="0s")
    sim.faults.media_truncate = 1.0
    async with archiver_for(config) as archiver:
        on_media_request(archiver, 4, lambda: setattr(sim.faults, "media_truncate", 0.0))
        await archiver.archive("session", SID)
    assert_archived(config, sim, SID)
    assert sim.stats.faults_injected["media_truncate"] >= 3  # more cuts than http.max_attempts
