"""Benchmark: ``archiver find`` on a catalog of a million sessions.

    python tests/benchmarks/bench_catalog.py [--sessions 1000000] [--keep DIR]

Builds a catalog synthetically, through the same ``Catalog.upsert`` the archiver uses: a year
of sessions (ObjectId-like ids, dates spread evenly), each with two files, a call-details
block drawn from small pools of agents, queues, dispositions and callers, and, for one
session in four, a short transcript for the full-text index. Then it times, with the query
and the output formatting of ``archiver find`` (``run_find`` into memory):

- a dated query: one day (about 2,700 sessions at a million), the target (under 1 s);
- a dated query with an agent filter over a month;
- a dated query with ``--text`` over a month;
- an agent filter alone (a scan of every row; reported, no target).

Passes (exit status 0, ``"ok": true`` on the last line, which is JSON) when the one-day query
takes under 1 s and every dated query under 2 s.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from archiver.catalog import Catalog, CatalogEntry, Filters, _keys  # noqa: E402
from archiver.find import run_find  # noqa: E402

DATED_LIMIT_S = 1.0
OTHER_DATED_LIMIT_S = 2.0
YEAR_START = 1_704_067_200  # 2024-01-01T00:00:00Z
YEAR = 366 * 86400
DAY = 86400
AGENTS = [{"name": f"Agent {i:03d}", "email": f"agent{i:03d}@example.com", "id": f"a-{i:03d}"} for i in range(200)]
QUEUES = ["Billing", "Sales", "Support", "Retention", "Claims", "Onboarding"]
DISPOSITIONS = ["Resolved", "Callback", "Escalated", "Voicemail", "Abandoned"]
WORDS = ("refund invoice order delivery address password account cancel upgrade warranty complaint "
         "payment card balance transfer appointment insurance claim policy renewal").split()
_CONFIG = type("C", (), {})


def entries(count: int, rng: random.Random):
    step = YEAR / count
    for i in range(count):
        started = YEAR_START + i * step + rng.random() * step
        sid = f"{int(started):08x}{i:016x}"
        agents = rng.sample(AGENTS, rng.choice((0, 1, 1, 2)))
        queues = rng.sample(QUEUES, rng.choice((0, 1, 1, 2)))
        dispositions = [rng.choice(DISPOSITIONS)]
        caller = f"+1 555 {rng.randrange(10**7):07d}"
        row = {
            "id_type": "session", "session_id": sid, "bot_id": "st-bench", "started_at": started,
            "ended_at": started + 300, "duration": 300.0, "direction": rng.choice(("inbound", "outbound")),
            "caller": caller, "callee": "+1 800 555 0100", "dialed_number": None,
            "agents": json.dumps(agents, sort_keys=True), "queues": json.dumps(queues),
            "dispositions": json.dumps(dispositions), "remarks": "[]", "voicemail": 0, "final_status": "completed",
            "call_details": 1, "agent_keys": _keys(v for a in agents for v in a.values()),
            "caller_keys": _keys([caller]), "queue_keys": _keys(queues), "disposition_keys": _keys(dispositions),
            "parts": '{"recordings": "success"}', "file_count": 2, "bytes": 1_500_000, "archived_at": None,
            "deleted": 0, "deletion": None, "target": "file", "location": f"st-bench/{sid}",
        }
        files = [(f"recordings/{sid}-merged.wav", 1_499_000, f"{i:064x}", "audio"),
                 (f"recordings/{sid}-merged.wav.json", 1_000, f"{i + 1:064x}", "sidecar")]
        text = " ".join(rng.choice(WORDS) for _ in range(12)) if i % 4 == 0 else ""
        yield CatalogEntry(row=row, files=files, text=text)


def build(state_dir: Path, count: int) -> float:
    rng = random.Random(15)
    started = time.perf_counter()
    catalog = Catalog.open_in(state_dir)
    try:
        batch: list[CatalogEntry] = []
        for entry in entries(count, rng):
            batch.append(entry)
            if len(batch) == 20_000:
                catalog.upsert(batch)
                batch.clear()
        catalog.upsert(batch)
    finally:
        catalog.close()
    return time.perf_counter() - started


def timed_find(state_dir: Path, filters: Filters) -> tuple[float, int]:
    config = _CONFIG()
    config.daemon = type("D", (), {"state_dir": state_dir})()
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    found = run_find(config, filters, out, err)  # type: ignore[arg-type]
    return time.perf_counter() - started, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="build the catalog here and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    try:
        build_s = build(work, args.sessions)
        day = YEAR_START + 100 * DAY
        month = (YEAR_START + 120 * DAY, YEAR_START + 150 * DAY)
        queries = {
            "one_day": Filters(date_from=day, date_to=day + DAY),
            "month_agent": Filters(date_from=month[0], date_to=month[1], agent="agent007"),
            "month_text": Filters(date_from=month[0], date_to=month[1], text="refund warranty"),
            "agent_all_dates": Filters(agent="agent042@example.com"),
        }
        figures: dict[str, object] = {"sessions": args.sessions, "build_s": round(build_s, 1),
                                      "catalog_mib": round(sum(p.stat().st_size for p in work.iterdir()) / 2**20, 1)}
        for name, filters in queries.items():
            timed_find(work, filters)  # warm the page cache, as a second query would find it
            seconds, found = timed_find(work, filters)
            figures[f"{name}_s"] = round(seconds, 3)
            figures[f"{name}_found"] = found
        dated = [figures["month_agent_s"], figures["month_text_s"]]
        figures["ok"] = bool(figures["one_day_s"] < DATED_LIMIT_S and all(s < OTHER_DATED_LIMIT_S for s in dated)
                             and figures["one_day_found"] > 0)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
