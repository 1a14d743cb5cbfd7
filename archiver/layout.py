"""The archive layout: where a session's files go, and what they are called.

    <root>/<bot_id>/<YYYY>/<MM>/<DD>/<session_id>/      ObjectId session ids (date inside the id)
    <root>/<bot_id>/undated/<session_id>/                 any other session id
    <root>/<bot_id>/users/<user_id>/                      recordings looked up by userId
        recordings/<file>.wav  <file>.wav.json            audio + sidecar
        voicemail/<file>.wav   <file>.wav.json  <file>.wav.transcription.json
        manifest.json                                     written last (format: manifest.py)

Names offered by the server are never used as paths: :func:`safe_filename` reduces them to
one harmless path component, so every file lands inside its session directory.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

from .errors import UnsafeInputError
from .ids import SESSION, USER, id_problem, object_id_time
from .manifest import MANIFEST, RECORDINGS, VOICEMAIL, read_manifest  # the part names are the subdirectory names

SIDECAR_SUFFIX = ".json"
TRANSCRIPTION_SUFFIX = ".transcription.json"
_SIDECAR_SUFFIXES = (SIDECAR_SUFFIX, TRANSCRIPTION_SUFFIX)
UNDATED = "undated"
USERS = "users"
# Bytes, leaving room in a 255-byte name for the longest suffix and a temp prefix.
MAX_NAME_BYTES = 180

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._ ()+,=@-]")
_EXT = re.compile(r"\.[A-Za-z0-9]{1,8}$")
_YEAR_RE, _TWO_DIGITS_RE = re.compile(r"\d{4}"), re.compile(r"\d{2}")


def session_dir(root: Path, bot_id: str, id_type: str, ext_id: str) -> Path:
    """The directory of one session (or user), deterministic from its ids."""
    problem = id_problem(id_type, ext_id)
    if problem:
        raise UnsafeInputError(f"refusing id {ext_id[:40]!r}: {problem}")
    base = root / bot_id
    if id_type != SESSION:
        return base / USERS / ext_id
    created = object_id_time(ext_id)
    if created is None:
        return base / UNDATED / ext_id
    return base / f"{created:%Y}" / f"{created:%m}" / f"{created:%d}" / ext_id


class TakenNames:
    """The names already given out in one session directory (compared case-insensitively),
    with each name's next free ``-N`` suffix, so that 6,000 files all offered as ``a.wav``
    cost linear time, not a scan from ``-2`` upwards for every one of them."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._next: dict[tuple[str, str], int] = {}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._names

    def __len__(self) -> int:
        return len(self._names)

    def _clashes(self, candidate: str) -> bool:
        lower = candidate.lower()
        if lower == MANIFEST or any(member in self._names for member in _family(lower)):
            return True
        # A name that is another file's sidecar name (``x.wav.json`` beside ``x.wav``).
        return any(lower.endswith(suffix) and lower[: -len(suffix)] in self._names for suffix in _SIDECAR_SUFFIXES)

    def claim(self, stem: str, ext: str) -> str:
        """The first free name of ``stem[-N]ext``, now taken with its sidecars' names."""
        key = (stem.lower(), ext)
        counter = self._next.get(key, 1)
        candidate = f"{stem}{ext}" if counter == 1 else f"{stem}-{counter}{ext}"
        while self._clashes(candidate):
            counter += 1
            candidate = f"{stem}-{counter}{ext}"
        self._next[key] = counter + 1
        self._names.update(_family(candidate))
        return candidate


def safe_filename(offered: str, default: str, taken: TakenNames) -> str:
    """One safe, unique file name from a server-supplied one.

    Path separators, ``..``, NUL and control characters, percent-escapes and odd unicode are
    neutralised; names are capped in length; an empty result falls back to ``default``; a
    name already in ``taken`` (case-insensitively) gets ``-2``, ``-3``, ... before its
    extension. The chosen name is added to ``taken``.
    """
    name = unicodedata.normalize("NFKC", offered or "")
    # Keep only the last path component under either separator, as a browser would.
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE_CHARS.sub("_", name).strip(" .")
    name = re.sub(r"\.{2,}", ".", name)
    if not name or set(name) <= {"_", "."}:
        name = default
    stem, ext = _split_ext(name)
    stem = _truncate_utf8(stem, MAX_NAME_BYTES - len(ext))
    return taken.claim(stem, ext)


