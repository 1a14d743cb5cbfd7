"""Structured log fields reach the line: every field the code passes, in JSON and in text."""

from __future__ import annotations

import ast
import io
import json
import logging
import time
from pathlib import Path

from archiver.config import DaemonConfig, ObservabilityConfig
from archiver.inbox import Inbox
from archiver.logsetup import setup_logging
from archiver.store import JobStore

PACKAGE = Path(__file__).resolve().parent.parent / "archiver"


def capture(log_format: str = "json", secrets: tuple[str, ...] = ()) -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    return stream, setup_logging(ObservabilityConfig(log_format=log_format, log_level="DEBUG"), secrets, stream=stream)


def release(handler: logging.Handler) -> None:
    for name in ("archiver", "aiohttp", "apscheduler", "asyncio"):
        logging.getLogger(name).removeHandler(handler)


def test_every_structured_field_of_an_inbox_scan_reaches_the_json_line(tmp_path):
    daemon = DaemonConfig(inbox_dir=tmp_path / "inbox", state_dir=tmp_path / "state", inbox_settle_time=0.0)
    daemon.inbox_dir.mkdir()
    (daemon.inbox_dir / "ids.txt").write_text("67ab573f3685d1ba99541234\nnot an id!\n")
    stream, handler = capture()
    try:
        with JobStore.open_in(daemon.state_dir) as store:
            Inbox(daemon, store).scan(now=time.time() + 60)
    finally:
        release(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    processed = [r for r in lines if r["logger"] == "archiver.inbox" and "processed" in r["msg"]]
    assert processed, lines
    assert {k: processed[0][k] for k in ("file", "disposition", "accepted", "invalid")} == {
        "file": "ids.txt", "disposition": "processed", "accepted": 1, "invalid": 1,
    }


def test_fields_with_or_without_the_prefix_are_kept_and_scrubbed_in_both_formats():
    for log_format in ("json", "text"):
        stream, handler = capture(log_format, secrets=("s3cr3t-value",))
        try:
            logging.getLogger("archiver.test").warning(
                "hello", extra={"kv_session": "abc", "file": "a b\nc", "token": "x s3cr3t-value y"}
            )
        finally:
            release(handler)
        text = stream.getvalue()
        assert "s3cr3t-value" not in text
        if log_format == "json":
            record = json.loads(text)
            assert record["session"] == "abc" and record["file"] == "a b\nc" and "token" in record
        else:
            assert text.count("\n") == 1 and "session=abc" in text and 'file="a b\\nc"' in text


def test_every_extra_key_in_the_package_is_a_field_the_formatter_emits():
    """Every ``extra={...}`` in archiver/ uses keys a record can carry (no clash with LogRecord's)."""
    reserved = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "extra" and isinstance(node.value, ast.Dict):
                found += [(path.name, k.value) for k in node.value.keys if isinstance(k, ast.Constant)]
    assert found
    assert [key for key in found if key[1] in reserved] == []
