"""Earlier generations of a session's archive: an archive only ever grows.

Archiving a session again (``enqueue --force``, ``verify --requeue``) fetches it afresh. The
vendor may have less by then (an expired copy answers ``media_unavailable``), so before the
new attempt writes anything, everything in the session directory is kept as a numbered
generation, by hard links (no copy; the new files replace the names, not the bytes):

    <session>/generations/<n>/...              the files as they were (same relative paths)
    <session>/generations/<n>/generation.json  what was kept, each file's size and sha256

``generation.json`` is written last: a generation without it is an interrupted snapshot of a
directory that is still whole, and is removed. When the new archive holds every earlier file
(by sha256) the generation is dropped; otherwise it stays, the new manifest lists it under
``earlier_generations`` with the reason, and ``verify`` checks it like the manifest's files.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from .atomicfile import fsync_dir, write_json_sync
from .manifest import MANIFEST

log = logging.getLogger("archiver.generations")

GENERATIONS = "generations"
GENERATION_FILE = "generation.json"


def generation_dirs(directory: Path) -> list[tuple[int, Path]]:
    """The complete generations of a session directory, oldest first."""
    root = directory / GENERATIONS
    try:
        names = os.listdir(root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [(int(n), root / n) for n in names if n.isdigit() and (root / n / GENERATION_FILE).is_file()]
    return sorted(found)


def keep(directory: Path, reason: str, now: str) -> int | None:
    """Keep what the session directory holds as a new generation; its number, or None when
    there is nothing to keep. Blocking: run it in a thread.

    When the newest generation already holds this very manifest (an attempt that kept it
    and was then interrupted), it is not kept twice.
    """
    _remove_interrupted(directory)
    files = [rel for rel in _kept_files(directory)]
    if not files:
        return None
    manifest = directory / MANIFEST
    manifest_sha = _sha256(manifest) if manifest.is_file() else None
    existing = generation_dirs(directory)
    if existing and manifest_sha is not None:
        number, path = existing[-1]
        if _read(path / GENERATION_FILE).get("manifest_sha256") == manifest_sha:
            return number
    number = existing[-1][0] + 1 if existing else 1
    target = directory / GENERATIONS / str(number)
    entries = []
    made: set[Path] = set()
    for rel in files:
        destination = target / rel
        if destination.parent not in made:
            destination.parent.mkdir(parents=True, exist_ok=True)
            made.add(destination.parent)
        _link_or_copy(directory / rel, destination)
        size = destination.stat().st_size
        entries.append({"path": rel, "size": size, "sha256": _sha256(destination)})
    for folder in sorted(made, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(folder)
    write_json_sync(target / GENERATION_FILE, {
        "generation": number, "kept_at": now, "reason": reason, "manifest_sha256": manifest_sha, "files": entries,
    })
    fsync_dir(directory / GENERATIONS)
    fsync_dir(directory)
    log.info("%s: the archive as it was is kept as %s/%d (%d files)", directory.name, GENERATIONS, number, len(entries))
    return number


def judge(directory: Path, manifest: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Path]]:
    """Which generations a new manifest fully holds (by sha256): (the ones kept, with the
    reason, for the manifest's ``earlier_generations``; the ones to drop once it is written)."""
    have = {f.get("sha256") for f in manifest.get("files", []) if isinstance(f, dict)}
    kept, held = [], []
    for number, path in generation_dirs(directory):
        record = _read(path / GENERATION_FILE)
        content = [f for f in record.get("files", []) if isinstance(f, dict) and _is_content(f, record)]
        missing = [f["path"] for f in content if f.get("sha256") not in have]
        if not missing:
            held.append(path)
            continue
        kept.append({
            "generation": number,
            "path": f"{GENERATIONS}/{number}",
            "kept_at": record.get("kept_at"),
            "reason": f"the new archive lacks {len(missing)} file(s) this one holds, e.g. {missing[0]}",
        })
    return kept, held


def drop(directory: Path, held: list[Path]) -> None:
    """Remove generations the (already written) manifest holds every file of."""
    for path in held:
        shutil.rmtree(path)
    root = directory / GENERATIONS
    if held:
        fsync_dir(root)
    if root.is_dir() and not os.listdir(root):
        root.rmdir()
        fsync_dir(directory)


def tidy(directory: Path, manifest: dict[str, Any]) -> int:
    """Once the new manifest is written, remove from the session directory the files it does
    not list that a generation holds (the same inode: nothing is lost). Returns how many."""
    listed = {str(f.get("path")) for f in manifest.get("files", []) if isinstance(f, dict)} | {MANIFEST}
    kept = generation_dirs(directory)
    removed = 0
    for rel in _kept_files(directory):
        if rel in listed:
            continue
        here = (directory / rel).stat()
        for _, path in kept:
            try:
                there = (path / rel).stat()
            except OSError:
                continue
            if (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino) or _same_bytes(directory / rel, path / rel):
                (directory / rel).unlink()
                fsync_dir((directory / rel).parent)
                removed += 1
                break
    return removed


def _same_bytes(one: Path, other: Path) -> bool:
    return one.stat().st_size == other.stat().st_size and _sha256(one) == _sha256(other)


def is_generation_path(rel: PurePosixPath) -> bool:
    """True for paths inside ``generations/`` (checked by ``verify`` against generation.json)."""
    return bool(rel.parts) and rel.parts[0] == GENERATIONS


def _is_content(entry: dict[str, Any], record: dict[str, Any]) -> bool:
    """Audio, transcripts and anything else that is not the manifest, a sidecar or ours."""
    rel = str(entry.get("path", ""))
    if rel in (MANIFEST, GENERATION_FILE) or rel.startswith("."):
        return False
    paths = {str(f.get("path")) for f in record.get("files", []) if isinstance(f, dict)}
    return not (rel.endswith(".json") and rel[: -len(".json")] in paths)  # a sidecar beside its file


def _kept_files(directory: Path) -> list[str]:
    """Regular files of the session directory (relative paths), leaving out generations and
    the hidden files an attempt writes while it works."""
    found = []
    for dirpath, dirnames, filenames in os.walk(directory):
        base = Path(dirpath).relative_to(directory)
        if base == Path("."):
            dirnames[:] = [d for d in dirnames if d != GENERATIONS]
        for name in filenames:
            path = Path(dirpath) / name
            if name.startswith(".") or not path.is_file() or path.is_symlink():
                continue
            found.append((base / name).as_posix())
    return sorted(found)


def _remove_interrupted(directory: Path) -> None:
    root = directory / GENERATIONS
    try:
        names = os.listdir(root)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        if not (root / name / GENERATION_FILE).is_file():
            shutil.rmtree(root / name, ignore_errors=True)


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except FileExistsError:
        destination.unlink()
        os.link(source, destination)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        shutil.copy2(source, destination)  # a file system without hard links
        with open(destination, "rb") as handle:
            os.fsync(handle.fileno())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _read(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
