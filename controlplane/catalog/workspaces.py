"""Workspaces: the budget and rate-limit scope that keys belong to.

Settings besides limits: ``timezone`` (calendar budget periods), ``redis_failure`` (what data
planes do while Redis is unreachable), ``alert_webhook`` and ``alert_format``. Get and List also report each
budget's current period and spend (``budget_status``), computed by
:mod:`controlplane.usage.spend` like the snapshot's seeds. Access controls (``allowed_providers``,
``allowed_routes``, ``allowed_models``): :mod:`controlplane.catalog.allowlists`. Sign-in fields
(``sso_groups``, member limits and target, managed settings): :mod:`controlplane.catalog.members`.

Deleting a workspace keeps the developers that signed in to it (their id, identity and spend):
they are left out of snapshots and their refresh tokens are refused until a new sign-in maps
them to an existing workspace.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from controlplane import audit_log
from controlplane.catalog import allowlists, members
from controlplane.catalog.common import (
    LIMITS_PATHS,
    describe,
    get_named,
    masked_limits,
    resolve_mask,
)
from controlplane.catalog.convert import (
    key_to_pb,
    limits_from_pb,
    log_bodies_from_pb,
    redis_failure_from_pb,
    workspace_to_pb,
)
from controlplane.domain.errors import AlreadyExists, FailedPrecondition
from controlplane.domain.limits import limits_from_json, limits_to_json, validate_limits
from controlplane.domain.names import validate_label, validate_slug, validate_timezone
from controlplane.domain.workspaces import (
    validate_alert_format,
    validate_alert_webhook,
    validate_log_bodies,
    validate_log_body_max_bytes,
    validate_log_retention_days,
    validate_min_client_version,
    validate_redis_failure,
)
from controlplane.store.models.config import VirtualKeyRow, WorkspaceRow
from controlplane.usage.spend import statuses_by_scope, workspace_scope
from controlplane.usage.totals import retime_workspace
from gwapi.v1 import common_pb2 as pb

UPDATE_PATHS = (
    "description",
    "timezone",
    "redis_failure",
    "alert_webhook",
    "alert_format",
    "min_client_version",
    "log_bodies",
    "log_body_max_bytes",
    "log_retention_days",
    *allowlists.UPDATE_PATHS,
    *LIMITS_PATHS,
    *members.UPDATE_PATHS,
)


def get_row(s: Session, name: str) -> WorkspaceRow:
    return get_named(s, WorkspaceRow, "workspace", name)


def create(
    s: Session, msg: pb.Workspace, now: int, *, allow_internal_webhooks: bool = False
) -> pb.Workspace:
    name = validate_slug(msg.name, "workspace name")
    row = WorkspaceRow(
        name=name,
        description=validate_label(msg.description, "description", max_len=1000),
        limits_json=limits_to_json(validate_limits(limits_from_pb(msg.limits), "limits")),
        timezone=validate_timezone(msg.timezone),
        redis_failure=validate_redis_failure(redis_failure_from_pb(msg)),
        alert_webhook=validate_alert_webhook(
            msg.alert_webhook, allow_internal=allow_internal_webhooks
        ),
        alert_format=validate_alert_format(msg.alert_format),
        min_client_version=validate_min_client_version(msg.min_client_version),
        log_bodies=validate_log_bodies(log_bodies_from_pb(msg)),
        log_body_max_bytes=validate_log_body_max_bytes(msg.log_body_max_bytes),
        log_retention_days=validate_log_retention_days(msg.log_retention_days),
        created_at_ms=now,
        updated_at_ms=now,
    )
    allowlists.store_allowed(s, row, msg, allowlists.UPDATE_PATHS)
    members.store(s, row, msg, members.CREATE_PATHS, now)
    if s.get(WorkspaceRow, name) is not None:
        raise AlreadyExists(f"workspace {name!r} already exists")
    s.add(row)
    try:
        s.flush()
    except IntegrityError:  # a concurrent create won the race
        raise AlreadyExists(f"workspace {name!r} already exists") from None
    created = with_status(s, [row], now)[0]
    _audit(s, now, "workspace.create", name, None, created)
    return created


def with_status(s: Session, rows: Sequence[WorkspaceRow], now: int) -> list[pb.Workspace]:
    """The workspaces with ``budget_status`` filled in (one spend query per period window)."""
    statuses = statuses_by_scope(s, [workspace_scope(r) for r in rows], now)
    out = []
    for row in rows:
        msg = workspace_to_pb(row)
        msg.budget_status.extend(statuses.get(("workspace", row.name), []))
        out.append(msg)
    return out


def get(s: Session, name: str, now: int) -> pb.Workspace:
    return with_status(s, [get_row(s, name)], now)[0]


def list_all(s: Session, now: int, scope: frozenset[str] = frozenset()) -> list[pb.Workspace]:
    """Every workspace, or (``scope`` non-empty) only those named in it."""
    stmt = select(WorkspaceRow)
    if scope:
        stmt = stmt.where(col(WorkspaceRow.name).in_(sorted(scope)))
    rows = s.exec(stmt.order_by(col(WorkspaceRow.name))).all()
    return with_status(s, rows, now)


def update(
    s: Session,
    msg: pb.Workspace,
    mask: FieldMask,
    now: int,
    *,
    allow_internal_webhooks: bool = False,
) -> pb.Workspace:
    row = get_row(s, msg.name)
    before = workspace_to_pb(row)
    paths = resolve_mask(mask, msg, UPDATE_PATHS, "a workspace")
    if "description" in paths:
        row.description = validate_label(msg.description, "description", max_len=1000)
    old_tz = row.timezone or ""
    if "timezone" in paths:
        row.timezone = validate_timezone(msg.timezone)
    if "redis_failure" in paths:
        row.redis_failure = validate_redis_failure(redis_failure_from_pb(msg))
    if "alert_webhook" in paths:
        row.alert_webhook = validate_alert_webhook(
            msg.alert_webhook, allow_internal=allow_internal_webhooks
        )
    if "alert_format" in paths:
        row.alert_format = validate_alert_format(msg.alert_format)
    if "min_client_version" in paths:
        row.min_client_version = validate_min_client_version(msg.min_client_version)
    if "log_bodies" in paths:
        row.log_bodies = validate_log_bodies(log_bodies_from_pb(msg))
    if "log_body_max_bytes" in paths:
        row.log_body_max_bytes = validate_log_body_max_bytes(msg.log_body_max_bytes)
    if "log_retention_days" in paths:
        row.log_retention_days = validate_log_retention_days(msg.log_retention_days)
    # Narrowing is allowed while keys fall outside the new lists: data planes refuse those keys
    # (403) until they are updated; `gwctl workspaces show` lists them.
    allowlists.store_allowed(s, row, msg, paths)
    members.store(s, row, msg, paths, now)
    current = limits_from_json(row.limits_json)
    new_limits = masked_limits(current, limits_from_pb(msg.limits), paths)
    if new_limits is not None:
        row.limits_json = limits_to_json(validate_limits(new_limits, "limits"))
    row.updated_at_ms = now
    s.add(row)
    s.flush()
    if (row.timezone or "") != old_tz:  # budget windows moved: recount the current ones
        retime_workspace(s, row.name, row.timezone or "", now)
    updated = with_status(s, [row], now)[0]
    _audit(s, now, "workspace.update", row.name, before, updated)
    return updated


def delete_workspace(s: Session, name: str, force: bool, now: int) -> None:
    """Delete a workspace. Active keys block it unless ``force`` (which deletes them too);
    revoked keys go with the workspace either way. The audit log gets a ``key.delete`` row per
    key that goes with it, then the ``workspace.delete`` row."""
    before = workspace_to_pb(get_row(s, name))
    active = s.exec(
        select(VirtualKeyRow.id)
        .where(VirtualKeyRow.workspace == name, VirtualKeyRow.revoked_at_ms == 0)
        .order_by(col(VirtualKeyRow.id))
    ).all()
    if active and not force:
        raise FailedPrecondition(
            f"workspace {name!r} still has {len(active)} active key(s): {describe(list(active))}; "
            "revoke or delete them first, or delete with force (which deletes its keys too)"
        )
    doomed = s.exec(
        select(VirtualKeyRow).where(VirtualKeyRow.workspace == name).order_by(col(VirtualKeyRow.id))
    ).all()
    for key in doomed:
        audit_log.record(
            s,
            now,
            action="key.delete",
            resource_kind="key",
            resource=key.id,
            workspace=name,
            before=key_to_pb(key),
            after=None,
        )
    s.exec(delete(VirtualKeyRow).where(col(VirtualKeyRow.workspace) == name))
    s.exec(delete(WorkspaceRow).where(col(WorkspaceRow.name) == name))
    _audit(s, now, "workspace.delete", name, before, None)


def _audit(
    s: Session,
    now: int,
    action: str,
    name: str,
    before: pb.Workspace | None,
    after: pb.Workspace | None,
) -> None:
    audit_log.record(
        s,
        now,
        action=action,
        resource_kind="workspace",
        resource=name,
        workspace=name,
        before=before,
        after=after,
    )
