"""What the backlog costs, and whether it is archived before the vendor deletes it.

The vendor deletes a recording ``kore.vendor_retention`` after its session (3 months by
default for new customers); the Contact Center budget (``kore.requests_per_minute`` per
``kore.rate_window``) bounds how fast a backlog drains. Workers take the earliest deadline
first (``JobStore.claim``), so the k-th job of the backlog in deadline order is done, at the
budget, after ``k * calls_per_session / rate`` seconds; a job whose deadline comes before
that is *at risk*. Jobs whose deadline has passed already are at risk too (and still tried).

``calls_per_session`` is measured: the Contact Center calls (recordings, voicemail, call
details) made per archived session, summed over every run into the job store's meta table.
Until 20 sessions are archived it is estimated from the configuration.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .config import Config
from .metrics import Metrics
from .store import JobStore

# The endpoints that spend the Contact Center budget while archiving (delete-after-archive is
# left out: it is optional and spent once per session whatever the archiving costs).
ARCHIVING_ENDPOINTS = frozenset({"v1_recordings", "v2_recordings", "voicemail", "call_details"})
CALLS_KEY = "usage.contact_center_calls"
ARCHIVED_KEY = "usage.archived_sessions"
MEASURED_AFTER = 20  # archived sessions before the measured ratio replaces the estimate


@dataclass(frozen=True)
class Outlook:
    """The backlog against its deadlines (times in Unix seconds; None when unknown)."""

    backlog: int
    earliest_deadline: float | None
    drain_seconds: float
    drains_before_earliest_deadline: bool | None
    at_risk: int
    past_deadline: int
    calls_per_session: float
    measured: bool  # calls_per_session measured, not estimated

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def api_calls(metrics: Metrics) -> float:
    """This process's Contact Center calls made while archiving (any answer)."""
    total = 0.0
    for metric in metrics.api_calls.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("endpoint") in ARCHIVING_ENDPOINTS:
                total += sample.value
    return total


def archived_sessions(metrics: Metrics) -> float:
    for metric in metrics.sessions.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("outcome") == "archived":
                return sample.value
    return 0.0


class Usage:
    """Adds this process's calls and archived sessions to the totals in the job store."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._flushed = (0.0, 0.0)

    def ratio(self) -> float:
        """This process's calls per archived session (0 before the first)."""
        archived = archived_sessions(self.metrics)
        return api_calls(self.metrics) / archived if archived else 0.0

    def flush(self, store: JobStore) -> None:
        """Add what happened since the last flush (blocking: call it in a thread)."""
        calls, archived = api_calls(self.metrics), archived_sessions(self.metrics)
        delta_calls, delta_archived = calls - self._flushed[0], archived - self._flushed[1]
        if delta_calls or delta_archived:
            store.add_meta_counts({CALLS_KEY: delta_calls, ARCHIVED_KEY: delta_archived})
        self._flushed = (calls, archived)


def measured_ratio(store: JobStore) -> tuple[float, float] | None:
    """(calls per archived session, sessions) over every run, or None before any."""
    calls, archived = (_float(store.get_meta(key)) for key in (CALLS_KEY, ARCHIVED_KEY))
    return (calls / archived, archived) if archived else None


def estimated_calls(config: Config) -> float:
    """Calls per session from the configuration alone (recordings + voicemail)."""
    return max(1.0, float(int(config.kore.fetch_recordings) + int(config.kore.fetch_voicemail)))


def calls_per_session(config: Config, store: JobStore) -> tuple[float, bool]:
    """The measured ratio once enough sessions are archived, else the estimate."""
    measured = measured_ratio(store)
    if measured is not None and measured[1] >= MEASURED_AFTER:
        return measured[0], True
    return estimated_calls(config), False


def outlook(config: Config, store: JobStore, now: float) -> Outlook:
    """The backlog in deadline order against the budget (blocking: the store reads only the
    jobs that can miss their deadline; nothing here grows with the queue)."""
    per_session, measured = calls_per_session(config, store)
    rate = config.kore.requests_per_minute / config.kore.rate_window  # calls a second
    step = per_session / rate
    backlog, first = store.backlog()
    retention = config.kore.vendor_retention
    at_risk = past = 0
    if retention and backlog:
        at_risk, past = store.at_risk(retention, now, step, backlog)
    earliest = first + retention if retention and first is not None else None
    drain = backlog * step
    return Outlook(
        backlog=backlog,
        earliest_deadline=earliest,
        drain_seconds=drain,
        drains_before_earliest_deadline=None if earliest is None else now + drain <= earliest,
        at_risk=at_risk,
        past_deadline=past,
        calls_per_session=round(per_session, 4),
        measured=measured,
    )


def _float(text: str | None) -> float:
    try:
        value = float(text) if text is not None else 0.0
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value >= 0 else 0.0
