"""``archiver verify`` on an S3 target: every manifest in the bucket against its objects.

The bucket is listed under ``<prefix><bot_id>/`` in key order, so the objects of one session
(``YYYY/MM/DD/<sid>/``, ``undated/<sid>/``, ``users/<uid>/``) come together and only one
session's keys are held at a time. For each session with a ``manifest.json``, every entry
must be an object of the listed size whose stored sha256 (the checksum S3 keeps, or, for a
multipart object, the whole file's sha256 in its metadata) is the manifest's; no bytes are
read. ``--deep`` reads every object back and hashes it, which also catches an object
replaced together with a forged checksum. Objects the manifest does not list are reported.

Objects in the bucket are never replaced, so damaged sessions are not requeued: restore the
object from a bucket version or a backup.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import PurePosixPath
from typing import Any, AsyncIterator, TextIO

from .config import Config
from .errors import ArchiverError
from .ids import SESSION, USER
from .layout import session_dir
from .manifest import MANIFEST, NO_MANIFEST, entry_problem, manifest_problem, now_iso, recordings_deleted
from .s3 import Bucket, bucket_url, s3_client
from .verify_report import BAD_MANIFEST, EXTRA, MISSING, SHA256, SIZE, UNREADABLE, SessionReport, VerifyReport, print_report

log = logging.getLogger("archiver.s3verify")

# Objects checked at once within a session.
HEADS_AT_ONCE = 8
NOT_REQUEUED = "objects in the bucket are never replaced; restore this one from a bucket version or a backup"
_DIGITS = re.compile(r"\d+")


@dataclass
class _Group:
    """The objects of one session directory: relative paths and sizes."""

    rel: str  # <bot>/YYYY/MM/DD/<sid>
    objects: dict[str, int]


class BucketVerifyReport(VerifyReport):
    """A VerifyReport whose root is the bucket and prefix."""

    url: str = ""

    def summary(self) -> str:
        return super().summary().replace(f"under {self.root / self.bot_id}", f"under {self.url}{self.bot_id}/")


def _session_rel(parts: tuple[str, ...]) -> int:
    """How many leading key parts (after the prefix) name the session directory; 0: none."""
    if len(parts) >= 6 and _DIGITS.fullmatch(parts[1]) and len(parts[1]) == 4:
        return 5  # bot, YYYY, MM, DD, sid
    if len(parts) >= 4 and parts[1] in ("undated", "users"):
        return 3  # bot, undated|users, id
    return 0


async def _groups(bucket: Bucket, bot_prefix: str) -> AsyncIterator[_Group]:
    """Session groups under ``bot_prefix``, in key order, one held at a time."""
    current: _Group | None = None
    prefix = bucket.s3.prefix
    async for key, size in bucket.list_keys(bot_prefix):
        parts = tuple(key[len(prefix):].split("/"))
        depth = _session_rel(parts)
        if not depth:
            continue  # not a session's object (nothing the archiver writes)
        rel = "/".join(parts[:depth])
        if current is None or current.rel != rel:
            if current is not None:
                yield current
            current = _Group(rel, {})
        current.objects["/".join(parts[depth:])] = size
    if current is not None:
        yield current


def _since_day(group: _Group, since: date) -> bool | None:
    """True/False for a dated session against ``since``; None when undated (ask its manifest)."""
    parts = group.rel.split("/")
    if len(parts) == 5:
        try:
            return date(int(parts[1]), int(parts[2]), int(parts[3])) >= since
        except ValueError:
            return True
    return None


async def _verify_group(bucket: Bucket, group: _Group, root: PurePosixPath, deep: bool, since: datetime | None) -> SessionReport | None:
    """Check one session's objects against its manifest (None: filtered out by ``since``)."""
    directory = root / group.rel
    id_type = USER if group.rel.split("/")[-2] == "users" else SESSION
    report = SessionReport(directory, id_type, directory.name)  # type: ignore[arg-type]
    manifest, why = await _read_manifest(bucket, group.rel, directory.name)
    if manifest is None:
        report.add(MANIFEST, BAD_MANIFEST, why)
        return report
    if since is not None and _since_day(group, since.astimezone(timezone.utc).date()) is None and not _archived_since(manifest, since):
        return None
    report.manifest_readable = True
    report.archived_at = manifest.get("archived_at") if isinstance(manifest.get("archived_at"), str) else None
    report.deleted_at_source = recordings_deleted(manifest)
    entries: list[dict[str, Any]] = []
    listed: set[str] = set()
    for index, entry in enumerate(manifest["files"]):
        problem = entry_problem(entry)
        if problem is None and entry["path"] in listed:
            problem = f"{entry['path']} is listed twice"
        if problem is not None:
            report.add(MANIFEST, BAD_MANIFEST, f"files[{index}]: {problem}")
            continue
        listed.add(entry["path"])
        entries.append(entry)
    gate = asyncio.Semaphore(HEADS_AT_ONCE)

    async def one(entry: dict[str, Any]) -> None:
        async with gate:
            problem = await _check_object(bucket, group.rel, entry, deep)
        if problem is None:
            report.files += 1
            report.bytes += entry["size"]
        else:
            report.add(entry["path"], *problem)

    await asyncio.gather(*(one(e) for e in entries))
    for rel in sorted(group.objects):
        if rel != MANIFEST and rel not in listed:
            report.add(rel, EXTRA, "in the bucket but not in the manifest")
    report.problems.sort(key=lambda p: p.path)
    return report


