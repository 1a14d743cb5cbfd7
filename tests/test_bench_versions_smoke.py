"""The two-checkout benchmark, small: both sides archive every session and a ratio comes out."""

from __future__ import annotations

import pytest

from .benchmarks.harness import REPO, bench_figures


@pytest.mark.benchmark
def test_bench_versions_smoke() -> None:
    figures = bench_figures("bench_versions.py", str(REPO), "--reps", "1", "--sessions", "24")
    assert len(figures["old_walls"]) == len(figures["new_walls"]) == 1
    assert figures["ratio"] > 0
