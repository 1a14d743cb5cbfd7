"""The catalog benchmark, small: the script builds a catalog, runs its queries and reports success."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "benchmarks" / "bench_catalog.py"


@pytest.mark.benchmark
def test_bench_catalog_smoke() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--sessions", "5000"], check=False, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["ok"] is True and figures["sessions"] == 5000
    # A year of 5,000 sessions: about 14 a day; every query found something.
    assert 5 <= figures["one_day_found"] <= 30
    assert figures["month_text_found"] > 0 and figures["agent_all_dates_found"] > 0
