"""Verification: re-read archived files and check them against their manifests.

A session's manifest (``manifest.py``) lists every file of the session with its size and sha256. A
session is intact when every listed file is there, is a regular file, has that size and
hashes to that sha256, and nothing else lies in the session directory (apart from the
manifest itself and the hidden temp and part files an archive run leaves while it works).

The archive is walked as the layout lays it out (``<root>/<bot_id>/YYYY/MM/DD/<sid>``,
``undated/<sid>``, ``users/<uid>``). Files are hashed in a small thread pool with 1 MiB
reads, a few sessions at a time, and only damaged sessions are kept in the report, so memory
does not grow with the size of the archive. A directory without a manifest is a session not
archived yet (in progress, not ready at the vendor): it is counted, not reported.

Damaged sessions can be put back in the job queue with ``force`` (:func:`requeue`), except
those whose recordings were deleted at the vendor: archiving them again cannot bring the
recordings back and would replace their manifest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import stat
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, TextIO

from .audit import deleted_in_audit_log
from .config import Config
from .generations import GENERATION_FILE, GENERATIONS, generation_dirs
from .ids import SESSION
from .layout import id_type_of, session_dir, session_dirs
from .manifest import MANIFEST, NO_MANIFEST, exists as manifest_exists, entry_problem, is_work_file, now_iso, read_manifest, recordings_deleted
from .store import EnqueueResult, JobStore
from .verify_report import (  # the report's types, shared with the bucket's verification (s3verify.py)
    BAD_MANIFEST, EXTRA, MISSING, NOT_A_FILE, SHA256, SIZE, UNREADABLE, Problem, SessionReport, VerifyReport,
    print_report,
)

log = logging.getLogger("archiver.verify")

READ_SIZE = 1024 * 1024
# Sessions hashed at once; verification shares the disk with the archive's own writes.
THREADS = min(4, os.cpu_count() or 1)

# -- one file, one session ---------------------------------------------------------------------


def hash_file(path: Path) -> tuple[int, str]:
    """(bytes read, sha256) of a file, read 1 MiB at a time into one buffer; never through a link."""
    digest = hashlib.sha256()
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    total = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", buffering=0) as handle:
        while read := handle.readinto(buffer):
            digest.update(view[:read])
            total += read
    return total, digest.hexdigest()


def check_file(directory: Path, entry: dict[str, Any]) -> Problem | None:
    """Check one valid manifest entry against the disk: present, regular, size, then sha256."""
    rel, size, expected = entry["path"], entry["size"], entry["sha256"]
    path = directory / rel
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return Problem(rel, MISSING, f"listed in the manifest ({size} bytes) but not on disk")
    except OSError as exc:
        return Problem(rel, UNREADABLE, f"cannot stat: {exc.strerror}")
    if not stat.S_ISREG(info.st_mode):
        return Problem(rel, NOT_A_FILE, "a link, directory or device where the manifest lists a file")
    if info.st_size != size:
        return Problem(
            rel, SIZE, f"manifest says {size} bytes, disk has {info.st_size}", expected=size, found=info.st_size
        )
    try:
        read, found = hash_file(path)
    except OSError as exc:
        return Problem(rel, UNREADABLE, f"cannot read: {exc.strerror}")
    if read != size:  # changed while we read it
        return Problem(rel, SIZE, f"manifest says {size} bytes, read {read}", expected=size, found=read)
    if found != expected:
        return Problem(rel, SHA256, f"manifest {expected}, disk {found}", expected=expected, found=found)
    return None


def _present_files(directory: Path) -> Iterator[str]:
    """Every non-directory entry below ``directory`` (links to directories included), as relative paths."""
    for dirpath, dirnames, filenames in os.walk(directory):
        base = PurePosixPath(Path(dirpath).relative_to(directory).as_posix())
        for name in filenames:
            yield (base / name).as_posix()
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                yield (base / name).as_posix()


def verify_session(directory: Path) -> SessionReport:
    """Check one session directory against its manifest (blocking: run it in a thread)."""
    directory = Path(directory)
    report = SessionReport(directory, id_type_of(directory), directory.name)
    manifest, why = read_manifest(directory)
    if manifest is None:
        report.add(MANIFEST, MISSING if why == NO_MANIFEST else BAD_MANIFEST, why or "unusable")
        return report
    report.manifest_readable = True
    report.archived_at = manifest.get("archived_at") if isinstance(manifest.get("archived_at"), str) else None
    report.deleted_at_source = recordings_deleted(manifest)
    listed: set[str] = set()
    for index, entry in enumerate(manifest["files"]):
        problem = entry_problem(entry)
        if problem is None and entry["path"] in listed:
            problem = f"{entry['path']} is listed twice"
        if problem is not None:
            report.add(MANIFEST, BAD_MANIFEST, f"files[{index}]: {problem}")
            continue
        listed.add(entry["path"])
        found = check_file(directory, entry)
        if found is not None:
            report.problems.append(found)
        else:
            report.files += 1
            report.bytes += entry["size"]
    generation_files = _check_generations(directory, report)
    for rel in _present_files(directory):
        if rel == MANIFEST or rel in listed or rel in generation_files or is_work_file(PurePosixPath(rel)):
            continue
        report.add(rel, EXTRA, "on disk but not in the manifest")
    return report


def _check_generations(directory: Path, report: SessionReport) -> set[str]:
    """Check the earlier generations kept in the session directory (see ``generations``)
    against their ``generation.json``; the paths they account for."""
    accounted: set[str] = set()
    for number, path in generation_dirs(directory):
        base = f"{GENERATIONS}/{number}"
        accounted.add(f"{base}/{GENERATION_FILE}")
        try:
            record = json.loads((path / GENERATION_FILE).read_bytes())
            entries = record["files"]
            if not isinstance(entries, list):
                raise TypeError
        except (OSError, ValueError, KeyError, TypeError):
            report.add(f"{base}/{GENERATION_FILE}", BAD_MANIFEST, "unreadable or not a generation record")
            continue
        for index, entry in enumerate(entries):
            problem = entry_problem(entry) if not (isinstance(entry, dict) and entry.get("path") == MANIFEST) else None
            if problem is not None:
                report.add(f"{base}/{GENERATION_FILE}", BAD_MANIFEST, f"files[{index}]: {problem}")
                continue
            accounted.add(f"{base}/{entry['path']}")
            found = check_file(path, entry)
            if found is not None:
                report.problems.append(replace(found, path=f"{base}/{found.path}"))
            else:
                report.files += 1
                report.bytes += entry["size"]
    return accounted


# -- walking the archive -----------------------------------------------------------------------


def _archived_dirs(dirs: Iterable[Path], report: VerifyReport) -> Iterator[Path]:
    """The directories holding a manifest; the others are counted as not archived yet."""
    for directory in dirs:
        if manifest_exists(directory):
            yield directory
        else:
            report.unfinished += 1


def _reservoir(dirs: Iterable[Path], size: int, rng: random.Random) -> list[Path]:
    """A uniform random sample of ``size`` items in one pass, holding only the sample."""
    sample: list[Path] = []
    for seen, directory in enumerate(dirs):
        if seen < size:
            sample.append(directory)
        else:
            slot = rng.randrange(seen + 1)
            if slot < size:
                sample[slot] = directory
    return sample


def _check_all(dirs: Iterable[Path], report: VerifyReport, stop: threading.Event) -> None:
    """Verify sessions in a thread pool, at most two per thread in flight (blocking)."""
    pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="verify")
    pending: set[Future[SessionReport]] = set()
    try:
        for directory in dirs:
            if stop.is_set():
                return
            pending.add(pool.submit(verify_session, directory))
            if len(pending) >= 2 * THREADS:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    report.add(future.result())
        for future in pending:
            report.add(future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


async def _run_in_thread(work: Any, *args: Any) -> None:
    """Run blocking ``work(*args, stop)``; on cancellation, ask it to stop and wait for it."""
    stop = threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(work, *args, stop))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        raise


async def verify_archive(
    config: Config,
    *,
    since: datetime | None = None,
    session_id: str | None = None,
    sample: int | None = None,
) -> VerifyReport:
    """Verify the archive of the configured bot: one session, those since a date, or a random sample.

    ``since`` without a time zone is taken as UTC. ``session_id`` checks that session only
    (its absence is a problem; ``since`` does not apply). ``sample`` picks that many
    archived sessions at random (after ``since``).
    """
    root, bot_id = config.archive.root, config.kore.bot_id
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    report = VerifyReport(root=root, bot_id=bot_id, since=since)
    bot_root = root / bot_id
    if session_id is not None:
        dirs: list[Path] | Iterator[Path] = [session_dir(root, bot_id, SESSION, session_id)]
    elif not bot_root.is_dir():
        report.root_missing = True
        dirs = []
    else:
        dirs = _archived_dirs(session_dirs(bot_root, since), report)

    def work(stop: threading.Event) -> None:
        chosen = _reservoir(dirs, sample, random.Random()) if sample is not None else dirs
        _check_all(chosen, report, stop)

    await _run_in_thread(work)
    await _note_deletions_from_audit_log(config, report)
    report.finished_at = now_iso()
    return report


async def _note_deletions_from_audit_log(config: Config, report: VerifyReport) -> None:
    """The audit log may hold the only record of a deletion (the manifest cannot be read, or
    its rewrite after DELETE failed): ask it about every damaged session."""
    unknown = {s.session_id: s for s in report.damaged if s.id_type == SESSION and not s.deleted_at_source}
    if not unknown:
        return
    for session_id in await asyncio.to_thread(deleted_in_audit_log, config, set(unknown)):
        unknown[session_id].deleted_at_source = True


async def verify_sample(config: Config, size: int) -> VerifyReport:
    """Verify ``size`` archived sessions picked at random (the daemon's scheduled check); logs the outcome."""
    if config.archive.target == "s3":
        from .s3verify import verify_bucket

        report: VerifyReport = await verify_bucket(config, sample=max(size, 0))
    else:
        report = await verify_archive(config, sample=max(size, 0))
    if report.root_missing:  # nothing archived yet: nothing to sample
        report.root_missing = False
    if report.ok:
        log.info("verify sample: %s", report.summary(), extra={"kv_sessions": report.sessions_checked})
    else:
        for line in report.problem_lines():
            log.warning("verify sample: %s", line)
        log.warning("verify sample: %s", report.summary(), extra={"kv_damaged": len(report.damaged)})
    return report


def requeue(report: VerifyReport, store: JobStore) -> EnqueueResult:
    """Queue the damaged sessions again with ``force`` (blocking: the store is synchronous).

    Left alone, and listed in ``report.not_requeued`` with the reason: sessions whose
    recordings were deleted at the vendor (archiving them again would fetch nothing and
    replace their manifest), and sessions whose only problem is stray files (what the
    manifest lists is intact, and archiving again does not remove strays).
    """
    chosen: list[SessionReport] = []
    report.not_requeued = []
    for session in sorted(report.damaged, key=lambda s: s.directory):
        reason = _why_not_requeued(session)
        if reason:
            report.not_requeued.append((session, reason))
        else:
            chosen.append(session)
    result = store.enqueue(((s.id_type, s.session_id) for s in chosen), force=True)
    report.requeued = chosen
    for session in chosen:
        log.info("requeued damaged session %s", session.session_id, extra={"kv_session": session.session_id})
    return result


def _why_not_requeued(session: SessionReport) -> str | None:
    if session.deleted_at_source:
        return ("its recordings are deleted or possibly deleted at the vendor (manifest or audit log); "
                "restore the files from a backup")
    if all(p.kind == EXTRA for p in session.problems):
        # The archived files are intact; archiving again would fetch them anew and leave the strays.
        return "only files the manifest does not list; inspect and remove them"
    return None


async def run_verify(
    config: Config,
    *,
    since: datetime | None = None,
    session_id: str | None = None,
    requeue: bool = False,
    as_json: bool = False,
    deep: bool = False,
    out: TextIO,
) -> int:
    """``archiver verify``: check, optionally requeue the damage, print the report; 0 when all is intact, else 1.

    On an S3 target the bucket is verified instead (``deep`` reads the objects back)."""
    if config.archive.target == "s3":
        from .s3verify import run_verify_bucket

        return await run_verify_bucket(
            config, since=since, session_id=session_id, requeue=requeue, deep=deep, as_json=as_json, out=out
        )
    report = await verify_archive(config, since=since, session_id=session_id)
    if requeue and report.damaged:
        await asyncio.to_thread(_requeue_in_store, config, report)
    return print_report(report, out, as_json)


def _requeue_in_store(config: Config, report: VerifyReport) -> None:
    with JobStore.open_existing(config.daemon.state_dir, read_only=False) as store:
        requeue(report, store)


__all__ = [
    "Problem", "SessionReport", "VerifyReport", "verify_session", "verify_archive", "verify_sample",
    "requeue", "run_verify", "hash_file", "check_file",
]
