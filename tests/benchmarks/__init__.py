"""Benchmarks of the archiver against curl, jq and aria2c, and the tests' smoke of them.

    python -m tests.benchmarks            # the full suite: one table of figures and ratios

See ``run_all.py`` for the options and the README's "Performance" section for the figures.
"""
