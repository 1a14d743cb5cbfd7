"""A stand-in for the Kore.ai API and its media host, built to never be the bottleneck.

    python -m tests.benchmarks.server --media FILE [--v1-body FILE] [--api-latency 0.1] [--media-latency 0.05]

It plays the API just enough for ``archiver once``: ``GET .../v2/recordings`` answers one
recording whose ``fileUrl`` points at ``/media/<sessionId>.wav`` on the same server,
``GET .../voicemail`` answers "no voicemail", ``GET .../recordings`` (v1) sends a JSON body
prepared on disk. Every ``/media/...`` path serves the one media file. Bodies on disk go out
with ``sendfile`` (aiohttp's ``FileResponse``), so the server spends no CPU per byte, and
``Range`` works. Any ``auth`` header is accepted. Latencies are slept before each answer.

The benchmarks run it in its own process: its CPU is not the archiver's, and its event loop
is not shared with the client being measured. When it listens it prints one JSON line,
``{"url": "http://127.0.0.1:PORT"}``; it stops on SIGTERM or SIGINT, then prints
``{"api_calls": N, "media_calls": M}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from aiohttp import web

PREFIXES = ("/api/public", "/api/1.1/public")
BOT = "{bot_id}"


class BenchServer:
    """Handlers and counters; one instance per process."""

    def __init__(self, media: Path, v1_body: Path | None, api_latency: float, media_latency: float) -> None:
        self.media = media
        self.media_size = media.stat().st_size
        self.v1_body = v1_body
        self.api_latency = api_latency
        self.media_latency = media_latency
        self.base = ""
        self.api_calls = 0
        self.media_calls = 0

    async def _api_wait(self) -> None:
        self.api_calls += 1
        if self.api_latency:
            await asyncio.sleep(self.api_latency)

    async def v2_recordings(self, request: web.Request) -> web.Response:
        await self._api_wait()
        session_id = request.query.get("sessionId", "unknown")
        entry = {"fileName": f"{session_id}.wav", "fileUrl": f"{self.base}/media/{session_id}.wav"}
        return web.json_response({"status": "success", "recording": [entry]})

    async def voicemail(self, request: web.Request) -> web.Response:
        await self._api_wait()
        return web.json_response({"status": "success", "voicemail recording": [], "transcriptions": []})

    async def v1_recordings(self, request: web.Request) -> web.StreamResponse:
        await self._api_wait()
        if self.v1_body is None:
            return web.json_response({"recording": []})
        return web.FileResponse(self.v1_body, headers={"Content-Type": "application/json"})

    async def media_file(self, request: web.Request) -> web.StreamResponse:
        self.media_calls += 1
        if self.media_latency:
            await asyncio.sleep(self.media_latency)
        if "Range" in request.headers or request.method != "GET":
            return web.FileResponse(self.media, headers={"Content-Type": "audio/wav"})
        # FileResponse stats and opens the file in a worker thread on every request; with
        # dozens of requests at once that hop would add the server's own latency. The size is
        # known, the file is in the page cache: open it here and sendfile it.
        resp = web.StreamResponse(headers={"Content-Type": "audio/wav", "Accept-Ranges": "bytes"})
        resp.content_length = self.media_size
        await resp.prepare(request)
        assert request.transport is not None
        with open(self.media, "rb") as body:  # noqa: ASYNC230 - a cached file: cheaper than a thread hop
            await asyncio.get_running_loop().sendfile(request.transport, body, 0, self.media_size)
        await resp.write_eof()
        return resp

    def app(self) -> web.Application:
        app = web.Application()
        for prefix in PREFIXES:
            app.router.add_get(f"{prefix}/bot/{BOT}/v2/recordings", self.v2_recordings)
            app.router.add_get(f"{prefix}/bot/{BOT}/voicemail", self.voicemail)
            app.router.add_get(f"{prefix}/bot/{BOT}/recordings", self.v1_recordings)
        app.router.add_get("/media/{name}", self.media_file)
        return app


async def serve(server: BenchServer, host: str = "127.0.0.1") -> None:
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await runner.setup()
    # A deep backlog: 32 clients opening connections at once must not wait on SYN retries.
    site = web.TCPSite(runner, host, 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    server.base = f"http://{host}:{port}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(json.dumps({"url": server.base}), flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    print(json.dumps({"api_calls": server.api_calls, "media_calls": server.media_calls}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, required=True, help="the file every /media/ path serves")
    parser.add_argument("--v1-body", type=Path, help="the body of GET .../recordings (v1)")
    parser.add_argument("--api-latency", type=float, default=0.0, help="seconds slept before each API answer")
    parser.add_argument("--media-latency", type=float, default=0.0, help="seconds slept before each media answer")
    args = parser.parse_args(argv)
    server = BenchServer(args.media, args.v1_body, args.api_latency, args.media_latency)
    asyncio.run(serve(server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
