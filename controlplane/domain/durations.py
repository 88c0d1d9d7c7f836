"""Human durations: ``"30d"``, ``"12h"``, ``"90m"``, ``"3600s"``, ``"2w"`` or bare seconds."""

from __future__ import annotations

import re

from controlplane.domain.errors import InvalidArgument, shown

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_RE = re.compile(r"^\s*([0-9]+)\s*([smhdw]?)\s*$")
_MAX_DIGITS = 15


def parse_duration(text: str) -> int:
    """Parse a duration into whole seconds; a bare number means seconds.

    Raises :class:`InvalidArgument` for anything else (negative, fractional, unknown unit, zero).
    """
    m = _RE.fullmatch(text.lower()) if text else None
    if m is None:
        raise InvalidArgument(
            f"invalid duration {shown(text)}: use a whole number with a unit s, m, h, d or w "
            "(e.g. '90m', '12h', '30d')"
        )
    digits = m.group(1).lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS:  # int() refuses beyond 4300 digits; no TTL needs 16
        raise InvalidArgument(f"invalid duration {shown(text)}: too large")
    seconds = int(digits) * _UNITS[m.group(2) or "s"]
    if seconds <= 0:
        raise InvalidArgument(f"invalid duration {shown(text)}: must be greater than zero")
    return seconds


def format_duration(seconds: int) -> str:
    """The largest exact unit: ``86400 → "1d"``, ``5400 → "90m"``, ``61 → "61s"``."""
    if seconds < 0:
        raise InvalidArgument("duration must not be negative")
    if seconds == 0:
        return "0s"
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
