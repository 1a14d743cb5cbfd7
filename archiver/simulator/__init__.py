"""A faithful, deterministic simulator of the Kore.ai APIs the archiver uses.

Two loopback servers: the API (call recordings v1 and v2, delete, voicemail; the Analytics
sessions history and conversation history; JWT auth, scopes, the Contact Center and Analytics
rate limits) and the media host its signed ``fileUrl``\\ s point at (S3-like GET/HEAD with
ranges). Any session id is served, with content derived from the id and the seed; the
sessions history lists a population of ``sessions_per_day`` sessions a day, some of them late;
``Faults`` makes either server misbehave on demand.

    async with Simulator(SimConfig(seed=1)) as sim:
        ...  # talk to sim.api_url; inspect sim.requests and sim.stats

Modules: ``spec`` (the dataclasses), ``content`` (WAV bytes), ``sessions`` (derived data),
``analytics`` (the session population and conversations), ``auth``, ``ratelimit``,
``signing``, ``state`` (shared state), ``bodies`` (API wire format), ``transfer`` (streaming
and broken bodies), ``app`` (API server), ``media`` (media host), ``simulator`` (lifecycle).
"""

from .spec import Faults, MediaSpec, SeenRequest, SessionRecord, SessionSpec, SimConfig, SimStats
from .simulator import Simulator, serve

__all__ = [
    "Faults", "MediaSpec", "SeenRequest", "SessionRecord", "SessionSpec", "SimConfig", "SimStats", "Simulator",
    "serve",
]
