"""A hostile inbox: whatever lands in the drop folder, the scanner neither crashes, hangs,
follows anything outside the inbox, nor loses a line silently.

Property-based (hypothesis) over whole files on disk, through the real scanner and job
store: arbitrary bytes, huge lines, mixed encodings, binary junk. Then the file-system
tricks: symlinks out of the inbox, FIFOs, a 100 MB file, a file still being written.
The promise checked: every file ends in processed/ or rejected/ (or quarantine/, unread),
byte for byte as dropped; every valid id is queued; every rejected line is in the report
with its line number.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.config import DaemonConfig
from archiver.idfile import MAX_LINE, InvalidItem, ParsedItem, UnparseableFile, parse_ids
from archiver.inbox import REPORT_LIMIT, Inbox
from archiver.store import JobStore

from .conftest import run_with_deadline

T0 = 1_700_000_000.0
LATER = T0 + 3600
MiB = 1024 * 1024
OWN = {"processed", "rejected", "quarantine", ".claimed"}


class Folder:
    """An inbox and its job store in a fresh temporary directory (one per hypothesis example)."""

    def __init__(self, root: Path, max_file_size: int = 256 * MiB) -> None:
        self.root = root
        self.dir = root / "inbox"
        self.dir.mkdir()
        self.store = JobStore.open_in(root / "state")
        self.inbox = Inbox(DaemonConfig(inbox_dir=self.dir, inbox_settle_time=2.0, inbox_max_file_size=max_file_size), self.store)

    def drop(self, name: str, data: bytes, mtime: float = T0) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))
        return path

    def queued(self) -> list[str]:
        return sorted(job.ext_id for job in self.store.iter_jobs())

    def close(self) -> None:
        self.store.close()


def scan_with_deadline(folder: Folder, now: float = LATER, seconds: float = 30.0):
    """Scan in a thread and fail (rather than hang the suite) if it blocks."""
    return run_with_deadline(lambda: folder.inbox.scan(now=now), seconds, "the inbox scan")


def reported_lines(note: Path) -> list[int]:
    return [int(m) for m in re.findall(r"^line (\d+): ", note.read_text(encoding="utf-8", errors="replace"), re.M)]


def check_taken(folder: Folder, name: str, data: bytes) -> None:
    """The scan took the file: moved whole into processed/ or rejected/, ids queued, junk reported."""
    [outcome] = scan_with_deadline(folder)
    assert outcome.disposition in ("processed", "rejected"), outcome
    assert set(os.listdir(folder.dir)) <= OWN  # nothing left behind, nothing created beside
    assert outcome.moved_to is not None and outcome.moved_to.read_bytes() == data
    try:
        items = list(parse_ids(_bytes_io(data), name, max_bytes=folder.inbox.daemon.inbox_max_file_size))
    except UnparseableFile:
        assert outcome.disposition == "rejected" and folder.queued() == []
        assert outcome.report is not None and outcome.report.exists()
        return
    valid = sorted({i.ext_id for i in items if isinstance(i, ParsedItem)})
    invalid = [i.line for i in items if isinstance(i, InvalidItem)]
    assert folder.queued() == valid
    assert outcome.invalid == len(invalid)
    if invalid:
        assert outcome.report is not None
        assert reported_lines(outcome.report) == invalid[:REPORT_LIMIT]


def _bytes_io(data: bytes):
    import io

    return io.BytesIO(data)


NAMES = st.sampled_from(["ids.txt", "ids", "ids.csv", "ids.json", "ids.ndjson", "IDS.TXT", "data.bin"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4000), name=NAMES)
def test_arbitrary_bytes_are_taken_whole_and_every_bad_line_reported(data: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        folder = Folder(Path(root))
        try:
            folder.drop(name, data)
            check_taken(folder, name, data)
        finally:
            folder.close()


VALID = st.from_regex(r"[0-9a-f]{24}", fullmatch=True).map(str.encode)
# Each kind of line: what it is, and whether it must be reported.
LINES = st.one_of(
    VALID.map(lambda b: (b, "id")),
    st.just((b"", "blank")),
    st.text(max_size=30).map(lambda t: (b"# " + t.encode().replace(b"\n", b" ").replace(b"\r", b" "), "comment")),
    st.binary(max_size=200).map(lambda b: (b"!" + b.replace(b"\n", b""), "junk")),
    st.sampled_from(["café", "naïve", "Müller", "€uro"]).map(lambda t: (t.encode("latin-1", "replace"), "junk")),
    st.sampled_from(["id-α", "ÿþ"]).map(lambda t: (t.encode("utf-16-le").replace(b"\n", b""), "junk")),
    st.integers(MAX_LINE + 1, 3 * MAX_LINE).map(lambda n: (b"7" * n, "junk")),
    st.binary(min_size=1, max_size=50).map(lambda b: (b"\x00\xff" + b.replace(b"\n", b""), "junk")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(LINES, max_size=40), crlf=st.booleans(), bom=st.booleans())
def test_mixed_lines_every_id_queued_every_bad_line_reported_by_number(lines, crlf: bool, bom: bool) -> None:
    ending = b"\r\n" if crlf else b"\n"
    body = [b"# ids from upstream"] + [line for line, _ in lines]
    data = (b"\xef\xbb\xbf" if bom else b"") + ending.join(body) + ending
    expected_ids = sorted({line.decode() for line, kind in lines if kind == "id"})
    expected_bad = [number + 2 for number, (_, kind) in enumerate(lines) if kind == "junk"]
    with tempfile.TemporaryDirectory() as root:
        folder = Folder(Path(root))
        try:
            folder.drop("ids.txt", data)
            [outcome] = scan_with_deadline(folder)
            assert folder.queued() == expected_ids
            assert outcome.invalid == len(expected_bad)
            if expected_bad:
                assert reported_lines(outcome.report) == expected_bad
            assert outcome.moved_to.read_bytes() == data
        finally:
            folder.close()


# -- file-system tricks ---------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path):
    f = Folder(tmp_path)
    yield f
    f.close()


def test_links_out_of_the_inbox_are_never_followed(folder: Folder, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "ids.txt"
    secret.write_text("a" * 24 + "\n")
    os.mkfifo(outside / "pipe")
    before = {p: (p.lstat().st_mtime_ns, p.lstat().st_atime_ns) for p in outside.iterdir()}
    links = {
        "to-file": secret, "to-dir": outside, "to-etc-passwd": Path("/etc/passwd"), "to-fifo": outside / "pipe",
        "dangling": outside / "nothing", "relative": Path("../outside/ids.txt"), "self": Path("self"),
    }
    for name, target in links.items():
        (folder.dir / name).symlink_to(target)
        os.utime(folder.dir / name, (T0, T0), follow_symlinks=False)
    outcomes = scan_with_deadline(folder)
    assert {o.name: o.disposition for o in outcomes} == {name: "moved_aside" for name in links}
    assert all(o.reason == "symbolic link" for o in outcomes)
    assert folder.queued() == []
    for path, stamps in before.items():  # not opened, not read, not moved
        assert (path.lstat().st_mtime_ns, path.lstat().st_atime_ns) == stamps
    assert secret.read_text() == "a" * 24 + "\n" and Path("/etc/passwd").exists()
    assert all((folder.dir / "quarantine" / o.moved_to.name).is_symlink() for o in outcomes)


def test_fifo_socket_and_directory_never_block_the_scan(folder: Folder) -> None:
    import socket

    os.mkfifo(folder.dir / "pipe")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(folder.dir / "sock"))
    (folder.dir / "subdir").mkdir()
    (folder.dir / "subdir" / "ids.txt").write_text("b" * 24)
    for name in ("pipe", "sock", "subdir"):
        os.utime(folder.dir / name, (T0, T0))
    try:
        outcomes = scan_with_deadline(folder, seconds=10)
    finally:
        sock.close()
    assert {o.name: (o.disposition, o.reason) for o in outcomes} == {
        "pipe": ("moved_aside", "FIFO"), "sock": ("moved_aside", "socket"), "subdir": ("moved_aside", "directory"),
    }
    assert folder.queued() == []


def test_a_100_mb_file_is_read_in_bounded_time_and_memory(folder: Folder) -> None:
    """100 MB of overlong lines, with ids after them: every id queued, every long line reported."""
    ids = [f"{n:024x}" for n in range(1, 51)]
    path = folder.dir / "big.txt"
    with open(path, "wb") as out:
        line = b"!" + b"\x00\xff" * (MiB // 2) + b"\n"
        for _ in range(100):
            out.write(line)
        out.write("\n".join(ids).encode() + b"\n")
    os.utime(path, (T0, T0))
    started = time.monotonic()
    [outcome] = scan_with_deadline(folder, seconds=60)
    assert time.monotonic() - started < 30
    assert outcome.disposition == "processed" and folder.queued() == ids
    assert reported_lines(outcome.report) == list(range(1, 101))


def test_a_file_over_the_size_limit_is_quarantined_unread(tmp_path: Path) -> None:
    folder = Folder(tmp_path, max_file_size=MiB)
    try:
        path = folder.dir / "huge.txt"
        with open(path, "wb") as out:
            out.truncate(100 * MiB)  # sparse: 100 MB without writing them
        os.utime(path, (T0, T0))
        [outcome] = scan_with_deadline(folder)
        assert outcome.disposition == "moved_aside" and "size limit" in outcome.reason
        assert folder.queued() == []
    finally:
        folder.close()


def test_a_file_still_being_written_is_left_until_it_settles(folder: Folder) -> None:
    now = time.time()
    path = folder.drop("ids.txt", b"a" * 24 + b"\n", mtime=now)  # the writer is at it
    assert [o.disposition for o in scan_with_deadline(folder, now=now)] == ["skipped"]
    with open(path, "ab") as out:
        out.write(b"b" * 24 + b"\n")
    os.utime(path, (now, now))
    [outcome] = scan_with_deadline(folder, now=now + 10)
    assert outcome.disposition == "processed" and folder.queued() == ["a" * 24, "b" * 24]


class WriterAppendsDuringTheRead:
    """A job store whose enqueue lets a writer append to the file after the scanner read it
    to its end and before the scanner moves it away (the writer ignored the settle time).
    The writer holds the file open, as a writer still at it does."""

    def __init__(self, store: JobStore, path: Path, more: bytes) -> None:
        self.store, self.more = store, more
        self.out = open(path, "ab")

    def enqueue(self, items, **kwargs):
        try:
            items = list(items)
        finally:
            self.out.write(self.more)
            self.out.close()
        return self.store.enqueue(items, **kwargs)


@pytest.mark.parametrize(
    "name, first, more",
    [
        ("ids.txt", b"a" * 24 + b"\n", b"b" * 24 + b"\n"),
        ("ids.json", b'{"sessionIds": ["' + b"a" * 24 + b'",', b' "' + b"b" * 24 + b'"]}'),
    ],
)
def test_a_file_that_grows_while_it_is_read_is_read_again(folder: Folder, name: str, first: bytes, more: bytes) -> None:
    """Regression: the file was moved to processed/ (or, half-written JSON, to rejected/) with
    the writer's last ids unread; those ids were lost. Now it stays claimed for the next scan."""
    path = folder.drop(name, first)
    folder.inbox._store = WriterAppendsDuringTheRead(folder.store, path, more)  # type: ignore[assignment]
    [outcome] = scan_with_deadline(folder)
    [claimed] = (folder.dir / ".claimed").iterdir()
    assert outcome.disposition == "skipped" and claimed.read_bytes() == first + more
    folder.inbox._store = folder.store
    os.utime(claimed, (T0, T0))
    [outcome] = scan_with_deadline(folder)
    assert outcome.disposition == "processed" and outcome.name == name
    assert folder.queued() == ["a" * 24, "b" * 24]
    assert not list((folder.dir / ".claimed").iterdir())


