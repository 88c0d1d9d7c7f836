"""Admin tokens in the database: create (secret shown once), list, revoke, look up by hash.

Contract: the table holds the SHA-256 of each secret, never the secret. Workspaces named by a
token must exist when it is created (INVALID_ARGUMENT otherwise); a workspace deleted later
simply stops matching anything. Revocation is a timestamp and idempotent.
"""

from __future__ import annotations

import json

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from controlplane import audit_log
from controlplane.domain import tokens as rules
from controlplane.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from controlplane.identity import Principal, TokenRole
from controlplane.store.models.admin import AdminTokenRow
from controlplane.store.models.config import WorkspaceRow
from gwapi.v1 import admin_pb2 as apb


def to_pb(row: AdminTokenRow) -> apb.AdminToken:
    return apb.AdminToken(
        id=row.id,
        name=row.name,
        role=row.role,
        workspaces=json.loads(row.workspaces_json or "[]"),
        prefix=row.prefix,
        created_at_ms=row.created_at_ms,
        expires_at_ms=row.expires_at_ms,
        revoked_at_ms=row.revoked_at_ms,
        created_by=row.created_by,
        last_used_at_ms=row.last_used_at_ms,
    )


def principal_of(row: AdminTokenRow, peer: str = "") -> Principal:
    return Principal(
        id=row.id,
        name=row.name,
        role=TokenRole(row.role),
        workspaces=frozenset(json.loads(row.workspaces_json or "[]")),
        peer=peer,
    )


def principal_to_pb(p: Principal) -> apb.AdminToken:
    """WhoAmI for principals without a row (the bootstrap admin token)."""
    return apb.AdminToken(id=p.id, name=p.name, role=p.role.value, workspaces=sorted(p.workspaces))


def _check_workspaces_exist(s: Session, names: tuple[str, ...]) -> None:
    if not names:
        return
    found = set(s.exec(select(WorkspaceRow.name).where(col(WorkspaceRow.name).in_(names))).all())
    missing = [n for n in names if n not in found]
    if missing:
        raise InvalidArgument(
            f"workspace {missing[0]!r} does not exist: create it first "
            "(a token can only name existing workspaces)"
        )


def create(
    s: Session, req: apb.CreateTokenRequest, now: int, created_by: str
) -> tuple[apb.AdminToken, str]:
    """Mint a token; returns the stored token and the secret (to be shown once, never stored)."""
    spec = rules.parse_spec(req.name, req.role, req.workspaces, req.ttl_seconds)
    _check_workspaces_exist(s, spec.workspaces)
    minted = rules.generate_token()
    row = AdminTokenRow(
        id=minted.id,
        name=spec.name,
        role=spec.role.value,
        workspaces_json=json.dumps(list(spec.workspaces)),
        secret_sha256=minted.secret_sha256,
        prefix=minted.prefix,
        created_at_ms=now,
        expires_at_ms=rules.expires_at_ms(now, spec.ttl_s),
        created_by=created_by,
    )
    s.add(row)
    try:
        s.flush()
    except IntegrityError:  # 2^64 ids, 2^256 secrets: a collision means a bug, not bad luck
        raise FailedPrecondition("could not mint a unique token; try again") from None
    token = to_pb(row)
    _audit(s, now, "token.create", row, before=None, after=token)
    return token, minted.secret


def get_row(s: Session, token_id: str) -> AdminTokenRow:
    rules.validate_token_id(token_id)
    row = s.get(AdminTokenRow, token_id)
    if row is None:
        raise NotFound(f"token {token_id!r} not found")
    return row


def list_tokens(s: Session, include_revoked: bool) -> list[apb.AdminToken]:
    stmt = select(AdminTokenRow)
    if not include_revoked:
        stmt = stmt.where(AdminTokenRow.revoked_at_ms == 0)
    rows = s.exec(stmt.order_by(col(AdminTokenRow.created_at_ms), col(AdminTokenRow.id))).all()
    return [to_pb(r) for r in rows]


def revoke(s: Session, token_id: str, now: int) -> apb.AdminToken:
    """Idempotent: revoking a revoked token keeps the original revocation time."""
    row = get_row(s, token_id)
    if row.revoked_at_ms:
        return to_pb(row)
    before = to_pb(row)
    row.revoked_at_ms = now
    s.add(row)
    s.flush()
    after = to_pb(row)
    _audit(s, now, "token.revoke", row, before=before, after=after)
    return after


def lookup(s: Session, secret_sha256: str) -> AdminTokenRow | None:
    """The token whose secret hashes to ``secret_sha256`` (revoked and expired ones included)."""
    return s.exec(select(AdminTokenRow).where(AdminTokenRow.secret_sha256 == secret_sha256)).first()


def touch(s: Session, token_id: str, now: int) -> None:
    """Record a use (the authenticator calls this at most about once a minute per token)."""
    row = s.get(AdminTokenRow, token_id)
    if row is not None and row.last_used_at_ms < now:
        row.last_used_at_ms = now
        s.add(row)


def _audit(
    s: Session,
    now: int,
    action: str,
    row: AdminTokenRow,
    *,
    before: apb.AdminToken | None,
    after: apb.AdminToken | None,
) -> None:
    """Record the change in the audit log, in this transaction (the message has no secret).
    A token of exactly one workspace is filed under it (its workspace-admins see it)."""
    workspaces = json.loads(row.workspaces_json or "[]")
    audit_log.record(
        s,
        now,
        action=action,
        resource_kind="token",
        resource=row.id,
        workspace=workspaces[0] if len(workspaces) == 1 else "",
        before=before,
        after=after,
    )
