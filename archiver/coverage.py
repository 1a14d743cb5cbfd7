"""Coverage: the proof that every call the vendor knows was archived.

For each UTC day, the voice calls Call Details v2 lists (the vendor's own record of every
call) are set against the archive and the job store. Each call is, in this order:

- ``archived``: its manifest is in the archive with audio and no failed part;
- ``archived_no_media``: its manifest is there without audio (the vendor's reason, such as
  ``media_unavailable``, is kept beside it);
- ``pending``: queued (pending, running or deferred);
- ``failed``: its job failed, or its manifest holds a failed part, or the job store says done
  while the archive holds no manifest;
- ``missing``: known to the vendor, never queued and not in the archive.

A day is asked for as [00:00:00, next day 00:00:00] and the records are kept by their own
start time, so a call in the day's last second is counted whether the vendor's ``endDate``
includes its second or not, and a call of the next day is not counted twice.

The daemon writes each day's report into the archive as ``coverage/YYYY-MM-DD.json``
(atomically) and records its sha256 in ``coverage/index.json``, the evidence an auditor reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .archive_reader import ArchiveReader
from .targets import open_reader
from .atomicfile import write_json_sync
from .calldetails import CallDetails, CallRecords, is_voice, session_start
from .config import Config
from .ids import SESSION
from .manifest import RECORDINGS, VOICEMAIL, now_iso, read_json
from .store import DEFERRED, DONE, FAILED, PENDING, RUNNING, JobStore

log = logging.getLogger("archiver.coverage")

COVERAGE_DIR = "coverage"
INDEX_FILE = "index.json"
REPORT_FORMAT = 1
OUTCOMES = ("archived", "archived_no_media", "pending", "failed", "missing")
DAY = timedelta(days=1)


@dataclass
class DayCoverage:
    """One day: every voice call the vendor knows, by outcome (reasons where there are any)."""

    day: date
    archived: list[str] = field(default_factory=list)
    archived_no_media: dict[str, str] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    calls: int = 0  # Call Details calls this day took

    @property
    def known(self) -> int:
        return sum(len(getattr(self, name)) for name in OUTCOMES)

    @property
    def complete(self) -> bool:
        """Nothing missing and nothing failed."""
        return not self.missing and not self.failed

    def counts(self) -> dict[str, int]:
        return {"vendor_known": self.known, **{name: len(getattr(self, name)) for name in OUTCOMES}}

    def as_dict(self) -> dict[str, Any]:
        """The report's JSON form (ids sorted, so two runs over the same state agree)."""
        return {
            "format": REPORT_FORMAT,
            "date": self.day.isoformat(),
            "generated_at": now_iso(),
            "counts": self.counts(),
            "sessions": {
                "archived": sorted(self.archived),
                "archived_no_media": dict(sorted(self.archived_no_media.items())),
                "pending": sorted(self.pending),
                "failed": dict(sorted(self.failed.items())),
                "missing": sorted(self.missing),
            },
        }


def day_bounds(day: date) -> tuple[float, float]:
    """Unix seconds of the day's first instant and of the next day's."""
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()
    return start, start + 86400.0


class Coverage:
    """Builds coverage reports from the vendor's call details, the archive and the job store."""

    def __init__(self, config: Config, store: JobStore, calls: CallDetails, *, reader: ArchiveReader | None = None) -> None:
        self.config = config
        self.store = store
        self.calls = calls
        self.reader = reader or open_reader(config)

    async def day(self, day: date, *, records: CallRecords | None = None) -> DayCoverage:
        """The coverage of one UTC day; ``records`` also keeps each call's record (for
        ``--enqueue-missing``: the sessions queued then need no call for their metadata)."""
        start, end = day_bounds(day)
        report = DayCoverage(day)
        known: set[str] = set()
        walk = self.calls.walk(start, end)
        async for batch in walk:
            voice = [r for r in batch if is_voice(r) and _within(r, start, end)]
            known.update(r["sessionId"] for r in voice)
            if records is not None:
                await records.keep(voice)
        await asyncio.to_thread(self._classify, sorted(known), report)
        return report

    def _classify(self, session_ids: list[str], report: DayCoverage) -> None:
        for session_id in session_ids:
            outcome, reason = self._outcome(session_id)
            bucket = getattr(report, outcome)
            if isinstance(bucket, dict):
                bucket[session_id] = reason or ""
            else:
                bucket.append(session_id)

    def _outcome(self, session_id: str) -> tuple[str, str | None]:
        stored = self.reader.session(SESSION, session_id)
        manifest = stored.manifest if stored is not None else None
        if manifest is not None:
            parts = manifest.get("parts") if isinstance(manifest.get("parts"), dict) else {}
            failed = sorted(name for name, part in parts.items() if isinstance(part, dict) and part.get("status") == "failed")
            if failed:
                return "failed", f"the vendor reports {', '.join(failed)} as failed"
            files = manifest.get("files") if isinstance(manifest.get("files"), list) else []
            if any(isinstance(f, dict) and f.get("kind") == "audio" for f in files):
                return "archived", None
            return "archived_no_media", _no_media_reason(parts)
        job = self.store.get(SESSION, session_id)
        if job is None:
            return "missing", None
        if job.state in (PENDING, RUNNING, DEFERRED):
            return "pending", None
        if job.state == FAILED:
            return "failed", job.last_error or "failed"
        assert job.state == DONE
        return "failed", "the job store says archived but the archive holds no manifest"


