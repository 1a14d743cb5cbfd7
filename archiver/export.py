"""Handing sessions over: ``archiver export``, with a chain of custody.

An export copies each chosen session's files and manifest out of the archive, re-reading
every byte against the sha256 the manifest recorded when the file was archived. A file that
does not match (or is missing, or cannot be read) is refused: it is not exported, and
``custody.json`` says which file, what was expected and what was found. The export folder
holds::

    <session_id>/manifest.json, recordings/..., voicemail/..., ...   the sessions
    <session_id>/generations/<n>/...   earlier generations the manifest lists (a forced
                                       re-archive that got less), checked against their
                                       generation.json
    users/<user_id>/...                                              recordings looked up by user
    custody.json    what was exported, from where, when, by whom, every file's sha256 and result
    README.txt      for the receiver: what this is and how to check it
    SHA256SUMS      every file above, for ``sha256sum -c SHA256SUMS``

The folder is built under a temporary name beside the destination and renamed into place
when complete, so a folder with the destination's name is always a whole export. With
``--zip`` the same tree is written into one zip file (stored, not compressed: audio does not
compress), also under a temporary name first. Every export is then recorded as one JSON line
appended to ``<state_dir>/exports.jsonl`` (``O_APPEND``, fsynced), like deletions.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import stat
import tempfile
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .archive_reader import ArchiveReader, StoredSession, read_small_json
from .atomicfile import FILE_MODE, fsync_dir
from .errors import ArchiverError, ConfigError
from .generations import GENERATION_FILE, GENERATIONS
from .ids import SESSION, USER
from .manifest import MANIFEST, entry_problem, now_iso

CUSTODY = "custody.json"
README = "README.txt"
SUMS = "SHA256SUMS"
CUSTODY_FORMAT = 1
READ_SIZE = 1024 * 1024
_GENERATION_PATH = re.compile(rf"{GENERATIONS}/[0-9]{{1,6}}")
# Results of one file.
VERIFIED, REFUSED, REFERENCE = "verified", "refused", "reference"


@dataclass
class Selection:
    """What to export: sessions by id, or those a catalog query found (``described`` for custody)."""

    sessions: list[tuple[str, str]]  # (id_type, id)
    described: dict[str, Any]


@dataclass
class ExportResult:
    """What an export did."""

    destination: Path
    custody: dict[str, Any]
    logged: bool = False

    @property
    def complete(self) -> bool:
        return self.custody["result"] == "complete"


@dataclass
class _Tree:
    """The export folder being built."""

    root: Path
    sums: list[tuple[str, str]] = field(default_factory=list)  # (sha256, relative path)


def export(
    reader: ArchiveReader,
    selection: Selection,
    *,
    to_dir: Path | None = None,
    to_zip: Path | None = None,
    log_path: Path,
    bot_id: str = "",
) -> ExportResult:
    """Export ``selection`` into a new folder or zip file; record it in the export log (blocking)."""
    destination = Path(to_zip or to_dir or "")
    _check_destination(destination, is_zip=to_zip is not None)
    _check_log(log_path)
    export_id = uuid.uuid4().hex
    scratch = Path(tempfile.mkdtemp(prefix=f".{destination.name[:100]}.", suffix=".incomplete", dir=destination.parent))
    try:
        tree = _Tree(scratch)
        custody = _custody_head(reader, selection, destination, export_id, bot_id, zipped=to_zip is not None)
        for id_type, ext_id in selection.sessions:
            custody["sessions"].append(_export_session(reader, tree, id_type, ext_id))
        _summarise(custody)
        _write_member(tree, CUSTODY, (json.dumps(custody, indent=2, ensure_ascii=False) + "\n").encode())
        _write_member(tree, README, _readme(custody).encode())
        _write_sums(tree)
        if to_zip is not None:
            _zip_tree(tree, destination)
        else:
            _place_tree(scratch, destination)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = ExportResult(destination, custody)
    result.logged = _append_log(log_path, _log_entry(custody, destination))
    return result


# -- checks ------------------------------------------------------------------------------------


def _check_destination(destination: Path, *, is_zip: bool) -> None:
    option = "--zip" if is_zip else "--to"
    if not destination.name:
        raise ConfigError(option, "give the export's destination")
    if is_zip:
        if destination.exists() or destination.is_symlink():
            raise ConfigError(option, f"{destination} exists already; give a new file name")
    elif destination.is_symlink() or (destination.exists() and (not destination.is_dir() or any(destination.iterdir()))):
        raise ConfigError(option, f"{destination} exists and is not an empty folder; give a new one")
    if not destination.parent.is_dir():
        raise ConfigError(option, f"the folder {destination.parent} does not exist")


def _check_log(log_path: Path) -> None:
    """The export log must be writable before anything is exported: an unrecorded export breaks the chain."""
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        os.close(fd)
    except OSError as exc:
        raise ArchiverError(f"cannot write the export log {log_path}: {exc.strerror}; nothing was exported") from None


# -- one session -------------------------------------------------------------------------------


def _export_session(reader: ArchiveReader, tree: _Tree, id_type: str, ext_id: str) -> dict[str, Any]:
    prefix = f"users/{ext_id}" if id_type == USER else ext_id
    record: dict[str, Any] = {"id": ext_id, "id_type": id_type, "folder": prefix, "files": []}
    stored = reader.session(id_type, ext_id)
    if stored is None:
        record.update(result="not_found", detail=f"not in the archive (no usable {MANIFEST})")
        return record
    manifest = stored.manifest
    deletion = manifest.get("deletion") if isinstance(manifest.get("deletion"), dict) else None
    record.update(
        location=stored.location,
        archived_at=manifest.get("archived_at"),
        bot_id=manifest.get("bot_id"),
        deleted_at_vendor=bool(deletion and deletion.get("result") == "deleted" and deletion.get("dry_run") is False),
    )
    record["files"].append(_copy(reader, tree, stored, MANIFEST, f"{prefix}/{MANIFEST}", None))
    seen: set[str] = set()
    for index, entry in enumerate(manifest.get("files") or []):
        problem = entry_problem(entry)
        if problem is None and entry["path"] in seen:
            problem = "listed twice"
        if problem is not None:
            path = entry.get("path") if isinstance(entry, dict) and isinstance(entry.get("path"), str) else f"files[{index}]"
            record["files"].append({"path": f"{prefix}/{path}"[:300], "result": REFUSED,
                                    "detail": f"unusable manifest entry: {problem}"})
            continue
        seen.add(entry["path"])
        record["files"].append(_copy(reader, tree, stored, entry["path"], f"{prefix}/{entry['path']}", entry))
    for earlier in manifest.get("earlier_generations") or []:
        record["files"] += _export_generation(reader, tree, stored, prefix, earlier)
    refused = sum(1 for f in record["files"] if f["result"] == REFUSED)
    record["result"] = "complete" if not refused else "incomplete"
    return record


def _export_generation(reader: ArchiveReader, tree: _Tree, stored: StoredSession, prefix: str,
                       earlier: Any) -> list[dict[str, Any]]:
    """An earlier generation the manifest lists (a forced re-archive that got less than
    before): its ``generation.json`` and every file it records, checked against it."""
    rel = earlier.get("path") if isinstance(earlier, dict) else None
    if not isinstance(rel, str) or not _GENERATION_PATH.fullmatch(rel):
        return [{"path": f"{prefix}/{GENERATIONS}"[:300], "result": REFUSED,
                 "detail": f"unusable earlier_generations entry: {str(rel)[:80]!r}"}]
    files = [_copy(reader, tree, stored, f"{rel}/{GENERATION_FILE}", f"{prefix}/{rel}/{GENERATION_FILE}", None)]
    if files[0]["result"] == REFUSED:
        files[0]["detail"] = f"the manifest lists this earlier generation, but {files[0]['detail']}"
        return files
    record = read_small_json(reader, stored.location, f"{rel}/{GENERATION_FILE}") or {}
    for index, entry in enumerate(record.get("files") or []):
        # A generation keeps the manifest of its day too: a file like the others here.
        problem = entry_problem(dict(entry, path="x") if isinstance(entry, dict) and entry.get("path") == MANIFEST
                                else entry)
        if problem is not None:
            files.append({"path": f"{prefix}/{rel}/files[{index}]", "result": REFUSED,
                          "detail": f"unusable {GENERATION_FILE} entry: {problem}"})
            continue
        files.append(_copy(reader, tree, stored, f"{rel}/{entry['path']}", f"{prefix}/{rel}/{entry['path']}", entry))
    return files


def _copy(reader: ArchiveReader, tree: _Tree, stored: StoredSession, rel: str, out_rel: str,
          entry: dict[str, Any] | None) -> dict[str, Any]:
    """Copy one file, hashing what is written; keep it only when it matches the manifest."""
    out = {"path": out_rel, "source": reader.where(stored.location, rel)}
    if entry is not None:
        out.update(size=entry["size"], sha256=entry["sha256"], kind=entry.get("kind"))
    target = tree.root / out_rel
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    try:
        with reader.open(stored.location, rel) as source, open(target, "xb") as sink:
            os.fchmod(sink.fileno(), FILE_MODE)
            while block := source.read(READ_SIZE):
                digest.update(block)
                sink.write(block)
                size += len(block)
            sink.flush()
            os.fsync(sink.fileno())
    except OSError as exc:
        target.unlink(missing_ok=True)
        detail = "missing from the archive" if isinstance(exc, FileNotFoundError) else f"cannot read: {exc.strerror or exc}"
        return dict(out, result=REFUSED, detail=detail)
    found = digest.hexdigest()
    out["sha256_read"] = found
    if entry is None:  # the manifest itself: the reference the other files are checked against
        out.update(size=size, sha256=found)
        tree.sums.append((found, out_rel))
        return dict(out, result=REFERENCE)
    if size != entry["size"] or found != entry["sha256"]:
        target.unlink()
        detail = (f"size {size} bytes, the manifest says {entry['size']}" if size != entry["size"]
                  else "the bytes read do not hash to the manifest's sha256: the archived copy is damaged")
        return dict(out, size_read=size, result=REFUSED, detail=detail)
    tree.sums.append((found, out_rel))
    return dict(out, result=VERIFIED)


# -- custody, README, SHA256SUMS ---------------------------------------------------------------


def _custody_head(reader: ArchiveReader, selection: Selection, destination: Path, export_id: str, bot_id: str,
                  *, zipped: bool) -> dict[str, Any]:
    return {
        "format": CUSTODY_FORMAT,
        "export_id": export_id,
        "exported_at": now_iso(),
        "exported_by": _who(),
        "software": f"kore-archiver {__version__}",
        "source": {"target": reader.target, "archive": reader.describe(), "bot_id": bot_id},
        "destination": {"kind": "zip" if zipped else "folder", "path": str(destination.absolute())},
        "selection": selection.described,
        "hash_algorithm": "sha256",
        "sessions": [],
    }


def _who() -> dict[str, Any]:
    """The account from the process's uid (not from $USER, which anyone can set), and the
    login name the environment gives when it differs (``sudo``)."""
    try:
        user: str | None = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no passwd entry (containers with an arbitrary uid)
        user = None
    who: dict[str, Any] = {"user": user, "uid": os.getuid(), "host": socket.getfqdn() or socket.gethostname()}
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = None
    if login and login != user:
        who["login_name"] = login
    sudo = os.environ.get("SUDO_USER")
    if sudo:
        who["sudo_user"] = sudo
    return who


def _summarise(custody: dict[str, Any]) -> None:
    files = [f for s in custody["sessions"] for f in s["files"]]
    exported = [f for f in files if f["result"] in (VERIFIED, REFERENCE)]
    refused = [f for f in files if f["result"] == REFUSED]
    not_found = [s["id"] for s in custody["sessions"] if s["result"] == "not_found"]
    custody["summary"] = {
        "sessions": len(custody["sessions"]),
        "files_exported": len(exported),
        "bytes_exported": sum(f.get("size", 0) for f in exported),
        "files_verified": sum(1 for f in files if f["result"] == VERIFIED),
        "files_refused": len(refused),
        "sessions_not_found": not_found,
    }
    custody["result"] = "complete" if not refused and not not_found else "incomplete"


def _readme(custody: dict[str, Any]) -> str:
    summary = custody["summary"]
    lines = [
        "Kore.ai Contact Center recordings: export",
        "=========================================",
        "",
        f"Export {custody['export_id']}, made {custody['exported_at']} by {custody['exported_by']['user']}"
        f" on {custody['exported_by']['host']} with {custody['software']}.",
        f"{summary['sessions']} session(s), {summary['files_exported']} file(s), {summary['bytes_exported']} bytes.",
        "",
        "Each folder is one call session: its audio (recordings/, voicemail/), the sidecar",
        f"(.json) and transcription files written when it was archived, and {MANIFEST},",
        "which lists every file of the session with its size and SHA-256 as archived.",
        "",
        "custody.json records what was exported, from where, when and by whom, each file's",
        "SHA-256 as archived and as read during this export, and the result of that check.",
    ]
    if custody["result"] != "complete":
        lines += [
            "",
            f"THIS EXPORT IS INCOMPLETE: {summary['files_refused']} file(s) failed verification and were NOT",
            f"included; sessions not found: {', '.join(summary['sessions_not_found']) or 'none'}.",
            "custody.json lists each refused file with the reason (\"result\": \"refused\").",
        ]
    lines += [
        "",
        "To check that nothing was altered since the export, run in this folder:",
        "",
        "    sha256sum -c SHA256SUMS                (Linux)",
        "    shasum -a 256 -c SHA256SUMS            (macOS)",
        "    Get-FileHash -Algorithm SHA256 FILE    (Windows PowerShell; compare with SHA256SUMS)",
        "",
        "Every line must say OK. To check a file against the archive's own record, compare its",
        f"SHA-256 with the \"sha256\" of its entry in the session's {MANIFEST}.",
        "",
    ]
    return "\n".join(lines)


def _write_new(path: Path, data: bytes) -> None:
    """A new file of the tree being built (never an existing one), fsynced; the whole tree is
    renamed into place once complete (``_place_tree``)."""
    with open(path, "xb") as handle:
        os.fchmod(handle.fileno(), FILE_MODE)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_member(tree: _Tree, rel: str, data: bytes) -> None:
    _write_new(tree.root / rel, data)
    tree.sums.append((hashlib.sha256(data).hexdigest(), rel))


def _sums_line(digest: str, rel: str) -> str:
    """One line in GNU coreutils' format (names with a backslash or newline are escaped)."""
    if "\\" in rel or "\n" in rel or "\r" in rel:
        escaped = rel.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{digest}  {escaped}\n"
    return f"{digest}  {rel}\n"


