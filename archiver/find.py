"""``archiver find``: query the catalog and print the sessions found, as a table, JSON or CSV.

Rows are streamed from the catalog a page at a time, so memory does not grow with the number
of sessions found. ``--json`` prints one JSON array, ``--csv`` a header and one line per
session (lists joined with ``; ``), the table one line per session, then a count on stderr.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, TextIO

from .catalog import OUTPUT_FIELDS, Catalog, Filters
from .config import Config

TABLE = ("started (UTC)", "session", "direction", "caller", "agents", "queues", "dispositions", "duration", "vm",
         "files", "deleted")
_WIDTHS = (19, 24, 9, 16, 24, 16, 20, 8, 3, 5, 7)


def date_bounds(date_from: datetime | None, date_to: datetime | None) -> tuple[float | None, float | None]:
    """Unix-second bounds [from, to): a bare date as ``--to`` means the whole of that day."""
    start = date_from.timestamp() if date_from else None
    end = None
    if date_to is not None:
        if date_to.time() == datetime.min.time():
            date_to += timedelta(days=1)
        end = date_to.timestamp()
    return start, end


def run_find(config: Config, filters: Filters, out: TextIO, err: TextIO, *, fmt: str = "table", limit: int = 0) -> int:
    """Print the sessions the catalog holds that match ``filters``; returns how many."""
    with Catalog.open_existing(config.daemon.state_dir) as catalog:
        if catalog.count() == 0:
            print("archiver: the catalog is empty; if the archive is not, run `archiver state rebuild`", file=err)
        rows = catalog.find(filters, limit=limit)
        count = {"json": write_json, "csv": write_csv}.get(fmt, write_table)(rows, out)
    print(f"{count} session{'s' if count != 1 else ''}", file=err)
    return count


def _iso(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    flat = dict(row)
    flat["started_at"], flat["ended_at"] = _iso(row["started_at"]), _iso(row["ended_at"])
    flat["agents"] = "; ".join(a.get("name") or a.get("email") or a.get("id") or "" for a in row["agents"])
    flat["agent_emails"] = "; ".join(a.get("email", "") for a in row["agents"])
    flat["agent_ids"] = "; ".join(a.get("id", "") for a in row["agents"])
    for name in ("queues", "dispositions", "remarks"):
        flat[name] = "; ".join(row[name])
    return flat


def write_json(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    count = 0
    out.write("[")
    for row in rows:
        row = dict(row, started_at=_iso(row["started_at"]), ended_at=_iso(row["ended_at"]) or None)
        out.write(("\n" if count == 0 else ",\n") + json.dumps(row, ensure_ascii=False, sort_keys=True))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def write_csv(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    fields = list(OUTPUT_FIELDS) + ["agent_emails", "agent_ids"]
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(_flat(row))
        count += 1
    return count


def write_table(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    out.write(_line(TABLE))
    count = 0
    for row in rows:
        flat = _flat(row)
        duration = "" if row["duration"] is None else f"{row['duration']:.0f}s"
        vm = "" if row["voicemail"] is None else ("yes" if row["voicemail"] else "no")
        out.write(_line((flat["started_at"].replace("T", " ").rstrip("Z"), row["session_id"], row["direction"] or "",
                         row["caller"] or "", flat["agents"], flat["queues"], flat["dispositions"], duration, vm,
                         str(row["file_count"]), "yes" if row["deleted"] else "")))
        count += 1
    return count


def _line(cells: Iterable[str]) -> str:
    out = []
    for cell, width in zip(cells, _WIDTHS):
        cell = cell.replace("\n", " ")
        out.append(cell if len(cell) <= width else cell[: width - 1] + "…")
        out[-1] = out[-1].ljust(width)
    return "  ".join(out).rstrip() + "\n"


__all__ = ["run_find", "date_bounds", "write_json", "write_csv", "write_table"]
