"""Vendor answers that are not what the documents show, over loopback (a crafted server).

Each answer here once ended a session "done" with nothing archived, or in a traceback:
an undocumented voicemail status, the voicemail list under both spellings of its key, ``{}``,
JSON nested past the parser's stack, and an inline v1 recording that is a web page.
"""

from __future__ import annotations

import pytest
from aiohttp import web

from .reliability import Captured
from .vendor import audio_of, config_for, drain, serve_bytes, v2_answer, wav

SID = "67ab573f3685d1ba99541234"
VOICE = wav(b"\x01\x02" * 3000)


@pytest.mark.parametrize("status", ["processing", "pending", "call_in_progress", "media_in_progress"])
async def test_voicemail_in_progress_or_unknown_status_is_not_ready(tmp_path, vendor, status):
    """Attack: ``processing`` with no file. Before: the session ended done "no voicemail"."""
    vendor.voicemail[SID] = {"status": status, "voicemail recording": [], "transcriptions": []}
    config = config_for(tmp_path, vendor, kore__fetch_voicemail=True)
    job = (await drain(config, SID))[SID]
    assert job.state == "deferred", (job.state, job.last_error)
    assert status in (job.last_error or "")
    # Once the vendor has the file, the deferred session archives it.
    vendor.voicemail[SID] = {"status": "success", "voicemail recording": [
        {"fileName": "vm.wav", "fileUrl": vendor.media_url("vm.wav")}], "transcriptions": []}
    vendor.media["vm.wav"] = serve_bytes(VOICE)
    config = config_for(tmp_path, vendor, kore__fetch_voicemail=True, daemon__defer_delay="0s")
    job = (await drain(config, SID))[SID]
    assert job.state == "done", job.last_error
    assert audio_of(config, SID, "voicemail") == {"vm.wav": VOICE}


async def test_unknown_v2_status_is_not_ready_either(tmp_path, vendor):
    vendor.v2[SID] = {"status": "archiving", "recording": []}
    job = (await drain(config_for(tmp_path, vendor), SID))[SID]
    assert job.state == "deferred" and "archiving" in (job.last_error or "")


async def test_voicemail_under_both_keys_is_merged(tmp_path, vendor):
    """Attack: ``"voicemail recording": []`` beside ``"voicemail_recording": [...]``."""
    other = wav(b"\x07" * 4000)
    vendor.voicemail[SID] = {
        "status": "success",
        "voicemail recording": [{"fileName": "a.wav", "fileUrl": vendor.media_url("a.wav")}],
        "voicemail_recording": [
            {"fileName": "a.wav", "fileUrl": vendor.media_url("a.wav")},  # the same file twice: one file
            {"fileName": "b.wav", "fileUrl": vendor.media_url("b.wav")},
        ],
        "transcriptions": [],
    }
    vendor.media["a.wav"] = serve_bytes(VOICE)
    vendor.media["b.wav"] = serve_bytes(other)
    config = config_for(tmp_path, vendor, kore__fetch_voicemail=True)
    job = (await drain(config, SID))[SID]
    assert job.state == "done", job.last_error
    assert audio_of(config, SID, "voicemail") == {"a.wav": VOICE, "b.wav": other}

    vendor.voicemail["67ab573f3685d1ba99540002"] = {
        "status": "success", "voicemail recording": [],
        "voicemail_recording": [{"fileName": "b.wav", "fileUrl": vendor.media_url("b.wav")}],
    }
    job = (await drain(config, "67ab573f3685d1ba99540002"))["67ab573f3685d1ba99540002"]
    assert job.state == "done" and audio_of(config, "67ab573f3685d1ba99540002", "voicemail") == {"b.wav": other}


@pytest.mark.parametrize("table", ["v2", "voicemail"])
async def test_an_answer_without_status_is_an_error(tmp_path, vendor, table):
    """Attack: ``{}``. Before: taken as success with no recordings; the session ended done."""
    getattr(vendor, table)[SID] = {}
    config = config_for(tmp_path, vendor, kore__fetch_voicemail=table == "voicemail",
                        kore__fetch_recordings=table == "v2")
    job = (await drain(config, SID))[SID]
    assert job.state == "failed" and "no status" in (job.last_error or "")


async def test_deeply_nested_json_is_a_clear_permanent_error(tmp_path, vendor):
    """Attack: 100,000 nested arrays. Before: RecursionError, a traceback, and retries."""
    body = b'{"status": "success", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    async def nested(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    vendor.v2[SID] = nested
    with Captured() as logs:
        job = (await drain(config_for(tmp_path, vendor, http__max_attempts=3), SID))[SID]
    assert job.state == "failed" and "nested too deeply" in (job.last_error or ""), job.last_error
    assert job.attempts == 1 and len(vendor.requests("GET", "/v2/recordings")) == 1  # not retried
    assert logs.internal_errors() == []


async def test_deeply_nested_json_in_an_error_answer_is_only_an_excerpt(tmp_path, vendor):
    body = b'{"errors": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"  # under the 64 KiB read of an error body

    async def nested(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json", status=400)

    vendor.v2[SID] = nested
    with Captured() as logs:
        job = (await drain(config_for(tmp_path, vendor), SID))[SID]
    assert job.state == "failed" and "HTTP 400" in (job.last_error or "")
    assert logs.internal_errors() == []


@pytest.mark.parametrize("mime", ["text/html", "application/json", "image/png"])
async def test_v1_inline_document_is_refused(tmp_path, vendor, mime):
    """Attack: ``data:text/html;base64,...``. Before: archived as recording-1.bin, session done."""
    import base64

    page = base64.b64encode(b"<html><body>Please sign in</body></html>").decode()

    async def inline(request: web.Request) -> web.Response:
        return web.json_response({"recording": [f"data:{mime};base64,{page}"]})

    vendor.v1[SID] = inline
    config = config_for(tmp_path, vendor, kore__recordings_api="v1")
    job = (await drain(config, SID))[SID]
    assert job.state == "failed" and "not audio" in (job.last_error or ""), job.last_error
    assert audio_of(config, SID) == {}


async def test_v1_inline_audio_is_still_archived(tmp_path, vendor):
    import base64

    audio = wav(b"\x05" * 5000)

    async def inline(request: web.Request) -> web.Response:
        return web.json_response({"recording": [f"data:audio/wav;base64,{base64.b64encode(audio).decode()}"]})

    vendor.v1[SID] = inline
    config = config_for(tmp_path, vendor, kore__recordings_api="v1")
    job = (await drain(config, SID))[SID]
    assert job.state == "done", job.last_error
    assert audio_of(config, SID) == {"recording-1.wav": audio}


async def test_v2_documented_answers_still_archive(tmp_path, vendor):
    audio = wav(b"\x09" * 7000)
    vendor.v2[SID] = v2_answer(("call.wav", vendor.media_url("call.wav")))
    vendor.media["call.wav"] = serve_bytes(audio)
    config = config_for(tmp_path, vendor)
    job = (await drain(config, SID))[SID]
    assert job.state == "done", job.last_error
    assert audio_of(config, SID) == {"call.wav": audio}
