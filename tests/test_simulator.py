"""The simulator itself, driven over loopback sockets with a plain aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
import time
import uuid
import warnings
import wave
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from archiver.simulator import Faults, MediaSpec, SessionSpec, SimConfig, Simulator, serve
from archiver.simulator import content
from archiver.simulator.spec import SimStats

from .conftest import simulators

BOT = "st-sim-bot"
CLIENT = "cs-sim-client"
SECRET = "sim-client-secret"
SID = "67ab573f3685d1ba99540001"
SDK = {"errors": [{"msg": "Invalid SDK credentials", "code": 401}]}
BAD_JWT = {"errors": [{"msg": "Invalid JWT token", "code": 401}]}
BAD_SCOPE = {"errors": [{"msg": "Permission denied. Scope is incorrect!", "code": 401}]}
INVALID_ARGS = {"errors": [{"msg": "Validation errors/ Invalid arguments", "code": 412}]}
RATE_MSG = "You've exceeded the per-minute rate limit. Please wait for sometime before retrying."


def token(**claims: object) -> str:
    """A JWT signed like the archiver signs it (claims may be overridden or set to None)."""
    now = int(time.time())
    payload = {"appId": CLIENT, "sub": "archiver", "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    secret = payload.pop("_secret", SECRET)
    return encode(payload, secret)


def encode(payload: dict, secret: str, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():  # the test secrets are short on purpose
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(payload, secret, algorithm=algorithm)


@pytest.fixture
async def sim_factory() -> AsyncIterator:
    """Simulators with the simulator's own defaults (its rate limit and sizes included)."""
    async with simulators(SimConfig) as start:
        yield start


@pytest.fixture
async def sim(sim_factory) -> Simulator:
    return await sim_factory()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def answer(resp: aiohttp.ClientResponse) -> tuple[int, CIMultiDict[str], object]:
    """(status, headers, parsed JSON body or the text when it is not JSON)."""
    text = await resp.text()
    try:
        body: object = json.loads(text)
    except ValueError:
        body = text
    return resp.status, resp.headers.copy(), body


async def api(
    http: aiohttp.ClientSession,
    sim: Simulator,
    endpoint: str = "v2/recordings",
    *,
    method: str = "GET",
    auth: str | None = "fresh",
    bot: str = BOT,
    prefix: str = "/api/public",
    **params: str,
) -> tuple[int, CIMultiDict[str], object]:
    """One API call: (status, headers, parsed JSON body or text)."""
    if not params:
        params = {"sessionId": SID}
    headers = {} if auth is None else {"auth": token() if auth == "fresh" else auth}
    url = f"{sim.api_url}{prefix}/bot/{bot}/{endpoint}"
    async with http.request(method, url, params=params, headers=headers) as resp:
        return await answer(resp)


async def fetch(http: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    async with http.get(url, headers=headers) as resp:
        return resp.status, resp.headers.copy(), await resp.read()


async def first_url(http: aiohttp.ClientSession, sim: Simulator, session_id: str = SID) -> str:
    status, _, body = await api(http, sim, sessionId=session_id)
    assert status == 200 and body["status"] == "success", body
    return body["recording"][0]["fileUrl"]


# -- auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": None, "iat": None, "exp": None, "jti": None},  # the voicemail page's bare {appId}
        {"jti": None},
        {},
    ],
)
async def test_valid_tokens_are_accepted(sim, http, claims) -> None:
    status, _, body = await api(http, sim, auth=token(**claims))
    assert status == 200 and body["status"] == "success"


@pytest.mark.parametrize(
    ("auth", "bot", "expected"),
    [
        (None, BOT, SDK),
        ("fresh", "st-other-bot", SDK),
        ("not-a-jwt", BOT, BAD_JWT),
        (token(_secret="wrong-secret"), BOT, BAD_JWT),
        (token(appId="cs-someone-else"), BOT, BAD_JWT),
        (token(appId=None), BOT, BAD_JWT),
        (token(exp=int(time.time()) - 5, iat=int(time.time()) - 60), BOT, BAD_JWT),
        (token(exp=int(time.time()) + 7200), BOT, BAD_JWT),  # jti with a lifetime over an hour
        (token(exp=None), BOT, BAD_JWT),  # jti without exp
        (encode({"appId": CLIENT}, SECRET, "HS512"), BOT, BAD_JWT),
    ],
)
async def test_bad_credentials_get_kore_errors(sim, http, auth, bot, expected) -> None:
    status, _, body = await api(http, sim, auth=auth, bot=bot)
    assert (status, body) == (401, expected)


async def test_jti_replay_is_refused(sim, http) -> None:
    reused = token()
    assert (await api(http, sim, auth=reused))[0] == 200
    assert (await api(http, sim, auth=reused))[:3:2] == (401, BAD_JWT)


async def test_enforce_jti_requires_one(sim_factory, http) -> None:
    sim = await sim_factory(enforce_jti=True)
    assert (await api(http, sim, auth=token(jti=None)))[:3:2] == (401, BAD_JWT)
    assert (await api(http, sim, auth=token()))[0] == 200


async def test_missing_scope(sim_factory, http) -> None:
    sim = await sim_factory(scopes=frozenset({"SmartAssist Recordings"}))
    assert (await api(http, sim))[0] == 200
    for endpoint, method in (("voicemail", "GET"), ("v2/recordings", "DELETE")):
        status, _, body = await api(http, sim, endpoint, method=method, sessionId=SID, transcription="true")
        assert (status, body) == (401, BAD_SCOPE)


# -- routing and validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [{"other": "x"}, {"sessionId": ""}, {"sessionId": "../etc"}, {"sessionId": "a" * 200}, {"userId": "a/b"}],
)
async def test_bad_arguments_get_412(sim, http, params) -> None:
    for endpoint in ("recordings", "v2/recordings"):
        status, _, body = await api(http, sim, endpoint, **params)
        assert (status, body) == (412, INVALID_ARGS)


