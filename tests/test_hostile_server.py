"""A hostile server: every answer the API or a media host could give to hurt us.

A scripted Kore API (one behaviour per session id) and three media hosts (two origins on
aiohttp, one raw socket server for answers aiohttp will not send) stand in for the vendor.
The daemon archives every scripted session in one run. The promise checked: nothing is
written outside the session directories, the JWT and cookies never leave the API origin,
the daemon keeps running (and archives a good session afterwards), and every hostile
session ends failed with a clear reason. Hostile file names go through the simulator.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Awaitable, Callable

import pytest
from aiohttp import web

from archiver import netguard
from archiver.errors import UnsafeInputError
from archiver.layout import session_dir
from archiver.service import Service
from archiver.simulator import MediaSpec, SessionSpec
from archiver.store import JobStore

from .conftest import make_config, temp_files, wait_for
from .conftest import archiver_for
from .reliability import Captured, assert_exactly_once

BOT = "st-hostile-bot"
AUDIO = b"RIFF" + bytes(range(256)) * 40  # 10 KB of "audio"
MiB = 1024 * 1024


@dataclass
class Seen:
    server: str
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Hostile:
    """The scripted vendor: an API origin, two media origins and a raw socket server."""

    seen: list[Seen] = field(default_factory=list)
    runners: list[web.AppRunner] = field(default_factory=list)
    api_url: str = ""
    media_url: str = ""
    other_url: str = ""
    raw_url: str = ""
    raw_server: asyncio.AbstractServer | None = None
    answers: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = field(default_factory=dict)

    async def start(self) -> None:
        self.api_url = await self._serve("api", self._api_routes)
        self.media_url = await self._serve("media", self._media_routes)
        self.other_url = await self._serve("other", self._media_routes)
        self.raw_server = await asyncio.start_server(self._raw, "127.0.0.1", 0)
        self.raw_url = f"http://127.0.0.1:{self.raw_server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        if self.raw_server is not None:
            self.raw_server.close()

    async def _serve(self, name: str, routes: Callable[[web.Application], None]) -> str:
        @web.middleware
        async def record(request: web.Request, handler):
            self.seen.append(Seen(name, request.method, request.path_qs, dict(request.headers)))
            return await handler(request)

        app = web.Application(middlewares=[record])
        routes(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    # -- the API ------------------------------------------------------------------------------

    def _api_routes(self, app: web.Application) -> None:
        app.router.add_get(f"/api/public/bot/{BOT}/v2/recordings", self._recordings)
        app.router.add_get(f"/api/public/bot/{BOT}/voicemail", self._voicemail)

    async def _recordings(self, request: web.Request) -> web.StreamResponse:
        if "auth" not in request.headers:
            return web.json_response({"errors": [{"msg": "Invalid SDK credentials", "code": 401}]}, status=401)
        answer = self.answers.get(request.query.get("sessionId", ""))
        if answer is None:
            return web.json_response({"errors": [{"msg": "Validation errors/ Invalid arguments"}]}, status=412)
        return await answer(request)

    async def _voicemail(self, request: web.Request) -> web.StreamResponse:
        resp = web.json_response({"status": "success", "voicemail recording": [], "transcriptions": []})
        resp.headers["Set-Cookie"] = "kore=api-cookie; Path=/"
        return resp

    # -- media hosts --------------------------------------------------------------------------

    def _media_routes(self, app: web.Application) -> None:
        app.router.add_get("/media/{name}", self._audio)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/loop", self._loop)
        app.router.add_get("/big-chunked", self._big_chunked)
        app.router.add_get("/big-declared", self._big_declared)
        app.router.add_get("/gzip", self._gzip_audio)
        app.router.add_get("/html", self._html)

    async def _audio(self, request: web.Request) -> web.Response:
        resp = web.Response(body=AUDIO, content_type="audio/wav")
        resp.headers["Set-Cookie"] = "media=from-media; Path=/"
        return resp

    async def _redirect(self, request: web.Request) -> web.Response:
        resp = web.Response(status=302, headers={"Location": request.query["to"]})
        resp.headers["Set-Cookie"] = "session=follow-me; Path=/"
        return resp

    async def _loop(self, request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": "/loop"})

    async def _big_chunked(self, request: web.Request) -> web.StreamResponse:
        return await stream(request, "audio/wav", 3 * MiB, declared=False)

    async def _big_declared(self, request: web.Request) -> web.StreamResponse:
        return await stream(request, "audio/wav", 3 * MiB, declared=True)

    async def _gzip_audio(self, request: web.Request) -> web.Response:
        body = zlib.compress(AUDIO, wbits=31)
        return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "audio/wav"})

    async def _html(self, request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Please log in</body></html>", content_type="text/html")

    async def _raw(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A body 100 bytes longer than its Content-Length, in the same packet."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.seen.append(Seen("raw", "GET", head.split(b" ")[1].decode(), _headers(head)))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1100
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return dict(line.split(": ", 1) for line in lines if ": " in line)


async def stream(request: web.Request, content_type: str, size: int, *, declared: bool,
                 encoding: str | None = None, piece: bytes = b"A" * 65536) -> web.StreamResponse:
    """``size`` bytes of ``piece`` repeated, chunked or with a Content-Length, until the client leaves."""
    resp = web.StreamResponse()
    resp.content_type = content_type
    if encoding:
        resp.headers["Content-Encoding"] = encoding
    if declared:
        resp.content_length = size
    else:
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    sent = 0
    try:
        while sent < size:
            await resp.write(piece[: size - sent])
            sent += len(piece)
    except (ConnectionError, RuntimeError):
        pass  # the client stopped reading: that is the point
    return resp


def v2(*items: tuple[str, str]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def answer(request: web.Request) -> web.Response:
        resp = web.json_response({"status": "success", "recording": [{"fileName": n, "fileUrl": u} for n, u in items]})
        resp.headers["Set-Cookie"] = "kore=api-cookie; Path=/"
        return resp

    return answer


def raw_json(body: bytes, content_type: str = "application/json", **headers: str):
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type, **headers})

    return answer


def gzip_bomb(expanded: int) -> bytes:
    """A gzip body that is valid JSON ``{"recording": ["AAAA..."]}`` of ``expanded`` bytes."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(b'{"status":"success","recording":[{"fileName":"a.wav","fileUrl":"')]
    block = b"A" * MiB
    for _ in range(expanded // MiB):
        parts.append(packer.compress(block))
    parts += [packer.compress(b'"}]}'), packer.flush()]
    return b"".join(parts)


def hundred_mb_json(declared: bool):
    async def answer(request: web.Request) -> web.StreamResponse:
        return await stream(request, "application/json", 100 * MiB, declared=declared,
                            piece=b'{"status":"success","recording":[' + b" " * 65500)
    return answer


def api_redirect(to: str):
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": to, "Set-Cookie": "kore=x; Path=/"})

    return answer


# One session per hostile answer: (how the vendor answers, the reason the session must fail with).
def cases(h: Hostile) -> dict[str, tuple[Callable, str | None]]:
    media, other = h.media_url, h.other_url
    off_list = media.replace("127.0.0.1", "localhost")
    return {
        # The API's own answers.
        "gzip-bomb": (raw_json(gzip_bomb(1024 * MiB), **{"Content-Encoding": "gzip"}), r"over the .*limit"),
        "gzip-garbage": (raw_json(b"this is not gzip", **{"Content-Encoding": "gzip"}), r"Content-Encoding cannot be decoded"),
        "json-100mb-chunked": (hundred_mb_json(declared=False), r"over the .*limit"),
        "json-100mb-declared": (hundred_mb_json(declared=True), r"over the .*limit"),
        "invalid-json": (raw_json(b'{"status": "success", "recording": [{"fileName": "x.wav",'), r"not valid JSON"),
        "json-not-object": (raw_json(b'["success"]'), r"not a JSON object"),
        "json-wrong-shape": (raw_json(b'{"status": "success", "recording": "x.wav"}'), r"is not a list"),
        "html-answer": (raw_json(b"<html>maintenance</html>", "text/html"), r"content type"),
        "xml-answer": (raw_json(b"<Error/>", "application/xml"), r"content type"),
        "api-redirect": (api_redirect(f"{other}/media/stolen.wav"), r"redirect"),
        # Media URLs we refuse to fetch.
        "host-not-allowed": (v2(("a.wav", f"{off_list}/media/a.wav")), r"not in media.allowed_hosts"),
        "file-scheme": (v2(("a.wav", "file:///etc/passwd")), r"not http\(s\)"),
        "ftp-scheme": (v2(("a.wav", "ftp://127.0.0.1/a.wav")), r"not http\(s\)"),
        "credentials-in-url": (v2(("a.wav", media.replace("http://", "http://user:pw@") + "/media/a.wav")), r"credentials"),
        "redirect-off-list": (v2(("a.wav", f"{media}/redirect?to={off_list}/media/a.wav")), r"not in media.allowed_hosts"),
        "redirect-to-file": (v2(("a.wav", f"{media}/redirect?to=file:///etc/passwd")), r"not http\(s\)"),
        "redirect-loop": (v2(("a.wav", f"{media}/loop")), r"redirected more than"),
        "bad-port": (v2(("a.wav", "http://127.0.0.1:99999/a.wav?s=x")), r"cannot be parsed"),
        "broken-ipv6": (v2(("a.wav", "http://[::1/a.wav")), r"cannot be parsed"),
        "bad-idna": (v2(("a.wav", "https://xn--/a.wav")), r"cannot be used"),
        "redirect-unreadable": (v2(("a.wav", f"{media}/redirect?to=http://[::1/a.wav")), r"cannot be used"),
        # Bodies that lie or never end.
        "body-over-content-length": (v2(("a.wav", f"{h.raw_url}/a.wav")), r"malformed HTTP answer"),
        "body-over-cap-chunked": (v2(("a.wav", f"{media}/big-chunked")), r"over media.max_file_size"),
        "body-over-cap-declared": (v2(("a.wav", f"{media}/big-declared")), r"over media.max_file_size"),
        "media-gzip": (v2(("a.wav", f"{media}/gzip")), r"Content-Encoding"),
        "media-html": (v2(("a.wav", f"{media}/html")), r"text/html"),
        # Not errors: a cross-origin redirect is followed, without auth or cookies.
        "good": (v2(("good.wav", f"{media}/media/good.wav")), None),
        "cross-origin-redirect": (v2(("moved.wav", f"{media}/redirect?to={other}/media/moved.wav")), None),
    }


@pytest.fixture
async def hostile():
    server = Hostile()
    await server.start()
    yield server
    await server.close()


def hostile_config(tmp_path: Path, server: Hostile, **settings):
    fake_sim = SimpleNamespace(api_url=server.api_url, config=SimpleNamespace(bot_id=BOT, client_id="cs-hostile"))
    values = {
        "media__allowed_hosts": ["127.0.0.1"],
        "media__max_file_size": "1MiB",
        "http__max_attempts": 2,
        "daemon__max_attempts": 2,
        "daemon__concurrency": 4,
    }
    values.update(settings)
    return make_config(tmp_path, fake_sim, **values)


def tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


async def test_hostile_server_cannot_hurt_the_archive_or_the_daemon(tmp_path, hostile):
    table = cases(hostile)
    for sid, (answer, _) in table.items():
        hostile.answers[sid] = answer
    config = hostile_config(tmp_path, hostile)
    before = tree(tmp_path)
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", sid) for sid in table])
    service = Service(config)
    with Captured() as logs:
        task = asyncio.create_task(service.run())
        try:
            await service.ready.wait()

            def settled() -> bool:
                counts = service.store.counts()
                return counts.get("done", 0) + counts.get("failed", 0) == len(table)

            await wait_for(settled, timeout=60, what="every hostile session to end")
            # Still running, and still archiving.
            assert not task.done()
            hostile.answers["after"] = v2(("after.wav", f"{hostile.media_url}/media/after.wav"))
            service.store.enqueue([("session", "after")])
            service.pool.notify()
            await wait_for(lambda: service.store.get("session", "after").state == "done", what="a good session after")
        finally:
            service.stop()
            await asyncio.wait_for(task, 30)

    with JobStore.open_in(config.daemon.state_dir) as store:
        jobs = {sid: store.get("session", sid) for sid in table}
    for sid, (_, reason) in table.items():
        job = jobs[sid]
        if reason is None:
            assert job.state == "done", (sid, job.last_error)
        else:
            assert job.state == "failed" and re.search(reason, job.last_error or ""), (sid, job.last_error)
            # Refused on the first answer: a hostile answer is not worth asking for twice.
            assert job.attempts == 1 and sum(f"sessionId={sid}" in s.path for s in hostile.seen) == 1, sid

    # Files appeared only inside the directories of the archived sessions (and the state dir).
    good = {session_dir(config.archive.root, BOT, "session", s) for s in ("good", "cross-origin-redirect", "after")}
    for path in tree(tmp_path) - before:
        assert any(path.is_relative_to(d) for d in good) or path.is_relative_to(config.daemon.state_dir), path
    for sid in ("good", "cross-origin-redirect", "after"):
        directory = session_dir(config.archive.root, BOT, "session", sid)
        [audio] = (directory / "recordings").glob("*.wav")
        assert audio.read_bytes() == AUDIO
    assert not temp_files(config.archive.root)

    # The JWT went to the API origin only; no cookie was ever sent back to anyone.
    for seen in hostile.seen:
        names = {k.lower() for k in seen.headers}
        assert "cookie" not in names, seen
        assert ("auth" in names) == (seen.server == "api"), seen
    assert not [s for s in hostile.seen if s.path.endswith("stolen.wav")]  # API redirects are not followed
    assert not [s for s in hostile.seen if s.server == "media" and s.path.startswith("/media/a.wav")]
    assert logs.internal_errors() == []
    failed = sum(reason is not None for _, reason in table.values())
    print(f"\nhostile server: {len(table)} scripted sessions, {failed} refused with a clear reason, "
          f"{len(table) - failed + 1} archived; {len(hostile.seen)} requests seen, none carrying a secret off-origin")


async def test_hostile_file_names_through_the_daemon(tmp_path, simulator):
    """Names from the API never become paths outside the session directory."""
    sim = await simulator(voicemail_rate=0.0)
    names = [
        "../x", "../../../../etc/passwd", "/etc/passwd", "dir\\file", "..\\..\\win.ini", "%2E%2E%2Ffoo", "..", ".",
        "", "a\x00b.wav", "ctl\x01\x1b[31m\n.wav", "n" * 300 + ".wav", "é" * 200 + ".wav", "same.wav", "same.wav",
        "SAME.wav", "manifest.json", "same.wav.json", ".recordings.part.json", "x.incomplete", "\u2025\u2215etc",
        "\uff0e\uff0e\uff0fup.wav", "con", "nul.wav", " spaced .wav ", "a" * 255,
    ]
    sid = "67ab573f3685d1ba9954aaaa"
    sim.config.sessions[sid] = SessionSpec(
        recordings=[MediaSpec(name, 1_000 + i, i + 1) for i, name in enumerate(names[:-4])],
        voicemails=[MediaSpec(name, 2_000 + i, 100 + i) for i, name in enumerate(names[-4:])],
        transcript_texts=["hi"],
    )
    config = make_config(tmp_path, sim)
    before = tree(tmp_path)
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", sid)])
    stats = await Service(config, burst=True).run()
    assert stats.done == 1, stats.failures
    directory = session_dir(config.archive.root, config.kore.bot_id, "session", sid)
    for path in tree(tmp_path) - before:
        assert path.is_relative_to(directory) or path.is_relative_to(config.daemon.state_dir), path
    assert_exactly_once(config, sim, [sid])
    manifest = json.loads((directory / "manifest.json").read_text())
    audio = [f["path"] for f in manifest["files"] if f["kind"] == "audio"]
    assert len(audio) == len(set(audio)) == len(names)
    for path in directory.rglob("*"):
        assert len(path.name.encode()) <= 255 and path.name.isprintable() and not path.name.startswith(" ")


# -- private addresses ----------------------------------------------------------------------


class FakeResolver(netguard.DefaultResolver):
    """Names that resolve to internal addresses, as a hostile DNS answer would."""

    NAMES = {
        "internal.example": "10.1.2.3",
        "metadata.example": "169.254.169.254",
        "loopback.example": "127.0.0.1",
        "v6.example": "::1",
        "mapped.example": "::ffff:127.0.0.1",
    }

    async def resolve(self, host, port=0, family=0):
        if host in self.NAMES:
            address = self.NAMES[host]
            fam = 10 if ":" in address else 2
            return [{"hostname": host, "host": address, "port": port, "family": fam, "proto": 0, "flags": 0}]
        return await super().resolve(host, port, family)


async def test_internal_addresses_are_refused_when_not_allowed(tmp_path, hostile, monkeypatch):
    monkeypatch.setattr(netguard, "DefaultResolver", FakeResolver)
    port = hostile.media_url.rsplit(":", 1)[1]
    urls = {
        "literal-loopback": f"http://127.0.0.1:{port}/media/a.wav",
        "literal-v6-loopback": f"http://[::1]:{port}/media/a.wav",
        "localhost": f"http://localhost:{port}/media/a.wav",
        "localhost-dot": f"https://localhost.:{port}/media/a.wav",
        "short-loopback": f"https://127.1:{port}/media/a.wav",
        "decimal-loopback": f"https://2130706433:{port}/media/a.wav",
        "unspecified": f"https://0.0.0.0:{port}/media/a.wav",
        "link-local": "https://169.254.169.254/latest/meta-data/iam",
        "link-local-v6": "https://[fe80::1]/a.wav",
        "private-10": "https://10.0.0.8/a.wav",
        "private-192": "https://192.168.1.1/a.wav",
        "mapped-v6": f"https://[::ffff:127.0.0.1]:{port}/a.wav",
        "name-to-private": "https://internal.example/a.wav",
        "name-to-metadata": "https://metadata.example/latest/meta-data",
        "name-to-loopback": f"https://loopback.example:{port}/media/a.wav",
        "name-to-v6-loopback": f"https://v6.example:{port}/media/a.wav",
        "name-to-mapped": f"https://mapped.example:{port}/media/a.wav",
    }
    for sid, url in urls.items():
        hostile.answers[sid] = v2(("a.wav", url))
    config = hostile_config(tmp_path, hostile, media__allowed_hosts=[], media__allow_private_addresses=False)
    async with archiver_for(config) as archiver:
        for sid in urls:
            with pytest.raises(UnsafeInputError, match=r"internal address|localhost|plain http") as caught:
                await archiver.archive("session", sid)
            assert "?" not in str(caught.value)
    assert not [s for s in hostile.seen if s.server != "api"]  # no media host was ever reached
    assert not list(config.archive.root.rglob("*.wav"))


def test_redact_url_survives_a_port_out_of_range():
    """Regression: reporting the URL of a refused download raised ValueError itself (from
    ``urlsplit(...).port``), so the session failed with an "internal error" instead."""
    from archiver.redact import redact_url

    assert redact_url("http://127.0.0.1:99999/a.wav?s=sig&n=1") == "<unparseable url>"
    assert redact_url("https://media.example:8443/a.wav?s=sig&n=1") == "https://media.example:8443/a.wav"
