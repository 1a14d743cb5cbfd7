"""The retry story's limits: named, read, and one classifier for failed session attempts."""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from archiver import errors
from archiver.config import HttpConfig
from archiver.retry import RetryPolicy


def _state(exc: BaseException, attempt: int = 1) -> SimpleNamespace:
    return SimpleNamespace(outcome=SimpleNamespace(exception=lambda: exc), attempt_number=attempt)


def test_retry_after_is_capped_at_kore_max_retry_after():
    policy = RetryPolicy.from_config(HttpConfig(), max_retry_after=120.0)
    assert policy.wait_for(_state(errors.RateLimited("429", retry_after=365 * 86400.0))) == 120.0
    assert policy.wait_for(_state(errors.RateLimited("429", retry_after=30.0))) == 30.0


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (errors.NotReadyError("x", status="call_in_progress"), errors.NOT_READY),
        (errors.VendorDown("x", host="h"), errors.OUTAGE),
        (errors.Stopping("x"), errors.RELEASE),
        (errors.DiskFullError("x"), errors.DISK_FULL),
        (OSError(errno.ENOSPC, "No space left on device"), errors.DISK_FULL),
        (errors.RateLimited("x"), errors.TRANSIENT),
        (errors.TransientError("x"), errors.TRANSIENT),
        (errors.ProtocolError("x"), errors.FAILED),
        (errors.MediaRefusedError("x"), errors.FAILED),
        (KeyError("a bug"), None),
        (OSError(errno.EIO, "I/O error"), None),
    ],
)
def test_one_classifier_decides_what_becomes_of_a_failed_attempt(exc, outcome):
    assert errors.job_outcome(exc) == outcome
