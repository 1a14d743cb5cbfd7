"""The inbox: the id parser (examples and properties) and the folder scanner (files on disk)."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver import ids
from archiver.errors import UnsafeInputError
from archiver.config import DaemonConfig
from archiver.idfile import MAX_SHOWN, InvalidItem, ParsedItem, UnparseableFile, parse_ids
from archiver.inbox import FileOutcome, Inbox
from archiver.store import DONE, PENDING, JobStore

from .conftest import run_with_deadline

T0 = 1_700_000_000.0
LATER = T0 + 3600  # a scan time by which every file in these tests has settled
STAMP = "20231114T231320Z"  # LATER in UTC, as moved files are named
A, B, C = "a" * 24, "b" * 24, "c" * 24


def parse(data: bytes, name: str = "ids.txt") -> list[ParsedItem | InvalidItem]:
    return list(parse_ids(io.BytesIO(data), name))


def valid(items) -> list[tuple[str, str]]:
    return [(i.id_type, i.ext_id) for i in items if isinstance(i, ParsedItem)]


def invalid(items) -> list[tuple[int, str]]:
    return [(i.line, i.value) for i in items if isinstance(i, InvalidItem)]


# -- parser: examples ----------------------------------------------------------------------


def test_lines_tolerate_bom_crlf_blanks_and_comments() -> None:
    data = b"\xef\xbb\xbf" + f"{A}\r\n\r\n# a comment\n   {B}  # why\n\t{C}".encode()
    items = parse(data)
    assert valid(items) == [(ids.SESSION, A), (ids.SESSION, B), (ids.SESSION, C)]
    assert [i.line for i in items] == [1, 4, 5]


def test_lines_report_each_bad_line_with_number_and_reason() -> None:
    data = f"{A}\nnot an id\n".encode() + b"\xff\xfe bad utf8\n" + b"x" * 100_000 + f"\n{B}\n".encode()
    items = parse(data)
    assert valid(items) == [(ids.SESSION, A), (ids.SESSION, B)]
    bad = [i for i in items if isinstance(i, InvalidItem)]
    assert [i.line for i in bad] == [2, 3, 4]
    assert "invalid session id" in bad[0].reason and bad[0].value == "not an id"
    assert bad[1].reason == "not valid UTF-8" and bad[1].value.startswith("\\xff\\xfe")
    assert "longer than 4096 bytes" in bad[2].reason and len(bad[2].value) == MAX_SHOWN
    assert [i.line for i in items if isinstance(i, ParsedItem)] == [1, 5]


def test_invalid_values_are_escaped_and_truncated() -> None:
    [item] = parse(b"evil\x1b[31m\x07value" + b"z" * 200 + b"\n")
    assert isinstance(item, InvalidItem)
    assert "\x1b" not in item.value and "\x07" not in item.value
    assert item.value.startswith("evil\\x1b[31m\\x07value") and len(item.value) == MAX_SHOWN


@pytest.mark.parametrize(
    "name, data",
    [
        ("ids.csv", f'date,sessionId,agent\n2024-01-01,{A},x\n2024-01-02,"{B}",y\n'),
        ("ids.csv", f"Session ID;other\n{A};1\n{B};2\n"),
        ("ids.csv", f"session_id\t n\n{A}\t1\n\n{B}\t2\n"),
        ("export", f"agent,session_id\nx,{A}\ny,{B}\n"),  # sniffed
        ("ids.txt", f"sessionId\n{A}\n{B}\n"),  # a one-column list with a header
        ("ids.csv", f"{A}\n{B}\n"),  # a one-column CSV without header
    ],
)
def test_csv(name: str, data: str) -> None:
    assert valid(parse(data.encode(), name)) == [(ids.SESSION, A), (ids.SESSION, B)]


def test_csv_user_ids_and_bad_rows() -> None:
    items = parse(b"name,userId\nx,agent@example.com\ny\nz,bad..id\n", "users.csv")
    assert valid(items) == [(ids.USER, "agent@example.com")]
    assert [(i.line, i.reason) for i in items if isinstance(i, InvalidItem)] == [
        (3, "no userId value"),
        (4, "invalid user id (only letters, digits and . _ @ + - are allowed (no '..'))"),
    ]


def test_csv_without_id_column_is_unparseable() -> None:
    with pytest.raises(UnparseableFile, match="no sessionId"):
        parse(b"date,agent\n1,2\n", "x.csv")


@pytest.mark.parametrize(
    "name, data",
    [
        ("ids.json", f'["{A}", "{B}"]'),
        ("ids.json", f'[{{"sessionId": "{A}", "x": 1}}, {{"session_id": "{B}"}}]'),
        ("ids.json", f'{{"meta": {{"n": 2}}, "sessionIds": ["{A}", "{B}"]}}'),
        ("ids.json", f'{{"session_ids": ["{A}"], "other": [1, 2], "sessionIds": ["{B}"]}}'),
        ("drop", f'\n\n  [\n"{A}",\n"{B}"\n]\n'),  # sniffed
        ("ids.ndjson", f'"{A}"\n\n{{"sessionId": "{B}"}}\n'),
        ("ids.jsonl", f'{{"sessionIds": ["{A}", "{B}"]}}\n'),
        ("drop", f'{{"sessionId": "{A}"}}\n{{"sessionId": "{B}"}}\n'),  # sniffed NDJSON
        ("ids.json", f'{{"sessionId": "{A}"}}\r\n{{"sessionId": "{B}"}}\r\n'),  # NDJSON named .json
        ("ids.json", "\ufeff" + f'["{A}", "{B}"]'),
    ],
)
def test_json_and_ndjson(name: str, data: str) -> None:
    assert valid(parse(data.encode(), name)) == [(ids.SESSION, A), (ids.SESSION, B)]


def test_json_user_ids_and_invalid_elements_with_lines() -> None:
    data = f'{{\n  "userIds": [\n    "agent@example.com",\n    42,\n    "bad id"\n  ],\n  "sessionIds": "{A}"\n}}'
    items = parse(data.encode(), "x.json")
    assert valid(items) == [(ids.USER, "agent@example.com")]
    assert [(i.line, i.value) for i in items if isinstance(i, InvalidItem)] == [
        (4, "42"),
        (5, "bad id"),
        (7, f'"{A}"'),
    ]


@pytest.mark.parametrize(
    "data, message",
    [
        (f'["{A}", "{B}"', "truncated"),
        (f'{{"sessionIds": ["{A}"]', "truncated"),
        ('["a" "b"]', "expected"),
        ("42", "neither an array nor an object"),
        ("[" * 100_000, "invalid JSON"),
    ],
)
def test_broken_json_is_unparseable_before_any_item(data: str, message: str) -> None:
    items = parse_ids(io.BytesIO(data.encode()), "x.json")
    with pytest.raises(UnparseableFile, match=message):
        next(items)


def test_json_larger_than_cap_is_unparseable() -> None:
    data = json.dumps([A] * 100).encode()
    assert len(valid(parse_ids(io.BytesIO(data), "x.json", max_bytes=len(data)))) == 100
    with pytest.raises(UnparseableFile, match="larger than"):
        list(parse_ids(io.BytesIO(data), "x.json", max_bytes=len(data) - 1))


def test_utf16_is_unparseable() -> None:
    with pytest.raises(UnparseableFile, match="UTF-16"):
        parse(f"\ufeff{A}\r\n".encode("utf-16-le"))


def test_empty_inputs_yield_nothing() -> None:
    for name in ("a.txt", "a.csv", "a.json", "a.ndjson", "a"):
        assert parse(b"", name) == []
    assert parse(b"\n# only a comment\n\n") == []
    assert parse(b'{"sessionIds": []}', "a.json") == []


# -- parser: properties ------------------------------------------------------------------

NAMES = st.sampled_from(["ids.txt", "ids.csv", "ids.json", "ids.ndjson", "ids.jsonl", "ids", "IDS.JSON"])
session_ids = st.from_regex(ids.SESSION_ID_RE, fullmatch=True)
junk_lines = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.text(max_size=40).map(str.encode),
        session_ids.map(str.encode),
        st.sampled_from(
            [b"#", b"[", b"{", b"]", b"}", b",", b'"', b"sessionId,x", b'{"sessionIds": [', b"\xef\xbb\xbf"]
        ),
    ),
    max_size=30,
).map(lambda parts: b"\n".join(parts))


def check_items(data: bytes, name: str) -> None:
    items = parse_ids(io.BytesIO(data), name)
    yielded = 0
    try:
        for item in items:
            yielded += 1
            if isinstance(item, ParsedItem):
                assert ids.id_problem(item.id_type, item.ext_id) is None
                assert item.line >= 1
            else:
                assert isinstance(item, InvalidItem)
                assert item.line >= 1 and item.reason
                assert len(item.value) <= MAX_SHOWN and item.value.isprintable()
    except UnparseableFile:
        # The documented way to say "not this format at all", and only before any item.
        assert yielded == 0


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2000), name=NAMES)
def test_arbitrary_bytes_never_crash_the_parser(data: bytes, name: str) -> None:
    check_items(data, name)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=junk_lines, name=NAMES)
def test_near_miss_inputs_never_crash_the_parser(data: bytes, name: str) -> None:
    check_items(data, name)


@given(
    values=st.lists(session_ids, max_size=20),
    fmt=st.sampled_from(["lines", "csv", "json", "json-objects", "ndjson"]),
    crlf=st.booleans(),
    bom=st.booleans(),
)
def test_every_format_round_trips_valid_ids(values: list[str], fmt: str, crlf: bool, bom: bool) -> None:
    if fmt == "lines":
        name, text = "ids.txt", "\n".join(["# ids", *values, ""])
    elif fmt == "csv":
        name, text = "ids.csv", "\n".join(["n,sessionId", *(f"{i},{v}" for i, v in enumerate(values))])
    elif fmt == "json":
        name, text = "ids.json", json.dumps(values, indent=1)
    elif fmt == "json-objects":
        name, text = "ids.json", json.dumps({"sessionIds": [{"sessionId": v} for v in values]}, indent=2)
    else:
        name, text = "ids.ndjson", "\n".join(json.dumps({"sessionId": v}) for v in values)
    if crlf:
        text = text.replace("\n", "\r\n")
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    items = parse(data, name)
    assert [i.ext_id for i in items if isinstance(i, ParsedItem)] == values
    assert not [i for i in items if isinstance(i, InvalidItem)]


@given(lines=st.lists(st.one_of(session_ids, st.just("bad id!"), st.just(""), st.just("# note")), max_size=30))
def test_line_numbers_point_at_the_line(lines: list[str]) -> None:
    items = parse("\n".join(lines).encode())
    for item in items:
        expected = lines[item.line - 1].strip()
        assert (item.ext_id if isinstance(item, ParsedItem) else item.value) == expected


# -- scanner --------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path):
    with JobStore.open_in(tmp_path / "state") as s:
        yield s


@pytest.fixture
def inbox_dir(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def inbox(inbox_dir: Path, store: JobStore) -> Inbox:
    return Inbox(DaemonConfig(inbox_dir=inbox_dir, inbox_settle_time=2.0, inbox_max_file_size=64 * 1024), store)


def drop(inbox_dir: Path, name: str, data: bytes | str, mtime: float = T0) -> Path:
    path = inbox_dir / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.utime(path, (mtime, mtime))
    return path


def queued(store: JobStore) -> list[str]:
    return sorted(job.ext_id for job in store.iter_jobs())


def only(outcomes: list[FileOutcome]) -> FileOutcome:
    assert len(outcomes) == 1, outcomes
    return outcomes[0]


def test_file_is_queued_then_moved_to_processed(inbox: Inbox, inbox_dir: Path, store: JobStore) -> None:
    drop(inbox_dir, "ids.txt", f"{A}\n{B}\n{A}\n")
    outcome = only(inbox.scan(now=LATER))
    moved = inbox_dir / "processed" / f"{STAMP}-ids.txt"
    assert outcome.disposition == "processed" and (outcome.accepted, outcome.invalid) == (3, 0)
    assert outcome.moved_to == moved and moved.read_text() == f"{A}\n{B}\n{A}\n"
    assert outcome.report is None
    assert not (inbox_dir / "ids.txt").exists()
    assert queued(store) == [A, B]
    assert inbox.scan(now=LATER) == []


def test_same_name_twice_does_not_overwrite(inbox: Inbox, inbox_dir: Path, store: JobStore) -> None:
    drop(inbox_dir, "ids.txt", A)
    first = only(inbox.scan(now=LATER)).moved_to
    drop(inbox_dir, "ids.txt", B)
    second = only(inbox.scan(now=LATER)).moved_to
    assert (first.name, second.name) == (f"{STAMP}-ids.txt", f"{STAMP}-1-ids.txt")  # type: ignore[union-attr]
    assert first.read_text() == A and second.read_text() == B  # type: ignore[union-attr]
    assert queued(store) == [A, B]


def test_partly_invalid_file_is_processed_with_report(inbox: Inbox, inbox_dir: Path, store: JobStore) -> None:
    drop(inbox_dir, "mixed.txt", f"{A}\nbad id\n\n{B}\n\x1b]0;pwned\x07\n")
    outcome = only(inbox.scan(now=LATER))
    assert (outcome.disposition, outcome.accepted, outcome.invalid) == ("processed", 2, 2)
    assert outcome.report == outcome.moved_to.with_name(outcome.moved_to.name + ".report.txt")  # type: ignore[union-attr]
    report = outcome.report.read_text()  # type: ignore[union-attr]
    assert "line 2: invalid session id" in report and ": bad id\n" in report
    assert "line 5: invalid session id" in report and "\\x1b]0;pwned\\x07" in report
    assert "\x1b" not in report
    assert queued(store) == [A, B]


def test_file_of_nothing_valid_is_rejected(inbox: Inbox, inbox_dir: Path, store: JobStore) -> None:
    drop(inbox_dir, "junk.bin", bytes(range(256)) * 4)
    outcome = only(inbox.scan(now=LATER))
    assert outcome.disposition == "rejected" and outcome.accepted == 0 and outcome.invalid > 0
    assert outcome.moved_to.parent == inbox_dir / "rejected"  # type: ignore[union-attr]
    assert outcome.report.name.endswith(".reason.txt")  # type: ignore[union-attr]
    assert outcome.report.read_text().startswith("no valid ids")  # type: ignore[union-attr]
    assert queued(store) == []


def test_truncated_json_is_rejected_and_nothing_queued(inbox: Inbox, inbox_dir: Path, store: JobStore) -> None:
    drop(inbox_dir, "ids.json", f'["{A}", "{B}", "{C}')
    outcome = only(inbox.scan(now=LATER))
    assert outcome.disposition == "rejected"
    assert "truncated" in outcome.reason  # type: ignore[operator]
    assert outcome.moved_to.read_bytes().startswith(b'["')  # type: ignore[union-attr]
    assert "truncated" in outcome.report.read_text()  # type: ignore[union-attr]
    assert queued(store) == []


def test_empty_file_is_processed_with_a_note(inbox: Inbox, inbox_dir: Path, store: JobStore) -> None:
    drop(inbox_dir, "empty.txt", b"")
    outcome = only(inbox.scan(now=LATER))
    assert (outcome.disposition, outcome.accepted, outcome.invalid) == ("processed", 0, 0)
    assert "empty" in outcome.report.read_text()  # type: ignore[union-attr]


def test_formats_reach_the_store(inbox_dir: Path, store: JobStore) -> None:
    inbox = Inbox(DaemonConfig(inbox_dir=inbox_dir), store)
    drop(inbox_dir, "a.csv", f"sessionId,x\n{A},1\n")
    drop(inbox_dir, "b.json", json.dumps({"userIds": ["agent@example.com"]}))
    drop(inbox_dir, "c.ndjson", json.dumps({"sessionId": B}))
    outcomes = inbox.scan(now=LATER)
    assert [(o.name, o.disposition, o.accepted) for o in outcomes] == [
        ("a.csv", "processed", 1),
        ("b.json", "processed", 1),
        ("c.ndjson", "processed", 1),
    ]
    assert store.get(ids.USER, "agent@example.com") is not None
    assert {(job.id_type, job.ext_id) for job in store.iter_jobs()} == {
        (ids.SESSION, A), (ids.USER, "agent@example.com"), (ids.SESSION, B)}


def test_done_sessions_are_not_requeued_by_a_new_file(inbox: Inbox, inbox_dir: Path, store: JobStore) -> None:
    store.enqueue([(ids.SESSION, A)], now=T0)
    [job] = store.claim(1, now=T0)
    store.complete(job.id)
    drop(inbox_dir, "again.txt", f"{A}\n{B}\n")
    assert only(inbox.scan(now=LATER)).accepted == 2
    assert store.get(ids.SESSION, A).state == DONE  # type: ignore[union-attr]
    assert store.get(ids.SESSION, B).state == PENDING  # type: ignore[union-attr]


def test_files_still_being_written_are_left_alone(inbox: Inbox, inbox_dir: Path, store: JobStore) -> None:
    path = drop(inbox_dir, "ids.txt", A, mtime=T0)
    outcome = only(inbox.scan(now=T0 + 1))
    assert (outcome.disposition, outcome.moved_to) == ("skipped", None)
    assert path.exists() and queued(store) == []
    assert only(inbox.scan(now=T0 + 2.5)).disposition == "processed"
    assert queued(store) == [A]


@pytest.mark.parametrize("name", [".hidden", "ids.tmp", "ids.part", "ids.partial", "ids.swp", "ids.txt~"])
def test_hidden_and_temporary_names_are_left_alone(inbox: Inbox, inbox_dir: Path, store: JobStore, name: str) -> None:
    path = drop(inbox_dir, name, A)
    assert only(inbox.scan(now=LATER)).disposition == "skipped"
    assert path.read_text() == A and queued(store) == []


def test_symlink_is_moved_aside_without_following(
    inbox: Inbox, inbox_dir: Path, store: JobStore, tmp_path: Path
) -> None:
    target = tmp_path / "outside" / "secret.txt"
    target.parent.mkdir()
    target.write_text(f"{A}\n")
    link = inbox_dir / "ids.txt"
    link.symlink_to(target)
    os.utime(link, (T0, T0), follow_symlinks=False)
    outcome = only(inbox.scan(now=LATER))
    assert outcome.disposition == "moved_aside" and outcome.reason == "symbolic link"
    moved = outcome.moved_to
    assert moved.parent == inbox_dir / "quarantine" and moved.is_symlink()  # type: ignore[union-attr]
    assert os.readlink(moved) == str(target)  # type: ignore[arg-type]
    assert target.read_text() == f"{A}\n"  # the target stays where it was
    assert queued(store) == []
    assert "symbolic link" in outcome.report.read_text()  # type: ignore[union-attr]


def test_dangling_symlink_and_link_to_directory(inbox: Inbox, inbox_dir: Path, tmp_path: Path) -> None:
    (inbox_dir / "dangling").symlink_to(tmp_path / "nowhere")
    (inbox_dir / "dirlink").symlink_to(tmp_path)
    for name in ("dangling", "dirlink"):
        os.utime(inbox_dir / name, (T0, T0), follow_symlinks=False)
    outcomes = inbox.scan(now=LATER)
    assert [(o.name, o.disposition) for o in outcomes] == [("dangling", "moved_aside"), ("dirlink", "moved_aside")]
    assert tmp_path.is_dir()
    quarantine = inbox_dir / "quarantine"
    assert sorted(p.name for p in quarantine.iterdir() if p.is_symlink()) == [f"{STAMP}-dangling", f"{STAMP}-dirlink"]


def test_fifo_is_moved_aside_without_being_opened(inbox: Inbox, inbox_dir: Path) -> None:
    fifo = inbox_dir / "ids.txt"
    os.mkfifo(fifo)
    os.utime(fifo, (T0, T0))
    outcome = only(run_with_deadline(lambda: inbox.scan(now=LATER)))
    assert (outcome.disposition, outcome.reason) == ("moved_aside", "FIFO")
    assert not fifo.exists()


def test_file_swapped_for_a_fifo_after_lstat_does_not_block(inbox: Inbox, inbox_dir: Path) -> None:
    # The race the scanner guards against: lstat saw a file, open finds a FIFO.
    fifo = inbox_dir / "swapped"
    os.mkfifo(fifo)
    with pytest.raises(Exception, match="FIFO"):
        run_with_deadline(lambda: inbox._open(fifo), what="opening a FIFO")


def test_file_swapped_for_a_symlink_after_lstat_is_not_followed(inbox: Inbox, inbox_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text(A)
    link = inbox_dir / "swapped"
    link.symlink_to(target)
    with pytest.raises(Exception, match="symbolic link"):
        inbox._open(link)


def test_directory_is_quarantined_whole(inbox: Inbox, inbox_dir: Path, store: JobStore) -> None:
    sub = inbox_dir / "batch"
    sub.mkdir()
    (sub / "ids.txt").write_text(A)
    os.utime(sub, (T0, T0))
    outcome = only(inbox.scan(now=LATER))
    assert (outcome.disposition, outcome.reason) == ("moved_aside", "directory")
    assert (outcome.moved_to / "ids.txt").read_text() == A  # type: ignore[operator]
    assert queued(store) == []


def test_oversize_file_is_moved_aside_unread(inbox: Inbox, inbox_dir: Path, store: JobStore) -> None:
    drop(inbox_dir, "big.txt", (A + "\n") * 4000)  # ~100 KB, over the 64 KiB cap
    outcome = only(inbox.scan(now=LATER))
    assert outcome.disposition == "moved_aside" and "size limit" in outcome.reason  # type: ignore[operator]
    assert outcome.moved_to.parent.name == "quarantine"  # type: ignore[union-attr]
    assert queued(store) == []


def test_crash_before_the_move_reads_the_file_again(
    inbox: Inbox, inbox_dir: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop(inbox_dir, "ids.txt", f"{A}\n{B}\n")
    real_rename = os.rename

    renames: list[object] = []

    def dies(*args, **kwargs):
        renames.append(args)
        if len(renames) == 1:
            return real_rename(*args, **kwargs)  # the claim into the work directory
        raise KeyboardInterrupt  # the process is killed between commit and move

    monkeypatch.setattr(os, "rename", dies)
    with pytest.raises(KeyboardInterrupt):
        inbox.scan(now=LATER)
    [claimed] = (inbox_dir / ".claimed").iterdir()
    assert claimed.name.endswith("-ids.txt") and queued(store) == [A, B]

    monkeypatch.setattr(os, "rename", real_rename)
    outcome = only(inbox.scan(now=LATER))
    assert (outcome.disposition, outcome.accepted) == ("processed", 2)
    assert queued(store) == [A, B] and store.status().total == 2


def test_store_failure_leaves_the_file_in_place(
    inbox: Inbox, inbox_dir: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop(inbox_dir, "ids.txt", A)

    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store, "enqueue", locked)
    with pytest.raises(sqlite3.OperationalError):
        inbox.scan(now=LATER)
    [claimed] = (inbox_dir / ".claimed").iterdir()  # claimed, read again by the next scan
    assert claimed.read_text() == A
    assert not list((inbox_dir / "processed").iterdir())


def test_own_folder_replaced_by_a_symlink_stops_the_scan(inbox: Inbox, inbox_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (inbox_dir / "processed").symlink_to(elsewhere)
    path = drop(inbox_dir, "ids.txt", A)
    with pytest.raises(UnsafeInputError, match="processed"):
        inbox.scan(now=LATER)
    assert path.exists() and not list(elsewhere.iterdir())


def test_scan_creates_its_folders_and_never_scans_them(inbox: Inbox, inbox_dir: Path) -> None:
    assert inbox.scan(now=LATER) == []
    assert sorted(p.name for p in inbox_dir.iterdir()) == [".claimed", "processed", "quarantine", "rejected"]
    drop(inbox_dir / "processed", "old.txt", A)
    assert inbox.scan(now=LATER) == []


def test_outcomes_are_logged_with_structured_fields(
    inbox: Inbox, inbox_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    drop(inbox_dir, "ids.txt", f"{A}\nbad id\n")
    with caplog.at_level("INFO", logger="archiver.inbox"):
        inbox.scan(now=LATER)
    [record] = [r for r in caplog.records if r.name == "archiver.inbox"]
    assert (record.kv_file, record.kv_accepted, record.kv_invalid) == ("ids.txt", 1, 1)  # type: ignore[attr-defined]
