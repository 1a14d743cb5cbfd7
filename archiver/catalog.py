"""The catalog: an index of every archived session, for ``archiver find`` and ``export``.

One SQLite file, ``<state_dir>/catalog.sqlite3`` (WAL, like the job store), with a row per
archived session: its ids, date, what the call-details record says (direction, caller,
callee, agents, queues, dispositions, duration, voicemail, final status), its files with
sizes and sha256, the deletion state at the vendor and where it is stored; and an FTS5
table over the voicemail transcriptions and call transcripts.

The catalog is never the only record of anything. It is written right after a manifest is
committed (:func:`record_session`, in the thread that committed it), and it can be rebuilt at
any time from the manifests, ``call.json`` and transcript files (:meth:`Catalog.rebuild`), plus
the deletion audit log. A failed catalog write is logged and does not fail the session.

Dates are Unix seconds (UTC): the call's start from ``call.json``, else the time inside an
ObjectId session id, else when the session was archived.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Self

from .calldetails import CALL_FILE
from .archive_reader import ArchiveReader, FileArchiveReader, StoredSession, listed_files, read_small_json
from .config import Config, local_root
from . import sqlitefile
from .errors import ConfigError
from .ids import object_id_time
from .manifest import recordings_deleted

log = logging.getLogger("archiver.catalog")

FILE_NAME = "catalog.sqlite3"
SCHEMA_VERSION = 1
WHAT = "catalog"
# Bounds on what a vendor record can put in the catalog.
MAX_TEXT = 500
MAX_ITEMS = 50
MAX_BODY = 1024 * 1024
MAX_WORDS = 20
_BATCH = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id              INTEGER PRIMARY KEY,
    id_type         TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    bot_id          TEXT,
    started_at      REAL NOT NULL,
    ended_at        REAL,
    duration        REAL,
    direction       TEXT,
    caller          TEXT,
    callee          TEXT,
    dialed_number   TEXT,
    agents          TEXT NOT NULL,   -- JSON list of {name, email, id}
    queues          TEXT NOT NULL,   -- JSON list of names
    dispositions    TEXT NOT NULL,   -- JSON list
    remarks         TEXT NOT NULL,   -- JSON list
    voicemail       INTEGER,         -- 1 yes, 0 no, NULL unknown
    final_status    TEXT,
    call_details    INTEGER NOT NULL, -- 1 when a call.json was read
    agent_keys      TEXT NOT NULL,   -- lower-cased search keys, one per line
    caller_keys     TEXT NOT NULL,
    queue_keys      TEXT NOT NULL,
    disposition_keys TEXT NOT NULL,
    parts           TEXT NOT NULL,   -- JSON {part: status}
    file_count      INTEGER NOT NULL,
    bytes           INTEGER NOT NULL,
    archived_at     TEXT,
    deleted         INTEGER NOT NULL, -- 1: the vendor's recordings were deleted
    deletion        TEXT,            -- JSON: the manifest's deletion record, or the audit log's
    target          TEXT NOT NULL,
    location        TEXT NOT NULL,
    UNIQUE (session_id, id_type)
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started_at);
CREATE TABLE IF NOT EXISTS files (
    session  INTEGER NOT NULL,
    path     TEXT NOT NULL,
    size     INTEGER NOT NULL,
    sha256   TEXT NOT NULL,
    kind     TEXT,
    PRIMARY KEY (session, path)
) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS texts USING fts5 (body, tokenize = 'unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID
"""

_ROW_FIELDS = (
    "id_type", "session_id", "bot_id", "started_at", "ended_at", "duration", "direction", "caller", "callee",
    "dialed_number", "agents", "queues", "dispositions", "remarks", "voicemail", "final_status", "call_details",
    "agent_keys", "caller_keys", "queue_keys", "disposition_keys", "parts", "file_count", "bytes", "archived_at",
    "deleted", "deletion", "target", "location",
)
# What find prints and --json/--csv carry, in order.
OUTPUT_FIELDS = (
    "session_id", "id_type", "started_at", "ended_at", "duration", "direction", "caller", "callee", "dialed_number",
    "agents", "queues", "dispositions", "remarks", "voicemail", "final_status", "file_count", "bytes",
    "archived_at", "deleted", "target", "location", "bot_id",
)


