"""The calls-per-session benchmark, small: it runs end to end and meets its target."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "benchmarks" / "bench_calls.py"


@pytest.mark.benchmark
def test_bench_calls_smoke() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--sessions", "150"], check=False, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["ok"] is True
    assert figures["baseline"]["calls_per_session"] == 2.0
    details = figures["call_details"]
    assert details["archived"] == 150 and details["calls"]["voicemail"] == details["with_voicemail"]
    assert details["calls_per_session"] <= 1.15
