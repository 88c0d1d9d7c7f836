"""Spend per budget in its current period, from the usage ledger.

The one computation behind the snapshot's spend seeds, ``budget_status`` on keys and workspaces,
and budget alerts, so the three always agree.

Contract of :func:`current_spend`: for every budget of every given scope, the sum of
``cost_micros`` of the ledger events of that scope (``key_id`` for a key, ``workspace`` for a
workspace, ``developer_id`` for a signed-in developer, whatever workspace it was in) whose request time ``time_ms`` lies in the budget's current window
(:func:`controlplane.domain.spend.current_window`, in the workspace's time zone; a lifetime budget
sums all time). The sums are read from the running totals kept at ingest
(:mod:`controlplane.usage.totals`): one primary-key lookup per scope and window, batched per
(kind, window), so the cost no longer grows with the events inside the windows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from controlplane.catalog.convert import effective_limits
from controlplane.domain.budgets import Budget, Period
from controlplane.domain.limits import limits_from_json
from controlplane.domain.spend import Window, current_window
from controlplane.store.models.config import VirtualKeyRow, WorkspaceRow
from controlplane.store.models.signin import DeveloperRow
from controlplane.usage.totals import read_totals
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import discovery_pb2 as dpb

log = logging.getLogger(__name__)

IN_CHUNK = 500  # ids per IN (...) list: far below every bind-parameter limit


class Scope(NamedTuple):
    """A key, a workspace or a developer with its budgets and the time zone its periods follow."""

    kind: str  # "key" | "workspace" | "developer"
    id: str  # key id, workspace name or developer id
    name: str  # key name, workspace name or developer email
    workspace: str
    budgets: tuple[Budget, ...]
    tz: str


class BudgetSpend(NamedTuple):
    """One budget's current window and spend (a tuple: built by the thousand per alert check
    and snapshot, where a frozen dataclass's ``__init__`` cost several times more)."""

    scope: Scope
    budget: Budget
    window: Window
    spent_micros: int


def workspace_scope(row: WorkspaceRow) -> Scope:
    return Scope(
        kind="workspace",
        id=row.name,
        name=row.name,
        workspace=row.name,
        budgets=limits_from_json(row.limits_json).budgets,
        tz=row.timezone,
    )


class KeyLike(Protocol):
    """What a key scope reads: a ``VirtualKeyRow``, or a Core row of those columns."""

    id: str
    name: str
    workspace: str
    limits_json: str


def key_scope(row: KeyLike, tz: str) -> Scope:
    """``tz`` is the time zone of the key's workspace."""
    return Scope(
        kind="key",
        id=row.id,
        name=row.name,
        workspace=row.workspace,
        budgets=limits_from_json(row.limits_json).budgets,
        tz=tz,
    )


class DeveloperLike(Protocol):
    """What a developer scope reads: a ``DeveloperRow``, or a Core row of those columns."""

    id: str
    email: str
    workspace: str
    has_limits: bool
    limits_json: str


def developer_scope(row: DeveloperLike, workspace: WorkspaceRow | None) -> Scope:
    """Budgets are the effective ones (own override, else the workspace's member limits); the
    periods follow the time zone of the developer's workspace."""
    return Scope(
        kind="developer",
        id=row.id,
        name=row.email,
        workspace=row.workspace,
        budgets=effective_limits(row, workspace).budgets,
        tz=workspace.timezone if workspace is not None else "",
    )


def _window(budget: Budget, now_ms: int, scope: Scope) -> Window:
    try:
        return current_window(budget.period, now_ms, scope.tz)
    except ValueError:  # a zone this machine's tz database no longer knows
        log.warning("%s %s: unknown time zone %r, using UTC", scope.kind, scope.id, scope.tz)
        return current_window(budget.period, now_ms, "")


def _sums(s: Session, kind: str, ids: Sequence[str], window: Window) -> dict[str, int]:
    return read_totals(s, kind, window.period.word, window.start_ms, ids)


