"""Workspace access controls in the catalog: storing a workspace's allow-lists, checking a key
against its workspace, and the delete guards for providers and routes those lists name.

Rules: :mod:`gwcommon.allowlists` (shared with the data planes); syntax and messages:
:mod:`controlplane.domain.allowlists`. Lists are JSON text on :class:`WorkspaceRow`; ``[]`` = everything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from controlplane.catalog.convert import targets_from_json
from controlplane.domain import allowlists as rules
from controlplane.domain.errors import InvalidArgument
from controlplane.store.models.config import ProviderRow, RouteRow, WorkspaceRow
from gwapi.v1 import common_pb2 as pb

UPDATE_PATHS = ("allowed_providers", "allowed_routes", "allowed_models")


@dataclass(frozen=True, slots=True)
class Allowed:
    providers: tuple[str, ...]
    routes: tuple[str, ...]
    models: tuple[str, ...]


def allowed_of(row: WorkspaceRow) -> Allowed:
    return Allowed(
        tuple(json.loads(row.allowed_providers_json or "[]")),
        tuple(json.loads(row.allowed_routes_json or "[]")),
        tuple(json.loads(row.allowed_models_json or "[]")),
    )


def store_allowed(s: Session, row: WorkspaceRow, msg: pb.Workspace, paths: Sequence[str]) -> None:
    """Validate and write the allow-lists named in ``paths`` (all three on create). Every named
    provider and route must exist: INVALID_ARGUMENT names the first unknown one."""
    if "allowed_providers" in paths:
        providers = rules.validate_allowed_names(msg.allowed_providers, "provider")
        _must_exist(s, ProviderRow, providers, "provider")
        row.allowed_providers_json = json.dumps(list(providers))
    if "allowed_routes" in paths:
        routes = rules.validate_allowed_names(msg.allowed_routes, "route")
        _must_exist(s, RouteRow, routes, "route")
        row.allowed_routes_json = json.dumps(list(routes))
    if "allowed_models" in paths:
        row.allowed_models_json = json.dumps(
            list(rules.validate_allowed_models(msg.allowed_models))
        )


def _must_exist(
    s: Session, table: type[ProviderRow] | type[RouteRow], names: Sequence[str], what: str
) -> None:
    for name in names:
        if s.get(table, name) is None:
            raise InvalidArgument(
                f"allowed {what} {name!r} does not exist: create it first, or leave it out"
            )


def route_providers(s: Session, route: str) -> tuple[str, ...]:
    """The providers a route can reach (empty when there is no such route)."""
    row = s.get(RouteRow, route) if route else None
    return tuple(t.provider for t in targets_from_json(row.targets_json)) if row else ()


def check_key(
    s: Session, workspace: WorkspaceRow, provider: str, route: str, models: Sequence[str]
) -> None:
    """INVALID_ARGUMENT unless a key on ``provider``/``route`` with ``models`` is within its
    workspace's allow-lists (the target must already be known to exist)."""
    check_key_target(s, workspace, provider, route)
    check_key_models(workspace, models)


def check_key_target(
    s: Session, workspace: WorkspaceRow, provider: str, route: str, who: str = "the key targets"
) -> None:
    allowed = allowed_of(workspace)
    if allowed.providers or allowed.routes:
        rules.check_key_target(
            workspace.name,
            allowed.providers,
            allowed.routes,
            provider,
            route,
            route_providers(s, route) if route else (),
            who,
        )


def check_key_models(workspace: WorkspaceRow, models: Sequence[str]) -> None:
    rules.check_key_models(workspace.name, allowed_of(workspace).models, models)


def workspaces_allowing(s: Session, *, provider: str = "", route: str = "") -> list[str]:
    """Names of workspaces whose ``allowed_providers`` (or ``allowed_routes``) name the given
    provider (or route): a delete guard, like the key and route dependants."""
    out = []
    for row in s.exec(select(WorkspaceRow).order_by(col(WorkspaceRow.name))):
        allowed = allowed_of(row)
        if (provider and provider in allowed.providers) or (route and route in allowed.routes):
            out.append(row.name)
    return out
