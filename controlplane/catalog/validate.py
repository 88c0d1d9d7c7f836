"""Dry run: would these providers, routes and workspaces be accepted? (``Admin.Validate``)

Each object goes through the same catalog call a write makes (``create`` for a new name, else
``update`` with every path, the declarative replacement ``gwctl apply`` performs), inside a
savepoint of a transaction the caller rolls back: every rule, including those that need the
database (a route's target providers, a workspace's allowed and member targets), is checked
by the code that enforces it, and nothing is written. Objects are checked in dependency order
(providers, routes, workspaces), each seeing the ones before it, as an apply would make them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.field_mask_pb2 import FieldMask
from sqlmodel import Session

from controlplane.catalog import providers, routes, workspaces
from controlplane.catalog.convert import provider_from_pb
from controlplane.domain.errors import DomainError, FailedPrecondition
from controlplane.store.models.config import ProviderRow, RouteRow, WorkspaceRow
from gwapi.v1 import admin_pb2 as apb


def _same_kind(row: Any, msg: Any) -> None:
    """An update never changes a provider's kind (UpdateProvider ignores a kind it is not asked
    to change); a dry run of the file's replacement says so instead."""
    if isinstance(row, ProviderRow):
        kind, _ = provider_from_pb(msg)
        if kind and kind != row.kind:
            raise FailedPrecondition(
                f"provider {row.name!r} is {row.kind} on the control plane but {kind} here: a "
                "provider's kind cannot change (give it a new name, or delete it)"
            )


def validate(
    s: Session, request: apb.ValidateRequest, now: int, *, allow_internal_webhooks: bool
) -> apb.ValidateResponse:
    """One result per object, in the request's order within each kind. The caller must roll
    ``s`` back (:meth:`controlplane.store.db.Database.dry_run`)."""

    def ws_create(s: Session, msg: Any, now: int) -> Any:
        return workspaces.create(s, msg, now, allow_internal_webhooks=allow_internal_webhooks)

    def ws_update(s: Session, msg: Any, mask: FieldMask, now: int) -> Any:
        return workspaces.update(s, msg, mask, now, allow_internal_webhooks=allow_internal_webhooks)

    kinds: Sequence[tuple[str, Sequence[Any], type[Any], Callable[..., Any], Callable[..., Any], Sequence[str]]] = (
        ("provider", request.providers, ProviderRow, providers.create, providers.update,
         providers.UPDATE_PATHS),
        ("route", request.routes, RouteRow, routes.create, routes.update, routes.UPDATE_PATHS),
        ("workspace", request.workspaces, WorkspaceRow, ws_create, ws_update,
         workspaces.UPDATE_PATHS),
    )  # fmt: skip
    response = apb.ValidateResponse()
    for kind, items, row_type, create, update, paths in kinds:
        for msg in items:
            result = response.results.add(kind=kind, name=msg.name)
            try:
                with s.begin_nested():
                    row = s.get(row_type, msg.name) if msg.name else None
                    if row is not None:
                        _same_kind(row, msg)
                        stored = update(s, msg, FieldMask(paths=list(paths)), now)
                    else:
                        stored = create(s, msg, now)
            except DomainError as exc:
                result.error = str(exc)
            else:
                getattr(result, kind).CopyFrom(stored)
    return response
