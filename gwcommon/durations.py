"""The one duration grammar: ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` and sums such as ``1h30m``.

A duration is one or more ``<digits><unit>`` parts (units s, m, h, d, w; case and surrounding
spaces ignored), greater than zero and at most :data:`MAX_DURATION_S` (100 years: the longest key
TTL, far inside the int64 milliseconds durations become). A unit is required: a bare ``45`` is
refused rather than guessed. :func:`format_duration` writes the largest exact unit, which this
grammar reads back. Stdlib only; errors are :class:`ValueError` with a readable message that
each caller wraps in its own error type.
"""

from __future__ import annotations

import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
DURATION_HELP = "a duration such as 30d, 12h, 90m, 45s or 1h30m"
MAX_DURATION_S = 100 * 365 * 86_400

_PART = re.compile(r"(\d+)([smhdw])", re.ASCII)


def shown(text: str, limit: int = 60) -> str:
    """The value for a message, cut short: ``'9999…' (5001 characters)``."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"


def parse_duration(text: str) -> int:
    """``"30d"`` → 2_592_000 seconds; ``"1h30m"`` → 5_400; ``ValueError`` for anything else."""
    raw = text.strip().lower()
    pos = 0
    total = 0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        digits = match.group(1).lstrip("0") or "0"
        if len(digits) > 12:  # already centuries; int() refuses beyond 4300 digits anyway
            total = MAX_DURATION_S + 1
        else:
            total += int(digits) * UNITS[match.group(2)]
        pos = match.end()
    if not raw or pos != len(raw):
        raise ValueError(f"invalid duration {shown(text)}: expected {DURATION_HELP}")
    if total > MAX_DURATION_S:
        raise ValueError(
            f"invalid duration {shown(text)}: at most {MAX_DURATION_S // (365 * 86_400)} years"
        )
    if total <= 0:
        raise ValueError(f"invalid duration {text!r}: must be longer than 0s")
    return total


def format_duration(seconds: int) -> str:
    """The largest exact unit: ``86400 → "1d"``, ``5400 → "90m"``, ``61 → "61s"``, ``0 → "0s"``."""
    if seconds < 0:
        raise ValueError("duration must not be negative")
    if seconds == 0:
        return "0s"
    for unit in ("w", "d", "h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"