def _within(record: dict[str, Any], start: float, end: float) -> bool:
    started = session_start(record)
    return started is None or start <= started < end


def _no_media_reason(parts: dict[str, Any]) -> str:
    reasons = []
    for name in (RECORDINGS, VOICEMAIL):
        part = parts.get(name)
        if isinstance(part, dict) and part.get("status"):
            reasons.append(f"{name}: {part['status']}")
    return "; ".join(reasons) or "no media"


# -- the reports in the archive ----------------------------------------------------------------


def write_report(root: Path, report: DayCoverage) -> tuple[Path, str]:
    """Write ``coverage/<day>.json`` atomically, then its sha256 into the index (blocking)."""
    directory = root / COVERAGE_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{report.day.isoformat()}.json"
    size, digest = write_json_sync(path, report.as_dict())
    index_path = directory / INDEX_FILE
    index = read_json(index_path) or {}
    reports = index.get("reports") if isinstance(index.get("reports"), dict) else {}
    reports[report.day.isoformat()] = {
        "file": path.name, "size": size, "sha256": digest, "written_at": now_iso(), **report.counts(),
    }
    write_json_sync(index_path, {"format": REPORT_FORMAT, "reports": dict(sorted(reports.items()))})
    return path, digest


def days(date_from: date, date_to: date) -> list[date]:
    """Every day from ``date_from`` to ``date_to``, both included."""
    return [date_from + timedelta(days=n) for n in range((date_to - date_from).days + 1)]


async def enqueue_missing(store: JobStore, report: DayCoverage) -> int:
    """Queue the day's missing sessions; returns how many were added."""
    if not report.missing:
        return 0
    result = await asyncio.to_thread(store.enqueue, [(SESSION, sid) for sid in report.missing])
    return result.added


def yesterday(now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> date:
    """The UTC day before today: the one the daemon reports on."""
    return (now() - DAY).date()


# -- archiver coverage -------------------------------------------------------------------------

# Ids listed per outcome and day in the text output; --json lists them all.
SHOWN_IDS = 50


async def run_coverage(
    config: Config, date_from: date, date_to: date, *, as_json: bool = False, enqueue: bool = False, out: Any = None
) -> int:
    """``archiver coverage``: print each day's coverage; 1 when anything is missing or failed."""
    import json
    import sys

    from .client import KoreClient, api_session

    out = out or sys.stdout
    reports: list[DayCoverage] = []
    queued = 0
    with JobStore.open_in(config.daemon.state_dir) as store:
        async with api_session(config) as http:
            calls = CallDetails(KoreClient(config, http, store=store))
            coverage = Coverage(config, store, calls)
            records = CallRecords(config, store, calls) if enqueue else None
            for day in days(date_from, date_to):
                report = await coverage.day(day, records=records)
                reports.append(report)
                if enqueue:
                    queued += await enqueue_missing(store, report)
    if as_json:
        document = {"days": [r.as_dict() for r in reports], "complete": all(r.complete for r in reports)}
        if enqueue:
            document["enqueued"] = queued
        print(json.dumps(document, indent=2), file=out)
    else:
        for report in reports:
            _print_day(report, out)
        if enqueue:
            print(f"queued {queued} missing sessions", file=out)
    return 0 if all(r.complete for r in reports) else 1


def _print_day(report: DayCoverage, out: Any) -> None:
    counts = report.counts()
    print(
        f"{report.day}: vendor knows {counts['vendor_known']} voice sessions: archived {counts['archived']}, "
        f"archived with no media {counts['archived_no_media']}, pending {counts['pending']}, "
        f"failed {counts['failed']}, missing {counts['missing']}",
        file=out,
    )
    listed: list[tuple[str, str, str]] = [("missing", sid, "") for sid in sorted(report.missing)]
    listed += [("failed", sid, reason) for sid, reason in sorted(report.failed.items())]
    listed += [("no media", sid, reason) for sid, reason in sorted(report.archived_no_media.items())]
    for outcome, sid, reason in listed[:SHOWN_IDS]:
        print(f"  {outcome:<8} {sid}{': ' + reason if reason else ''}", file=out)
    if len(listed) > SHOWN_IDS:
        print(f"  ... and {len(listed) - SHOWN_IDS} more (--json lists them all)", file=out)
