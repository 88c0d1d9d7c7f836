"""Virtual keys: minted here, shown once, stored hashed, revoked or deleted by id.

Contract: a key belongs to an existing workspace and targets exactly one existing provider *or*
route, within its workspace's access controls (:mod:`controlplane.catalog.allowlists`; an update
checks what it changes, the target or the models). Revocation is a timestamp (the key stays in
snapshots with ``revoked=true`` so data planes answer "revoked" rather than "unknown"); deletion
removes it entirely.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from controlplane import audit_log
from controlplane.catalog import allowlists, workspaces
from controlplane.catalog.common import (
    LIMITS_PATHS,
    in_workspaces,
    masked_limits,
    resolve_mask,
    updated_target,
)
from controlplane.catalog.convert import key_to_pb, limits_from_pb
from controlplane.domain import keys as rules
from controlplane.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from controlplane.domain.limits import limits_from_json, limits_to_json, validate_limits
from controlplane.domain.names import validate_label, validate_slug
from controlplane.store.models.config import ProviderRow, RouteRow, VirtualKeyRow, WorkspaceRow
from controlplane.usage.spend import key_scope, statuses_by_scope
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb

UPDATE_PATHS = ("name", "provider", "route", "models", "expires_at_ms", *LIMITS_PATHS)


def get_row(s: Session, key_id: str) -> VirtualKeyRow:
    rules.validate_key_id(key_id)
    row = s.get(VirtualKeyRow, key_id)
    if row is None:
        raise NotFound(f"key {key_id!r} not found")
    return row


def check_target(s: Session, provider: str, route: str) -> None:
    """Exactly one of ``provider``/``route``, and it must exist."""
    rules.validate_target(provider, route)
    if provider:
        validate_slug(provider, "provider name")
        if s.get(ProviderRow, provider) is None:
            raise NotFound(f"provider {provider!r} not found; create it first")
    else:
        validate_slug(route, "route name")
        if s.get(RouteRow, route) is None:
            raise NotFound(f"route {route!r} not found; create it first")


def create(s: Session, req: apb.CreateKeyRequest, now: int) -> tuple[pb.VirtualKey, str]:
    """Mint a key; returns the stored key and the secret (to be shown once, never stored)."""
    return create_many(s, [req], now)[0]


MAX_BATCH = 1000


def create_many(
    s: Session, reqs: Sequence[apb.CreateKeyRequest], now: int
) -> list[tuple[pb.VirtualKey, str]]:
    """Mint several keys in this transaction (each checked as :func:`create` checks one); the
    stored keys with their secrets, in order. One flush and one budget-status read for all."""
    if len(reqs) > MAX_BATCH:
        raise InvalidArgument(f"at most {MAX_BATCH} keys per call, got {len(reqs)}")
    minted_rows: list[tuple[VirtualKeyRow, str]] = []
    for req in reqs:
        workspace = workspaces.get_row(s, req.workspace)
        name = validate_label(req.name, "key name")
        limits = validate_limits(limits_from_pb(req.limits), "limits")
        models = rules.validate_models(req.models)
        expires = rules.expires_at_ms(now, req.ttl_seconds)
        check_target(s, req.provider, req.route)
        allowlists.check_key(s, workspace, req.provider, req.route, models)
        minted = rules.generate_key()
        row = VirtualKeyRow(
            id=minted.id,
            secret_sha256=minted.secret_sha256,
            prefix=minted.prefix,
            name=name,
            workspace=req.workspace,
            limits_json=limits_to_json(limits),
            provider=req.provider,
            route=req.route,
            models_json=json.dumps(list(models)),
            expires_at_ms=expires,
            created_at_ms=now,
            updated_at_ms=now,
        )
        s.add(row)
        minted_rows.append((row, minted.secret))
    try:
        s.flush()
    except IntegrityError:  # 2^64 ids, 2^256 secrets: a collision means a bug, not bad luck
        raise FailedPrecondition("could not mint a unique key; try again") from None
    created = with_status(s, [row for row, _ in minted_rows], now)
    for (row, _), msg in zip(minted_rows, created, strict=True):
        _audit(s, now, "key.create", row, None, msg)  # the message, never the secret
    return [(msg, secret) for (_, secret), msg in zip(minted_rows, created, strict=True)]


def with_status(s: Session, rows: Sequence[VirtualKeyRow], now: int) -> list[pb.VirtualKey]:
    """The keys with ``budget_status`` filled in (periods in their workspace's time zone)."""
    zones: dict[str, str] = {}
    if rows:  # workspaces are few: read every zone rather than build an IN list
        zones = dict(s.exec(select(WorkspaceRow.name, WorkspaceRow.timezone)).all())
    statuses = statuses_by_scope(s, [key_scope(r, zones.get(r.workspace, "")) for r in rows], now)
    out = []
    for row in rows:
        msg = key_to_pb(row)
        msg.budget_status.extend(statuses.get(("key", row.id), []))
        out.append(msg)
    return out


def get(s: Session, key_id: str, now: int) -> pb.VirtualKey:
    return with_status(s, [get_row(s, key_id)], now)[0]


def list_keys(
    s: Session,
    workspace: str,
    include_revoked: bool,
    now: int,
    scope: frozenset[str] = frozenset(),
) -> list[pb.VirtualKey]:
    """Keys of ``workspace`` ("" = all); ``scope`` (non-empty) keeps only those workspaces'."""
    if workspace:
        workspaces.get_row(s, workspace)  # an unknown workspace is NotFound, not an empty list
    stmt = in_workspaces(select(VirtualKeyRow), VirtualKeyRow.workspace, workspace, scope)
    if not include_revoked:
        stmt = stmt.where(VirtualKeyRow.revoked_at_ms == 0)
    rows = s.exec(stmt.order_by(col(VirtualKeyRow.workspace), col(VirtualKeyRow.id))).all()
    return with_status(s, rows, now)


def update(s: Session, msg: pb.VirtualKey, mask: FieldMask, now: int) -> pb.VirtualKey:
    """Apply the masked fields. Setting ``provider`` without ``route`` in the mask switches the
    key to that provider (clearing its route), and vice versa."""
    row = get_row(s, msg.id)
    if row.revoked_at_ms:
        raise FailedPrecondition(f"key {row.id} is revoked; create a new key instead")
    before = key_to_pb(row)
    paths = resolve_mask(mask, msg, UPDATE_PATHS, "a key")
    if "name" in paths:
        row.name = validate_label(msg.name, "key name")
    workspace = workspaces.get_row(s, row.workspace)
    if "models" in paths:
        models = rules.validate_models(msg.models)
        allowlists.check_key_models(workspace, models)
        row.models_json = json.dumps(list(models))
    if "expires_at_ms" in paths:
        if msg.expires_at_ms < 0:
            raise InvalidArgument("expires_at_ms must not be negative (0 means never)")
        row.expires_at_ms = msg.expires_at_ms
    target = updated_target(paths, "", (msg.provider, msg.route), (row.provider, row.route))
    if target is not None:
        provider, route = target
        check_target(s, provider, route)
        allowlists.check_key_target(s, workspace, provider, route)
        row.provider, row.route = provider, route
    new_limits = masked_limits(limits_from_json(row.limits_json), limits_from_pb(msg.limits), paths)
    if new_limits is not None:
        row.limits_json = limits_to_json(validate_limits(new_limits, "limits"))
    return _saved(s, row, before, "key.update", now)


def revoke(s: Session, key_id: str, now: int) -> pb.VirtualKey:
    """Idempotent: revoking a revoked key keeps the original revocation time (and, being no
    change, leaves no audit row)."""
    row = get_row(s, key_id)
    if row.revoked_at_ms:
        return with_status(s, [row], now)[0]
    before = key_to_pb(row)
    row.revoked_at_ms = now
    return _saved(s, row, before, "key.revoke", now)


def _saved(
    s: Session, row: VirtualKeyRow, before: pb.VirtualKey, action: str, now: int
) -> pb.VirtualKey:
    """Write a changed ``row`` and audit ``action``; returns the key as it is now."""
    row.updated_at_ms = now
    s.add(row)
    s.flush()
    after = with_status(s, [row], now)[0]
    _audit(s, now, action, row, before, after)
    return after


def delete_key(s: Session, key_id: str, now: int) -> None:
    row = get_row(s, key_id)
    before = key_to_pb(row)
    s.delete(row)
    s.flush()
    _audit(s, now, "key.delete", row, before, None)


def _audit(
    s: Session,
    now: int,
    action: str,
    row: VirtualKeyRow,
    before: pb.VirtualKey | None,
    after: pb.VirtualKey | None,
) -> None:
    audit_log.record(
        s,
        now,
        action=action,
        resource_kind="key",
        resource=row.id,
        workspace=row.workspace,
        before=before,
        after=after,
    )


def active_users(s: Session, *, provider: str = "", route: str = "") -> list[str]:
    """Ids of non-revoked keys that target ``provider`` or ``route`` (for delete guards)."""
    stmt = select(VirtualKeyRow.id).where(VirtualKeyRow.revoked_at_ms == 0)
    if provider:
        stmt = stmt.where(VirtualKeyRow.provider == provider)
    else:
        stmt = stmt.where(VirtualKeyRow.route == route)
    return list(s.exec(stmt.order_by(col(VirtualKeyRow.id))).all())
