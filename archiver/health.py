"""The observability endpoint: ``/healthz`` (liveness, JSON, 200 or 503), ``/readyz`` (503 with the
reasons while archiving is paused: vendor outage, full disk) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import time
from typing import Any, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .config import parse_listen
from .errors import ConfigError
from .metrics import Metrics


class HealthServer:
    """A tiny aiohttp server on the configured (loopback) address."""

    def __init__(
        self,
        listen: str,
        metrics: Metrics,
        health: Callable[[], dict[str, Any]],
        degraded: Callable[[], list[str]] = list,
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self.metrics = metrics
        self.health = health
        self.degraded = degraded
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self.close()
            raise ConfigError(
                "observability.http_listen", f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        state = self.health()
        state["time"] = time.time()
        return web.json_response(state, status=200 if state.get("healthy") else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        # Readiness, apart from liveness: a vendor outage or a full disk is not cured by a
        # restart, so /healthz stays 200 (a liveness probe must not kill the process and lose
        # its breaker state); /readyz says 503 with the reasons.
        state = self.health()
        reasons = [] if state.get("healthy") else ["not healthy"]
        reasons += self.degraded()
        return web.json_response({"ready": not reasons, "reasons": reasons, "time": time.time()},
                                 status=200 if not reasons else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