async def test_voicemail_transcription_must_be_boolean(sim, http) -> None:
    status, _, body = await api(http, sim, "voicemail", sessionId=SID, transcription="maybe")
    assert (status, body) == (412, INVALID_ARGS)


async def test_wrong_method_gets_405(sim, http) -> None:
    for endpoint, method in (("recordings", "POST"), ("v2/recordings", "PUT"), ("voicemail", "DELETE")):
        status, _, body = await api(http, sim, endpoint, method=method)
        assert (status, body) == (405, {"errors": [{"msg": "Method Not Allowed", "code": 405}]})
    assert sim.stats.api_calls[("v1_recordings", 405)] == 1


async def test_both_prefixes_are_served(sim, http) -> None:
    for prefix in ("/api/public", "/api/1.1/public"):
        assert (await api(http, sim, prefix=prefix))[0] == 200
    assert (await api(http, sim, prefix="/api/2/public"))[0] == 404


# -- rate limit ----------------------------------------------------------------------------


async def test_rolling_rate_limit(sim_factory, http) -> None:
    sim = await sim_factory(rate_limit=3, rate_window=0.8)
    started = time.monotonic()
    for endpoint in ("v2/recordings", "recordings", "voicemail"):  # one shared window
        assert (await api(http, sim, endpoint))[0] == 200
    status, headers, body = await api(http, sim)
    assert (status, body) == (429, {"errors": [{"msg": RATE_MSG, "code": 429}]})
    assert headers["Retry-After"] == "1"
    assert (await api(http, sim))[0] == 429  # refused requests do not extend the window
    deadline = time.monotonic() + 5
    while (status := (await api(http, sim))[0]) == 429 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert status == 200
    assert time.monotonic() - started >= 0.75
    assert sim.stats.rate_limited >= 2
    assert sim.stats.api_calls[("v2_recordings", 429)] >= 2


async def test_rate_limit_knobs(sim_factory, http) -> None:
    sim = await sim_factory(rate_limit=1, rate_window=30.0, retry_after_header=False)
    assert (await api(http, sim))[0] == 200
    status, headers, _ = await api(http, sim)
    assert status == 429 and "Retry-After" not in headers
    sim.config.retry_after_header = True
    assert (await api(http, sim))[1]["Retry-After"] in {"29", "30"}
    sim.config.rate_limit = 0  # disabled
    assert [(await api(http, sim))[0] for _ in range(3)] == [200, 200, 200]


async def test_auth_failures_do_not_use_the_budget(sim_factory, http) -> None:
    sim = await sim_factory(rate_limit=1, rate_window=30.0)
    for _ in range(3):
        assert (await api(http, sim, auth=None))[0] == 401
    assert (await api(http, sim))[0] == 200


# -- v1 ----------------------------------------------------------------------------------


def decode_v1(body: dict) -> list[bytes]:
    prefix = "data:audio/wav;base64,"
    assert all(item.startswith(prefix) for item in body["recording"])
    return [base64.b64decode(item[len(prefix) :], validate=True) for item in body["recording"]]


async def test_v1_inline_recording_matches_the_media(sim_factory, http) -> None:
    sim = await sim_factory(min_size=300_000, max_size=400_000)
    async with http.get(
        f"{sim.api_url}/api/1.1/public/bot/{BOT}/recordings", params={"sessionId": SID}, headers={"auth": token()}
    ) as resp:
        assert resp.headers["Transfer-Encoding"] == "chunked"
        raw = await resp.read()
    assert b"\\/" in raw  # slashes escaped, as many JSON encoders do
    (audio,) = decode_v1(json.loads(raw))
    media = sim.session(SID).recordings[0]
    assert hashlib.sha256(audio).hexdigest() == sim.media_sha256(media)
    assert audio == sim.media_bytes(media)


async def test_v1_without_escaped_slashes(sim_factory, http) -> None:
    sim = await sim_factory(escape_slashes=False)
    async with http.get(
        f"{sim.api_url}/api/public/bot/{BOT}/recordings", params={"sessionId": SID}, headers={"auth": token()}
    ) as resp:
        raw = await resp.read()
    assert b"\\/" not in raw
    assert decode_v1(json.loads(raw)) == [sim.media_bytes(sim.session(SID).recordings[0])]


async def test_v1_by_user_returns_each_user_session(sim, http) -> None:
    user = "alice@example.com"
    ids = sim.user_sessions(user)
    assert len(ids) == 2 and all(len(i) == 24 and int(i, 16) >= 0 for i in ids)
    status, _, body = await api(http, sim, "recordings", userId=user)
    assert status == 200
    expected = [sim.media_bytes(sim.session(i).recordings[0]) for i in ids]
    assert decode_v1(body) == expected
    assert all(sim.session(i).user_id == user for i in ids)


# -- v2 and the media host ----------------------------------------------------------------


async def test_v2_url_downloads_the_file(sim, http) -> None:
    status, _, body = await api(http, sim)
    (entry,) = body["recording"]
    media = sim.session(SID).recordings[0]
    assert entry["fileName"] == f"{SID}-merged.wav" == media.file_name
    url = urlsplit(entry["fileUrl"])
    assert f"{url.scheme}://{url.netloc}" == sim.media_url != sim.api_url
    query = parse_qs(url.query)
    assert set(query) == {"e", "n", "s"} and query["n"][0].isdigit()
    assert abs(int(query["e"][0]) - (time.time() + sim.config.url_ttl)) < 5
    status, headers, data = await fetch(http, entry["fileUrl"])
    assert status == 200
    assert headers["Content-Type"] == "audio/wav" and headers["Accept-Ranges"] == "bytes"
    assert int(headers["Content-Length"]) == media.size == len(data)
    assert headers["Set-Cookie"].startswith("simsession=")
    assert hashlib.sha256(data).hexdigest() == sim.media_sha256(media)
    path = url.path
    assert path == sim.media_path(SID)
    assert sim.stats.media_completions[path] == 1
    assert sim.stats.full_transfers(path, media.size) == 1 and sim.stats.redundant_bytes(path) == 0


