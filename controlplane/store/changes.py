"""Change detection for the data planes' configuration, that catalog code cannot forget.

Every SQLAlchemy session (this module registers the hooks on import; :mod:`controlplane.store.db`
imports it) records which configuration resources a transaction changes as
:class:`~controlplane.store.models.config.ConfigChangeRow` rows, in the same transaction:

* ``before_flush``: every new, modified or deleted ORM object of a tracked table;
* ``do_orm_execute``: bulk ``update()`` / ``delete()`` statements on a tracked table (they bypass
  the unit of work): the primary keys their WHERE clause matches are selected first, in the same
  transaction; more than :data:`MAX_NAMES_PER_STATEMENT` are recorded as one ``"*"`` (the whole
  kind is read again).

A kind is the resource a data plane receives (:data:`KINDS`); the name is the row's primary key.
Dependencies between resources (a workspace's developers, secrets behind a provider) are the
snapshot cache's business (:mod:`controlplane.snapshots.resources`), not this module's.
Each (kind, name) is written once per transaction.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction

from controlplane.store.models.config import (
    ConfigChangeRow,
    PriceRow,
    ProviderRow,
    RouteRow,
    TelemetryDestinationRow,
    VirtualKeyRow,
    WorkspaceRow,
)
from controlplane.store.models.signin import DeveloperRow, SigningKeyRow, SsoConfigRow

ALL = "*"
MAX_NAMES_PER_STATEMENT = 1000
# table -> (kind, primary-key attribute); "sso" is a singleton, named "sso".
TRACKED: dict[str, tuple[str, str]] = {
    WorkspaceRow.__tablename__: ("workspace", "name"),
    VirtualKeyRow.__tablename__: ("key", "id"),
    ProviderRow.__tablename__: ("provider", "name"),
    RouteRow.__tablename__: ("route", "name"),
    PriceRow.__tablename__: ("price", "model_prefix"),
    SsoConfigRow.__tablename__: ("sso", "id"),
    SigningKeyRow.__tablename__: ("signing_key", "kid"),
    DeveloperRow.__tablename__: ("developer", "id"),
    TelemetryDestinationRow.__tablename__: ("telemetry_destination", "name"),
}
KINDS = tuple(kind for kind, _ in TRACKED.values())
_WRITTEN = "tollgate_config_changes"  # session.info key: (kind, name) written this transaction


def _name(kind: str, value: object) -> str:
    return "sso" if kind == "sso" else str(value)


def _record(session: Session, changes: set[tuple[str, str]]) -> None:
    written: set[tuple[str, str]] = session.info.setdefault(_WRITTEN, set())
    fresh = changes - written
    if not fresh:
        return
    written |= fresh
    now = int(time.time() * 1000)
    for kind, name in sorted(fresh):
        session.add(ConfigChangeRow(kind=kind, name=name, at_ms=now))


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _ctx: UOWTransaction, _instances: Any) -> None:
    changes: set[tuple[str, str]] = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        tracked = TRACKED.get(getattr(obj, "__tablename__", ""))
        if tracked is None:
            continue
        if obj in session.dirty and not session.is_modified(obj):
            continue
        kind, pk = tracked
        changes.add((kind, _name(kind, getattr(obj, pk))))
    _record(session, changes)


@event.listens_for(Session, "do_orm_execute")
def _bulk(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    tracked = TRACKED.get(getattr(table, "name", ""))
    if tracked is None or table is None:
        return
    kind, pk = tracked
    query = select(table.c[pk])
    where = state.statement.whereclause  # type: ignore[attr-defined]
    if where is not None:
        query = query.where(where)
    names = {_name(kind, v) for v in state.session.execute(query).scalars()}
    if len(names) > MAX_NAMES_PER_STATEMENT:
        names = {ALL}
    _record(state.session, {(kind, n) for n in names})


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_WRITTEN, None)
