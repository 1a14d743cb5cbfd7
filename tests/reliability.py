"""Checks shared by the reliability suites (chaos, crash loop, disk full, hostile input).

Each suite proves one promise: every session archived exactly once, byte for byte, or
reported with the reason; nothing outside the archive touched; no secret leaked. These
helpers state "archived exactly once" in one place, so every suite means the same by it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from archiver.config import Config
from archiver.layout import MANIFEST, session_dir
from archiver.simulator import Simulator

from .conftest import assert_archived




@dataclass
class Figures:
    """What a run went through, for the assertion messages and the README's figures."""

    sessions: int
    requests: int
    faults: int
    media_files: int

    @property
    def fault_rate(self) -> float:
        return self.faults / max(self.requests, 1)

    def __str__(self) -> str:
        return (
            f"{self.sessions} sessions, {self.requests} requests, {self.faults} faults injected "
            f"({self.fault_rate:.0%}), {self.media_files} media files"
        )


def figures(sim: Simulator, sessions: int) -> Figures:
    """Requests the simulator answered and faults it injected, "not ready yet" answers included
    (every not-ready session is answered in progress ``not_ready_polls`` times)."""
    polled = {r.query.get("sessionId") for r in sim.requests if r.server == "api" and r.path.endswith("/v2/recordings")}
    in_progress = sum(sim.session(sid).not_ready_polls for sid in polled if sid)
    faults = sum(sim.stats.faults_injected.values()) + in_progress
    media = len({r.path for r in sim.requests if r.server == "media"})
    return Figures(sessions, len(sim.requests), faults, media)


def media_paths(sim: Simulator, session_id: str, *, recordings: bool, voicemail: bool) -> list[tuple[str, int]]:
    """(media host path, size) of every file the session's archive needs from the media host."""
    spec = sim.session(session_id)
    paths = []
    if recordings:
        paths += [(sim.media_path(session_id, "recording", i), m.size) for i, m in enumerate(spec.recordings)]
    if voicemail:
        paths += [(sim.media_path(session_id, "voicemail", i), m.size) for i, m in enumerate(spec.voicemails)]
    return paths


def assert_exactly_once(config: Config, sim: Simulator, session_ids: Iterable[str]) -> None:
    """Each session archived once: byte-exact files, one manifest listing exactly what is in
    its directory, nothing else in the archive, no temp file."""
    expected_dirs = set()
    for sid in session_ids:
        manifest = assert_archived(config, sim, sid)
        directory = session_dir(config.archive.root, config.kore.bot_id, "session", sid)
        expected_dirs.add(directory)
        on_disk = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
        listed = {f["path"] for f in manifest["files"]} | {MANIFEST}
        assert on_disk == listed, f"{sid}: files not in the manifest: {sorted(on_disk - listed)}"
    manifests = {p.parent for p in config.archive.root.rglob(MANIFEST)}
    assert manifests == expected_dirs
    assert leftovers(config.archive.root) == []


def leftovers(root: Path) -> list[Path]:
    """Temp and part files below ``root``: the archiver's own files all have hidden names (a
    name offered by a server never does), and none may outlive the run that wrote it."""
    return [p for p in root.rglob(".*") if p.is_file()]


def assert_downloaded_once(config: Config, sim: Simulator, session_ids: Iterable[str]) -> dict[str, int]:
    """Every media file was delivered completely exactly once (a resume does not count twice).

    Returns ``{path: full transfers}`` of any file that was not, for the caller to judge
    (the chaos run allows none; a crash loop allows the files in flight at a kill).
    """
    over: dict[str, int] = {}
    v2 = config.kore.recordings_api == "v2"
    for sid in session_ids:
        for path, size in media_paths(sim, sid, recordings=v2, voicemail=config.kore.fetch_voicemail):
            transfers = sim.stats.full_transfers(path, size)
            assert transfers >= 1, f"{path} was never delivered completely"
            if transfers > 1:
                over[path] = transfers
    return over


class Captured(logging.Handler):
    """Keeps every record of the ``archiver`` logger tree (and formats it, to catch format errors)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))

    def __enter__(self) -> "Captured":
        root = logging.getLogger("archiver")
        self._level = root.level
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger("archiver")
        root.removeHandler(self)
        root.setLevel(self._level)

    def internal_errors(self) -> list[str]:
        """Records of bugs: the worker's catch-all for unexpected exceptions."""
        return [line for r, line in zip(self.records, self.lines) if r.exc_info or "unexpected error" in r.getMessage()]