# -- what a session contributes ----------------------------------------------------------------


@dataclass
class CatalogEntry:
    """One session's row, files and searchable text."""

    row: dict[str, Any]
    files: list[tuple[str, int, str, str | None]] = field(default_factory=list)
    text: str = ""


def entry_for(reader: ArchiveReader, stored: StoredSession) -> CatalogEntry:
    """Everything the catalog keeps about one archived session, read from its stored files."""
    manifest = stored.manifest
    files = listed_files(manifest)
    call = {}
    texts: list[str] = []
    for entry in files:
        path, kind = entry["path"], entry.get("kind")
        if path.rsplit("/", 1)[-1] == CALL_FILE and not call:
            call = call_facts(read_small_json(reader, stored.location, path))
        elif kind in ("transcription", "transcript"):
            document = read_small_json(reader, stored.location, path) or {}
            if isinstance(document.get("text"), str):
                texts.append(document["text"])
    row = _row(stored, manifest, files, call, reader.target)
    body = "\n".join(dict.fromkeys(texts))[:MAX_BODY]  # several voicemails share one transcription
    return CatalogEntry(
        row=row,
        files=[(e["path"], e["size"], e["sha256"], _text(e.get("kind"))) for e in files],
        text=body,
    )


def _row(stored: StoredSession, manifest: dict[str, Any], files: list[dict[str, Any]], call: dict[str, Any],
         target: str) -> dict[str, Any]:
    deletion = manifest.get("deletion") if isinstance(manifest.get("deletion"), dict) else None
    archived_at = _text(manifest.get("archived_at"))
    started = call.get("start") or _id_time(stored.session_id) or _epoch(archived_at) or 0.0
    agents = call.get("agents", [])
    parts = {k: _text(v.get("status")) for k, v in (manifest.get("parts") or {}).items() if isinstance(v, dict)}
    return {
        "id_type": stored.id_type,
        "session_id": stored.session_id,
        "bot_id": _text(manifest.get("bot_id")),
        "started_at": started,
        "ended_at": call.get("end"),
        "duration": call.get("duration"),
        "direction": call.get("direction"),
        "caller": call.get("caller"),
        "callee": call.get("callee"),
        "dialed_number": call.get("dialed_number"),
        "agents": json.dumps(agents, sort_keys=True),
        "queues": json.dumps(call.get("queues", [])),
        "dispositions": json.dumps(call.get("dispositions", [])),
        "remarks": json.dumps(call.get("remarks", [])),
        "voicemail": call.get("voicemail"),
        "final_status": call.get("final_status"),
        "call_details": 1 if call else 0,
        "agent_keys": _keys(v for a in agents for v in a.values()),
        "caller_keys": _keys([call.get("caller"), call.get("callee"), call.get("dialed_number")]),
        "queue_keys": _keys(call.get("queues", [])),
        "disposition_keys": _keys(call.get("dispositions", []) + call.get("remarks", [])),
        "parts": json.dumps(parts, sort_keys=True),
        "file_count": len(files),
        "bytes": sum(e["size"] for e in files),
        "archived_at": archived_at,
        "deleted": 1 if recordings_deleted(manifest) else 0,  # deleted, possibly deleted, or pending
        "deletion": json.dumps(deletion, sort_keys=True) if deletion else None,
        "target": target,
        "location": stored.location,
    }


