"""The calls-per-session benchmark, small: it runs end to end and meets its target."""

from __future__ import annotations

import pytest

from .benchmarks.harness import bench_figures


@pytest.mark.benchmark
def test_bench_calls_smoke() -> None:
    figures = bench_figures("bench_calls.py", "--sessions", "150")
    assert figures["ok"] is True
    assert figures["baseline"]["calls_per_session"] == 2.0
    details = figures["call_details"]
    assert details["archived"] == 150 and details["calls"]["voicemail"] == details["with_voicemail"]
    assert details["calls_per_session"] <= 1.15