async def test_requests_are_recorded_as_received(sim, http) -> None:
    url = await first_url(http, sim)
    await fetch(http, url, Cookie="simsession=abc", Range="bytes=0-9")
    api_seen, media_seen = sim.requests
    assert (api_seen.server, api_seen.method, api_seen.status) == ("api", "GET", 200)
    assert api_seen.query == {"sessionId": SID} and "auth" in api_seen.headers
    assert (media_seen.server, media_seen.status) == ("media", 206)
    assert media_seen.headers["Cookie"] == "simsession=abc" and media_seen.headers["Range"] == "bytes=0-9"
    assert set(media_seen.query) == {"e", "n", "s"}
    assert sim.stats.api_calls == {("v2_recordings", 200): 1}


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [("bytes=100-", 100, None), ("bytes=100-199", 100, 200), ("bytes=-50", -50, None), ("bytes=0-999999999", 0, None)],
)
async def test_ranges(sim, http, range_header, start, end) -> None:
    media = sim.session(SID).recordings[0]
    full = sim.media_bytes(media)
    status, headers, data = await fetch(http, await first_url(http, sim), Range=range_header)
    expected = full[start:end]
    first = start % media.size
    assert status == 206 and data == expected
    assert headers["Content-Range"] == f"bytes {first}-{first + len(expected) - 1}/{media.size}"
    assert int(headers["Content-Length"]) == len(expected)


