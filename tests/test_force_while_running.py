"""``enqueue --force`` on a session being archived is kept and honoured after the attempt ends.

Before, the request was answered "already known" and dropped: the operator asked for a fresh
archive and silently did not get one.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from archiver.cli import main as cli_main
from archiver.service import Service
from archiver.store import JobStore

from .conftest import wait_for
from .vendor import audio_of, config_for, serve_bytes, v2_answer, wav

SID = "67ab573f3685d1ba99541234"


async def test_enqueue_force_on_a_running_session_archives_it_again(tmp_path, vendor):
    audio = wav(b"\x11" * 9000)
    release = asyncio.Event()
    serve = serve_bytes(audio)

    async def slow(request: web.Request) -> web.StreamResponse:
        await release.wait()  # the first attempt is running until the test says so
        return await serve(request)

    vendor.v2[SID] = v2_answer(("call.wav", vendor.media_url("call.wav")))
    vendor.media["call.wav"] = slow
    config = config_for(tmp_path, vendor)
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", SID)])
    service = Service(config)
    task = asyncio.create_task(service.run())
    try:
        await service.ready.wait()
        await wait_for(lambda: len(vendor.requests("GET", "/media/call.wav")) == 1, what="the download to start")
        assert service.store.get("session", SID).state == "running"
        code = await asyncio.to_thread(
            cli_main, ["enqueue", "--config", str(tmp_path / "archiver.toml"), "--force", SID]
        )
        assert code == 0
        release.set()

        def archived_twice() -> bool:
            job = service.store.get("session", SID)
            return job.state == "done" and len(vendor.requests("GET", "/v2/recordings")) == 2

        await wait_for(archived_twice, timeout=30, what="the forced second archive")
    finally:
        release.set()
        service.stop()
        await asyncio.wait_for(task, 30)
    assert len(vendor.requests("GET", "/media/call.wav")) == 2  # fetched again, not reused
    assert audio_of(config, SID) == {"call.wav": audio}
