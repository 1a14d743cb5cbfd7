"""Reading the archive back: which sessions it holds, their manifests and their files.

The catalog rebuild, ``archiver export`` and ``archiver state rebuild`` read the archive only
through :class:`ArchiveReader`, so they work the same whatever keeps the files. The file
target is :class:`FileArchiveReader`; the S3 target's is ``s3reader.S3ArchiveReader`` (keys
mirroring the file layout under a prefix); ``targets.open_reader`` picks the configured one.

A session is named by its *location*: the path of its directory relative to the archive
root, in the layout's form (``<bot_id>/2025/02/11/<session_id>``, ``<bot_id>/undated/<id>``,
``<bot_id>/users/<user_id>``), which is also the key prefix of a target mirroring that
layout. Every method blocks: call them from a worker thread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol

from .ids import SESSION, USER
from .layout import session_dir, session_dirs
from .manifest import MANIFEST, entry_problem, read_manifest

# A manifest or a small JSON file (call details, transcription) is read whole; refuse giants.
MAX_JSON_BYTES = 64 * 1024 * 1024


class StoredSession(NamedTuple):
    """One archived session: its ids, where it is, and its manifest."""

    id_type: str
    session_id: str
    location: str
    manifest: dict[str, Any]


class ArchiveReader(Protocol):
    """What readers of the archive need from a storage target."""

    target: str  # "file", "s3", ...

    def describe(self) -> str:
        """Where the archive is, for people: a directory, or ``s3://bucket/prefix``."""

    def sessions(self) -> Iterator[StoredSession]:
        """Every session with a usable manifest (unusable ones are counted in ``skipped``)."""

    def session(self, id_type: str, ext_id: str) -> StoredSession | None:
        """One session by id, or None when it is not archived."""

    def open(self, location: str, rel: str) -> BinaryIO:
        """A file of a session for reading; raises OSError (FileNotFoundError) when it cannot."""

    def close(self) -> None:
        """Release what the reader holds."""

    def where(self, location: str, rel: str) -> str:
        """The full path or URL of a file, for a chain-of-custody record."""


class FileArchiveReader:
    """The archive as the file target lays it out under ``archive.root``."""

    target = "file"

    def __init__(self, root: Path, bot_id: str) -> None:
        self.root = Path(root)
        self.bot_id = bot_id
        self.skipped: list[tuple[str, str]] = []  # (location, why) of directories without a usable manifest

    def describe(self) -> str:
        return str(self.root)

    def sessions(self) -> Iterator[StoredSession]:
        for directory in session_dirs(self.root / self.bot_id):
            found = self._stored(directory)
            if found is not None:
                yield found

    def session(self, id_type: str, ext_id: str) -> StoredSession | None:
        directory = session_dir(self.root, self.bot_id, id_type, ext_id)
        return self._stored(directory) if directory.is_dir() else None

    def _stored(self, directory: Path) -> StoredSession | None:
        location = directory.relative_to(self.root).as_posix()
        manifest, why = read_manifest(directory)
        if manifest is None:
            if os.path.lexists(directory / MANIFEST):
                self.skipped.append((location, why or "unusable manifest"))
            return None
        id_type = USER if directory.parent.name == "users" else SESSION
        return StoredSession(id_type, directory.name, location, manifest)

    def open(self, location: str, rel: str) -> BinaryIO:
        check_location(location, rel)
        fd = os.open(self.root / location / rel, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        return open(fd, "rb")

    def where(self, location: str, rel: str) -> str:
        check_location(location, rel)
        return str(self.root / location / rel)

    def close(self) -> None:
        """Nothing to release (the S3 reader has a client to close)."""

    def __enter__(self) -> FileArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_location(location: str, rel: str) -> None:
    """Refuse a location or file path that would leave the archive (FileNotFoundError)."""
    for value in (location, rel):
        if not value or value.startswith("/") or any(p in ("", ".", "..") for p in value.split("/")):
            raise FileNotFoundError(f"refusing path {value[:200]!r}: it leaves the archive")


def read_small_json(reader: ArchiveReader, location: str, rel: str) -> dict[str, Any] | None:
    """A small JSON object stored with a session, or None when it is missing or unusable."""
    chunks: list[bytes] = []
    size = 0
    try:
        with reader.open(location, rel) as handle:
            while size <= MAX_JSON_BYTES and (chunk := handle.read(MAX_JSON_BYTES + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
    except OSError:
        return None
    raw = b"".join(chunks)
    if len(raw) > MAX_JSON_BYTES:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def listed_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's usable ``files`` entries (paths inside the session, size, sha256)."""
    return [e for e in manifest.get("files") or [] if entry_problem(e) is None]


__all__ = ["ArchiveReader", "FileArchiveReader", "StoredSession", "check_location", "read_small_json", "listed_files"]
