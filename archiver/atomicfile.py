"""Atomic, checksummed file writes.

Every archive file is written as ``.<name>.<random>.incomplete`` in its final directory
(``O_CREAT|O_EXCL|O_NOFOLLOW``: never through a planted link), fsynced, renamed to its
final name and the directory fsynced. So a file that carries its final name is complete,
and a crash leaves only temp files, which :func:`remove_stale_temps` clears. sha256 and size
are computed while writing, in the same worker-thread hop as the write, so hashing a large
stream overlaps the network read of the next chunk.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from .errors import DiskFullError, ProtocolError

TEMP_SUFFIX = ".incomplete"
FILE_MODE = 0o640
_FULL = {errno.ENOSPC, errno.EDQUOT}


def _disk_error(exc: OSError, path: Path) -> Exception:
    if exc.errno in _FULL:
        return DiskFullError(f"no space left on the archive file system writing {path.name}")
    return exc


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(final_name: str) -> str:
    return f".{final_name[:200]}.{secrets.token_hex(6)}{TEMP_SUFFIX}"


def remove_stale_temps(directory: Path) -> int:
    """Delete temp files left by an interrupted run below ``directory``; returns how many."""
    removed = 0
    if not directory.is_dir():
        return 0
    for dirpath, _dirs, files in os.walk(directory):
        for name in files:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                try:
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


class AtomicFile:
    """A file being written; ``commit()`` gives it its final name, anything else removes it."""

    def __init__(self, final_path: Path) -> None:
        self.final_path = final_path
        self.temp_path = final_path.parent / temp_name(final_path.name)
        self._fd: int | None = None
        self._hash = hashlib.sha256()
        self.size = 0
        self._pending: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()

    async def __aenter__(self) -> "AtomicFile":
        await self.open()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._fd is not None or self.temp_path.exists():
            await self.abort()

    async def open(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd = os.open(self.temp_path, flags, FILE_MODE)
        except OSError as exc:
            raise _disk_error(exc, self.final_path) from exc

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _write_sync(self, data: bytes | memoryview) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            raise _disk_error(exc, self.final_path) from exc
        self._hash.update(data)

    async def write(self, data: bytes) -> None:
        """Queue ``data``; at most one earlier write is still in flight when this returns."""
        if not data:
            return
        await self._drain()
        self.size += len(data)
        self._pending = self._loop.run_in_executor(None, self._write_sync, data)

    async def _drain(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def restart(self) -> None:
        """Throw away what was written (a server ignored our Range) and start from zero."""
        await self._drain()
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._hash = hashlib.sha256()
        self.size = 0

    async def commit(self, *, expected_size: int | None = None) -> None:
        """fsync, check the size, rename into place, fsync the directory."""
        await self._drain()
        assert self._fd is not None
        if expected_size is not None and expected_size != self.size:
            raise ProtocolError(f"{self.final_path.name}: wrote {self.size} bytes, expected {expected_size}")
        fd, self._fd = self._fd, None
        try:
            await self._loop.run_in_executor(None, _finish, fd, self.temp_path, self.final_path)
        except OSError as exc:
            raise _disk_error(exc, self.final_path) from exc

    async def abort(self) -> None:
        """Close and delete the temp file (on any failure or cancellation)."""
        try:
            await self._drain()
        except Exception:  # the write error is already being reported; cleanup must go on
            pass
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            try:
                os.unlink(self.temp_path)
            except FileNotFoundError:
                pass


def _finish(fd: int, temp: Path, final: Path) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, final)
    fsync_dir(final.parent)


def dumps(obj: Any) -> bytes:
    """Our JSON style for sidecars and manifests: stable, readable, UTF-8."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


async def write_json(path: Path, obj: Any) -> tuple[int, str]:
    """Write a JSON document atomically; returns (size, sha256)."""
    data = dumps(obj)
    async with AtomicFile(path) as handle:
        await handle.write(data)
        await handle.commit()
        return handle.size, handle.sha256
