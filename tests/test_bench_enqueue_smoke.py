"""The enqueue benchmark, small: the script runs end to end and reports success."""

from __future__ import annotations

import pytest

from .benchmarks.harness import bench_figures


@pytest.mark.benchmark
def test_bench_enqueue_smoke() -> None:
    figures = bench_figures("bench_enqueue.py", "--ids", "20000")
    assert figures["ok"] is True
    assert figures["outcomes"] == [["ids.txt", "processed", 20000, 0]]
    assert figures["counts"]["pending"] == 20000
    assert figures["peak_rss_mib"] > 0 and figures["scan_s"] > 0
