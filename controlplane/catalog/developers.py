"""Developers: people signed in through SSO, one per identity (issuer, subject).

Contract:

* A developer is created at its first sign-in and updated at every later one
  (:func:`record_sign_in`: email, name, groups, workspace, ``last_sign_in_ms``); its id, and so
  its spend, survives re-logins, laptops and changes of workspace. Audited as
  ``developer.sign_in`` with the developer as the actor.
* :func:`find_row` takes a ``dev_…`` id or an email address (case-insensitive). An email shared
  by several developers (say after a change of identity provider) is FAILED_PRECONDITION listing
  their ids.
* Responses carry ``effective_limits`` (own override, else the workspace's member limits),
  ``budget_status`` per effective budget (like keys, periods in the workspace's time zone) and
  ``active_sessions`` (refresh-token families still usable).
* :func:`update` changes the developer's own limits (``limits``, ``limits.<field>``; a first
  override starts from the workspace's member limits, so naming one field keeps the others) or
  drops them (``clear_limits``). :func:`disable` bumps ``tokens_not_before_ms`` to now (every
  access token issued so far is refused by data planes) and revokes every refresh token;
  :func:`enable` lets the person sign in again (old tokens stay dead). All three are audited.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlmodel import Session, col, select

from controlplane import audit_log
from controlplane.catalog.common import LIMITS_PATHS, in_workspaces, masked_limits, resolve_mask
from controlplane.catalog.convert import developer_to_pb, effective_limits, limits_from_pb
from controlplane.domain.errors import FailedPrecondition, InvalidArgument, NotFound, shown
from controlplane.domain.limits import limits_to_json, validate_limits
from controlplane.signin import tokens
from controlplane.signin.admission import Identity
from controlplane.signin.codes import DEVELOPER_ID_RE, new_developer_id
from controlplane.store.models.config import WorkspaceRow
from controlplane.store.models.signin import DeveloperRow
from controlplane.usage.spend import developer_scope, statuses_by_scope
from controlplane.usage.totals import recompute_current
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb

UPDATE_PATHS = LIMITS_PATHS
MAX_LOOKUP_CHARS = 320


def _matching(s: Session, id_or_email: str) -> list[DeveloperRow]:
    text = id_or_email.strip()
    if not text:
        raise InvalidArgument("a developer id (dev_…) or email address is required")
    if len(text) > MAX_LOOKUP_CHARS:
        raise InvalidArgument(f"{shown(text)} is not a developer id or email address")
    if DEVELOPER_ID_RE.fullmatch(text):
        row = s.get(DeveloperRow, text)
        return [row] if row is not None else []
    if "@" not in text:
        raise InvalidArgument(
            f"{shown(text)} is neither a developer id (dev_ + 16 hex) nor an email address"
        )
    # Emails are stored in lower case (admission.identity_of): the index serves this lookup.
    stmt = select(DeveloperRow).where(DeveloperRow.email == text.lower())
    return list(s.exec(stmt.order_by(col(DeveloperRow.id))).all())


def find_row(s: Session, id_or_email: str) -> DeveloperRow:
    rows = _matching(s, id_or_email)
    if not rows:
        raise NotFound(f"developer {id_or_email.strip()[:MAX_LOOKUP_CHARS]!r} not found")
    if len(rows) > 1:
        raise FailedPrecondition(
            f"{len(rows)} developers have the email {id_or_email.strip()!r} "
            f"({', '.join(r.id for r in rows)}): name one by its id"
        )
    return rows[0]


def workspace_of(s: Session, id_or_email: str) -> str | None:
    """The workspace a request about this developer targets (for access rules): ``None`` when
    the developer does not exist, or several in different workspaces match."""
    try:
        rows = _matching(s, id_or_email)
    except InvalidArgument:
        return None
    spaces = {r.workspace for r in rows}
    return spaces.pop() if len(spaces) == 1 else None


def with_status(s: Session, rows: Sequence[DeveloperRow], now: int) -> list[pb.Developer]:
    spaces = {w.name: w for w in s.exec(select(WorkspaceRow)).all()} if rows else {}
    scopes = [developer_scope(r, spaces.get(r.workspace)) for r in rows]
    statuses = statuses_by_scope(s, [sc for sc in scopes if sc.budgets], now)
    sessions = tokens.active_sessions(s, [r.id for r in rows], now)
    out = []
    for row in rows:
        msg = developer_to_pb(row, spaces.get(row.workspace))
        msg.budget_status.extend(statuses.get(("developer", row.id), []))
        msg.active_sessions = sessions.get(row.id, 0)
        out.append(msg)
    return out


def get(s: Session, id_or_email: str, now: int) -> pb.Developer:
    return with_status(s, [find_row(s, id_or_email)], now)[0]


def list_developers(
    s: Session,
    workspace: str,
    include_disabled: bool,
    now: int,
    scope: frozenset[str] = frozenset(),
) -> list[pb.Developer]:
    """Developers of ``workspace`` ("" = all) by workspace then email; ``scope`` (non-empty)
    keeps only those workspaces' developers."""
    stmt = in_workspaces(select(DeveloperRow), DeveloperRow.workspace, workspace, scope)
    if not include_disabled:
        stmt = stmt.where(DeveloperRow.disabled_at_ms == 0)
    order = (col(DeveloperRow.workspace), col(DeveloperRow.email), col(DeveloperRow.id))
    return with_status(s, s.exec(stmt.order_by(*order)).all(), now)


