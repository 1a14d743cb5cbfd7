"""Atomic, checksummed file writes.

Every archive file is written as ``.<name>.<random>.incomplete`` in its final directory
(``O_CREAT|O_EXCL|O_NOFOLLOW``: never through a planted link), fsynced, renamed to its
final name and the directory fsynced. So a file that carries its final name is complete,
and a crash leaves only temp files, which :func:`remove_stale_temps` clears. sha256 and size
are computed while writing, in the same worker-thread hop as the write, so hashing a large
stream overlaps the network read of the next chunk. A large file's pages are handed to the
disk as it grows (see ``WRITEBACK_EVERY``), so the fsync of ``commit()`` finds little left to
write. Every disk operation runs in a worker thread, never in the event loop; the temp file
(and its directory, when missing) is created by the first write.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import DiskFullError, ProtocolError

TEMP_SUFFIX = ".incomplete"
FILE_MODE = 0o640
_FULL = {errno.ENOSPC, errno.EDQUOT}
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# Once this much has been written since the last time, ask the kernel to start writing it to
# the disk. Otherwise a large file sits dirty in memory until commit()'s fsync, which then
# waits for all of it: for a 1 GiB file, a second of disk time after the last byte arrived.
WRITEBACK_EVERY = 8 * 1024 * 1024
# writev() takes at most IOV_MAX (1024 on Linux) buffers; more pieces are joined first.
_MAX_PIECES = 512


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
    """A file being written; ``commit()`` gives it its final name, anything else removes it.

    The temp file is created by the first write (or by ``commit()``), in a worker thread like
    every other disk operation here: creating a name can wait on the file system's journal
    while other files are being fsynced, and the event loop must not wait with it. A small
    file handed whole to ``commit(tail=...)`` costs one thread hop: create, write, fsync,
    rename, fsync the directory.
    """

    def __init__(self, final_path: Path) -> None:
        self.final_path = final_path
        self.temp_path: Path | None = None  # named and created by the first write
        self._fd: int | None = None  # set and used by the worker threads, one hop at a time
        self._hash = hashlib.sha256()
        self.size = 0
        self._written = 0  # bytes the writer thread has written (self.size counts queued ones)
        self._advised = (0, 0)  # where the last two ranges given to _start_writeback end
        self._pending: asyncio.Future[None] | None = None
        self._failed: Exception | None = None  # a write failed: the file lacks bytes size counts
        self._committed = False
        self._loop = asyncio.get_running_loop()

    async def __aenter__(self) -> "AtomicFile":
        return self  # nothing to open: the first write creates the temp file

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._committed:
            await self.abort()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _create_temp(self) -> int:
        self.temp_path = self.final_path.parent / temp_name(self.final_path.name)
        self._fd = _create(self.temp_path, self.final_path)
        return self._fd

    def _write_sync(self, pieces: Sequence[bytes]) -> None:
        if self._fd is None:
            self._create_temp()
        try:
            self._written += _write_all(self._fd, pieces)
            if self._written - self._advised[1] >= WRITEBACK_EVERY:
                self._start_writeback()
        except OSError as exc:
            raise _disk_error(exc, self.final_path) from exc
        for piece in pieces:
            self._hash.update(piece)

    def _start_writeback(self) -> None:
        """Start the disk write of what was written since the last call (not waiting for it).

        On Linux, POSIX_FADV_DONTNEED starts writeback of a range's dirty pages and drops
        its clean ones. Each range is advised twice: when written (to start its writeback)
        and once more with the next range, by when its pages are clean and leave the page
        cache: an archive is written once and rarely read, and should not crowd out what is.
        """
        assert self._fd is not None
        older, last = self._advised
        if hasattr(os, "posix_fadvise"):
            try:
                os.posix_fadvise(self._fd, older, self._written - older, os.POSIX_FADV_DONTNEED)
            except OSError:  # advice only: commit()'s fsync makes the file durable regardless
                pass
        self._advised = (last, self._written)

    async def write(self, data: bytes) -> None:
        """Queue ``data``; at most one earlier write is still in flight when this returns."""
        await self.write_pieces([data])

    async def write_pieces(self, pieces: list[bytes]) -> None:
        """Queue ``pieces``, written in order as one block (no copy: the list is kept as given)."""
        size = sum(map(len, pieces))
        if not size:
            return
        await self._drain()
        self.size += size
        self._pending = self._loop.run_in_executor(None, self._write_sync, pieces)

    async def _drain(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._pending is not None:
            try:
                # Shielded: a cancelled caller leaves the hop to abort(), which waits for the
                # thread to be done with the file before it closes and removes it.
                await asyncio.shield(self._pending)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A short write then ENOSPC leaves part of a chunk on disk while ``size``
                # counts all of it: such a file must never be continued nor committed.
                self._pending = None
                self._failed = exc
                raise
            self._pending = None

    async def restart(self) -> None:
        """Throw away what was written (a server ignored our Range) and start from zero."""
        await self._drain()
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
        self._hash = hashlib.sha256()
        self.size = self._written = 0
        self._advised = (0, 0)

    async def commit(
        self,
        *,
        expected_size: int | None = None,
        tail: Sequence[bytes] = (),
        then: Callable[[], None] | None = None,
    ) -> None:
        """Write ``tail`` (the last bytes, if not written yet), check the size, fsync, rename
        into place, fsync the directory: one thread hop after the writes in flight.

        ``then``, if given, runs in that same thread once the file is in place and before the
        directory is fsynced: the caller's next step (a sidecar beside the file, written with
        ``sync_dir=False``) without a hop of its own, made durable by the same fsync.
        """
        await self._drain()
        size = self.size + sum(map(len, tail))
        if expected_size is not None and expected_size != size:
            raise ProtocolError(f"{self.final_path.name}: wrote {size} bytes, expected {expected_size}")
        self.size = size
        self._pending = self._loop.run_in_executor(None, self._commit_sync, tail, then)
        await self._drain()
        self._committed = True

    def _commit_sync(self, tail: Sequence[bytes], then: Callable[[], None] | None) -> None:
        if any(tail):
            self._write_sync(tail)
        elif self._fd is None:
            self._create_temp()  # an empty file
        fd, self._fd = self._fd, None
        assert fd is not None and self.temp_path is not None
        try:
            _finish(fd, self.temp_path, self.final_path, sync_dir=False)
            try:
                if then is not None:
                    then()
            finally:
                fsync_dir(self.final_path.parent)
        except OSError as exc:
            raise _disk_error(exc, self.final_path) from exc

    async def abort(self) -> None:
        """Close and delete the temp file (on any failure or cancellation)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await asyncio.wait([pending])  # the thread is done with the file, however it ended
            if not pending.cancelled():
                pending.exception()  # already reported by whoever awaited it, or moot now
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.temp_path is not None:
            try:
                os.unlink(self.temp_path)
            except FileNotFoundError:
                pass


