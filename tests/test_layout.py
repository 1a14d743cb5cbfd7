"""Archive layout and server-supplied file names."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings, strategies as st

from archiver.errors import UnsafeInputError
from archiver.layout import MAX_NAME_BYTES, TakenNames, inside, safe_filename, session_dir


def test_object_id_sessions_are_partitioned_by_their_embedded_date(tmp_path):
    assert session_dir(tmp_path, "st-bot", "session", "67ab573f3685d1ba99541234") == (
        tmp_path / "st-bot" / "2025" / "02" / "11" / "67ab573f3685d1ba99541234"
    )
    assert session_dir(tmp_path, "st-bot", "session", "call-42") == tmp_path / "st-bot" / "undated" / "call-42"
    assert session_dir(tmp_path, "st-bot", "user", "ann@example.com") == tmp_path / "st-bot" / "users" / "ann@example.com"


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "..", "x" * 200, "a\x00b"])
def test_unsafe_ids_never_become_paths(tmp_path, bad):
    with pytest.raises(UnsafeInputError):
        session_dir(tmp_path, "st-bot", "session", bad)


@pytest.mark.parametrize(
    "offered, expected",
    [
        ("../x", "x"),
        ("/etc/passwd", "passwd"),
        ("dir\\file.wav", "file.wav"),
        ("%2E%2E%2Ffoo", "_2E_2E_2Ffoo"),
        ("..", "fallback.wav"),
        ("a\x00b\x07c.wav", "a_b_c.wav"),
        ("", "fallback.wav"),
        ("call-merged.wav", "call-merged.wav"),
    ],
)
def test_hostile_names_are_neutralised(offered, expected):
    assert safe_filename(offered, "fallback.wav", TakenNames()) == expected


def test_duplicates_and_long_names():
    taken = TakenNames()
    assert safe_filename("a.wav", "d.wav", taken) == "a.wav"
    assert safe_filename("A.WAV", "d.wav", taken) == "A-2.wav"
    assert safe_filename("a.wav", "d.wav", taken) == "a-3.wav"
    long_name = safe_filename("é" * 300 + ".wav", "d.wav", TakenNames())
    assert len(long_name.encode()) <= MAX_NAME_BYTES and long_name.endswith(".wav")
    assert safe_filename("manifest.json", "d.wav", TakenNames()) == "manifest-2.json"


def test_a_name_never_collides_with_another_files_sidecar():
    taken = TakenNames()
    first = safe_filename("x.wav.json", "d.wav", taken)
    second = safe_filename("x.wav", "d.wav", taken)
    assert second + ".json" != first
    taken = TakenNames()
    first = safe_filename("x.wav", "d.wav", taken)
    second = safe_filename("x.wav.json", "d.wav", taken)
    assert second != first + ".json" and second != first + ".transcription.json"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_offered_name_stays_inside_the_directory(tmp_path_factory, offered):
    base = tmp_path_factory.mktemp("s")
    name = safe_filename(offered, "fallback.wav", TakenNames())
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert name not in {".", ".."} and not name.startswith(".")
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert inside(base, base / name)
    assert name.lower() != "manifest.json"


def test_six_thousand_files_of_one_name_are_named_in_linear_time():
    # A hostile (or broken) answer offering every recording as "a.wav": naming restarted its
    # scan at "-2" for each file, 6,000 of them took 11 s on the event loop.
    taken = TakenNames()
    started = time.perf_counter()
    names = [safe_filename("a.wav", "d.wav", taken) for _ in range(6000)]
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"6,000 names took {elapsed:.2f}s"
    assert names[:3] == ["a.wav", "a-2.wav", "a-3.wav"] and names[-1] == "a-6000.wav"
    assert len({name.lower() for name in names}) == 6000


def test_a_suffix_already_offered_is_skipped_not_reused():
    taken = TakenNames()
    assert [safe_filename(n, "d.wav", taken) for n in ("a-2.wav", "a.wav", "a.wav", "A.wav")] == [
        "a-2.wav", "a.wav", "a-3.wav", "A-4.wav",
    ]
