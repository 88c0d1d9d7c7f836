"""Retry rules: full-jitter backoff, retry-after, retryable statuses and error events."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from dataplane.policy.retry import (
    DEFAULT_RETRY_ON,
    RETRYABLE_ERROR_TYPES,
    backoff_s,
    is_retryable,
    retry_after_s,
)

NOW = 1_700_000_000.0


def test_full_jitter_stays_under_the_exponential_ceiling() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (6, 8.0), (20, 8.0)]:
        samples = [backoff_s(attempt, None, rng=rng) for _ in range(500)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.9  # jittered over the whole range
        assert min(samples) < ceiling * 0.1


def test_retry_after_is_a_floor() -> None:
    rng = random.Random(1)
    assert backoff_s(1, "3", rng=rng) == 3.0
    assert backoff_s(1, "20", rng=rng, cap=8.0) == 20.0  # never less than it says, even past cap
    assert 0 <= backoff_s(1, "0", rng=rng) <= 0.25
    date = formatdate(NOW + 12, usegmt=True)
    assert backoff_s(1, date, rng=rng, now=lambda: NOW) == pytest.approx(12.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("5", 5.0),
        (" 7 ", 7.0),
        ("-1", None),
        ("inf", None),
        ("soon", None),
        (formatdate(NOW - 60, usegmt=True), 0.0),
        (formatdate(NOW + 90, usegmt=True), 90.0),
    ],
)
def test_retry_after_parsing(value: str | None, expected: float | None) -> None:
    got = retry_after_s(value, now=lambda: NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_retryable_statuses() -> None:
    assert DEFAULT_RETRY_ON == {429, 500, 502, 503, 504, 529}
    assert all(is_retryable(s) for s in (429, 500, 502, 503, 504, 529))
    assert not any(is_retryable(s) for s in (200, 400, 401, 403, 404, 413))
    assert is_retryable(408, frozenset({408})) and not is_retryable(500, frozenset({408}))


def test_retryable_error_event_types() -> None:
    assert {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"} == set(
        RETRYABLE_ERROR_TYPES
    )
    for t in ("invalid_request_error", "authentication_error", "permission_error"):
        assert t not in RETRYABLE_ERROR_TYPES
