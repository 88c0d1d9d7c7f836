"""Calendar budget periods: which window ``now`` falls in, in a workspace's time zone.

Contract: ``period_window(period, now, tz)`` returns ``(start, end)`` as aware UTC datetimes with
``start <= now < end``. ``day`` starts at local midnight, ``week`` on local Monday midnight (ISO
weeks), ``month`` on the 1st at local midnight; ``lifetime`` is ``(EPOCH, FOREVER)``. ``tz`` is an
IANA name; ``""`` means UTC. Local midnights are resolved with zoneinfo, so a DST change day is
23 or 25 hours long. ``period_id`` names the window stably, for counter keys and alert records.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PERIODS = ("day", "week", "month", "lifetime")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=256)
def zone(tz: str) -> ZoneInfo:
    """The zone for an IANA name ("" = UTC). Raises ValueError for an unknown name."""
    try:
        return ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {tz!r}: use an IANA name such as Europe/Berlin"
        ) from exc


def _local_midnight(year: int, month: int, day: int, tzinfo: ZoneInfo) -> datetime:
    return datetime(year, month, day, tzinfo=tzinfo).astimezone(UTC)


def period_window(period: str, now: datetime, tz: str = "") -> tuple[datetime, datetime]:
    if period == "lifetime":
        return EPOCH, FOREVER
    z = zone(tz)
    local = now.astimezone(z)
    if period == "day":
        start_date = local.date()
        end_date = start_date + timedelta(days=1)
    elif period == "week":
        start_date = local.date() - timedelta(days=local.weekday())
        end_date = start_date + timedelta(days=7)
    elif period == "month":
        start_date = local.date().replace(day=1)
        end_date = (start_date + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}: use one of {', '.join(PERIODS)}")
    return (
        _local_midnight(start_date.year, start_date.month, start_date.day, z),
        _local_midnight(end_date.year, end_date.month, end_date.day, z),
    )


def period_id(period: str, start: datetime, tz: str = "") -> str:
    """e.g. ``day:2026-11-28@Europe/Berlin``; ``lifetime`` for lifetime budgets."""
    if period == "lifetime":
        return "lifetime"
    local = start.astimezone(zone(tz))
    return f"{period}:{local.date().isoformat()}@{tz or 'UTC'}"
