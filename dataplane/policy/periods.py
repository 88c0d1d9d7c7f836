"""Calendar budget periods on the data plane's hot path.

The rules live in :mod:`gwcommon.periods`, which the control plane uses too, so the windows here
are exactly those of the ledger's spend seeds (a seed applies when its ``period_start_ms`` equals
the current window's start): a day runs from local midnight to local midnight in the workspace's
IANA time zone (``""`` = UTC), a week is the ISO week (Monday 00:00 local), a month the calendar
month; a lifetime budget has one period from the epoch to the far future. Boundaries are local
calendar midnights converted to UTC, so a DST change day is 23 or 25 hours long, and a midnight
that does not exist locally starts the day at the transition instant (zoneinfo, fold=0).

This module adds what the data plane needs on top: the :class:`Period` enum as argument, a
``Window`` in epoch milliseconds with its stable id (``day:2026-11-28@Europe/Berlin``,
``week:2026-11-23@UTC``, ``month:2026-11-01@UTC``, ``lifetime``; the id names counter keys), a
per-``(period, tz)`` cache so a request pays for a time-zone conversion once per period, and
tolerance of an unknown zone name (the control plane validates zones; should one slip through,
the data plane logs it and uses UTC rather than fail requests).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dataplane.config.snapshot import Period
from gwcommon import periods as common

__all__ = [
    "EPOCH",
    "FAR_FUTURE",
    "Window",
    "current_window",
    "format_instant",
    "period_id",
    "period_window",
]

log = logging.getLogger("tollgate.periods")

EPOCH = common.EPOCH
FAR_FUTURE = common.FOREVER
_warned: set[str] = set()


def _known(tz: str) -> str:
    """``tz`` if zoneinfo knows it, else ``""`` (UTC), logged once per name."""
    if not tz:
        return ""
    try:
        common.zone(tz)
    except ValueError:
        if tz not in _warned and len(_warned) < 256:
            _warned.add(tz)
            log.warning("unknown time zone %r; budget periods fall back to UTC", tz)
        return ""
    return tz


def period_window(period: Period, now: datetime, tz: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of the period containing ``now`` (aware), as aware UTC datetimes."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return common.period_window(period.value, now, _known(tz))


def period_id(period: Period, now: datetime, tz: str) -> str:
    """The stable name of the period containing ``now``, for counter keys."""
    tz = _known(tz)
    start, _ = common.period_window(period.value, now, tz)
    return common.period_id(period.value, start, tz)


@dataclass(frozen=True, slots=True)
class Window:
    """One period: ``[start_ms, end_ms)`` in epoch milliseconds, its id and its time zone."""

    period: Period
    tz: str
    id: str
    start_ms: int
    end_ms: int

    @property
    def resets(self) -> bool:
        return self.period is not Period.LIFETIME

    def end_text(self) -> str:
        """The reset instant for messages, in the workspace's zone (``Z`` for UTC)."""
        return format_instant(self.end_ms, self.tz)


def _ms(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(milliseconds=1)


def format_instant(ms: int, tz: str = "") -> str:
    """``2026-11-29T00:00:00Z`` in UTC, ``2026-11-29T00:00:00+01:00`` in another zone."""
    dt = datetime.fromtimestamp(ms / 1000, UTC).replace(microsecond=0)
    tz = _known(tz)
    if tz in ("", "UTC"):
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return dt.astimezone(common.zone(tz)).isoformat()


_LIFETIME = Window(Period.LIFETIME, "", "lifetime", 0, _ms(FAR_FUTURE))
_cache: dict[tuple[Period, str], Window] = {}
_CACHE_MAX = 1024


def current_window(period: Period, now_ms: int, tz: str) -> Window:
    """The window containing ``now_ms``; cached per ``(period, tz)`` until it ends."""
    if period is Period.LIFETIME:
        return _LIFETIME
    key = (period, tz)
    hit = _cache.get(key)
    if hit is not None and hit.start_ms <= now_ms < hit.end_ms:
        return hit
    known = _known(tz)
    start, end = common.period_window(period.value, EPOCH + timedelta(milliseconds=now_ms), known)
    window = Window(
        period, known, common.period_id(period.value, start, known), _ms(start), _ms(end)
    )
    if len(_cache) >= _CACHE_MAX:  # time zones are operator-controlled; bounded all the same
        _cache.clear()
    _cache[key] = window
    return window
