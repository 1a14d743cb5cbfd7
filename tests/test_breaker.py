"""The circuit breaker on its own, on a hand-driven clock."""

from __future__ import annotations

import pytest

from archiver.breaker import CircuitBreaker
from archiver.errors import VendorDown, is_transient


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_failures_in_a_row_and_probes_one_request_on_a_doubling_backoff():
    clock = Clock()
    changes: list[bool] = []
    breaker = CircuitBreaker("media", threshold=3, probe_initial=5.0, probe_max=12.0, clock=clock)
    breaker.listeners.append(changes.append)
    breaker.failed("reset")
    breaker.failed("reset")
    breaker.succeeded()  # an answer in between: not "in a row"
    for _ in range(3):
        assert breaker.admit() is False
        breaker.failed("connection refused")
    assert not breaker.up and changes == [False]
    with pytest.raises(VendorDown) as down:
        breaker.admit()
    assert down.value.host == "media" and not is_transient(down.value)
    for wait in (5.0, 10.0, 12.0, 12.0):  # doubled after each failed probe, up to probe_max
        assert breaker.seconds_to_probe() == pytest.approx(wait)
        clock.now += wait
        assert breaker.admit() is True  # the one probe
        with pytest.raises(VendorDown):
            breaker.admit()  # everyone else still waits
        breaker.failed("still refused")
    clock.now += 12.0
    assert breaker.admit() is True
    breaker.succeeded()
    assert breaker.up and changes == [False, True]
    assert breaker.admit() is False and breaker.seconds_to_probe() == 0


def test_a_probe_that_ends_without_an_answer_lets_the_next_request_probe():
    clock = Clock()
    breaker = CircuitBreaker("api", threshold=1, probe_initial=1.0, probe_max=1.0, clock=clock)
    breaker.failed("timed out")
    clock.now += 1.0
    assert breaker.admit() is True
    breaker.abandoned()  # cancelled, say
    assert breaker.admit() is True


def test_threshold_zero_turns_the_breaker_off():
    breaker = CircuitBreaker("api", threshold=0, probe_initial=1.0, probe_max=1.0)
    for _ in range(100):
        breaker.failed("refused")
    assert breaker.up and breaker.admit() is False
