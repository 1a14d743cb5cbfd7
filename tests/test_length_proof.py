"""A recording is complete when its size equals a length the vendor declared, over loopback.

The crafted media host sends bodies that end cleanly but early, bodies without a length,
WAV files whose header says they were cut, and two recordings under one name with one URL
refused. The promise: the file on disk is the vendor's whole file, or it is kept and marked
unproven (``length_source: none`` and the reason), never counted as proven.
"""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from .vendor import Vendor, audio_of, config_for, directory_of, drain, manifest_of, serve_bytes, v2_answer, wav

SID = "67ab573f3685d1ba99541234"
FULL = wav(bytes(range(256)) * 400)  # 102,444 bytes with real RIFF sizes


def sidecar_of(config, name: str) -> dict:
    return json.loads((directory_of(config, SID) / "recordings" / f"{name}.json").read_text())


def audio_entry(config, name: str) -> dict:
    [entry] = [f for f in manifest_of(config, SID)["files"] if f["path"] == f"recordings/{name}"]
    return entry


async def archive_one(tmp_path, vendor, handler, name: str = "call.wav"):
    vendor.v2[SID] = v2_answer((name, vendor.media_url(name)))
    vendor.media[name] = handler
    config = config_for(tmp_path, vendor)
    job = (await drain(config, SID))[SID]
    assert job.state == "done", job.last_error
    return config


async def test_a_body_cut_cleanly_without_a_length_is_completed_by_a_range_request(tmp_path, vendor):
    """Attack: no Content-Length, the connection closed cleanly after 30,000 bytes.
    Before: 30,000 bytes archived as the whole recording."""
    config = await archive_one(tmp_path, vendor, serve_bytes(FULL, declared=False, cut_at=30_000))
    assert audio_of(config, SID) == {"call.wav": FULL}
    ranges = [s.headers.get("Range") for s in vendor.requests("GET", "/media/call.wav")]
    assert ranges[:2] == [None, "bytes=30000-"]
    assert sidecar_of(config, "call.wav")["length_source"] == "content_range"
    assert audio_entry(config, "call.wav")["length_source"] == "content_range"
    assert "unproven" not in manifest_of(config, SID)


async def test_a_whole_body_without_a_length_is_confirmed_by_a_416(tmp_path, vendor):
    config = await archive_one(tmp_path, vendor, serve_bytes(FULL, declared=False))
    assert audio_of(config, SID) == {"call.wav": FULL}
    ranges = [s.headers.get("Range") for s in vendor.requests("GET", "/media/call.wav")]
    assert ranges == [None, f"bytes={len(FULL)}-"]
    assert sidecar_of(config, "call.wav")["length_source"] == "range_416"


async def test_a_declared_length_is_proof_enough(tmp_path, vendor):
    config = await archive_one(tmp_path, vendor, serve_bytes(FULL))
    assert audio_of(config, SID) == {"call.wav": FULL}
    assert len(vendor.requests("GET", "/media/call.wav")) == 1  # no extra request
    assert sidecar_of(config, "call.wav")["length_source"] == "content_length"


async def test_no_length_and_no_ranges_is_kept_but_unproven(tmp_path, vendor):
    """Attack: no Content-Length and Range ignored: nothing can prove the end."""
    config = await archive_one(tmp_path, vendor, serve_bytes(FULL[:30_000], declared=False, ranges=False))
    assert audio_of(config, SID) == {"call.wav": FULL[:30_000]}  # kept: it is all we have
    side = sidecar_of(config, "call.wav")
    assert side["length_source"] == "none" and "ignores Range" in side["unproven"]
    entry = audio_entry(config, "call.wav")
    assert entry["length_source"] == "none"
    assert manifest_of(config, SID)["unproven"] == [f"recordings/call.wav: {side['unproven']}"]


async def test_a_wav_whose_header_declares_more_is_cut(tmp_path, vendor):
    """Attack: Content-Length 30,000 (true for the body) of a WAV whose RIFF header says 102,444."""
    config = await archive_one(tmp_path, vendor, serve_bytes(FULL[:30_000]))
    side = sidecar_of(config, "call.wav")
    assert side["length_source"] == "content_length"
    assert side["unproven"] == f"cut: its RIFF header declares {len(FULL)} bytes, the file has 30000"
    assert manifest_of(config, SID)["unproven"]


async def test_a_streamed_wav_with_placeholder_sizes_is_not_judged(tmp_path, vendor):
    streamed = wav(b"\x03" * 50_000, declared=False)
    config = await archive_one(tmp_path, vendor, serve_bytes(streamed))
    side = sidecar_of(config, "call.wav")
    assert side["length_source"] == "content_length" and "unproven" not in side


def signed_twice(vendor: Vendor, items: list[tuple[str | None, str]]):
    """A v2 answer whose URLs carry ``sig=1`` the first time, ``sig=2`` after."""
    calls = {"n": 0}

    async def answer(request: web.Request) -> web.Response:
        calls["n"] += 1
        query = f"sig={min(calls['n'], 2)}"
        return web.json_response(v2_answer(*[(name, vendor.media_url(path, query)) for name, path in items]))

    return answer


def refused_once(body: bytes):
    serve = serve_bytes(body)

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("sig") == "1":
            return web.Response(status=403, text="signature expired")
        return await serve(request)

    return handler


@pytest.mark.parametrize("name", ["call.wav", None], ids=["same name", "no name"])
async def test_two_recordings_named_alike_with_a_refreshed_url_are_both_archived(tmp_path, vendor, name):
    """Attack: two items with one fileName (or none), the first URL refused with 403.
    Before: after the refresh both files held recording B; A was never fetched."""
    first, second = wav(b"\xaa" * 20_000), wav(b"\xbb" * 30_000)
    vendor.v2[SID] = signed_twice(vendor, [(name, "a"), (name, "b")])
    vendor.media["a"] = refused_once(first)
    vendor.media["b"] = serve_bytes(second)
    config = config_for(tmp_path, vendor)
    job = (await drain(config, SID))[SID]
    assert job.state == "done", job.last_error
    held = audio_of(config, SID)
    assert sorted(held.values()) == sorted([first, second]), {k: len(v) for k, v in held.items()}
    entries = [f for f in manifest_of(config, SID)["files"] if f["kind"] == "audio"]
    assert sorted(e["source"].rsplit("/", 1)[1] for e in entries) == ["a", "b"]


async def test_a_refresh_that_drops_an_item_is_not_matched_to_another(tmp_path, vendor):
    """The fresh answer lists only B: A must not be fetched from B's URL."""
    first, second = wav(b"\xaa" * 20_000), wav(b"\xbb" * 30_000)
    calls = {"n": 0}

    async def answer(request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return web.json_response(v2_answer(("x.wav", vendor.media_url("a", "sig=1")),
                                               ("x.wav", vendor.media_url("b", "sig=1"))))
        return web.json_response(v2_answer(("x.wav", vendor.media_url("b", "sig=2"))))

    vendor.v2[SID] = answer
    vendor.media["a"] = refused_once(first)
    vendor.media["b"] = serve_bytes(second)
    config = config_for(tmp_path, vendor)
    job = (await drain(config, SID))[SID]
    # The attempt that saw the list change gave up; the next one archived what the vendor has.
    assert job.state == "done", job.last_error
    assert audio_of(config, SID) == {"x.wav": second}  # never two files holding B
