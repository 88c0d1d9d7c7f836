"""Queries over the usage ledger: QueryUsage aggregates and TailLogs history.

QueryUsage contract: filter by workspace, key id, developer id and ``[since_ms, until_ms)``
(``until_ms`` 0 = no upper bound, i.e. up to now, tolerant of data-plane clock skew); group by one
dimension:

* ``""`` — one total row (always present, zeros when nothing matched), group ``""``;
* ``workspace`` | ``key`` (key id) | ``provider`` | ``session`` | ``client_version`` (Claude
  Code's version from the user-agent; ``""`` for other clients) — a column;
* ``developer`` — the signed-in developer: the row's group is the developer id,
  ``developer_email`` the developer's current email, ``workspace`` its current workspace, both as the ledger last
  recorded them when the developer no longer exists); virtual-key traffic forms group ``""``;
* ``model`` — the model served, or the requested one when nothing was served;
* ``day`` — the UTC calendar day ``YYYY-MM-DD``;
* ``metadata.<field>`` — a value of the request's metadata; events without it form group ``""``;
* ``member`` — who spent it, per workspace (chargeback): one row per (workspace, key) and
  (workspace, developer) as the events recorded them, in one ``GROUP BY``. The group is the key
  id or the developer id (``""`` for events with neither, e.g. refused unknown keys); rows carry
  ``workspace`` (where the requests were made, not where a developer is now), ``key_id`` and
  ``key_name`` (the key's current name, else the ledger's) or ``developer_id`` and
  ``developer_email`` (current, else the ledger's). Sorted by workspace, then cost descending.

The rows aggregated are rollup cells for whole UTC days and hours and raw events only for the
partial hour at each end of the range (:mod:`controlplane.usage.sources`): the answers equal a
scan of the raw events, at a cost that does not grow with the ledger. Column groupings run as
SQL ``GROUP BY``; ``metadata.<field>`` groups by the metadata JSON text
in SQL and re-aggregates the (few) distinct documents in Python, which works identically on
SQLite and PostgreSQL. Rows carry requests, errors (HTTP status >= 400), token sums, server-tool
request sums, cost, cache hits and what they saved (``cost_saved_micros``) and the request times of the group's first and last request; grouped by
``session`` they also name the session's key (``key_id``) or, for a signed-in developer's session,
the developer's email as the ledger recorded it (``developer_email``; the greatest if several).
Rows are sorted by cost descending (then group), except ``day`` which is chronological.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func
from sqlalchemy.sql import Subquery
from sqlmodel import Session, col, select

from controlplane.catalog.common import in_workspaces
from controlplane.domain.errors import InvalidArgument
from controlplane.store.models.config import VirtualKeyRow
from controlplane.store.models.signin import DeveloperRow
from controlplane.store.models.usage import UsageEventRow as U
from controlplane.usage.events import row_to_event
from controlplane.usage.rollups import SUMS
from controlplane.usage.sources import usage_source
from gwapi.v1 import telemetry_pb2 as tpb

DAY_MS = 86_400_000
GROUPS = (
    "",
    "workspace",
    "key",
    "developer",
    "model",
    "provider",
    "session",
    "client_version",
    "day",
    "member",
    "metadata.<field>",
)
_METADATA_RE = re.compile(r"^metadata\.([A-Za-z0-9_.-]{1,64})$")
DEFAULT_TAIL = 20
MAX_TAIL = 1000


def _group_expr(src: Subquery, group_by: str) -> ColumnElement[Any] | None:
    c = src.c
    columns: dict[str, Any] = {
        "workspace": c.workspace,
        "key": c.key_id,
        "developer": c.developer_id,
        "provider": c.provider,
        "session": c.session_id,
        "client_version": c.client_version,
        "model": c.model,
        "day": c.t // DAY_MS,
        "metadata": c.metadata_json,
    }
    key = "metadata" if group_by.startswith("metadata.") else group_by
    if key in ("", "member"):
        return None
    expr: ColumnElement[Any] = columns[key]
    return expr


def _source(req: tpb.QueryUsageRequest, scope: frozenset[str], group_by: str) -> Subquery:
    """The events of the request's range and filters, from rollups and edge rows
    (:mod:`controlplane.usage.sources`); session and metadata groupings need hourly cells."""
    return usage_source(
        req.since_ms,
        req.until_ms,
        coarse=group_by != "session" and not group_by.startswith("metadata."),
        scope=scope,
        workspace=req.workspace,
        key_id=req.key_id,
        developer_id=req.developer_id,
    )


def validate_group_by(group_by: str) -> str:
    if group_by in GROUPS[:-1] or _METADATA_RE.fullmatch(group_by):
        return group_by
    raise InvalidArgument(f"unknown group_by {group_by!r}: use one of {', '.join(GROUPS)}")


def _day_label(day_index: int) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=int(day_index))).strftime(
        "%Y-%m-%d"
    )


_MEMBER_LABELS = ("m_workspace", "m_key_id", "m_developer_id")


def query_usage(
    s: Session, req: tpb.QueryUsageRequest, scope: frozenset[str] = frozenset()
) -> list[tpb.UsageRow]:
    """``scope`` (non-empty): only events of those workspaces count (the caller's token)."""
    group_by = validate_group_by(req.group_by)
    if req.until_ms and req.since_ms and req.until_ms <= req.since_ms:
        raise InvalidArgument("until_ms must be after since_ms")
    if group_by == "member":
        return _query_members(s, req, scope)
    src = _source(req, scope, group_by)
    group = _group_expr(src, group_by)
    stmt = select(*([group.label("grp")] if group is not None else []), *_measures(src))
    if group is not None:
        stmt = stmt.group_by(group)
    result = s.exec(stmt).all()

    acc: dict[str, tpb.UsageRow] = {}
    developers = (
        _developers(s, [str(r._mapping["grp"] or "") for r in result])
        if group_by == "developer"
        else {}
    )
    for r in result:
        m = r._mapping
        if group is None:
            label = ""
        elif group_by == "day":
            label = _day_label(m["grp"])
        elif group_by.startswith("metadata."):
            label = str(json.loads(m["grp"] or "{}").get(group_by.split(".", 1)[1], ""))
        else:
            label = str(m["grp"] or "")
        row = acc.get(label)
        if row is None:
            row = acc[label] = tpb.UsageRow(group=label, first_ms=int(m["first_ms"]))
            if group_by == "developer" and label:
                # Keyed by id (two identities may share an email; activity joins on the id);
                # clients show developer_email.
                email, workspace = developers.get(
                    label, (str(m["developer_email"] or ""), str(m["workspace"] or ""))
                )
                row.developer_email, row.workspace = email, workspace
        if group_by == "session":
            row.key_id = max(row.key_id, str(m["key_id"] or ""))
            row.developer_email = max(row.developer_email, str(m["developer_email"] or ""))
        _add(row, m)
    if group is None and not acc:
        acc[""] = tpb.UsageRow(group="")
    rows = list(acc.values())
    if group_by == "day":
        rows.sort(key=lambda r: r.group)
    else:
        rows.sort(key=lambda r: (-r.cost_micros, r.group))
    return rows


def _measures(src: Subquery) -> list[Any]:
    c = src.c
    return [
        func.coalesce(func.sum(c.requests), 0).label("requests"),
        func.coalesce(func.sum(c.errors), 0).label("errors"),
        *(func.coalesce(func.sum(c[name]), 0).label(name) for name in SUMS),
        func.coalesce(func.sum(c.cache_hits), 0).label("cache_hits"),
        func.coalesce(func.min(c.first_ms), 0).label("first_ms"),
        func.coalesce(func.max(c.last_ms), 0).label("last_ms"),
        func.coalesce(func.max(c.key_id), "").label("key_id"),
        func.coalesce(func.max(c.key_name), "").label("key_name"),
        func.coalesce(func.max(c.developer_email), "").label("developer_email"),
        func.coalesce(func.max(c.workspace), "").label("workspace"),
    ]


def _add(row: tpb.UsageRow, m: Any) -> None:
    """Add one SQL result row's measures to ``row``."""
    if m["requests"]:
        row.first_ms = min(row.first_ms or int(m["first_ms"]), int(m["first_ms"]))
        row.last_ms = max(row.last_ms, int(m["last_ms"]))
    row.requests += int(m["requests"])
    row.errors += int(m["errors"])
    row.cache_hits += int(m["cache_hits"])
    for name in SUMS:
        setattr(row, name, getattr(row, name) + int(m[name]))


def _query_members(
    s: Session, req: tpb.QueryUsageRequest, scope: frozenset[str]
) -> list[tpb.UsageRow]:
    """``group_by=member``: one SQL ``GROUP BY workspace, key_id, developer_id``."""
    src = _source(req, scope, "member")
    member = (src.c.workspace, src.c.key_id, src.c.developer_id)
    labelled = [c.label(name) for c, name in zip(member, _MEMBER_LABELS, strict=True)]
    stmt = select(*labelled, *_measures(src))
    result = s.exec(stmt.group_by(*member)).all()
    key_ids = [str(r._mapping["m_key_id"] or "") for r in result]
    key_names = _key_names(s, key_ids)
    developers = _developers(s, [str(r._mapping["m_developer_id"] or "") for r in result])
    rows = []
    for r in result:
        m = r._mapping
        key_id, dev_id = str(m["m_key_id"] or ""), str(m["m_developer_id"] or "")
        row = tpb.UsageRow(
            group=key_id or dev_id,
            workspace=str(m["m_workspace"] or ""),
            key_id=key_id,
            key_name=key_names.get(key_id, str(m["key_name"] or "")) if key_id else "",
            developer_id=dev_id,
            developer_email=(
                developers.get(dev_id, (str(m["developer_email"] or ""), ""))[0] if dev_id else ""
            ),
        )
        _add(row, m)
        rows.append(row)
    rows.sort(key=lambda r: (r.workspace, -r.cost_micros, r.group))
    return rows


def _key_names(s: Session, ids: Sequence[str]) -> dict[str, str]:
    """``{key id: name}`` as the key table has them now (revoked keys included)."""
    wanted = sorted({i for i in ids if i})
    out: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        stmt = select(VirtualKeyRow.id, VirtualKeyRow.name).where(
            col(VirtualKeyRow.id).in_(wanted[start : start + 500])
        )
        out.update({key_id: name for key_id, name in s.exec(stmt).all()})
    return out


def _developers(s: Session, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``{developer id: (email, workspace)}`` as the developer table has them now."""
    wanted = sorted({i for i in ids if i})
    out: dict[str, tuple[str, str]] = {}
    for start in range(0, len(wanted), 500):
        stmt = select(DeveloperRow.id, DeveloperRow.email, DeveloperRow.workspace).where(
            col(DeveloperRow.id).in_(wanted[start : start + 500])
        )
        for dev_id, email, workspace in s.exec(stmt).all():
            out[dev_id] = (email, workspace)
    return out


def recent_events(
    s: Session,
    limit: int,
    workspace: str = "",
    key_id: str = "",
    session_id: str = "",
    scope: frozenset[str] = frozenset(),
    developer_id: str = "",
) -> Sequence[tpb.UsageEvent]:
    """The ``limit`` most recent events (by request time), oldest first; optionally only one
    workspace's, key's, session's or developer's, and (``scope`` non-empty) only of those
    workspaces."""
    limit = DEFAULT_TAIL if limit <= 0 else min(limit, MAX_TAIL)
    stmt = in_workspaces(select(U), U.workspace, workspace, scope)
    if key_id:
        stmt = stmt.where(U.key_id == key_id)
    if session_id:
        stmt = stmt.where(U.session_id == session_id)
    if developer_id:
        stmt = stmt.where(U.developer_id == developer_id)
    stmt = stmt.order_by(col(U.time_ms).desc(), col(U.request_id).desc()).limit(limit)
    rows = list(s.exec(stmt).all())
    rows.reverse()
    return [row_to_event(r) for r in rows]