def _family(name: str) -> tuple[str, str, str]:
    """A file and the sidecars that will stand beside it (names compared case-insensitively)."""
    lower = name.lower()
    return lower, lower + SIDECAR_SUFFIX, lower + TRANSCRIPTION_SUFFIX


def _split_ext(name: str) -> tuple[str, str]:
    match = _EXT.search(name)
    if match:
        return name[: match.start()], match.group(0).lower()
    return name, ""


def _truncate_utf8(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")[:limit]
    return encoded.decode("utf-8", "ignore")


def extension_for(content_type: str) -> str:
    """A file extension for an audio MIME type (inline v1 recordings carry no name)."""
    subtype = content_type.split("/", 1)[-1].split(";", 1)[0].strip().lower()
    return {
        "wav": ".wav", "x-wav": ".wav", "wave": ".wav", "vnd.wave": ".wav", "mpeg": ".mp3", "mp3": ".mp3",
        "ogg": ".ogg", "opus": ".opus", "mp4": ".m4a", "x-m4a": ".m4a", "webm": ".webm", "flac": ".flac",
    }.get(subtype, ".bin")


def inside(directory: Path, path: Path) -> bool:
    """True when ``path`` is lexically inside ``directory`` (the last guard before writing).

    Lexically: no file system call, so it may run on the event loop. A link planted in the
    session directory is no way out either: files are written by renaming over the name,
    which replaces a link instead of following it.
    """
    base = os.path.normpath(os.path.abspath(directory))
    target = os.path.normpath(os.path.abspath(path))
    return target != base and os.path.commonpath([base, target]) == base


def id_type_of(directory: Path) -> str:
    """The id type of a session (or user) directory, from where it lies."""
    return USER if directory.parent.name == USERS else SESSION


# -- walking the archive -----------------------------------------------------------------------


def _subdirs(directory: Path) -> list[os.DirEntry[str]]:
    """Real (not linked), visible subdirectories, in name order."""
    try:
        with os.scandir(directory) as entries:
            found = [e for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(found, key=lambda e: e.name)


def _archived_since(directory: Path, since: datetime) -> bool:
    """For undated and user directories: archived at or after ``since`` (kept when it cannot tell)."""
    manifest, _why = read_manifest(directory)
    if manifest is None:
        return True
    try:
        archived = datetime.fromisoformat(str(manifest.get("archived_at")))
    except ValueError:
        return True
    if archived.tzinfo is None:
        archived = archived.replace(tzinfo=timezone.utc)
    return archived >= since


def _dated_sessions(year_dir: os.DirEntry[str], since: date | None) -> Iterator[Path]:
    year = int(year_dir.name)
    if since and year < since.year:
        return
    for month_dir in _subdirs(Path(year_dir.path)):
        if not _TWO_DIGITS_RE.fullmatch(month_dir.name):
            continue
        month = int(month_dir.name)
        if since and (year, month) < (since.year, since.month):
            continue
        for day_dir in _subdirs(Path(month_dir.path)):
            if not _TWO_DIGITS_RE.fullmatch(day_dir.name):
                continue
            try:
                day = date(year, month, int(day_dir.name))
            except ValueError:
                continue
            if since and day < since:
                continue
            yield from (Path(e.path) for e in _subdirs(Path(day_dir.path)))


def session_dirs(bot_root: Path, since: datetime | None = None) -> Iterator[Path]:
    """Every session (and user) directory under ``<root>/<bot_id>``, in layout order.

    ``since`` keeps dated sessions whose date partition is on or after its (UTC) day, and
    undated and user directories whose manifest says they were archived at or after it.
    """
    since_day = since.astimezone(timezone.utc).date() if since else None
    for top in _subdirs(bot_root):
        if _YEAR_RE.fullmatch(top.name):
            yield from _dated_sessions(top, since_day)
        elif top.name in (UNDATED, USERS):
            for entry in _subdirs(Path(top.path)):
                if since is None or _archived_since(Path(entry.path), since):
                    yield Path(entry.path)


__all__ = [
    "RECORDINGS", "VOICEMAIL", "MANIFEST", "UNDATED", "USERS", "SIDECAR_SUFFIX", "TRANSCRIPTION_SUFFIX",
    "MAX_NAME_BYTES", "session_dir", "safe_filename", "extension_for", "inside", "id_type_of", "session_dirs",
]
