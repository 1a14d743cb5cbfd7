"""A crafted vendor on loopback: a Kore API and a media host whose every answer a test scripts.

The simulator plays the documented API (and its documented faults); this server plays the
answers nobody documented: a body without a length, two recordings under one name, a status
the documents do not list, ``{}``. Each test sets, per session id, what the API answers, and,
per media name, what the media host sends. Every request is recorded with its headers.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Awaitable, Callable

from aiohttp import web

from archiver.config import Config
from archiver.layout import session_dir
from archiver.service import Service
from archiver.store import Job, JobStore

from .conftest import make_config

BOT = "st-crafted-bot"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Vendor:
    """The scripted API (``v2``, ``v1``, ``voicemail``, ``delete``) and media host (``media``)."""

    v2: dict[str, Any] = field(default_factory=dict)  # session id -> JSON answer or handler
    v1: dict[str, Any] = field(default_factory=dict)
    voicemail: dict[str, Any] = field(default_factory=dict)
    media: dict[str, Handler] = field(default_factory=dict)  # media name -> handler
    on_delete: Handler | None = None  # DELETE /v2/recordings; None: "deleted successfully"
    seen: list[Seen] = field(default_factory=list)
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> None:
        @web.middleware
        async def record(request: web.Request, handler):
            self.seen.append(Seen(request.method, request.path, dict(request.query), dict(request.headers)))
            return await handler(request)

        app = web.Application(middlewares=[record])
        base = f"/api/public/bot/{BOT}"
        for path, table in (("v2/recordings", self.v2), ("recordings", self.v1), ("voicemail", self.voicemail)):
            app.router.add_get(f"{base}/{path}", self._answers(table))
        app.router.add_delete(f"{base}/v2/recordings", self._delete)
        app.router.add_get("/media/{name}", self._media)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def media_url(self, name: str, query: str = "sig=secret-signature") -> str:
        return f"{self.url}/media/{name}?{query}"

    @staticmethod
    def _answers(table: dict[str, Any]) -> Handler:
        async def answer(request: web.Request) -> web.StreamResponse:
            scripted = table.get(request.query.get("sessionId", ""))
            if scripted is None:
                return web.json_response({"status": "success", "recording": [], "voicemail recording": []})
            if callable(scripted):
                return await scripted(request)
            return web.json_response(scripted)

        return answer

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        if self.on_delete is not None:
            return await self.on_delete(request)
        return web.json_response({"message": "Call recordings deleted successfully"})

    async def _media(self, request: web.Request) -> web.StreamResponse:
        handler = self.media.get(request.match_info["name"])
        if handler is None:
            return web.Response(status=404)
        return await handler(request)

    def requests(self, method: str, path_end: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.endswith(path_end)]


def config_for(tmp_path: Path, vendor: Vendor, **settings: Any) -> Config:
    """A configuration pointing at ``vendor``, failing fast (two attempts, short backoff)."""
    fake_sim = SimpleNamespace(api_url=vendor.url, config=SimpleNamespace(bot_id=BOT, client_id="cs-crafted"))
    values: dict[str, Any] = {
        "media__allowed_hosts": ["127.0.0.1"],
        "http__max_attempts": 2,
        "daemon__max_attempts": 2,
        "kore__fetch_transcripts": False,
    }
    values.update(settings)
    return make_config(tmp_path, fake_sim, **values)


async def drain(config: Config, *session_ids: str, force: bool = False) -> dict[str, Job]:
    """Queue ``session_ids`` (deferred ones made due now), run the daemon in burst mode until
    the queue is empty, return their jobs."""
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", sid) for sid in session_ids], force=force)
        store.retry(ext_ids=session_ids)
    await asyncio.wait_for(Service(config, burst=True).run(), 60)
    with JobStore.open_in(config.daemon.state_dir) as store:
        return {sid: store.get("session", sid) for sid in session_ids}


def directory_of(config: Config, session_id: str) -> Path:
    return session_dir(config.archive.root, config.kore.bot_id, "session", session_id)


def manifest_of(config: Config, session_id: str) -> dict[str, Any]:
    return json.loads((directory_of(config, session_id) / "manifest.json").read_text())


def audio_of(config: Config, session_id: str, part: str = "recordings") -> dict[str, bytes]:
    """The archived audio files of one part: name -> bytes."""
    folder = directory_of(config, session_id) / part
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.endswith(".json")} if folder.is_dir() else {}


def wav(payload: bytes, *, declared: bool = True) -> bytes:
    """A RIFF WAV file around ``payload``; ``declared=False`` writes the streaming placeholders."""
    fmt = b"fmt " + (16).to_bytes(4, "little") + bytes.fromhex("01000100401f0000803e000002001000")
    riff = (36 + len(payload)) if declared else 0xFFFFFFFF
    data = len(payload) if declared else 0xFFFFFFFF
    return b"RIFF" + riff.to_bytes(4, "little") + b"WAVE" + fmt + b"data" + data.to_bytes(4, "little") + payload


def serve_bytes(body: bytes, *, declared: bool = True, cut_at: int | None = None,
                content_type: str = "audio/wav", ranges: bool = True) -> Handler:
    """A media handler: ``body``, with or without Content-Length; ``cut_at`` ends the first
    answer cleanly after that many bytes (chunked, no length: nothing says it was cut).
    With ``ranges``, ``Range: bytes=N-`` is answered 206 (or 416 past the end)."""
    state = {"answers": 0}

    async def handler(request: web.Request) -> web.StreamResponse:
        state["answers"] += 1
        start = 0
        header = request.headers.get("Range", "")
        if ranges and header.startswith("bytes=") and header.endswith("-"):
            start = int(header[6:-1])
            if start >= len(body):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(body)}"})
        resp = web.StreamResponse(status=206 if start else 200)
        resp.content_type = content_type
        send = body[start:]
        if start:
            resp.headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        if state["answers"] == 1 and cut_at is not None:
            send = send[:cut_at]
        if declared:
            resp.content_length = len(send) if (start or cut_at is None or state["answers"] > 1) else len(body)
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            await resp.write(send)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return resp

    handler.state = state  # type: ignore[attr-defined]
    return handler


def v2_answer(*items: tuple[str | None, str], status: str = "success") -> dict[str, Any]:
    """A v2 answer listing ``(fileName or None, fileUrl)``."""
    entries = [{"fileUrl": url} if name is None else {"fileName": name, "fileUrl": url} for name, url in items]
    return {"status": status, "recording": entries}
