"""Logging: JSON lines for machines, short text for people, secrets scrubbed either way.

Under systemd (``$JOURNAL_STREAM`` names our stderr) every line starts with its syslog
priority, ``<3>`` for errors and so on, which journald strips and files the line under, so
``journalctl -p err`` shows the errors. A traceback never spreads over lines: it is a field.

Structured fields travel as ``extra={"kv_session": ..., "kv_kind": ..., "kv_attempt": ...}``
and come out as top-level JSON keys (without the ``kv_`` prefix); a field passed without the
prefix comes out too, and string fields are scrubbed like the message. Inside a worker the
session id, kind and attempt are set once in a context variable and added to every line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any

from .config import ObservabilityConfig
from .redact import RedactingFilter, extra_fields

# (session id, kind, attempt) of the job the current task works on.
job_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("job_context", default=None)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    context = job_context.get()
    if context:
        out.update(context)
    out.update(extra_fields(record))
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(_fields(record))
        if record.exc_text:
            data["exc"] = record.exc_text
        elif record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def _one_line(value: Any) -> str:
    """A field for the text line: quoted and escaped when it holds spaces or control characters."""
    text = str(value)
    return text if text.isprintable() and " " not in text else json.dumps(text, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger: message [key=value ...]``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extras = " ".join(f"{k}={_one_line(v)}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += f" [{extras}]"
        trace = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else "")
        if trace:
            line += " exc=" + json.dumps(trace, ensure_ascii=False)  # one line, newlines escaped
        return line


# logging level -> syslog priority (sd-daemon(3)): journald reads a "<N>" prefix.
SYSLOG_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


class JournalPrefix(logging.Formatter):
    """Wraps a formatter and puts the line's syslog priority in front of it."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in SYSLOG_PRIORITIES if record.levelno >= level), 7)
        return f"<{priority}>{self.inner.format(record)}"


def journal_stream(stream: Any, env: Any = None) -> bool:
    """True when ``stream`` is the journal connection systemd announced in ``$JOURNAL_STREAM``.

    A child whose stderr was redirected inherits the variable too, hence the device and inode
    check (as sd_journal_stream_fd's documentation asks).
    """
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (AttributeError, ValueError, OSError):
        return False


def has_handler() -> bool:
    """Whether :func:`setup_logging` has installed its handler."""
    return any(getattr(h, "_archiver_handler", False) for h in logging.getLogger("archiver").handlers)


def setup_logging(obs: ObservabilityConfig, secrets: tuple[str, ...] = (), stream: Any = None) -> logging.Handler:
    """Install one handler on the ``archiver`` logger tree; returns it (tests remove it)."""
    stream = stream or sys.stderr
    use_json = obs.log_format == "json" or (obs.log_format == "auto" and not _isatty(stream))
    handler = logging.StreamHandler(stream)
    formatter: logging.Formatter = JsonFormatter() if use_json else TextFormatter()
    handler.setFormatter(JournalPrefix(formatter) if journal_stream(stream) else formatter)
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger("archiver")
    for old in list(root.handlers):
        if getattr(old, "_archiver_handler", False):
            root.removeHandler(old)
    handler._archiver_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(obs.log_level.upper())
    root.propagate = False
    # aiohttp and apscheduler log at INFO about things operators rarely need; asyncio's
    # "Task exception was never retrieved" gets the same one-line format as the rest.
    for name in ("aiohttp", "apscheduler", "asyncio"):
        other = logging.getLogger(name)
        for old in [h for h in other.handlers if getattr(h, "_archiver_handler", False)]:
            other.removeHandler(old)
        other.setLevel(logging.WARNING)
        other.addHandler(handler)
    return handler


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
