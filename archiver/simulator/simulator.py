"""The simulator's lifecycle: two loopback servers (API and media host) around one state."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from . import app, content, media
from .spec import Faults, MediaSpec, SeenRequest, SessionRecord, SessionSpec, SimConfig, SimStats
from .state import SimState

# In-flight answers (a slow body, say) get this long to finish when the simulator closes.
_SHUTDOWN_GRACE = 0.25


def _check_loopback(host: str) -> None:
    """The simulator serves fake credentials and unauthenticated media: loopback only."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the simulator binds to loopback addresses only, not {host!r}")


class Simulator:
    """The Kore.ai API and its media host, served on 127.0.0.1 until closed."""

    def __init__(
        self, config: SimConfig | None = None, *, host: str = "127.0.0.1", api_port: int = 0, media_port: int = 0
    ) -> None:
        _check_loopback(host)
        self._state = SimState(config or SimConfig())
        self._host, self._ports = host, (api_port, media_port)
        self._runners: list[web.AppRunner] = []
        self._by_name: dict[str, web.AppRunner] = {}
        self.api_url = ""
        self.media_url = ""

    async def start(self) -> None:
        """Bind both servers (the media host first: API answers carry its URLs)."""
        self.media_url = await self._serve("media", self._ports[1])
        self._state.media_url = self.media_url
        self.api_url = await self._serve("api", self._ports[0])

    async def _serve(self, which: str, port: int) -> str:
        application = media.build_app(self._state) if which == "media" else app.build_app(self._state)
        runner = web.AppRunner(application, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_GRACE)
        await runner.setup()
        self._runners.append(runner)
        self._by_name[which] = runner
        site = web.TCPSite(runner, self._host, port)
        await site.start()
        bound = runner.addresses[0][1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{bound}"

    async def stop_host(self, which: str) -> None:
        """Take one server ("api" or "media") off the network, as an outage would: its port
        refuses connections until :meth:`start_host`."""
        runner = self._by_name.pop(which)
        self._runners.remove(runner)
        await runner.cleanup()

    async def start_host(self, which: str) -> None:
        """Bring a server stopped by :meth:`stop_host` back on the same port."""
        url = self.api_url if which == "api" else self.media_url
        await self._serve(which, int(url.rsplit(":", 1)[1]))

    async def close(self) -> None:
        """Stop both servers; safe to call twice."""
        runners, self._runners = self._runners, []
        self._by_name.clear()
        for runner in reversed(runners):
            await runner.cleanup()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- what tests look at --------------------------------------------------------------

    @property
    def config(self) -> SimConfig:
        """The live configuration; the servers read it on every request."""
        return self._state.config

    @property
    def faults(self) -> Faults:
        """The live fault knobs (``config.faults``)."""
        return self._state.config.faults

    @property
    def requests(self) -> list[SeenRequest]:
        """Every request either server received, in order of arrival."""
        return self._state.requests

    @property
    def stats(self) -> SimStats:
        """Counters of what was answered."""
        return self._state.stats

    def session(self, session_id: str) -> SessionSpec:
        """The override for ``session_id`` or its deterministic derived spec."""
        return self._state.session(session_id)

    def user_sessions(self, user_id: str) -> list[str]:
        """The (two) session ids that belong to ``user_id``."""
        return self._state.user_sessions(user_id)

    def now(self) -> float:
        """The tenant's clock for the Analytics population (``config.now``, else the wall clock)."""
        return self._state.now()

    def population(self, start: float, end: float) -> list[SessionRecord]:
        """Every session of the Analytics population started in [start, end] (Unix seconds),
        newest first, whether getSessions lists it yet or not (``visible_at``)."""
        return self._state.population(start, end)

    def record(self, session_id: str) -> SessionRecord:
        """The sessions-history record of a session id (ids outside the population are voice)."""
        return self._state.record(session_id)

    def messages(self, session_id: str) -> list[dict]:
        """The conversation getMessagesV2 serves for ``session_id``, oldest first."""
        return self._state.messages(session_id)

    def media_sha256(self, media: MediaSpec) -> str:
        """Hex sha256 of the full bytes served for ``media`` (computed once)."""
        return self._state.sha256(media)

    def media_bytes(self, media: MediaSpec, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of the file served for ``media``."""
        return content.read(media, start, end)

    def media_path(self, session_id: str, kind: str = "recording", index: int = 0) -> str:
        """The media host path of a file (``kind``: "recording" or "voicemail"): the key of
        ``stats.media_bytes_served`` and friends."""
        return self._state.media_path(session_id, kind, index)

    def signed_url(self, session_id: str, kind: str = "recording", index: int = 0, *, expired: bool = False) -> str:
        """A signed media URL as the API would hand it out."""
        return self._state.signed_url(session_id, kind, index, expired=expired)


async def serve(
    cfg: SimConfig,
    host: str = "127.0.0.1",
    api_port: int = 0,
    media_port: int = 0,
    ready: Callable[[Simulator], None] | None = None,
) -> None:
    """Run a simulator until cancelled; ``ready(sim)`` is called once both servers listen."""
    sim = Simulator(cfg, host=host, api_port=api_port, media_port=media_port)
    await sim.start()
    try:
        if ready is not None:
            ready(sim)
        await asyncio.Event().wait()
    finally:
        await sim.close()