async def test_unsatisfiable_range_and_head(sim, http) -> None:
    url = await first_url(http, sim)
    size = sim.session(SID).recordings[0].size
    status, headers, _ = await fetch(http, url, Range=f"bytes={size}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
    async with http.head(url) as resp:
        assert resp.status == 200 and int(resp.headers["Content-Length"]) == size
        assert resp.headers["Accept-Ranges"] == "bytes" and "simsession=" in resp.headers["Set-Cookie"]
    status, _, data = await fetch(http, url, Range="bytes=5-2")  # malformed: ignored, as RFC 9110 allows
    assert status == 200 and len(data) == size


async def test_if_range_mismatch_serves_the_whole_file(sim, http) -> None:
    url = await first_url(http, sim)
    status, headers, _ = await fetch(http, url, Range="bytes=0-0")
    assert (await fetch(http, url, Range="bytes=10-", **{"If-Range": headers["Etag"]}))[0] == 206
    assert (await fetch(http, url, Range="bytes=10-", **{"If-Range": '"other"'}))[0] == 200


async def test_expired_url_is_refused(sim, http) -> None:
    sim.faults.expired_url = 1.0
    url = await first_url(http, sim)
    assert int(parse_qs(urlsplit(url).query)["e"][0]) < time.time()
    status, headers, body = await fetch(http, url)
    assert status == 403 and b"Request has expired" in body and b"<Code>AccessDenied</Code>" in body
    assert headers["Content-Type"].startswith("application/xml")
    assert sim.stats.faults_injected["expired_url"] == 1
    status, _, body = await fetch(http, sim.signed_url(SID, expired=True))
    assert status == 403 and b"Request has expired" in body


async def test_bad_signatures_are_refused(sim_factory, sim, http) -> None:
    url = await first_url(http, sim)
    base, query = url.split("?")
    params = dict(p.split("=", 1) for p in query.split("&"))
    tampered = [
        f"{base}?e={int(params['e']) + 1}&n={params['n']}&s={params['s']}",
        f"{base}?e={params['e']}&n={params['n']}&s={params['s'][:-2]}AA",
        f"{base}?e={params['e']}&n={params['n']}",
        base,
        url.replace("rec-0.wav", "rec-1.wav"),
        url.replace(SID, "67ab573f3685d1ba99540002"),
    ]
    for bad in tampered:
        status, _, body = await fetch(http, bad)
        assert status == 403 and b"SignatureDoesNotMatch" in body, bad
    other = await sim_factory()
    assert (await fetch(http, url.replace(sim.media_url, other.media_url)))[0] == 403


async def test_unknown_file_with_valid_signature_is_404(sim, http) -> None:
    status, _, body = await fetch(http, sim.signed_url(SID, "recording", 3))
    assert status == 404 and b"NoSuchKey" in body


async def test_hostile_file_names_are_reported_verbatim(sim_factory, http) -> None:
    names = ["../x.wav", "/etc/passwd", "a\x00b.wav", "n" * 300]
    spec = SessionSpec([MediaSpec(n, 100 + i, i) for i, n in enumerate(names)], [], [])
    sim = await sim_factory(sessions={SID: spec})
    _, _, body = await api(http, sim)
    assert [e["fileName"] for e in body["recording"]] == names
    for i, entry in enumerate(body["recording"]):
        assert (await fetch(http, entry["fileUrl"]))[2] == sim.media_bytes(spec.recordings[i])


# -- statuses, voicemail, delete ------------------------------------------------------------


async def test_not_ready_polls_then_success(sim_factory, http) -> None:
    spec = SessionSpec([MediaSpec("a.wav", 1000, 1)], [], [], not_ready_polls=3)
    sim = await sim_factory(sessions={SID: spec})
    statuses = []
    for _ in range(4):
        _, _, body = await api(http, sim)
        statuses.append((body["status"], len(body["recording"])))
    assert statuses == [("call_in_progress", 0), ("media_in_progress", 0), ("media_in_progress", 0), ("success", 1)]


async def test_derived_sessions_can_start_not_ready(sim_factory, http) -> None:
    sim = await sim_factory(faults=Faults(not_ready_rate=1.0, not_ready_polls=1))
    assert sim.session(SID).not_ready_polls == 1
    assert [(await api(http, sim))[2]["status"] for _ in range(2)] == ["call_in_progress", "success"]


async def test_unavailable_and_failed_sessions(sim_factory, http) -> None:
    failed = SessionSpec([MediaSpec("f.wav", 1000, 1)], [], [], v2_status="failed")
    sim = await sim_factory(no_media_rate=1.0, sessions={"failedsession": failed})
    assert (await api(http, sim))[2] == {"status": "media_unavailable", "recording": []}
    assert (await api(http, sim, "recordings"))[2] == {"recording": []}
    assert (await api(http, sim, sessionId="failedsession"))[2] == {"status": "failed", "recording": []}


@pytest.mark.parametrize(("mode", "key"), [("space", "voicemail recording"), ("underscore", "voicemail_recording")])
async def test_voicemail_with_transcriptions(sim_factory, http, mode, key) -> None:
    sim = await sim_factory(voicemail_rate=1.0, voicemail_key=mode)
    status, _, body = await api(http, sim, "voicemail", sessionId=SID, transcription="true")
    assert status == 200 and body["status"] == "success"
    spec = sim.session(SID)
    (entry,) = body[key]
    assert entry["fileName"] == f"voicemail_{SID}.wav"
    data = (await fetch(http, entry["fileUrl"]))[2]
    assert hashlib.sha256(data).hexdigest() == sim.media_sha256(spec.voicemails[0])
    (record,) = body["transcriptions"]
    assert record["sessionId"] == SID and record["botId"] == BOT and record["type"] == "incoming"
    assert record["author"]["type"] == "VOICEMAIL" and record["lang"] == "en"
    (component,) = record["components"]
    assert component["cT"] == "text" and component["data"] == {"text": spec.transcript_texts[0]}
    assert record["createdOn"].startswith("2025-02-11T13:57:42.") and record["createdOn"].endswith("Z")
    _, _, plain = await api(http, sim, "voicemail", sessionId=SID, transcription="false")
    assert plain["transcriptions"] == [] and len(plain[key]) == 1


async def test_voicemail_key_alternates_per_session(sim, http) -> None:
    keys = set()
    for i in range(12):
        _, _, body = await api(http, sim, "voicemail", sessionId=f"session{i}", transcription="true")
        keys |= set(body) - {"status", "transcriptions"}
    assert keys == {"voicemail recording", "voicemail_recording"}


async def test_session_without_voicemail(sim_factory, http) -> None:
    sim = await sim_factory(voicemail_rate=0.0, voicemail_key="underscore")
    _, _, body = await api(http, sim, "voicemail", sessionId=SID, transcription="true")
    assert body == {"status": "success", "voicemail_recording": [], "transcriptions": []}


async def test_delete_removes_the_recordings(sim_factory, http) -> None:
    sim = await sim_factory(voicemail_rate=1.0)
    url = await first_url(http, sim)
    status, _, body = await api(http, sim, "v2/recordings", method="DELETE")
    assert (status, body) == (200, {"message": "Call recordings deleted successfully", "sessionId": SID})
    assert sim.stats.deleted == {SID}
    assert (await api(http, sim))[2] == {"status": "media_unavailable", "recording": []}
    assert (await api(http, sim, "recordings"))[2] == {"recording": []}
    assert (await fetch(http, url))[0] == 404
    _, _, voicemail = await api(http, sim, "voicemail", sessionId=SID, transcription="false")
    assert voicemail["status"] == "success"  # voicemails are not call recordings


# -- faults -------------------------------------------------------------------------------


async def big_url(sim_factory, http, size: int = 2_000_000, **faults: float) -> tuple[Simulator, str]:
    sim = await sim_factory(min_size=size, max_size=size)
    url = await first_url(http, sim)
    for name, value in faults.items():
        setattr(sim.faults, name, value)
    return sim, url


@pytest.mark.parametrize("fault", ["media_reset", "media_truncate"])
async def test_broken_media_bodies(sim_factory, http, fault) -> None:
    sim, url = await big_url(sim_factory, http, **{fault: 1.0})
    path = urlsplit(url).path
    for _ in range(3):
        received = 0
        with pytest.raises(aiohttp.ClientPayloadError):
            async with http.get(url) as resp:
                assert resp.status == 200 and resp.headers["Content-Length"] == "2000000"
                async for chunk in resp.content.iter_chunked(65536):
                    received += len(chunk)
        assert 0 < received < 2_000_000
        assert sim.stats.media_ranges[path][-1] == (0, received)  # what was counted is what arrived
    assert sim.stats.faults_injected[fault] == 3 and sim.stats.media_completions[path] == 0
    assert sim.requests[-1].status == 200


async def test_resume_after_reset_counts_as_one_transfer(sim_factory, http) -> None:
    sim, url = await big_url(sim_factory, http, media_reset=1.0)
    media = sim.session(SID).recordings[0]
    got = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.get(url) as resp:
            async for chunk in resp.content.iter_chunked(65536):
                got += chunk
    sim.faults.media_reset = 0.0
    status, _, rest = await fetch(http, url, Range=f"bytes={len(got)}-")
    assert status == 206
    assert hashlib.sha256(bytes(got) + rest).hexdigest() == sim.media_sha256(media)
    path = urlsplit(url).path
    assert sim.stats.full_transfers(path, media.size) == 1 and sim.stats.redundant_bytes(path) == 0
    await fetch(http, url)
    assert sim.stats.full_transfers(path, media.size) == 2
    assert sim.stats.redundant_bytes(path) == media.size


async def test_wrong_resume_offset_changes_the_hash(sim_factory, http) -> None:
    sim, url = await big_url(sim_factory, http, size=300_000)
    media = sim.session(SID).recordings[0]
    head = (await fetch(http, url, Range="bytes=0-99999"))[2]
    tail = (await fetch(http, url, Range="bytes=99999-"))[2]  # one byte off
    assert hashlib.sha256(head + tail[1:]).hexdigest() == sim.media_sha256(media)
    assert hashlib.sha256(head + tail[:-1]).hexdigest() != sim.media_sha256(media)


async def test_ignore_range(sim_factory, http) -> None:
    sim, url = await big_url(sim_factory, http, size=100_000, ignore_range=1.0)
    status, headers, data = await fetch(http, url, Range="bytes=500-")
    assert status == 200 and len(data) == 100_000 and "Content-Range" not in headers
    assert sim.stats.faults_injected["ignore_range"] == 1


async def test_slow_body(sim_factory, http) -> None:
    sim, url = await big_url(sim_factory, http, size=40 * 1024, slow_body=1.0, slow_body_delay=0.05)
    started = time.monotonic()
    status, _, data = await fetch(http, url)
    assert status == 200 and len(data) == 40 * 1024
    assert time.monotonic() - started >= 0.9 * 4 * 0.05  # five 8 KiB pieces, four gaps (timers may fire early)


async def test_media_5xx(sim_factory, http) -> None:
    sim, url = await big_url(sim_factory, http, size=1000, media_5xx=1.0)
    statuses = {(await fetch(http, url))[0] for _ in range(12)}
    assert statuses <= {500, 502, 503} and len(statuses) > 1
    assert sim.stats.faults_injected["media_5xx"] == 12


async def test_api_5xx_and_injected_429(sim, http) -> None:
    sim.faults.api_5xx = 1.0
    assert (await api(http, sim))[0] in {500, 502, 503}
    sim.faults.api_5xx, sim.faults.api_429 = 0.0, 1.0
    status, headers, body = await api(http, sim)
    assert (status, body) == (429, {"errors": [{"msg": RATE_MSG, "code": 429}]}) and headers["Retry-After"] == "1"
    sim.config.retry_after_header = False
    assert "Retry-After" not in (await api(http, sim))[1]
    assert sim.stats.rate_limited == 2 and sim.stats.faults_injected["api_429"] == 2


async def test_api_reset_breaks_the_v1_body(sim_factory, http) -> None:
    sim = await sim_factory(min_size=500_000, max_size=500_000, faults=Faults(api_reset=1.0))
    with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
        async with http.get(
            f"{sim.api_url}/api/public/bot/{BOT}/recordings", params={"sessionId": SID}, headers={"auth": token()}
        ) as resp:
            await resp.read()
    assert sim.stats.faults_injected["api_reset"] == 1


async def test_latency(sim_factory, http) -> None:
    sim = await sim_factory(api_latency=0.1)
    started = time.monotonic()
    await api(http, sim)
    assert time.monotonic() - started >= 0.09  # asyncio timers may fire a little early


async def test_faults_are_deterministic_per_seed(sim_factory, http) -> None:
    outcomes = []
    for _ in range(2):
        sim = await sim_factory(seed=7, faults=Faults(api_5xx=0.5))
        outcomes.append([(await api(http, sim))[0] for _ in range(10)])
    assert outcomes[0] == outcomes[1] and len(set(outcomes[0])) > 1


# -- analytics: sessions history, conversation history, their rate limit ------------------

T = 1743391545.0  # 2025-03-31T03:25:45Z
DAY = 86400.0


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def post(
    http: aiohttp.ClientSession,
    sim: Simulator,
    endpoint: str,
    body: object = None,
    *,
    method: str = "POST",
    prefix: str = "/api/public",
    auth: str | None = "fresh",
    **params: str,
) -> tuple[int, CIMultiDict[str], object]:
    """One Analytics call with a JSON body: (status, headers, parsed JSON body or text)."""
    headers = {} if auth is None else {"auth": token() if auth == "fresh" else auth}
    url = f"{sim.api_url}{prefix}/bot/{BOT}/{endpoint}"
    async with http.request(method, url, params=params, headers=headers, json=body) as resp:
        return await answer(resp)


async def all_sessions(http, sim, body: dict, limit: int, **query: str) -> list[dict]:
    """Every page of a getSessions query."""
    found: list[dict] = []
    while True:
        status, _, page = await post(http, sim, "getSessions", {**body, "skip": len(found), "limit": limit}, **query)
        assert status == 200, page
        found += page["sessions"]
        assert page["total"] >= len(found)
        if not page["moreAvailable"]:
            assert len(found) == page["total"]
            return found


async def test_get_sessions_pages_through_the_population_newest_first(sim_factory, http) -> None:
    sim = await sim_factory(sessions_per_day=20, chat_session_rate=0.3, now=T)
    window = {"dateFrom": iso(T - 2 * DAY), "dateTo": iso(T)}
    expected = [r for r in sim.population(T - 2 * DAY, T) if r.visible_at <= T]
    for prefix in ("/api/public", "/api/1.1/public"):
        status, _, first = await post(http, sim, "getSessions", {**window, "skip": 0, "limit": 7}, prefix=prefix)
        assert status == 200 and first["total"] == len(expected) and first["moreAvailable"] is True
        assert len(first["sessions"]) == 7
    sessions = await all_sessions(http, sim, window, 7)
    assert [s["sessionId"] for s in sessions] == [r.session_id for r in expected]
    assert [s["start_time"] for s in sessions] == sorted((s["start_time"] for s in sessions), reverse=True)
    assert {s["channel"] for s in sessions} == {"korevg", "rtm"} and 30 <= len(sessions) <= 50
    for entry in sessions:
        sid = entry["sessionId"]
        assert re.fullmatch(r"[0-9a-f]{24}", sid)
        started = datetime.fromtimestamp(int(sid[:8], 16), tz=timezone.utc)
        assert entry["start_time"] == started.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        assert entry["botId"] == BOT and entry["userId"] == sim.session(sid).user_id
        assert entry["sessionStatus"] == "closed" and entry["end_time"] > entry["start_time"]
        assert entry["containmentType"] in {"selfService", "agent", "dropOff"}
        assert set(entry["tags"]) == {"userTags", "sessionTags"}
    # Any listed id is an ordinary session to the recording APIs.
    status, _, body = await api(http, sim, sessionId=sessions[0]["sessionId"])
    assert status == 200 and body["status"] == "success"
    assert sim.stats.api_calls[("get_sessions", 200)] >= 2 and sim.requests[-1].body is None
    last_page = (len(sessions) - 1) // 7 * 7
    assert sim.requests[-2].body == {**window, "skip": last_page, "limit": 7}


async def test_get_sessions_range_ends_are_inclusive_and_pages_are_capped(sim_factory, http) -> None:
    sim = await sim_factory(sessions_per_day=300, now=T, sessions_page_max=100)
    newest = sim.population(T - DAY, T)[0]
    start_time = iso(newest.start)
    status, _, page = await post(http, sim, "getSessions", {"dateFrom": start_time, "dateTo": start_time})
    assert status == 200 and [s["sessionId"] for s in page["sessions"]] == [newest.session_id]
    status, _, page = await post(http, sim, "getSessions", {"dateFrom": iso(T - DAY), "dateTo": iso(T), "limit": 500})
    assert status == 200 and len(page["sessions"]) == 100 and page["moreAvailable"] is True
    # Without dates: the last 7 days up to now; "offset" is "skip".
    status, _, page = await post(http, sim, "getSessions", {"offset": 3, "limit": 2})
    expected = [r.session_id for r in sim.population(T - 7 * DAY, T) if r.visible_at <= T]
    assert page["total"] == len(expected) and [s["sessionId"] for s in page["sessions"]] == expected[3:5]
    status, _, page = await post(http, sim, "getSessions", {"dateFrom": "2025-03-30", "dateTo": "2025-03-31"})
    assert page["total"] == len(sim.population(T - T % DAY - DAY, T - T % DAY))


@pytest.mark.parametrize(
    ("body", "query"),
    [
        ({"dateFrom": iso(T - 7 * DAY), "dateTo": iso(T)}, {}),  # 7 days is too long
        ({"dateFrom": iso(T), "dateTo": iso(T - 60)}, {}),
        ({"dateFrom": iso(T - 20 * DAY)}, {}),  # dateTo defaults to now: 20 days
        ({"dateFrom": "yesterday", "dateTo": iso(T)}, {}),
        ({"skip": -1}, {}),
        ({"limit": 0}, {}),
        ({"limit": "ten"}, {}),
        ({"skip": True}, {}),
        ([1, 2], {}),
        ({"sessionId": [f"{i:024x}" for i in range(51)]}, {}),
        ({"sessionId": "67ab573f3685d1ba99540001"}, {}),
        ({"sessionId": ["../x"]}, {}),
        ({"userId": "a/b"}, {}),
        ({"sessionType": "sometimes"}, {}),
        ({}, {"containmentType": "everything"}),
    ],
)
async def test_get_sessions_bad_arguments_get_412(sim_factory, http, body, query) -> None:
    sim = await sim_factory(sessions_per_day=5, now=T)
    status, _, answer = await post(http, sim, "getSessions", body, **query)
    assert (status, answer) == (412, INVALID_ARGS)


async def test_get_sessions_scope_method_and_raw_body(sim_factory, http) -> None:
    sim = await sim_factory(sessions_per_day=5, now=T, scopes=frozenset({"Chat History"}))
    assert (await post(http, sim, "getSessions", {}))[::2] == (401, BAD_SCOPE)
    assert (await post(http, sim, "getSessions", method="GET"))[0] == 405
    sim.config.scopes = frozenset({"Bot Sessions"})
    assert (await post(http, sim, "getMessagesV2", {"sessionId": [SID]}))[::2] == (401, BAD_SCOPE)
    async with http.post(f"{sim.api_url}/api/public/bot/{BOT}/getSessions", data=b"{not json",
                         headers={"auth": token(), "Content-Type": "application/json"}) as resp:
        assert resp.status == 412
    async with http.post(f"{sim.api_url}/api/public/bot/{BOT}/getSessions", headers={"auth": token()}) as resp:
        assert resp.status == 200  # no body at all: the defaults


async def test_get_sessions_filters(sim_factory, http) -> None:
    sim = await sim_factory(sessions_per_day=40, now=T)
    records = [r for r in sim.population(T - 3 * DAY, T)]
    window = {"dateFrom": iso(T - 3 * DAY), "dateTo": iso(T)}
    for kind in ("selfService", "agent", "dropOff"):
        found = await all_sessions(http, sim, window, 50, containmentType=kind)
        assert [s["sessionId"] for s in found] == [r.session_id for r in records if r.containment == kind]
    user = records[5].user_id
    found = await all_sessions(http, sim, {**window, "userId": user}, 50)
    assert [s["sessionId"] for s in found] == [records[5].session_id]
    assert (await post(http, sim, "getSessions", {**window, "sessionType": "non-interactive"}))[2]["total"] == 0
    # sessionId: the listed ids in the population, whatever the dates and containmentType say.
    old = sim.population(T - 30 * DAY, T - 29 * DAY)[0]
    wanted = [records[2].session_id, old.session_id, SID, records[0].session_id]
    status, _, page = await post(
        http, sim, "getSessions", {"sessionId": wanted, "dateFrom": iso(T - DAY), "dateTo": iso(T)},
        containmentType="agent" if old.containment != "agent" else "dropOff",
    )
    assert status == 200
    assert [s["sessionId"] for s in page["sessions"]] == [records[0].session_id, records[2].session_id, old.session_id]


async def test_late_sessions_are_listed_after_the_delay(sim_factory, http) -> None:
    sim = await sim_factory(sessions_per_day=200, late_session_rate=0.5, late_session_delay=3600.0, now=T)
    window = {"dateFrom": iso(T - 2 * 3600), "dateTo": iso(T)}
    records = sim.population(T - 2 * 3600, T)
    late = {r.session_id for r in records if r.late and r.start > T - 3600}
    assert late and all(r.visible_at == r.start + 3600 for r in records if r.late)
    listed = {s["sessionId"] for s in await all_sessions(http, sim, window, 100)}
    assert listed == {r.session_id for r in records} - late
    sim.config.now = T + 3600
    listed = {s["sessionId"] for s in await all_sessions(http, sim, window, 100)}
    assert listed == {r.session_id for r in records}
    # A session still going on has no end yet.
    current = next(r for r in records if not r.late)
    sim.config.now = current.start + 1
    status, _, page = await post(http, sim, "getSessions", {"sessionId": [current.session_id]})
    assert status == 200
    (entry,) = page["sessions"]
    assert entry["sessionStatus"] == "active" and entry["end_time"] is None


async def test_get_messages_pages_newest_first(sim_factory, http) -> None:
    sim = await sim_factory(sessions_per_day=40, now=T)
    voice = next(r for r in sim.population(T - DAY, T) if r.channel == "korevg" and len(sim.messages(r.session_id)) > 8)
    chat = next(r for r in sim.population(T - DAY, T) if r.channel == "rtm")
    expected = sim.messages(voice.session_id)
    assert 3 <= len(expected) <= 30 and expected[0]["type"] == "outgoing" and expected[1]["type"] == "incoming"
    assert all(m["sessionId"] == voice.session_id and m["components"][0]["cT"] == "text" for m in expected)
    assert all(voice.start < m["timestampValue"] / 1000 <= voice.end for m in expected)
    found: list[dict] = []
    while True:
        body = {"sessionId": [voice.session_id], "skip": len(found), "limit": 4, "channelType": "korevg"}
        status, _, page = await post(http, sim, "getMessagesV2", body)
        assert status == 200 and page["total"] == len(expected)
        found += page["messages"]
        if not page["moreAvailable"]:
            break
    assert found == expected[::-1]
    # GET takes the same arguments in the query, and lists chat (rtm) messages unless told otherwise.
    query = {"sessionId": f"{voice.session_id},{chat.session_id}", "limit": "10000"}
    status, _, page = await post(http, sim, "getMessagesV2", method="GET", **query)
    assert status == 200 and page["messages"] == sim.messages(chat.session_id)[::-1]
    status, _, page = await post(http, sim, "getMessagesV2", method="GET", channelType="korevg", **query)
    assert page["messages"] == expected[::-1]
    middle = expected[len(expected) // 2]["createdOn"]
    body = {"sessionId": [voice.session_id], "channelType": "korevg", "dateFrom": middle}
    status, _, page = await post(http, sim, "getMessagesV2", body)
    assert page["messages"] == [m for m in expected if m["createdOn"] >= middle][::-1]
    assert sim.messages(voice.session_id) == Simulator(SimConfig(sessions_per_day=40)).messages(voice.session_id)


@pytest.mark.parametrize(
    "body",
    [{}, {"sessionId": []}, {"sessionId": ["a/b"]}, {"sessionId": [SID], "channelType": "KORE VG"},
     {"sessionId": [SID], "limit": 0}, {"sessionId": [SID], "dateFrom": "soon"}],
)
async def test_get_messages_bad_arguments_get_412(sim, http, body) -> None:
    assert (await post(http, sim, "getMessagesV2", body))[::2] == (412, INVALID_ARGS)


async def test_analytics_rate_limit_has_a_minute_and_an_hour(sim_factory, http) -> None:
    # Windows are scaled down but kept wide enough for a loaded 2-core machine.
    sim = await sim_factory(sessions_per_day=5, now=T, rate_limit=1, rate_window=30.0, analytics_per_minute=3,
                            analytics_minute_window=0.5, analytics_per_hour=5, analytics_hour_window=2.5)
    started = time.monotonic()
    calls = ["getSessions", "getMessagesV2", "getSessions"]  # one group for both endpoints
    for endpoint in calls:
        assert (await post(http, sim, endpoint, {"sessionId": [SID]}))[0] == 200
    status, headers, body = await post(http, sim, "getSessions", {})
    assert (status, body) == (429, {"errors": [{"msg": RATE_MSG, "code": 429}]}) and headers["Retry-After"] == "1"
    # The Contact Center group is counted apart, both ways.
    assert (await api(http, sim))[0] == 200 and (await api(http, sim))[0] == 429
    assert (sim.stats.rate_limited, sim.stats.analytics_rate_limited) == (1, 1)
    deadline = time.monotonic() + 8
    while (await post(http, sim, "getSessions", {}))[0] == 429:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert time.monotonic() - started >= 0.49  # the minute window rolled
    while (await post(http, sim, "getSessions", {}))[0] == 429:  # the fifth in the hour
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    hour_full = time.monotonic()
    statuses = []
    while time.monotonic() - hour_full < 0.6:  # the minute window rolls again; the hour does not
        statuses.append((await post(http, sim, "getSessions", {}))[0])
        await asyncio.sleep(0.02)
    assert set(statuses) == {429}
    while (await post(http, sim, "getSessions", {}))[0] == 429:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert time.monotonic() - started >= 2.49
    refused = [r for r in sim.requests if r.status == 429]
    assert sim.stats.analytics_rate_limited == len(refused) - 1 > len(statuses)
    assert sim.stats.api_calls[("get_sessions", 429)] == len(refused) - 1


def test_population_is_deterministic() -> None:
    a = Simulator(SimConfig(seed=3, sessions_per_day=10))
    b = Simulator(SimConfig(seed=3, sessions_per_day=10, late_session_rate=0.5))
    c = Simulator(SimConfig(seed=4, sessions_per_day=10))
    start, end = T - 5 * DAY, T
    ids = [r.session_id for r in a.population(start, end)]
    assert len(ids) in range(45, 61) and ids == [r.session_id for r in b.population(start, end)]
    assert ids != [r.session_id for r in c.population(start, end)]
    assert any(r.late for r in b.population(start, end)) and not any(r.late for r in a.population(start, end))
    assert all(a.record(i) == r for i, r in zip(ids, a.population(start, end)))
    assert a.record(SID).channel == "korevg" and a.record(SID).start == int(SID[:8], 16)
    assert Simulator(SimConfig()).population(start, end) == []
    voice_only = Simulator(SimConfig(sessions_per_day=50, chat_session_rate=0.0))
    assert {r.channel for r in voice_only.population(start, end)} == {"korevg"}


# -- content and determinism ----------------------------------------------------------------


def test_specs_and_content_are_deterministic() -> None:
    a, b, c = Simulator(SimConfig(seed=3)), Simulator(SimConfig(seed=3)), Simulator(SimConfig(seed=4))
    ids = [SID, "anything-at-all", "x"]
    assert [a.session(i) for i in ids] == [b.session(i) for i in ids]
    assert [a.session(i) for i in ids] != [c.session(i) for i in ids]
    media = a.session(SID).recordings[0]
    assert a.media_sha256(media) == b.media_sha256(b.session(SID).recordings[0])
    assert a.user_sessions("bob") == b.user_sessions("bob") != c.user_sessions("bob")
    assert 4096 <= media.size <= 65536


def test_derived_rates() -> None:
    sim = Simulator(SimConfig(voicemail_rate=0.5))
    specs = [sim.session(f"s{i}") for i in range(200)]
    with_vm = [s for s in specs if s.voicemails]
    assert 60 < len(with_vm) < 140
    assert all(len(s.transcript_texts) == 1 and s.transcript_texts[0].endswith(".") for s in with_vm)
    assert all(s.recordings and not s.not_ready_polls for s in specs)


def test_wav_header_is_valid() -> None:
    media = MediaSpec("x.wav", 20_044, 5)
    with wave.open(io.BytesIO(content.read(media)), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == 10_000


def test_blocks_differ_within_and_between_files() -> None:
    a, b = MediaSpec("a", 4 * content.BLOCK, 1), MediaSpec("b", 4 * content.BLOCK, 2)
    blocks = [content.read(m, i * content.BLOCK, (i + 1) * content.BLOCK) for m in (a, b) for i in range(4)]
    assert len(set(blocks)) == 8


def test_gigabyte_ranges_are_generated_on_demand() -> None:
    media = MediaSpec("huge.wav", 1 << 30, 99)
    started = time.monotonic()
    tail = content.read(media, media.size - 3_000_000)
    assert len(tail) == 3_000_000 and time.monotonic() - started < 0.5
    assert content.read(media, media.size - 1_000_000) == tail[-1_000_000:]
    assert b"".join(content.iter_range(media, media.size - 3_000_000, media.size, 700_001)) == tail
    assert content.read(media, 0, 44) == content.wav_header(1 << 30)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(44, 300_000), data=st.data())
def test_any_range_is_a_slice_of_the_whole(size: int, data: st.DataObject) -> None:
    media = MediaSpec("p.wav", size, size * 31)
    start = data.draw(st.integers(0, size))
    end = data.draw(st.integers(start, size))
    assert content.read(media, start, end) == content.read(media)[start:end]


def test_full_transfer_accounting() -> None:
    stats = SimStats()
    path = "/f.wav"
    for span in [(0, 40), (40, 100)]:
        stats.media_ranges.setdefault(path, []).append(span)
        stats.media_bytes_served[path] += span[1] - span[0]
    assert stats.full_transfers(path, 100) == 1 and stats.redundant_bytes(path) == 0
    stats.media_ranges[path].append((30, 60))
    stats.media_bytes_served[path] += 30
    assert stats.full_transfers(path, 100) == 1 and stats.redundant_bytes(path) == 30
    assert stats.full_transfers(path, 120) == 0 and stats.full_transfers("/other", 10) == 0


# -- lifecycle -------------------------------------------------------------------------------


async def test_serve_runs_until_cancelled(http) -> None:
    started: asyncio.Future[Simulator] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(SimConfig(), ready=started.set_result))
    sim = await asyncio.wait_for(started, 5)
    assert (await api(http, sim))[0] == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(aiohttp.ClientConnectionError):
        await api(http, sim)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
async def test_only_loopback_binds(host) -> None:
    with pytest.raises(ValueError):
        await serve(SimConfig(), host=host)
    with pytest.raises(ValueError):
        Simulator(SimConfig(), host=host)


async def test_context_manager_and_double_close() -> None:
    async with Simulator(SimConfig()) as sim:
        assert sim.api_url.startswith("http://127.0.0.1:") and sim.media_url.startswith("http://127.0.0.1:")
    await sim.close()