def _write_sums(tree: _Tree) -> None:
    data = "".join(_sums_line(d, r) for d, r in sorted(tree.sums, key=lambda item: item[1])).encode()
    _write_new(tree.root / SUMS, data)


def _place_tree(scratch: Path, destination: Path) -> None:
    """Fsync the built tree's directories, then rename it into place."""
    for dirpath, _dirs, _files in os.walk(scratch, topdown=False):
        fsync_dir(Path(dirpath))
    os.chmod(scratch, 0o750)
    if destination.is_dir():
        destination.rmdir()  # checked empty before; rmdir refuses if anything appeared since
    os.rename(scratch, destination)
    fsync_dir(destination.parent)


def _zip_tree(tree: _Tree, destination: Path) -> None:
    """The tree as one zip file, checking each file again as it goes in."""
    expected = {rel: digest for digest, rel in tree.sums}
    expected[SUMS] = None
    temp = destination.with_name(f".{destination.name[:150]}.{uuid.uuid4().hex[:12]}.incomplete")
    try:
        with zipfile.ZipFile(temp, "x", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for rel in sorted(expected):
                digest = hashlib.sha256()
                with open(tree.root / rel, "rb") as source, archive.open(rel, "w", force_zip64=True) as sink:
                    while block := source.read(READ_SIZE):
                        digest.update(block)
                        sink.write(block)
                if expected[rel] is not None and digest.hexdigest() != expected[rel]:
                    raise ArchiverError(f"{rel} changed while being zipped; nothing was exported")
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.link(temp, destination)  # never replaces a file that appeared meanwhile
        fsync_dir(destination.parent)
    finally:
        temp.unlink(missing_ok=True)


# -- the export log ----------------------------------------------------------------------------


def _log_entry(custody: dict[str, Any], destination: Path) -> dict[str, Any]:
    summary = custody["summary"]
    return {
        "at": custody["exported_at"],
        "export_id": custody["export_id"],
        "user": custody["exported_by"]["user"],
        "uid": custody["exported_by"]["uid"],
        "host": custody["exported_by"]["host"],
        "destination": custody["destination"],
        "selection": custody["selection"],
        "sessions": [s["id"] for s in custody["sessions"]],
        "files": summary["files_exported"],
        "bytes": summary["bytes_exported"],
        "refused": [{"path": f["path"], "detail": f.get("detail")}
                    for s in custody["sessions"] for f in s["files"] if f["result"] == REFUSED],
        "not_found": summary["sessions_not_found"],
        "result": custody["result"],
    }


def _append_log(path: Path, entry: dict[str, Any]) -> bool:
    """Append one fsynced JSON line; False when the disk refuses (the caller says so)."""
    line = (json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def sessions_from(found: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """(id_type, id) of catalog rows."""
    return [(row.get("id_type") or SESSION, row["session_id"]) for row in found]


__all__ = ["export", "Selection", "ExportResult", "sessions_from", "CUSTODY", "README", "SUMS"]