def _keys(values: Iterable[Any]) -> str:
    out = []
    for value in values:
        if isinstance(value, str) and value:
            out.append(value.lower())
            digits = re.sub(r"\D", "", value)
            if digits and digits != value:
                out.append(digits)  # "+1 (555) 010-2000" is found by 15550102000 too
    return "\n".join(out)


# -- call.json, read defensively ---------------------------------------------------------------


def call_facts(document: dict[str, Any] | None) -> dict[str, Any]:
    """The normalised facts of a call-details record; every field optional, unknown ones ignored.

    Reads a normalised block (``call``, ``normalised``/``normalized``, ``summary``, or the top
    level) and falls back on the vendor's own record (``record``/``records``/``data``), whose
    field names follow the Call Details API (``Direction``, ``metaInfo.caller``,
    ``destinations[].respondingAgent``, ...).
    """
    if not isinstance(document, dict):
        return {}
    sources = [document.get(k) for k in ("call", "normalised", "normalized", "summary", "details")]
    sources.append(document)
    for key in ("record", "records", "data", "raw"):
        raw = document.get(key)
        sources.extend(raw if isinstance(raw, list) else [raw])
    sources = [s for s in sources if isinstance(s, dict)][:MAX_ITEMS]
    meta = [s.get("metaInfo") for s in sources if isinstance(s.get("metaInfo"), dict)]
    everywhere = sources + meta

    def first(*names: str) -> Any:
        for source in everywhere:
            for name in names:
                value = source.get(name)
                if value not in (None, "", [], {}):
                    return value
        return None

    facts: dict[str, Any] = {}
    for key, names in (
        ("direction", ("direction", "Direction")),
        ("caller", ("caller", "from", "ani")),
        ("callee", ("callee", "to")),
        ("dialed_number", ("dialed_number", "dialedNumber", "dialed")),
        ("final_status", ("final_status", "finalStatus", "status")),
    ):
        value = first(*names)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            facts[key] = _text(value)
    start = _epoch(first("start", "started_at", "start_time", "startTime", "sessionStartTime"))
    end = _epoch(first("end", "ended_at", "end_time", "endTime", "sessionEndTime"))
    duration = _number(first("duration", "duration_seconds", "durationSeconds"))
    if duration is None and start is not None and end is not None and end >= start:
        duration = end - start
    facts.update({k: v for k, v in (("start", start), ("end", end), ("duration", duration)) if v is not None})
    voicemail = _yes_no(first("voicemail", "is_voicemail", "isVoicemail"))
    if voicemail is not None:
        facts["voicemail"] = voicemail
    destinations = _list(first("destinations"))
    facts["queues"] = _names(_list(first("queues", "queue_names", "queueNames", "queue"))
                             or [d.get("queueName") for d in destinations if isinstance(d, dict)])
    facts["agents"] = _agents(_list(first("agents"))
                              or [d.get("respondingAgent") for d in destinations if isinstance(d, dict)])
    facts["dispositions"] = _names(_list(first("dispositions", "disposition")))
    facts["remarks"] = _names(_list(first("remarks", "disposition_remarks", "dispositionRemarks")))
    return {k: v for k, v in facts.items() if v not in (None, [])}


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value[:MAX_ITEMS]) if isinstance(value, list) else [value]