def _shown(s: Session, row: DeveloperRow) -> pb.Developer:
    """As an audit row shows it (no spend, no sessions)."""
    return developer_to_pb(row, s.get(WorkspaceRow, row.workspace))


def update(s: Session, req: apb.UpdateDeveloperRequest, now: int) -> pb.Developer:
    row = find_row(s, req.developer.id)
    before = _shown(s, row)
    if req.clear_limits:
        if req.update_mask.paths:
            raise InvalidArgument("clear_limits drops the override: send it without update_mask")
        row.limits_json, row.has_limits = "{}", False
    else:
        paths = resolve_mask(req.update_mask, req.developer, UPDATE_PATHS, "a developer")
        base = effective_limits(row, s.get(WorkspaceRow, row.workspace))
        new = masked_limits(base, limits_from_pb(req.developer.limits), paths)
        if new is None:  # pragma: no cover - every update path is a limits path
            raise InvalidArgument("nothing to update")
        row.limits_json = limits_to_json(validate_limits(new, "limits"))
        row.has_limits = True
    row.updated_at_ms = now
    s.add(row)
    s.flush()
    _audit(s, now, "developer.update", row, before, _shown(s, row))
    return with_status(s, [row], now)[0]


def disable(s: Session, id_or_email: str, now: int) -> pb.Developer:
    """Idempotent: disabling a disabled developer changes nothing (and is not audited)."""
    row = find_row(s, id_or_email)
    if not row.disabled_at_ms:
        before = _shown(s, row)
        row.disabled_at_ms = now
        row.tokens_not_before_ms = max(row.tokens_not_before_ms, now)
        row.updated_at_ms = now
        s.add(row)
        tokens.revoke_developer(s, row.id, now)
        s.flush()
        _audit(s, now, "developer.disable", row, before, _shown(s, row))
    return with_status(s, [row], now)[0]


def enable(s: Session, id_or_email: str, now: int) -> pb.Developer:
    row = find_row(s, id_or_email)
    if row.disabled_at_ms:
        before = _shown(s, row)
        row.disabled_at_ms = 0
        row.updated_at_ms = now
        s.add(row)
        s.flush()
        _audit(s, now, "developer.enable", row, before, _shown(s, row))
    return with_status(s, [row], now)[0]


def by_identity(s: Session, issuer: str, subject: str) -> DeveloperRow | None:
    return s.exec(
        select(DeveloperRow).where(DeveloperRow.issuer == issuer, DeveloperRow.subject == subject)
    ).first()


def record_sign_in(
    s: Session, identity: Identity, workspace: str, now: int, peer: str = ""
) -> DeveloperRow:
    """Create or update the developer of ``identity`` in ``workspace`` (the caller checked that
    it is not disabled). A concurrent first sign-in of the same identity makes the insert fail
    with ``IntegrityError``: the caller retries, and then finds the row."""
    row = by_identity(s, identity.issuer, identity.subject)
    before = _shown(s, row) if row is not None else None
    if row is None:
        row = DeveloperRow(
            id=new_developer_id(),
            issuer=identity.issuer,
            subject=identity.subject,
            workspace=workspace,
            created_at_ms=now,
        )
    row.email = identity.email
    row.name = identity.name
    row.groups_json = json.dumps(list(identity.groups))
    moved = before is not None and row.workspace != workspace
    row.workspace = workspace
    row.last_sign_in_ms = now
    row.updated_at_ms = now
    s.add(row)
    s.flush()  # IntegrityError on a concurrent first sign-in (see above)
    if moved:  # its budget windows now follow the new workspace's time zone
        ws = s.get(WorkspaceRow, workspace)
        recompute_current(s, [("developer", row.id, ws.timezone if ws else "")], now)
    _audit(
        s,
        now,
        "developer.sign_in",
        row,
        before,
        _shown(s, row),
        actor=audit_log.Actor(id=row.id, name=row.email, role="developer", peer=peer),
    )
    return row


def _audit(
    s: Session,
    now: int,
    action: str,
    row: DeveloperRow,
    before: pb.Developer | None,
    after: pb.Developer | None,
    actor: audit_log.Actor | None = None,
) -> None:
    audit_log.record(
        s,
        now,
        action=action,
        resource_kind="developer",
        resource=row.id,
        workspace=row.workspace,
        before=before,
        after=after,
        actor=actor,
    )
