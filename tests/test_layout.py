"""Archive layout and server-supplied file names."""

from __future__ import annotations


import pytest
from hypothesis import given, settings, strategies as st

from archiver.errors import UnsafeInputError
from archiver.layout import MAX_NAME_BYTES, inside, safe_filename, session_dir


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
    assert safe_filename(offered, "fallback.wav", set()) == expected


def test_duplicates_and_long_names():
    taken: set[str] = set()
    assert safe_filename("a.wav", "d.wav", taken) == "a.wav"
    assert safe_filename("A.WAV", "d.wav", taken) == "A-2.wav"
    assert safe_filename("a.wav", "d.wav", taken) == "a-3.wav"
    long_name = safe_filename("é" * 300 + ".wav", "d.wav", set())
    assert len(long_name.encode()) <= MAX_NAME_BYTES and long_name.endswith(".wav")
    assert safe_filename("manifest.json", "d.wav", set()) == "manifest-2.json"


def test_a_name_never_collides_with_another_files_sidecar():
    taken: set[str] = set()
    first = safe_filename("x.wav.json", "d.wav", taken)
    second = safe_filename("x.wav", "d.wav", taken)
    assert second + ".json" != first
    taken = set()
    first = safe_filename("x.wav", "d.wav", taken)
    second = safe_filename("x.wav.json", "d.wav", taken)
    assert second != first + ".json" and second != first + ".transcription.json"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_offered_name_stays_inside_the_directory(tmp_path_factory, offered):
    base = tmp_path_factory.mktemp("s")
    name = safe_filename(offered, "fallback.wav", set())
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert name not in {".", ".."} and not name.startswith(".")
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert inside(base, base / name)
    assert name.lower() != "manifest.json"