def current_spend(s: Session, scopes: Iterable[Scope], now_ms: int) -> list[BudgetSpend]:
    """Every budget of ``scopes`` with its current window and spend, in the scopes' order."""
    planned: list[tuple[Scope, Budget, Window]] = []
    groups: dict[tuple[str, Window], list[str]] = defaultdict(list)
    windows: dict[tuple[Period, str], Window] = {}  # scopes share a handful of windows
    for scope in scopes:
        for budget in scope.budgets:
            window = windows.get((budget.period, scope.tz))
            if window is None:
                window = windows[(budget.period, scope.tz)] = _window(budget, now_ms, scope)
            planned.append((scope, budget, window))
            groups[(scope.kind, window)].append(scope.id)
    totals: dict[tuple[str, Window], dict[str, int]] = {
        (kind, window): _sums(s, kind, sorted(set(ids)), window)
        for (kind, window), ids in groups.items()
    }
    return [
        BudgetSpend(scope, budget, window, totals[(scope.kind, window)].get(scope.id, 0))
        for scope, budget, window in planned
    ]


def scopes_for(
    s: Session,
    *,
    key_ids: Iterable[str] = (),
    workspaces: Iterable[str] = (),
    developer_ids: Iterable[str] = (),
) -> list[Scope]:
    """The scopes (with budgets) among the given key ids, workspace names and developer ids."""
    key_ids, names, dev_ids = sorted(set(key_ids)), set(workspaces), sorted(set(developer_ids))
    # Budget alerts call this for every key and developer of the ingested batches: the columns
    # a scope reads, as Core rows (ORM instances cost several times more each).
    keys: list[KeyLike] = []
    vk = VirtualKeyRow
    columns = (col(vk.id), col(vk.name), col(vk.workspace), col(vk.limits_json))
    for start in range(0, len(key_ids), IN_CHUNK):
        chunk = key_ids[start : start + IN_CHUNK]
        keys.extend(s.execute(sa_select(*columns).where(col(vk.id).in_(chunk))).all())
    d = DeveloperRow
    dev_columns = (
        *(col(c) for c in (d.id, d.email, d.workspace, d.has_limits, d.limits_json)),
        col(d.disabled_at_ms),
    )
    devs: list[Any] = []
    for start in range(0, len(dev_ids), IN_CHUNK):
        chunk = dev_ids[start : start + IN_CHUNK]
        devs.extend(s.execute(sa_select(*dev_columns).where(col(d.id).in_(chunk))).all())
    ws_names = sorted(names | {k.workspace for k in keys} | {d.workspace for d in devs})
    rows: dict[str, WorkspaceRow] = {}
    for start in range(0, len(ws_names), IN_CHUNK):
        chunk = ws_names[start : start + IN_CHUNK]
        for w in s.exec(select(WorkspaceRow).where(col(WorkspaceRow.name).in_(chunk))).all():
            rows[w.name] = w
    scopes = [workspace_scope(rows[n]) for n in sorted(names) if n in rows]
    for k in keys:
        ws = rows.get(k.workspace)
        scopes.append(key_scope(k, ws.timezone if ws is not None else ""))
    # A disabled developer, or one whose workspace is gone, spends nothing more: no alerts.
    scopes += [
        developer_scope(d, rows[d.workspace])
        for d in devs
        if d.workspace in rows and not d.disabled_at_ms
    ]
    return [sc for sc in scopes if sc.budgets]


def status_pb(spend: BudgetSpend) -> pb.BudgetStatus:
    return pb.BudgetStatus(
        budget=pb.Budget(
            amount_micros=spend.budget.amount_micros,
            period=pb.Period.ValueType(int(spend.budget.period)),
        ),
        period_start_ms=spend.window.start_ms,
        period_end_ms=spend.window.end_ms,
        spent_micros=spend.spent_micros,
    )


def seed_pb(spend: BudgetSpend) -> dpb.Spend:
    return dpb.Spend(
        scope=spend.scope.kind,
        id=spend.scope.id,
        period=pb.Period.ValueType(int(spend.budget.period)),
        period_start_ms=spend.window.start_ms,
        spent_micros=spend.spent_micros,
    )


def statuses_by_scope(
    s: Session, scopes: Iterable[Scope], now_ms: int
) -> dict[tuple[str, str], list[pb.BudgetStatus]]:
    """``{(kind, id): [BudgetStatus, …]}`` with budgets in period order."""
    out: dict[tuple[str, str], list[pb.BudgetStatus]] = defaultdict(list)
    for spend in current_spend(s, scopes, now_ms):
        out[(spend.scope.kind, spend.scope.id)].append(status_pb(spend))
    for items in out.values():
        items.sort(key=lambda st: st.budget.period)
    return out
