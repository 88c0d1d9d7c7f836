"""Retry rules for the attempt chain: what is worth retrying, and how long to wait first.

Pure functions (the caller owns the clock, the deadline and the sleeping). The proxy retries a
target up to ``Plan.attempts_per_target`` times, then falls back to the next target.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Container
from email.utils import parsedate_to_datetime

DEFAULT_RETRY_ON: frozenset[int] = frozenset({429, 500, 502, 503, 504, 529})

# Types of an SSE ``error`` event that, arriving as the FIRST upstream event (before anything
# reached the client), mean "try again / elsewhere". Any other type (invalid_request_error,
# authentication_error, permission_error, not_found_error, request_too_large, billing_error …)
# is the client's problem and would fail the same way everywhere: it goes to the client as is.
RETRYABLE_ERROR_TYPES: frozenset[str] = frozenset(
    {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}
)


def is_retryable(status: int, retry_on: Container[int] = DEFAULT_RETRY_ON) -> bool:
    """Whether an upstream answer with ``status`` should be retried or fall back."""
    return status in retry_on


def retry_after_s(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds a ``retry-after`` header asks for (integer seconds or an HTTP date), or None when
    absent or unreadable. A date in the past means 0."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT; a zone-less one is taken as such
            return None
        return max(0.0, when.timestamp() - now())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def backoff_s(
    attempt: int,
    retry_after: str | None,
    *,
    base: float = 0.25,
    cap: float = 8.0,
    rng: random.Random,
    now: Callable[[], float] = time.time,
) -> float:
    """How long to wait before retry number ``attempt`` (1 = the first retry).

    Exponential backoff with "full jitter": uniform in [0, min(cap, base * 2**(attempt-1))].
    A ``retry-after`` from the upstream is a floor: never wait less than it says (even beyond
    ``cap``). If the result exceeds what is left of the request's deadline, the caller skips to
    the next target instead of sleeping.
    """
    ceiling = min(cap, base * (2.0 ** max(attempt - 1, 0)))
    delay = rng.uniform(0.0, ceiling)
    floor = retry_after_s(retry_after, now)
    if floor is not None and floor > delay:
        return floor
    return delay
