"""The audit log: every admin change — who, what, before/after, when, from where — recorded in
the change's transaction and read back for ListAudit/TailAudit.

Contract:

* :func:`record` writes one ``audit_event`` row in the caller's session, i.e. in the transaction
  of the change it describes: a rolled-back change leaves no row, a committed one always has one.
  Actor and peer come from :func:`controlplane.identity.principal`, the RPC name from
  :data:`controlplane.identity.current_method`.
* ``before``/``after`` are the object as the Admin API shows it (JSON, proto field names, sorted
  keys), minus output-only noise (``budget_status``). Only the public resource messages are
  accepted (:data:`AuditedMessage`); anything else — ``CreateKeyResponse``,
  ``CreateTokenResponse``, ``ProviderSecret``, a request carrying ``api_key`` — is a
  ``TypeError``, so a secret cannot reach the log by accident.
* Live followers (``TailAudit``) get events from the :data:`~controlplane.fanout.AuditHub` only *after* the transaction
  commits, from every control-plane replica: the fleet's audit feed
  (:mod:`controlplane.fleet.feeds`) reads committed rows by id when the fleet bus announces them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from google.protobuf import json_format
from google.protobuf.message import Message
from sqlmodel import Session, col, select

from controlplane.domain.errors import InvalidArgument
from controlplane.identity import current_method, principal
from controlplane.store.models.admin import AuditRow
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from gwapi.vocab import TEXT_FIELDS
from gwcommon.audit_kinds import RESOURCE_KINDS

# The messages an audit row may contain. None of them carries a secret (keys hold only a
# prefix, providers only ``has_secret``, tokens only a prefix).
# The SSO configuration shows only ``has_client_secret``; a developer has no secret at all.
AuditedMessage: TypeAlias = (
    pb.Workspace
    | pb.VirtualKey
    | pb.Provider
    | pb.Route
    | apb.AdminToken
    | apb.TelemetryDestination  # header names only: the values never leave the database
    | apb.SsoConfig
    | pb.Developer
)
_AUDITED_TYPES = (
    pb.Workspace,
    pb.VirtualKey,
    pb.Provider,
    pb.Route,
    apb.AdminToken,
    apb.TelemetryDestination,
    apb.SsoConfig,
    pb.Developer,
)
# Output-only fields that change without an admin change (spend, token use, sessions), stripped.
_NOISE = ("budget_status", "last_used_at_ms", "active_sessions")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def to_json(msg: AuditedMessage | None) -> str:
    """The message as stored in ``before_json``/``after_json`` ("" for None)."""
    if msg is None:
        return ""
    if not isinstance(msg, _AUDITED_TYPES):
        # Refuse rather than filter: a new message type must be vetted for secrets first.
        raise TypeError(f"audit log refuses {type(msg).__name__}: only public resource messages")
    clean: Message = type(msg)()
    clean.CopyFrom(msg)
    # The vocabulary's typed fields repeat the text ones (gwapi.vocab): recorded once, as before.
    for name in (*_NOISE, *TEXT_FIELDS):
        if name in clean.DESCRIPTOR.fields_by_name:
            clean.ClearField(name)
    return json_format.MessageToJson(
        clean, preserving_proto_field_name=True, sort_keys=True, indent=None
    )


@dataclass(frozen=True)
class Actor:
    """Who the row names when it is not the RPC's caller: a developer signing in through a
    data plane (role ``developer``, peer = the browser's address), for instance."""

    id: str
    name: str
    role: str
    peer: str = ""


def record(
    s: Session,
    now: int,
    *,
    action: str,
    resource_kind: str,
    resource: str,
    workspace: str = "",
    before: AuditedMessage | None,
    after: AuditedMessage | None,
    actor: Actor | None = None,
) -> None:
    """Add the audit row for a change to ``s`` (same transaction as the change itself).
    ``actor`` (optional) names someone other than the caller's principal."""
    if resource_kind not in RESOURCE_KINDS:
        raise ValueError(f"unknown audit resource kind {resource_kind!r}")
    if actor is None:
        who = principal()
        actor = Actor(who.id, who.name, who.role.value, who.peer)
    row = AuditRow(
        time_ms=now,
        actor=actor.id,
        actor_name=actor.name,
        actor_role=actor.role,
        peer=actor.peer,
        method=current_method.get(),
        action=action,
        resource_kind=resource_kind,
        resource=resource,
        workspace=workspace,
        before_json=to_json(before),
        after_json=to_json(after),
    )
    s.add(row)
    s.flush()


def to_event(row: AuditRow) -> apb.AuditEvent:
    return apb.AuditEvent(
        id=row.id or 0,
        time_ms=row.time_ms,
        actor=row.actor,
        actor_name=row.actor_name,
        actor_role=row.actor_role,
        peer=row.peer,
        method=row.method,
        action=row.action,
        resource_kind=row.resource_kind,
        resource=row.resource,
        workspace=row.workspace,
        before_json=row.before_json,
        after_json=row.after_json,
    )


def visible(ev: apb.AuditEvent, workspaces: frozenset[str] | None, workspace: str = "") -> bool:
    """Whether a principal scoped to ``workspaces`` (None = unscoped) sees ``ev``, filtered to
    ``workspace`` when given. Global objects (workspace "") are for unscoped principals only."""
    if workspace and ev.workspace != workspace:
        return False
    return workspaces is None or ev.workspace in workspaces


def validate_filter(workspace: str, resource_kind: str, limit: int) -> int:
    """Check a List/Tail filter; returns the effective limit (0 → ``DEFAULT_LIMIT``)."""
    if resource_kind and resource_kind not in RESOURCE_KINDS:
        raise InvalidArgument(
            f"unknown resource kind {resource_kind!r}: use one of {', '.join(RESOURCE_KINDS)}"
        )
    if limit < 0 or limit > MAX_LIMIT:
        raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT} (0 = {DEFAULT_LIMIT})")
    if workspace and len(workspace) > 63:
        raise InvalidArgument("workspace name is longer than 63 characters")
    return limit or DEFAULT_LIMIT


def list_events(
    s: Session,
    *,
    workspaces: frozenset[str] | None,
    workspace: str = "",
    since_ms: int = 0,
    limit: int = DEFAULT_LIMIT,
    resource_kind: str = "",
) -> list[apb.AuditEvent]:
    """Events newest first. ``workspaces``: the caller's scope (None = every workspace and the
    global objects; a set = only events of those workspaces)."""
    limit = validate_filter(workspace, resource_kind, limit)
    q = select(AuditRow)
    if workspaces is not None:
        if not workspaces:
            return []
        q = q.where(col(AuditRow.workspace).in_(sorted(workspaces)))
    if workspace:
        q = q.where(AuditRow.workspace == workspace)
    if since_ms:
        q = q.where(col(AuditRow.time_ms) >= since_ms)
    if resource_kind:
        q = q.where(AuditRow.resource_kind == resource_kind)
    q = q.order_by(col(AuditRow.time_ms).desc(), col(AuditRow.id).desc()).limit(limit)
    return [to_event(r) for r in s.exec(q).all()]