async def _check_object(bucket: Bucket, rel: str, entry: dict[str, Any], deep: bool) -> tuple[str, str] | None:
    key = bucket.key(f"{rel}/{entry['path']}")
    try:
        info = await bucket.head(key)
        if info is None:
            return MISSING, f"listed in the manifest ({entry['size']} bytes) but not in the bucket"
        problem = await bucket.content_problem(info, entry["size"], entry["sha256"])
        if problem is not None:
            return (SIZE if info.size != entry["size"] else SHA256), f"in the bucket: {problem}"
        if deep:
            read, found = await bucket.read_sha256(key)
            if read != entry["size"]:
                return SIZE, f"manifest says {entry['size']} bytes, read {read}"
            if found != entry["sha256"]:
                return SHA256, f"manifest {entry['sha256']}, object bytes {found}"
    except ArchiverError as exc:
        return UNREADABLE, str(exc)
    return None


async def _read_manifest(bucket: Bucket, rel: str, name: str) -> tuple[dict[str, Any] | None, str]:
    try:
        raw = await bucket.read_json(bucket.key(f"{rel}/{MANIFEST}"))
    except ArchiverError as exc:
        return None, f"cannot read: {exc}"
    if raw is None:
        return None, NO_MANIFEST
    try:
        data = json.loads(raw)
    except ValueError:
        return None, "not valid JSON"
    why = manifest_problem(data, name)
    return (None, why) if why else (data, "")


def _archived_since(manifest: dict[str, Any], since: datetime) -> bool:
    try:
        archived = datetime.fromisoformat(str(manifest.get("archived_at")))
    except ValueError:
        return True
    return (archived if archived.tzinfo else archived.replace(tzinfo=timezone.utc)) >= since


async def verify_bucket(
    config: Config,
    *,
    since: datetime | None = None,
    session_id: str | None = None,
    deep: bool = False,
    sample: int | None = None,
) -> BucketVerifyReport:
    """Verify the configured bot's sessions in the bucket (all, since a date, one, or a sample)."""
    s3 = config.s3
    root = PurePosixPath("/", s3.bucket, *[p for p in s3.prefix.split("/") if p])
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    report = BucketVerifyReport(root=root, bot_id=config.kore.bot_id, since=since)  # type: ignore[arg-type]
    report.url = bucket_url(config)
    async with s3_client(config) as client:
        bucket = Bucket(config, client)
        if session_id is not None:
            directory = session_dir(PurePosixPath("."), config.kore.bot_id, SESSION, session_id)  # type: ignore[arg-type]
            rel = PurePosixPath(directory).as_posix()
            group = _Group(rel, {})
            async for key, size in bucket.list_keys(bucket.key(rel + "/")):
                group.objects[key[len(bucket.key(rel + "/")):]] = size
            checked = await _verify_group(bucket, group, root, deep, None)
            if checked is not None:
                report.add(checked)
        else:
            await _verify_groups(bucket, report, root, deep, since, sample)
    report.finished_at = now_iso()
    return report


async def _verify_groups(
    bucket: Bucket, report: VerifyReport, root: PurePosixPath, deep: bool, since: datetime | None, sample: int | None
) -> None:
    seen_any = False
    chosen: list[_Group] = []
    rng = random.Random()
    count = 0
    async for group in _groups(bucket, bucket.key(f"{report.bot_id}/")):
        seen_any = True
        if MANIFEST not in group.objects:
            report.unfinished += 1
            continue
        if since is not None and _since_day(group, since.astimezone(timezone.utc).date()) is False:
            continue
        if sample is None:
            checked = await _verify_group(bucket, group, root, deep, since)
            if checked is not None:
                report.add(checked)
            continue
        if count < sample:  # a uniform sample in one pass, holding only the sample
            chosen.append(group)
        elif (slot := rng.randrange(count + 1)) < sample:
            chosen[slot] = group
        count += 1
    for group in chosen:
        checked = await _verify_group(bucket, group, root, deep, since)
        if checked is not None:
            report.add(checked)
    if not seen_any and sample is None:
        report.root_missing = True


async def run_verify_bucket(
    config: Config,
    *,
    since: datetime | None = None,
    session_id: str | None = None,
    requeue: bool = False,
    deep: bool = False,
    as_json: bool = False,
    out: TextIO,
) -> int:
    """``archiver verify`` on an S3 target; 0 when every object is intact, else 1."""
    report = await verify_bucket(config, since=since, session_id=session_id, deep=deep)
    if requeue:
        report.requeued = []
        report.not_requeued = [(s, NOT_REQUEUED) for s in sorted(report.damaged, key=lambda s: s.directory)]
    return print_report(report, out, as_json, root=report.url, deep=deep)


__all__ = ["verify_bucket", "run_verify_bucket", "BucketVerifyReport"]