@pytest.mark.slow
def test_100_mb_of_random_bytes_and_of_short_junk_lines(folder: Folder) -> None:
    """The slow corners: 100 MB of random binary (about 400,000 lines of junk) and 100 MB of
    short invalid lines (about 9.5 million), each scanned to the end with a bounded report."""
    block = os.urandom(MiB)
    with open(folder.dir / "random.bin", "wb") as out:
        for _ in range(100):
            out.write(block)
    with open(folder.dir / "junk.txt", "wb") as out:
        out.write(b"not an id!\n" * (100 * MiB // 11))
    for name in ("random.bin", "junk.txt"):
        os.utime(folder.dir / name, (T0, T0))
    outcomes = {o.name: o for o in scan_with_deadline(folder, seconds=600)}
    # Random bytes hold the odd short line that is a valid id ("Q7", say): queued, the rest reported.
    assert outcomes["random.bin"].disposition in ("processed", "rejected")
    assert outcomes["junk.txt"].disposition == "rejected"
    for outcome in outcomes.values():
        assert outcome.invalid > 100_000
        assert len(reported_lines(outcome.report)) == REPORT_LIMIT
    assert outcomes["junk.txt"].moved_to.stat().st_size == 100 * MiB // 11 * 11
    assert len(folder.queued()) <= outcomes["random.bin"].accepted  # the same block, repeated


@pytest.mark.slow
def test_100_mb_json_document(folder: Folder) -> None:
    ids = [f"{n:024x}" for n in range(1, 1001)]
    document = {"sessionIds": ids, "padding": "x" * (100 * MiB)}
    folder.drop("big.json", json.dumps(document).encode())
    [outcome] = scan_with_deadline(folder, seconds=300)
    assert outcome.disposition == "processed" and folder.queued() == ids


class ProducerRenamesTheNextExportIntoPlace:
    """A job store whose enqueue lets a producer rename its next export into place under the
    same name while the scanner is reading the current file."""

    def __init__(self, store: JobStore, folder: Folder, name: str, data: bytes) -> None:
        self.store, self.folder, self.name, self.data = store, folder, name, data

    def enqueue(self, items, **kwargs):
        try:
            items = list(items)
        finally:
            staged = self.folder.root / "staged"
            staged.write_bytes(self.data)
            os.utime(staged, (T0, T0))
            os.rename(staged, self.folder.dir / self.name)
        return self.store.enqueue(items, **kwargs)


def test_a_file_replaced_under_its_name_while_read_is_a_new_file(folder: Folder) -> None:
    """Attack: the next export renamed into place under the same name during the read.
    Before: the scanner moved the new file (by name) to processed/ unread: 0 of its ids queued."""
    a, b = "a" * 24, "b" * 24
    folder.drop("export.txt", f"{a}\n".encode())
    folder.inbox._store = ProducerRenamesTheNextExportIntoPlace(  # type: ignore[assignment]
        folder.store, folder, "export.txt", f"{b}\n".encode())
    [first] = scan_with_deadline(folder)
    assert first.disposition == "processed" and first.moved_to.read_bytes() == f"{a}\n".encode()  # type: ignore[union-attr]
    assert (folder.dir / "export.txt").read_bytes() == f"{b}\n".encode()  # the new file is still here
    folder.inbox._store = folder.store
    [second] = scan_with_deadline(folder)
    assert second.disposition == "processed" and second.moved_to.read_bytes() == f"{b}\n".encode()  # type: ignore[union-attr]
    assert folder.queued() == [a, b]
    assert set(os.listdir(folder.dir)) == OWN and not os.listdir(folder.dir / ".claimed")


def test_a_file_from_the_future_is_read_once_settled_and_warned_about_once(folder: Folder) -> None:
    """Attack: a producer whose clock is a year ahead. Before: the file waited, silently
    (DEBUG only), for a year."""
    import logging

    from .reliability import Captured

    ahead = LATER + 365 * 86400
    folder.drop("ahead.txt", b"c" * 24 + b"\n", mtime=ahead)
    with Captured() as logs:
        [first] = scan_with_deadline(folder, now=LATER)
        assert first.disposition == "skipped" and folder.queued() == []
        [again] = scan_with_deadline(folder, now=LATER + 1)
        assert again.disposition == "skipped"
        [read] = scan_with_deadline(folder, now=LATER + 2)  # unchanged for the 2 s settle time
    assert read.disposition == "processed" and folder.queued() == ["c" * 24]
    warnings = [r for r in logs.records if r.levelno == logging.WARNING and "ahead.txt" in r.getMessage()]
    assert len(warnings) == 1 and "future" in warnings[0].getMessage()


def test_a_file_from_the_future_still_being_written_waits(folder: Folder) -> None:
    ahead = LATER + 86400
    path = folder.drop("ahead.txt", b"c" * 24 + b"\n", mtime=ahead)
    scan_with_deadline(folder, now=LATER)
    with open(path, "ab") as out:  # the writer is still at it: the clock starts again
        out.write(b"d" * 24 + b"\n")
    os.utime(path, (ahead + 5, ahead + 5))
    [outcome] = scan_with_deadline(folder, now=LATER + 2)
    assert outcome.disposition == "skipped" and folder.queued() == []
    [outcome] = scan_with_deadline(folder, now=LATER + 4)
    assert outcome.disposition == "processed" and folder.queued() == ["c" * 24, "d" * 24]
