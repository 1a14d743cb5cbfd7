"""The catalog benchmark, small: the script builds a catalog, runs its queries and reports success."""

from __future__ import annotations

import pytest

from .benchmarks.harness import bench_figures


@pytest.mark.benchmark
def test_bench_catalog_smoke() -> None:
    figures = bench_figures("bench_catalog.py", "--sessions", "5000")
    assert figures["ok"] is True and figures["sessions"] == 5000
    # A year of 5,000 sessions: about 14 a day; every query found something.
    assert 5 <= figures["one_day_found"] <= 30
    assert figures["month_text_found"] > 0 and figures["agent_all_dates_found"] > 0
