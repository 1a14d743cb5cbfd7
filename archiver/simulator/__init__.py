"""A faithful, deterministic simulator of the Kore.ai APIs the archiver uses.

Two loopback servers: the API (call recordings v1 and v2, delete, voicemail; JWT auth, scopes,
the Contact Center rate limit) and the media host its signed ``fileUrl``\\ s point at (S3-like
GET/HEAD with ranges). Any session id is served, with content derived from the id and the seed;
``Faults`` makes either server misbehave on demand.

    async with Simulator(SimConfig(seed=1)) as sim:
        ...  # talk to sim.api_url; inspect sim.requests and sim.stats

Modules: ``spec`` (the dataclasses), ``content`` (WAV bytes), ``sessions`` (derived data),
``auth``, ``ratelimit``, ``signing``, ``state`` (shared state), ``bodies`` (API wire format),
``transfer`` (streaming and broken bodies), ``app`` (API server), ``media`` (media host),
``simulator`` (lifecycle).
"""

from .spec import Faults, MediaSpec, SeenRequest, SessionSpec, SimConfig, SimStats
from .simulator import Simulator, serve

__all__ = ["Faults", "MediaSpec", "SeenRequest", "SessionSpec", "SimConfig", "SimStats", "Simulator", "serve"]
