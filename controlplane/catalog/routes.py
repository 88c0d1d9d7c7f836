"""Routes: ordered provider targets with fallback/loadbalance mode, retries and timeouts."""

from __future__ import annotations

import json
from dataclasses import fields, replace

from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from controlplane.catalog import providers
from controlplane.catalog.common import audit_change, describe, get_named, resolve_mask
from controlplane.catalog.convert import (
    POLICY_SCALARS,
    route_mode_from_pb,
    route_policy_from_row,
    route_to_pb,
    targets_from_pb,
    targets_to_json,
)
from controlplane.domain.errors import AlreadyExists, NotFound
from controlplane.domain.names import validate_slug
from controlplane.domain.routing import RoutePolicy, validate_policy
from controlplane.store.models.config import ProviderRow, RouteRow
from gwapi.v1 import common_pb2 as pb

UPDATE_PATHS = tuple(f.name for f in fields(RoutePolicy))


def get_row(s: Session, name: str) -> RouteRow:
    return get_named(s, RouteRow, "route", name)


def _policy_from_pb(msg: pb.Route) -> RoutePolicy:
    return RoutePolicy(
        mode=route_mode_from_pb(msg) or "fallback",
        targets=targets_from_pb(list(msg.targets)),
        retry_on=tuple(msg.retry_on),
        **{name: getattr(msg, name) for name in POLICY_SCALARS},
    )


def _store_policy(s: Session, row: RouteRow, policy: RoutePolicy) -> None:
    policy = validate_policy(policy)
    missing = [t.provider for t in policy.targets if s.get(ProviderRow, t.provider) is None]
    if missing:
        raise NotFound(
            f"route target provider(s) not found: {describe(missing)}; create them first"
        )
    row.mode = policy.mode
    row.targets_json = targets_to_json(policy.targets)
    row.retries = policy.retries
    row.retry_on_json = json.dumps(list(policy.retry_on))
    row.timeout_connect_ms = policy.timeout_connect_ms
    row.timeout_first_byte_ms = policy.timeout_first_byte_ms
    row.timeout_idle_ms = policy.timeout_idle_ms
    row.cache_ttl_s = policy.cache_ttl_s
    row.cache_sampled = policy.cache_sampled
    row.breaker_failures = policy.breaker_failures
    row.breaker_cooldown_s = policy.breaker_cooldown_s


def create(s: Session, msg: pb.Route, now: int) -> pb.Route:
    name = validate_slug(msg.name, "route name")
    row = RouteRow(name=name, created_at_ms=now, updated_at_ms=now)
    _store_policy(s, row, _policy_from_pb(msg))
    if s.get(RouteRow, name) is not None:
        raise AlreadyExists(f"route {name!r} already exists")
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        raise AlreadyExists(f"route {name!r} already exists") from None
    created = route_to_pb(row)
    _audit(s, now, "route.create", None, created)
    return created


def get(s: Session, name: str) -> pb.Route:
    return route_to_pb(get_row(s, name))


def list_all(s: Session) -> list[pb.Route]:
    return [route_to_pb(r) for r in s.exec(select(RouteRow).order_by(col(RouteRow.name))).all()]


def update(s: Session, msg: pb.Route, mask: FieldMask, now: int) -> pb.Route:
    row = get_row(s, msg.name)
    before = route_to_pb(row)
    paths = resolve_mask(mask, msg, UPDATE_PATHS, "a route")
    incoming = _policy_from_pb(msg)
    policy = replace(route_policy_from_row(row), **{p: getattr(incoming, p) for p in paths})
    _store_policy(s, row, policy)
    row.updated_at_ms = now
    s.add(row)
    s.flush()
    updated = route_to_pb(row)
    _audit(s, now, "route.update", before, updated)
    return updated


def delete_route(s: Session, name: str, now: int) -> None:
    """Refused while active keys target it or any workspace's ``allowed_routes`` names it."""
    providers.delete_unused(
        s,
        now,
        "route",
        get_row(s, name),
        route_to_pb,
        "point the keys elsewhere or revoke them, and take the route out of those workspaces' "
        "allowed_routes, first",
    )


def _audit(
    s: Session, now: int, action: str, before: pb.Route | None, after: pb.Route | None
) -> None:
    audit_change(s, now, action, "route", before, after)
