"""The enqueue benchmark, small: the script runs end to end and reports success."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "benchmarks" / "bench_enqueue.py"


@pytest.mark.benchmark
def test_bench_enqueue_smoke() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--ids", "20000"], check=False, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["ok"] is True
    assert figures["outcomes"] == [["ids.txt", "processed", 20000, 0]]
    assert figures["counts"]["pending"] == 20000
    assert figures["peak_rss_mib"] > 0 and figures["scan_s"] > 0
