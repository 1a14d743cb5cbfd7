"""The benchmark suite, tiny: every scenario runs end to end and reports sane figures.

The targets themselves are for ``python -m tests.benchmarks`` (full sizes, minutes); here the
sizes are a few MiB and a few dozen sessions, and only the shape of the figures is checked.
Comparisons with a command-line tool run when the tool is installed, and are left out when not.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.benchmarks.harness import render_table
from tests.benchmarks.scenarios import SCENARIOS, SMOKE

pytestmark = pytest.mark.benchmark


def have(*tools: str) -> bool:
    return all(shutil.which(tool) for tool in tools)


def run(key: str, tmp_path: Path) -> tuple[list, dict]:
    rows, figures = SCENARIOS[key](SMOKE, tmp_path)
    assert rows and render_table(rows).count("\n") == len(rows) + 1
    return rows, figures


def test_fixed_cost(tmp_path):
    _, figures = run("0", tmp_path)
    assert 0 < figures["wall"] < 30


def test_media_streaming(tmp_path):
    _, figures = run("1", tmp_path)
    assert figures["archiver_wall"] > 0 and 20 < figures["archiver_rss_mib"] < 1000
    if have("curl"):
        assert figures["curl_wall"] > 0 and figures["ratio"] > 0
    assert list(tmp_path.glob("*.bin")) == []  # the media file is removed


def test_inline_recording(tmp_path):
    _, figures = run("2", tmp_path)
    assert figures["archiver_wall"] > 0 and 20 < figures["archiver_rss_mib"] < 1000
    if have("curl", "jq", "base64", "cut"):
        assert figures["pipeline_wall"] > 0 and len(figures["pipeline_stage_rss_mib"]) == 4


def test_api_bound(tmp_path):
    _, figures = run("3", tmp_path)
    # Two windows' worth of requests against a 1 s window: the rate is bounded by the budget.
    assert 0 < figures["rate_per_s"] <= figures["budget_per_s"] * 1.2
    assert figures["sessions"] == SMOKE.api_limit * SMOKE.api_windows // 2


def test_latency_bound_and_cpu(tmp_path):
    rows, figures = run("4", tmp_path)
    assert figures["archiver_wall"] >= figures["ideal"] > 0
    assert 0 < figures["cpu_ms_per_session"] < 1000
    if have("aria2c"):
        assert figures["aria2c_wall"] > 0
    assert any(row.scenario == "5" for row in rows)


def test_queue_scale(tmp_path):
    _, figures = run("6", tmp_path)
    assert figures["jobs"] == SMOKE.store_jobs and 0 < figures["status_wall"] < 30


def test_s3_upload(tmp_path):
    _, figures = run("7", tmp_path)
    assert figures["archiver_wall"] > 0 and 20 < figures["archiver_rss_mib"] < 1000
    if have("aws"):
        assert figures["aws_wall"] > 0
