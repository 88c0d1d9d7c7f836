"""Hourly and daily usage rollups (``usage_rollup_hour``, ``usage_rollup_day``).

Contract: a rollup cell is one UTC bucket (hour or day, ``bucket_ms`` its start, floored, so
negative times bucket like positive ones) and one combination of dimensions — the hour table:
workspace, key id, developer id, model (served, else requested), provider, client version,
session and metadata (JSON text); the day table: the first six. A cell holds what
:func:`controlplane.usage.ledger.query_usage` aggregates from raw events: request count, errors
(HTTP status >= 400), the token, server-tool, cost and saved-cost sums, cache hits, the first and
last request time, and the greatest key name and developer email. :func:`add_rollups` adds
freshly inserted events to both tables in the inserting transaction, with atomic upserts, so the
rollups of a bucket always equal the aggregate of that bucket's raw events.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlmodel import Session

from controlplane.store.models.derived import UsageDayRow, UsageHourRow
from controlplane.usage.upsert import upsert_add
from gwapi.vocab import USAGE_COUNTERS

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
DAY_DIMS = ("workspace", "key_id", "developer_id", "model", "provider", "client_version")
HOUR_DIMS = (*DAY_DIMS, "session_id", "metadata_json")
# What a rollup row adds up: the usage row's counters. Requests, errors and cache hits are
# counted per event; the rest (SUMS) are the events' own fields, summed.
ADDED = USAGE_COUNTERS
SUMS = tuple(name for name in ADDED if name not in ("requests", "errors", "cache_hits"))
HOUR_TABLE = UsageHourRow.__table__  # type: ignore[attr-defined]
DAY_TABLE = UsageDayRow.__table__  # type: ignore[attr-defined]


def model_of(row: Mapping[str, Any]) -> str:
    return str(row.get("model_served") or "") or str(row.get("model_requested") or "")


def dims_key(values: Sequence[str]) -> str:
    """A stable 32-hex-digit key for a combination of dimensions (JSON-encoded, so no two
    combinations collide by concatenation)."""
    raw = json.dumps(list(values), ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


@functools.lru_cache(maxsize=16_384)  # bounded: entries hold the dimension texts
def _cached_dims_key(values: tuple[str, ...]) -> str:
    """:func:`dims_key`, remembered: a fleet's combinations recur batch after batch (the JSON
    encoding and hash were a fifth of a replica's ingest time with 1,000 busy keys)."""
    return dims_key(values)


def _new_cell(
    bucket: int, key: str, dims: dict[str, str], time_ms: int, now: int
) -> dict[str, Any]:
    return {
        "bucket_ms": bucket,
        "dims_key": key,
        **dims,
        **dict.fromkeys(ADDED, 0),
        "first_ms": time_ms,
        "last_ms": time_ms,
        "key_name": "",
        "developer_email": "",
        "updated_at_ms": now,
    }


def cells(
    rows: Iterable[Mapping[str, Any]], now: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The hourly and the daily rollup rows (one per bucket and dimension combination)."""
    hours: dict[tuple[int, tuple[str, ...]], dict[str, Any]] = {}
    days: dict[tuple[int, tuple[str, ...]], dict[str, Any]] = {}
    n_day = len(DAY_DIMS)
    for row in rows:
        time_ms = int(row.get("time_ms") or 0)
        dims = (
            str(row.get("workspace") or ""),
            str(row.get("key_id") or ""),
            str(row.get("developer_id") or ""),
            model_of(row),
            str(row.get("provider") or ""),
            str(row.get("client_version") or ""),
            str(row.get("session_id") or ""),
            str(row.get("metadata_json") or "{}"),
        )
        errors = 1 if int(row.get("status") or 0) >= 400 else 0
        hit = 1 if row.get("cache_status") == "hit" else 0
        sums = [int(row.get(name) or 0) for name in SUMS]
        key_name = str(row.get("key_name") or "")
        email = str(row.get("developer_email") or "")
        # Python's % floors, so negative times bucket like positive ones.
        for acc, bucket, names in (
            (hours, time_ms - time_ms % HOUR_MS, HOUR_DIMS),
            (days, time_ms - time_ms % DAY_MS, DAY_DIMS),
        ):
            values = dims if names is HOUR_DIMS else dims[:n_day]
            cell = acc.get((bucket, values))
            if cell is None:
                cell = acc[(bucket, values)] = _new_cell(
                    bucket,
                    _cached_dims_key(values),
                    dict(zip(names, values, strict=True)),
                    time_ms,
                    now,
                )
            cell["requests"] += 1
            cell["errors"] += errors
            cell["cache_hits"] += hit
            for name, value in zip(SUMS, sums, strict=True):
                cell[name] += value
            if time_ms < cell["first_ms"]:
                cell["first_ms"] = time_ms
            if time_ms > cell["last_ms"]:
                cell["last_ms"] = time_ms
            # The database's collation orders text for max(); PostgreSQL databases we create
            # use C.UTF-8 (code point order, as Python's).
            if key_name > cell["key_name"]:
                cell["key_name"] = key_name
            if email > cell["developer_email"]:
                cell["developer_email"] = email
    return list(hours.values()), list(days.values())


def write(s: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    upsert_add(
        s,
        table,
        rows,
        added=ADDED,
        least=("first_ms",),
        greatest=("last_ms", "key_name", "developer_email", "updated_at_ms"),
    )


def add_rollups(s: Session, rows: Sequence[Mapping[str, Any]], now: int) -> None:
    """Add freshly inserted events to the hourly and daily rollups, in the caller's
    transaction."""
    if rows:
        hours, days = cells(rows, now)
        write(s, HOUR_TABLE, hours)
        write(s, DAY_TABLE, days)
