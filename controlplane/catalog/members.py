"""A workspace's sign-in fields: which developers land in it (``sso_groups``,
``sso_priority``), what applies to each of them (``member_limits``, ``member_provider`` /
``member_route``) and the Claude Code managed settings served to them.

Contract of :func:`store`: validate and write the fields named in ``paths`` (every one on
create). A member target must exist, be at most one of provider / route, and lie within the
workspace's allow-lists as a key's target must (checked against the lists as they are after this
same update). Managed settings are stored in canonical form with their SHA-256 checksum and the
time they changed (:mod:`controlplane.domain.managed_settings`); ``""`` removes them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlmodel import Session, col, select

from controlplane.catalog import allowlists
from controlplane.catalog.common import MEMBER_LIMITS_PATHS, masked_limits, updated_target
from controlplane.catalog.convert import limits_from_pb
from controlplane.domain.errors import InvalidArgument, NotFound
from controlplane.domain.limits import limits_from_json, limits_to_json, validate_limits
from controlplane.domain.managed_settings import parse_managed_settings
from controlplane.domain.names import validate_slug
from controlplane.domain.sso import validate_sso_groups, validate_sso_priority
from controlplane.store.models.config import ProviderRow, RouteRow, WorkspaceRow
from gwapi.v1 import common_pb2 as pb

UPDATE_PATHS = (
    "sso_groups",
    "sso_priority",
    *MEMBER_LIMITS_PATHS,
    "member_provider",
    "member_route",
    "managed_settings_json",
)
CREATE_PATHS = tuple(p for p in UPDATE_PATHS if "." not in p)


def _member_target(s: Session, row: WorkspaceRow, msg: pb.Workspace, paths: Sequence[str]) -> None:
    target = updated_target(
        paths,
        "member_",
        (msg.member_provider, msg.member_route),
        (row.member_provider, row.member_route),
    )
    if target is None:
        return
    provider, route = target
    if provider and route:
        raise InvalidArgument(
            "a workspace's developers target a provider or a route, not both: set "
            "member_provider or member_route"
        )
    if provider:
        validate_slug(provider, "member_provider")
        if s.get(ProviderRow, provider) is None:
            raise NotFound(f"member_provider {provider!r} not found; create it first")
    if route:
        validate_slug(route, "member_route")
        if s.get(RouteRow, route) is None:
            raise NotFound(f"member_route {route!r} not found; create it first")
    if provider or route:
        allowlists.check_key_target(s, row, provider, route, "the workspace's developers target")
    row.member_provider, row.member_route = provider, route


def store(s: Session, row: WorkspaceRow, msg: pb.Workspace, paths: Sequence[str], now: int) -> None:
    """Validate and write the sign-in fields named in ``paths``."""
    if "sso_groups" in paths:
        row.sso_groups_json = json.dumps(list(validate_sso_groups(msg.sso_groups)))
    if "sso_priority" in paths:
        row.sso_priority = validate_sso_priority(msg.sso_priority)
    current = limits_from_json(row.member_limits_json)
    new_limits = masked_limits(
        current, limits_from_pb(msg.member_limits, "member_limits"), paths, "member_limits"
    )
    if new_limits is not None:
        row.member_limits_json = limits_to_json(validate_limits(new_limits, "member_limits"))
    _member_target(s, row, msg, paths)
    if "managed_settings_json" in paths:
        parsed = parse_managed_settings(msg.managed_settings_json)
        canonical = parsed.canonical if parsed is not None else ""
        if canonical != row.managed_settings_json:
            row.managed_settings_json = canonical
            row.managed_settings_checksum = parsed.checksum if parsed is not None else ""
            row.managed_settings_updated_at_ms = now if parsed is not None else 0


def workspaces_targeting(s: Session, *, provider: str = "", route: str = "") -> list[str]:
    """Names of workspaces whose member target is ``provider`` (or ``route``): a delete guard."""
    stmt = select(WorkspaceRow.name)
    if provider:
        stmt = stmt.where(WorkspaceRow.member_provider == provider)
    else:
        stmt = stmt.where(WorkspaceRow.member_route == route)
    return list(s.exec(stmt.order_by(col(WorkspaceRow.name))).all())
