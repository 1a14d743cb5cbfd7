"""What a verification found: problems per file, per session, and for the whole archive.

Both verifications produce these: the archive on disk (``verify.py``) and the bucket
(``s3verify.py``). The report prints for a terminal (:meth:`VerifyReport.human`) or as JSON
(:meth:`VerifyReport.as_dict`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from .config import format_size
from .manifest import now_iso

# Problem kinds (the JSON form) and how the human report names them.
MISSING, EXTRA, SIZE, SHA256, UNREADABLE, NOT_A_FILE, BAD_MANIFEST = (
    "missing", "extra", "size", "sha256", "unreadable", "not_a_file", "manifest",
)
LABELS = {
    MISSING: "missing",
    EXTRA: "extra file",
    SIZE: "size mismatch",
    SHA256: "sha256 mismatch",
    UNREADABLE: "unreadable",
    NOT_A_FILE: "not a regular file",
    BAD_MANIFEST: "manifest invalid",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file of a session (``path`` is relative to the session directory)."""

    path: str
    kind: str
    detail: str
    expected: str | int | None = None
    found: str | int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "detail": self.detail, "expected": self.expected, "found": self.found}


@dataclass
class SessionReport:
    """The result of checking one session directory."""

    directory: Path
    id_type: str
    session_id: str
    files: int = 0
    bytes: int = 0
    archived_at: str | None = None
    manifest_readable: bool = False
    # The manifest records that the vendor's recordings were deleted: they cannot be fetched again.
    deleted_at_source: bool = False
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, path: str, kind: str, detail: str, expected: str | int | None = None, found: str | int | None = None) -> None:
        self.problems.append(Problem(path, kind, detail, expected, found))


@dataclass
class VerifyReport:
    """What a verification run found. Only damaged sessions are kept; the rest are counted."""

    root: Path
    bot_id: str
    since: datetime | None = None
    started_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    sessions_checked: int = 0
    files_checked: int = 0
    bytes_checked: int = 0
    unfinished: int = 0
    root_missing: bool = False
    damaged: list[SessionReport] = field(default_factory=list)
    # Set by requeue(): the damaged sessions queued again, and those left alone with the reason.
    requeued: list[SessionReport] | None = None
    not_requeued: list[tuple[SessionReport, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.root_missing

    @property
    def problem_count(self) -> int:
        return sum(len(s.problems) for s in self.damaged) + (1 if self.root_missing else 0)

    def add(self, session: SessionReport) -> None:
        self.sessions_checked += 1
        self.files_checked += session.files
        self.bytes_checked += session.bytes
        if session.problems:
            self.damaged.append(session)

    def location(self, session: SessionReport) -> str:
        """The session directory relative to the archive root (as the report shows it)."""
        try:
            return session.directory.relative_to(self.root).as_posix()
        except ValueError:
            return str(session.directory)

    def problem_lines(self) -> list[str]:
        """One line per problem: ``<session dir>/<file>: <what>: <detail>``."""
        lines = []
        if self.root_missing:
            lines.append(f"{self.root / self.bot_id}: missing: the archive has no directory for bot {self.bot_id}")
        for session in sorted(self.damaged, key=lambda s: s.directory):
            where = self.location(session)
            for p in session.problems:
                lines.append(f"{where}/{p.path}: {LABELS[p.kind]}: {p.detail}")
        return lines

    def summary(self) -> str:
        intact = self.sessions_checked - len(self.damaged)
        text = (
            f"verified {self.sessions_checked} session(s), {self.files_checked} file(s), "
            f"{format_size(self.bytes_checked)} under {self.root / self.bot_id}: {intact} intact, "
            f"{len(self.damaged)} damaged ({self.problem_count} problem(s))"
        )
        if self.unfinished:
            text += f"; {self.unfinished} not archived yet (no manifest)"
        return text

    def human(self) -> str:
        """The report for a terminal: problem lines, the summary, then what was requeued."""
        lines = self.problem_lines() + [self.summary()]
        if self.requeued is not None:
            lines.append(f"requeued {len(self.requeued)} damaged session(s) to be archived again")
            for session, reason in self.not_requeued:
                lines.append(f"not requeued {self.location(session)}: {reason}")
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of the report."""

        def session(s: SessionReport) -> dict[str, Any]:
            return {
                "id_type": s.id_type, "id": s.session_id, "directory": self.location(s),
                "archived_at": s.archived_at, "deleted_at_source": s.deleted_at_source,
                "problems": [p.as_dict() for p in s.problems],
            }

        return {
            "ok": self.ok,
            "root": str(self.root),
            "bot_id": self.bot_id,
            "since": self.since.isoformat() if self.since else None,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "sessions_checked": self.sessions_checked,
            "sessions_intact": self.sessions_checked - len(self.damaged),
            "sessions_damaged": len(self.damaged),
            "files_checked": self.files_checked,
            "bytes_checked": self.bytes_checked,
            "unfinished": self.unfinished,
            "root_missing": self.root_missing,
            "problems": self.problem_count,
            "damaged": [session(s) for s in sorted(self.damaged, key=lambda s: s.directory)],
            "requeued": None if self.requeued is None else [
                {"id_type": s.id_type, "id": s.session_id} for s in self.requeued
            ],
            "not_requeued": [
                {"id_type": s.id_type, "id": s.session_id, "reason": reason} for s, reason in self.not_requeued
            ],
        }


def print_report(report: Any, out: TextIO, as_json: bool, **fields: Any) -> int:
    """Print a verify report (JSON with ``fields`` added, or the human form); 0 when all is
    intact, else 1: the exit code of ``archiver verify`` on either target."""
    if as_json:
        out.write(json.dumps({**report.as_dict(), **fields}, indent=2) + "\n")
    else:
        out.write(report.human())
    return 0 if report.ok else 1

__all__ = ["print_report", 
    "MISSING", "EXTRA", "SIZE", "SHA256", "UNREADABLE", "NOT_A_FILE", "BAD_MANIFEST", "LABELS",
    "Problem", "SessionReport", "VerifyReport",
]
