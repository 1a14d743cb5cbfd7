"""``archiver demo`` runs end to end (the README's first command relies on it)."""

from __future__ import annotations

import json

from archiver.demo import V1_SESSIONS, V2_SESSIONS, run_demo


async def test_demo_archives_every_session_and_is_rerunnable(tmp_path, capsys):
    assert await run_demo(tmp_path / "demo") == 0
    manifests = sorted((tmp_path / "demo" / "archive").rglob("manifest.json"))
    assert sorted(m.parent.name for m in manifests) == sorted(V1_SESSIONS + V2_SESSIONS)
    for manifest in manifests:
        data = json.loads(manifest.read_text())
        assert any(f["kind"] == "audio" for f in data["files"])
    out = capsys.readouterr().out
    assert "archived 4 sessions" in out and "archived 2 sessions" in out
    assert list((tmp_path / "demo" / "inbox" / "processed").glob("*calls.txt.report.txt"))
    assert await run_demo(tmp_path / "demo") == 0  # a second run finds everything archived