def _names(values: list[Any]) -> list[str]:
    out: list[str] = []
    for value in values:
        if isinstance(value, dict):
            value = next((value.get(k) for k in ("name", "queueName", "disposition", "remark", "text", "id")
                          if isinstance(value.get(k), str) and value.get(k)), None)
        text = _text(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        if text and text not in out:
            out.append(text)
    return out


def _agents(values: list[Any]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for value in values:
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict):
            continue
        agent = {}
        for key, names in (("name", ("name", "agentName")), ("email", ("email", "emailId")),
                           ("id", ("id", "agentId", "agent_id"))):
            found = next((value.get(n) for n in names if isinstance(value.get(n), (str, int))
                          and not isinstance(value.get(n), bool) and value.get(n) != ""), None)
            if found is not None:
                agent[key] = _text(found)
        if agent and agent not in out:
            out.append(agent)
    return out


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = "".join(ch for ch in str(value) if ch.isprintable())
    return text[:MAX_TEXT] or None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and value >= 0:
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if number >= 0 else None
    return None


def _yes_no(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in ("yes", "true", "y", "1", "no", "false", "n", "0"):
        return int(value.strip().lower() in ("yes", "true", "y", "1"))
    return None


def _epoch(value: Any) -> float | None:
    """Unix seconds from ISO 8601 / ``yyyy-mm-dd HH:MM:SS`` (UTC unless an offset is given) or a number
    (milliseconds when it is too large to be seconds)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = value / 1000 if value > 1e11 else float(value)
        return seconds if 0 < seconds < 253402300800 else None
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _id_time(session_id: str) -> float | None:
    created = object_id_time(session_id)
    return created.timestamp() if created else None


# -- queries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What ``archiver find`` (and ``export`` by filters) selects; every field optional."""

    date_from: float | None = None  # started at or after (Unix seconds)
    date_to: float | None = None  # started before
    agent: str | None = None
    caller: str | None = None
    queue: str | None = None
    disposition: str | None = None
    text: str | None = None
    session_ids: tuple[str, ...] = ()

    def empty(self) -> bool:
        return not any((self.date_from is not None, self.date_to is not None, self.agent, self.caller,
                        self.queue, self.disposition, self.text, self.session_ids))


def fts_query(words: str) -> str:
    """An FTS5 query matching every word of ``words`` (no FTS syntax gets through)."""
    tokens = re.findall(r"\w+", words)[:MAX_WORDS]
    if not tokens:
        raise ConfigError("--text", "give at least one word to search for")
    return " ".join('"' + token.replace('"', '""') + '"' for token in tokens)


def _like(value: str) -> str:
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _where(filters: Filters) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if filters.date_from is not None:
        clauses.append("started_at >= ?")
        params.append(filters.date_from)
    if filters.date_to is not None:
        clauses.append("started_at < ?")
        params.append(filters.date_to)
    for column, value in (("agent_keys", filters.agent), ("caller_keys", filters.caller),
                          ("queue_keys", filters.queue), ("disposition_keys", filters.disposition)):
        if value:
            patterns = [value]
            digits = re.sub(r"\D", "", value)
            if digits and digits != value:
                patterns.append(digits)  # a number typed with spaces or dashes
            clauses.append("(" + " OR ".join(f"{column} LIKE ? ESCAPE '\\'" for _ in patterns) + ")")
            params.extend(_like(p) for p in patterns)
    if filters.text:
        clauses.append("id IN (SELECT rowid FROM texts WHERE texts MATCH ?)")
        params.append(fts_query(filters.text))
    if filters.session_ids:
        clauses.append(f"session_id IN ({', '.join('?' for _ in filters.session_ids)})")
        params.extend(filters.session_ids)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _output(row: sqlite3.Row) -> dict[str, Any]:
    out = {name: row[name] for name in OUTPUT_FIELDS}
    for name in ("agents", "queues", "dispositions", "remarks"):
        out[name] = json.loads(out[name])
    out["voicemail"] = None if out["voicemail"] is None else bool(out["voicemail"])
    out["deleted"] = bool(out["deleted"])
    return out


# -- the file ----------------------------------------------------------------------------------


class Catalog:
    """The catalog in one SQLite file; share one between the threads of a process."""

    def __init__(self, path: Path, *, busy_timeout: float = 30.0, read_only: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._busy_timeout = busy_timeout
        self._conn = sqlitefile.connect(self.path, busy_timeout=busy_timeout, read_only=read_only)
        self._conn.row_factory = sqlite3.Row
        try:
            sqlitefile.check_version(self._conn, WHAT, SCHEMA_VERSION) if read_only else self._setup()
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def open_in(cls, state_dir: Path, **kwargs: Any) -> Catalog:
        """Open (creating if needed) the catalog of a state directory."""
        return cls(Path(state_dir) / FILE_NAME, **kwargs)

    @classmethod
    def open_existing(cls, state_dir: Path) -> Catalog:
        """Open, read-only, the catalog a state directory must already hold (``find``, ``export``)."""
        path = Path(state_dir) / FILE_NAME
        if not path.is_file():
            raise ConfigError("daemon.state_dir", f"no catalog at {path}: check the path, or build it from the "
                              "archive with `archiver state rebuild`")
        try:
            return cls(path, read_only=True)
        except sqlite3.DatabaseError as exc:
            raise ConfigError("daemon.state_dir", f"the catalog {path} cannot be read ({exc}); rebuild it with "
                              "`archiver state rebuild`") from None

    def _setup(self) -> None:
        sqlitefile.use_wal(self._conn, WHAT, wait=self._busy_timeout)
        sqlitefile.create_schema(self._conn, self._lock, WHAT, _SCHEMA, SCHEMA_VERSION)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return sqlitefile.write_transaction(self._conn, self._lock)

    # -- writing ----------------------------------------------------------------------------

    def upsert(self, entries: Iterable[CatalogEntry]) -> int:
        """Insert or replace sessions (one transaction); returns how many."""
        count = 0
        with self._write() as conn:
            for entry in entries:
                self._upsert_one(conn, entry)
                count += 1
        return count

    @staticmethod
    def _upsert_one(conn: sqlite3.Connection, entry: CatalogEntry) -> None:
        names = ", ".join(_ROW_FIELDS)
        marks = ", ".join(f":{n}" for n in _ROW_FIELDS)
        updates = ", ".join(f"{n} = excluded.{n}" for n in _ROW_FIELDS[2:])
        (rowid,) = conn.execute(
            f"INSERT INTO sessions ({names}) VALUES ({marks})"
            f" ON CONFLICT (session_id, id_type) DO UPDATE SET {updates} RETURNING id",
            entry.row,
        ).fetchone()
        conn.execute("DELETE FROM files WHERE session = ?", (rowid,))
        conn.executemany("INSERT OR REPLACE INTO files (session, path, size, sha256, kind) VALUES (?, ?, ?, ?, ?)",
                         ((rowid, *f) for f in entry.files))
        conn.execute("DELETE FROM texts WHERE rowid = ?", (rowid,))
        if entry.text:
            conn.execute("INSERT INTO texts (rowid, body) VALUES (?, ?)", (rowid, entry.text))

    def mark_deleted(self, deletions: dict[str, dict[str, Any]]) -> int:
        """Record deletions the audit log knows of (session id -> its line) on sessions whose
        manifest does not; returns how many rows changed."""
        changed = 0
        with self._write() as conn:
            for session_id, line in deletions.items():
                cursor = conn.execute(
                    "UPDATE sessions SET deleted = 1, deletion = ? WHERE session_id = ? AND id_type = 'session'"
                    " AND deleted = 0",
                    (json.dumps({"at": line.get("at"), "result": "deleted", "dry_run": False,
                                 "source": "audit_log"}, sort_keys=True), session_id),
                )
                changed += cursor.rowcount
        return changed

    def rebuild(self, reader: ArchiveReader, deletions: dict[str, dict[str, Any]] | None = None) -> int:
        """Replace the whole catalog with what the archive holds (one transaction: readers see
        the old catalog until it commits); returns the number of sessions."""
        count = 0
        with self._write() as conn:
            for table in ("sessions", "files", "texts"):
                conn.execute(f"DELETE FROM {table}")
            for stored in reader.sessions():
                self._upsert_one(conn, entry_for(reader, stored))
                count += 1
        if deletions:
            self.mark_deleted(deletions)
        return count

    # -- reading ----------------------------------------------------------------------------

    def find(self, filters: Filters, *, limit: int = 0) -> Iterator[dict[str, Any]]:
        """Sessions matching ``filters``, oldest first, read a page at a time."""
        where, params = _where(filters)
        sql = f"SELECT * FROM sessions{where} ORDER BY started_at, session_id"
        if limit > 0:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._conn.execute(sql, params)
            while page := rows.fetchmany(_BATCH):
                for row in page:
                    yield _output(row)

    def files_of(self, session_id: str, id_type: str = "session") -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT f.path, f.size, f.sha256, f.kind FROM files f JOIN sessions s ON s.id = f.session"
                " WHERE s.session_id = ? AND s.id_type = ? ORDER BY f.path", (session_id, id_type)).fetchall()
        return [dict(r) for r in rows]

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]

    def snapshot(self) -> list[dict[str, Any]]:
        """Everything the catalog holds, without its row ids, sorted: two catalogs of the same
        archive have equal snapshots."""
        out = []
        with self._lock:
            for row in self._conn.execute("SELECT * FROM sessions ORDER BY session_id, id_type"):
                data = {k: row[k] for k in row.keys() if k != "id"}
                data["files"] = [tuple(f) for f in self._conn.execute(
                    "SELECT path, size, sha256, kind FROM files WHERE session = ? ORDER BY path", (row["id"],))]
                text = self._conn.execute("SELECT body FROM texts WHERE rowid = ?", (row["id"],)).fetchone()
                data["text"] = text[0] if text else ""
                out.append(data)
        return out

    def integrity_check(self) -> str:
        """SQLite's own check of the file; ``"ok"`` when healthy."""
        with self._lock:
            return "\n".join(row[0] for row in self._conn.execute("PRAGMA integrity_check"))


# -- the hook after a manifest commit ----------------------------------------------------------


def record_session(config: Config, directory: Path, manifest: dict[str, Any], *, catalog: Catalog | None = None) -> bool:
    """Put one just-committed manifest in the catalog (blocking; called in the thread that
    wrote it). ``directory`` is the session's local directory (the archive's, or the S3
    target's spool), read for ``call.json`` and transcripts; ``catalog`` is the one the
    process keeps open (see :func:`open_for_archiving`), else the file is opened for this
    session alone. Never raises: the catalog can be rebuilt, the archive must go on."""
    directory = Path(directory)
    try:
        root = local_root(config)
        location = directory.relative_to(root).as_posix()
        reader = FileArchiveReader(root, config.kore.bot_id)
        reader.target = config.archive.target
        stored = StoredSession(str(manifest.get("id_type") or "session"), directory.name, location, manifest)
        entry = entry_for(reader, stored)
        if catalog is not None:
            catalog.upsert([entry])
        else:
            with Catalog.open_in(config.daemon.state_dir) as own:
                own.upsert([entry])
        return True
    except (OSError, sqlite3.Error, ValueError, ConfigError) as exc:
        log.error("could not add %s to the catalog (archived all the same; `archiver state rebuild` "
                  "brings the catalog up to date): %s", directory.name, exc, extra={"kv_session": directory.name})
        return False


def open_for_archiving(state_dir: Path) -> Catalog | None:
    """The catalog a running archiver keeps open for every session it archives (an open, a
    schema check and a close per session cost more than the row); None, said in one line,
    when it cannot be opened: each session then tries on its own."""
    try:
        return Catalog.open_in(state_dir)
    except (OSError, sqlite3.Error, ConfigError) as exc:
        log.error("cannot open the catalog in %s (sessions are archived all the same; `archiver state "
                  "rebuild` brings it up to date): %s", state_dir, exc)
        return None


__all__ = ["Catalog", "CatalogEntry", "Filters", "call_facts", "entry_for", "record_session", "open_for_archiving", "fts_query",
           "OUTPUT_FIELDS", "FILE_NAME"]
