"""The S3 archive target: sessions are archived into the spool, then published to the bucket.

    spool:  <s3.spool_dir>/<bot>/YYYY/MM/DD/<session>/...     exactly the file layout
    bucket: <s3.prefix><bot>/YYYY/MM/DD/<session>/...         the same paths as keys

A session is downloaded into the spool exactly as into a file archive (atomic temp files,
Range resume, sha256 while writing, part files, ``manifest.json`` last). Once its manifest
is written, every file it lists is uploaded and proven (:meth:`Bucket.put_file`), then
``manifest.json`` itself, last: a session's manifest in the bucket means every object it
lists is there and was proven. Only then is the spool copy removed (after the deletion at
the vendor, when enabled, which proves the objects again).

A crash anywhere costs nothing: the spool copy stays until its manifest is in the bucket,
objects already uploaded are found by ``HEAD`` with the same sha256 and not sent again,
and a session whose manifest is in the bucket is not archived again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from .archive import SessionArchiver, SessionResult
from .catalog import record_session
from .config import Config, spool_root
from .errors import PermanentError
from .generations import GENERATIONS
from .manifest import MANIFEST, entry_problem
from .s3 import Bucket, ObjectConflict, ObjectProblem, file_sha256

log = logging.getLogger("archiver.s3archive")


def spool_config(config: Config) -> Config:
    """The configuration the spool is written with: the file archive's, rooted at the spool."""
    return replace(config, archive=replace(config.archive, root=spool_root(config)))


class S3SessionArchiver:
    """Archives sessions into the spool and publishes them to the bucket (the worker's archiver)."""

    def __init__(self, config: Config, inner: SessionArchiver, bucket: Bucket) -> None:
        self.config = config
        self.inner = inner
        self.bucket = bucket
        self.spool = spool_root(config)

    @property
    def client(self) -> Any:
        return self.inner.client

    def relative(self, directory: Path) -> str:
        return Path(directory).relative_to(self.spool).as_posix()

    async def archive(
        self, id_type: str, ext_id: str, *, force: bool = False, finishing: Callable[[], None] | None = None
    ) -> SessionResult:
        """Archive one session to the bucket (see the module doc); raises like SessionArchiver.
        ``finishing`` is not called: the upload, not the manifest, is the long last step."""
        directory = self.inner.directory(id_type, ext_id)
        rel = self.relative(directory)
        if not force:
            published = await self.bucket.read_json(self.bucket.key(f"{rel}/{MANIFEST}"))
            if published is not None:
                return _result_from_manifest(directory, published)
        result = await self.inner.archive(id_type, ext_id, force=force)
        if result.outcome != "done":
            return result  # failed parts stay in the spool; a later attempt completes them
        await self.publish(directory)
        return result

    async def publish(self, directory: Path) -> tuple[int, int]:
        """Upload and prove every file of a spooled session, then its manifest; returns
        (objects uploaded, objects found already there)."""
        rel = self.relative(directory)
        manifest_path = directory / MANIFEST
        size, digest = await asyncio.to_thread(file_sha256, manifest_path)
        manifest = json.loads(await asyncio.to_thread(manifest_path.read_bytes))
        counts = {"uploaded": 0, "present": 0}
        for index, entry in enumerate(manifest.get("files") or []):
            problem = entry_problem(entry)
            if problem is not None:
                raise PermanentError(f"{rel}/{MANIFEST}: files[{index}]: {problem}")
            await self._put(directory / entry["path"], f"{rel}/{entry['path']}", entry["size"], entry["sha256"], counts)
        await self._put(manifest_path, f"{rel}/{MANIFEST}", size, digest, counts)
        # archived: in the catalog
        await asyncio.to_thread(record_session, self.config, directory, manifest, catalog=self.inner.catalog)
        log.info(
            "published %s: %d object(s) uploaded, %d already there", rel, counts["uploaded"], counts["present"],
            extra={"kv_session": directory.name},
        )
        return counts["uploaded"], counts["present"]

    async def _put(self, path: Path, rel: str, size: int, sha256: str, counts: dict[str, int]) -> None:
        """Upload one file (or find it there), counted in ``counts`` and the metrics."""
        metrics = self.inner.metrics
        try:
            outcome = await self.bucket.put_file(path, self.bucket.key(rel), size, sha256)
        except ObjectConflict:
            metrics.s3_objects.labels("conflict").inc()
            raise
        counts[outcome] += 1
        metrics.s3_objects.labels(outcome).inc()
        if outcome == "uploaded":
            metrics.s3_bytes.inc(size)

    async def proof(self, directory: Path, entries: list[dict[str, Any]]) -> str | None:
        """Why the bucket does not prove these manifest entries (size and stored sha256), or None.

        The deletion at the vendor asks this before it sends anything."""
        rel = self.relative(directory)
        if await self.bucket.head(self.bucket.key(f"{rel}/{MANIFEST}")) is None:
            return f"{MANIFEST} is not in the bucket"
        for entry in entries:
            info = await self.bucket.head(self.bucket.key(f"{rel}/{entry['path']}"))
            if info is None:
                return f"{entry['path']}: not in the bucket"
            problem = await self.bucket.content_problem(info, entry["size"], entry["sha256"])
            if problem is not None:
                return f"{entry['path']}: in the bucket: {problem}"
        return None

    async def settled(self, result: SessionResult) -> None:
        """The session is archived and its vendor copy dealt with: drop the spool copy."""
        if self.config.s3.keep_local_copy or result.outcome != "done":
            return
        directory = Path(result.directory)
        if directory.parent == directory or not directory.is_relative_to(self.spool):
            return
        if await asyncio.to_thread((directory / GENERATIONS).exists):
            # Earlier generations are not uploaded (the bucket never replaces anything, so a
            # published session has none); one that an unpublished attempt left stays here.
            log.warning(
                "%s: keeping the spool copy: it holds earlier generations, which are not in the bucket",
                self.relative(directory), extra={"kv_session": directory.name},
            )
            return
        await asyncio.to_thread(shutil.rmtree, directory, True)


def _result_from_manifest(directory: Path, raw: bytes) -> SessionResult:
    try:
        manifest = json.loads(raw)
        files = [f for f in manifest.get("files", []) if isinstance(f, dict)]
    except (ValueError, AttributeError):
        raise ObjectProblem(f"{directory.name}: the manifest in the bucket is not valid JSON") from None
    audio = [f for f in files if f.get("kind") == "audio"]
    parts = manifest.get("parts") if isinstance(manifest.get("parts"), dict) else {}
    return SessionResult(
        outcome="done",
        directory=directory,
        files=len(audio),
        bytes=sum(int(f.get("size", 0)) for f in audio if isinstance(f.get("size"), int)),
        parts={k: str(v.get("status")) for k, v in parts.items() if isinstance(v, dict)},
    )


__all__ = ["S3SessionArchiver", "spool_config"]