def _write_all(fd: int, pieces: Sequence[bytes]) -> int:
    """Write every byte of ``pieces``, in order, with one writev as a rule; returns the count."""
    if len(pieces) > _MAX_PIECES:
        pieces = [b"".join(pieces)]
    total = sum(map(len, pieces))
    done = os.writev(fd, pieces)
    if done < total:  # a short write (a signal, a nearly full disk): the rest as one buffer
        rest = memoryview(b"".join(pieces))[done:]
        while rest:
            rest = rest[os.write(fd, rest) :]
    return total


def _create(temp: Path, final: Path) -> int:
    """Create the temp file (and its directory, if missing): never through a planted link,
    never over an existing file."""
    try:
        try:
            return os.open(temp, _CREATE_FLAGS, FILE_MODE)
        except FileNotFoundError:
            temp.parent.mkdir(parents=True, exist_ok=True)
            return os.open(temp, _CREATE_FLAGS, FILE_MODE)
    except OSError as exc:
        raise _disk_error(exc, final) from exc


def _finish(fd: int, temp: Path, final: Path, *, sync_dir: bool = True) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, final)
    if sync_dir:
        fsync_dir(final.parent)


def dumps(obj: Any) -> bytes:
    """Our JSON style for sidecars and manifests: stable, readable, UTF-8."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


async def write_json(path: Path, obj: Any) -> tuple[int, str]:
    """Write a JSON document atomically; returns (size, sha256)."""
    return await asyncio.get_running_loop().run_in_executor(None, write_json_sync, path, obj)


def write_json_sync(path: Path, obj: Any, *, sync_dir: bool = True) -> tuple[int, str]:
    """``write_json`` for code already running in a worker thread: encoded, written, fsynced,
    renamed and the directory fsynced, as ``AtomicFile`` does, in the calling thread.
    ``sync_dir=False`` leaves the directory's fsync to the caller (see AtomicFile.commit)."""
    return write_bytes_sync(path, dumps(obj), sync_dir=sync_dir)


def write_bytes_sync(path: Path, data: bytes, *, sync_dir: bool = True) -> tuple[int, str]:
    """A small file written whole, the same way (blocking); returns (size, sha256)."""
    temp = path.parent / temp_name(path.name)
    fd = _create(temp, path)
    try:
        try:
            _write_all(fd, [data])
        except BaseException:
            os.close(fd)
            raise
        _finish(fd, temp, path, sync_dir=sync_dir)
    except BaseException as exc:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _disk_error(exc, path) from exc
        raise
    return len(data), hashlib.sha256(data).hexdigest()
