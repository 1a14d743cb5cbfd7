"""The progress line of ``archiver once`` on a terminal.

One line at the bottom, redrawn twice a second by tqdm: sessions finished of those known, an
ETA, bytes written and the rate (IEC units), and what the run is waiting for (the API budget,
an outage, the disk). Log lines go above it: the log handler's stream is wrapped so that each
record is written with ``tqdm.write``, which lifts the bar, writes the line and puts the bar
back. (tqdm's ``logging_redirect_tqdm`` would replace the handler instead, dropping its
secret-scrubbing filter.) When the run ends the bar is left as it was and the summary starts
on a line of its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, TextIO

from tqdm import tqdm

from .config import format_size

REFRESH = 0.5  # seconds between redraws
SHOWN_WAIT = 1.0  # a wait for the API budget shorter than this is not worth a word

BAR_FORMAT = "{n_fmt}/{total_fmt} sessions |{bar:20}| {percentage:3.0f}%  ETA {remaining}  {postfix}"


class AboveTheBar:
    """A stream for the log handler: every record lands above the progress line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        tqdm.write(text.rstrip("\n"), file=self.stream)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


def _log_handlers() -> list[logging.StreamHandler[Any]]:
    return [
        h for h in logging.getLogger("archiver").handlers
        if getattr(h, "_archiver_handler", False) and isinstance(h, logging.StreamHandler)
    ]


def waiting_for(service: Any) -> str:
    """What holds the run right now, in a few words ("" when nothing does)."""
    reasons = [reason.split(":")[0] for reason in service.degraded()] if hasattr(service, "degraded") else []
    client = getattr(service, "client", None)
    if client is not None:
        wait = client.limiter.wait_left()
        if wait >= SHOWN_WAIT:
            reasons.append(f"waiting {wait:.0f}s for the API rate limit")
    return ", ".join(reasons)


async def show_progress(service: Any, out: TextIO | None = None) -> None:
    """Draw the progress line until cancelled; then leave it and end its line."""
    out = out or sys.stdout
    # A terminal that reports no size (a fresh pty) would get its bar hidden: assume one.
    sized = _columns(out) > 0
    size = {"dynamic_ncols": True} if sized else {"ncols": 100, "nrows": 24}
    bar = tqdm(total=0, file=out, bar_format=BAR_FORMAT, leave=True, mininterval=0, **size)
    handlers = _log_handlers()
    streams = [h.setStream(AboveTheBar(h.stream)) for h in handlers]  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        while True:
            await asyncio.sleep(REFRESH)
            if service.pool is not None and service.store is not None:
                # The store is read in a worker thread: an ingest may hold its write lock.
                pending = (await service.store.run(service.store.counts)).get("pending", 0)
                _draw(bar, service, loop.time() - started, pending=pending)
    finally:
        if service.pool is not None:
            _draw(bar, service, loop.time() - started, final=True)
        bar.close()
        for handler, stream in zip(handlers, streams):
            handler.setStream(stream)  # type: ignore[arg-type]


def _columns(out: TextIO) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


def _draw(bar: tqdm, service: Any, elapsed: float, *, pending: int = 0, final: bool = False) -> None:
    stats = service.pool.stats
    finished = stats.done + stats.failed + stats.deferred
    bar.total = max(finished + pending + service.pool.active, finished)
    if finished > bar.n:
        bar.update(finished - bar.n)
    rate = stats.bytes / max(elapsed, 0.001)
    parts = [f"{format_size(stats.bytes)}", f"{format_size(rate)}/s"]
    waiting = "" if final else waiting_for(service)
    if waiting:
        parts.append(waiting)
    bar.set_postfix_str("  ".join(parts), refresh=False)
    bar.refresh()
