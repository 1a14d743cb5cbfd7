"""The state directory's SQLite files opened by many at once: nobody is refused."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from archiver.catalog import Catalog
from archiver.store import JobStore

OPENERS = 8
TRIALS = 60  # before the fix about one trial in fifteen refused an opener


@pytest.mark.parametrize("kind", [Catalog, JobStore])
def test_openers_racing_on_a_new_file_all_get_in(tmp_path: Path, kind) -> None:
    """Regression: turning a new file to WAL takes a lock SQLite does not wait for, so two
    workers cataloguing their first sessions together (or ``enqueue`` beside a starting
    daemon) got "database is locked" and that session was left out of the catalog."""
    refused: list[str] = []
    for trial in range(TRIALS):
        state_dir = tmp_path / str(trial)
        gate = threading.Barrier(OPENERS)

        def open_it() -> None:
            gate.wait()
            try:
                kind.open_in(state_dir).close()
            except Exception as exc:  # noqa: BLE001 - any refusal is the failure under test
                refused.append(repr(exc))

        threads = [threading.Thread(target=open_it) for _ in range(OPENERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
    assert refused == []
