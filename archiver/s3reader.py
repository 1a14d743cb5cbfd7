"""Reading the archive back from the S3 target (``[archive] target = "s3"``).

The same :class:`~archiver.archive_reader.ArchiveReader` the file target offers, over the
bucket: a session's location is its key prefix after ``s3.prefix`` (the file layout's
relative path), its manifest the object ``<location>/manifest.json``. The catalog rebuild,
``archiver export`` and ``archiver state rebuild`` call readers from a worker thread, while
the S3 client is asynchronous: the reader runs the client on an event loop of its own, in a
thread of its own, and each blocking method waits for one coroutine there. Objects are
streamed a chunk at a time, so memory stays bounded by the chunk size.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .archive_reader import StoredSession, check_location
from .config import Config
from .errors import ArchiverError
from .ids import SESSION, USER
from .layout import USERS, session_dir
from .manifest import MANIFEST
from .s3 import Bucket, _error_code, _is_not_found, bucket_url, s3_client
from .s3verify import _groups, _read_manifest

T = TypeVar("T")
READ_SIZE = 1024 * 1024


class S3ArchiveReader:
    """The archive in the configured bucket; close it (or use ``with``) to stop its loop."""

    target = "s3"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.bot_id = config.kore.bot_id
        self.skipped: list[tuple[str, str]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="s3-reader", daemon=True)
        self._thread.start()
        self._client_context = s3_client(config)
        try:
            self.bucket = Bucket(config, self._run(self._client_context.__aenter__()))
        except BaseException:
            self._stop()
            raise

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        try:
            self._run(self._client_context.__aexit__(None, None, None))
        finally:
            self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> S3ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return bucket_url(self.config)

    def sessions(self) -> Iterator[StoredSession]:
        groups = _groups(self.bucket, self.bucket.key(f"{self.bot_id}/"))
        while True:
            try:
                group = self._run(groups.__anext__())  # type: ignore[arg-type]
            except StopAsyncIteration:
                return
            if MANIFEST not in group.objects:
                continue  # objects of a session whose manifest is not uploaded yet
            found = self._stored(group.rel)
            if found is not None:
                yield found

    def session(self, id_type: str, ext_id: str) -> StoredSession | None:
        location = session_dir(Path(), self.bot_id, id_type, ext_id).as_posix()
        return self._stored(location, quiet=True)

    def _stored(self, location: str, *, quiet: bool = False) -> StoredSession | None:
        name = location.rsplit("/", 1)[-1]
        manifest, why = self._run(_read_manifest(self.bucket, location, name))
        if manifest is None:
            if not quiet:
                self.skipped.append((location, why))
            return None
        id_type = USER if location.split("/")[-2:-1] == [USERS] else SESSION
        return StoredSession(id_type, name, location, manifest)

    def open(self, location: str, rel: str) -> _ObjectStream:
        check_location(location, rel)
        return _ObjectStream(self, self.bucket.key(f"{location}/{rel}"))

    def where(self, location: str, rel: str) -> str:
        return f"s3://{self.bucket.name}/{self.bucket.key(f'{location}/{rel}')}"


class _ObjectStream:
    """One object's body as a blocking binary stream; S3 errors become OSError."""

    def __init__(self, reader: S3ArchiveReader, key: str) -> None:
        self._reader = reader
        self._key = key
        self._body = reader._run(self._open())

    async def _open(self) -> Any:
        from botocore.exceptions import ClientError

        try:
            answer = await self._reader.bucket.client.get_object(Bucket=self._reader.bucket.name, Key=self._key)
        except ClientError as exc:
            if _is_not_found(exc):
                raise FileNotFoundError(f"s3 object {self._key} is missing") from None
            code, status = _error_code(exc)
            raise OSError(f"S3 answered {status} {code} for {self._key}") from None
        except (ArchiverError, OSError, asyncio.TimeoutError) as exc:
            raise OSError(f"cannot read {self._key}: {type(exc).__name__}") from None
        return answer["Body"]

    async def _read(self, size: int) -> bytes:
        try:
            return await self._body.read(size)
        except Exception as exc:  # a broken connection, a timeout: the file could not be read
            raise OSError(f"reading {self._key} failed: {type(exc).__name__}") from None

    def read(self, size: int = READ_SIZE) -> bytes:
        return self._reader._run(self._read(size if size > 0 else READ_SIZE))

    async def _close(self) -> None:
        self._body.close()

    def close(self) -> None:
        self._reader._run(self._close())

    def __enter__(self) -> _ObjectStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["S3ArchiveReader"]
