"""The Admin API's own tables: admin tokens and the audit log of their changes."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    Text,
)
from sqlmodel import Field, SQLModel

from controlplane.store.models.columns import json_col


class AuditRow(SQLModel, table=True):
    """One admin change: who (token id, name, role), from where (peer), what (RPC method, action,
    object) and the object before and after, as the Admin API shows it. Never a secret: see
    :mod:`controlplane.audit_log`. Written in the transaction of the change it records."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_workspace_time", "workspace", "time_ms"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    time_ms: int = Field(default=0, sa_type=BigInteger, index=True)
    actor: str = ""  # token id ("bootstrap" for the env admin token)
    actor_name: str = ""
    actor_role: str = ""
    peer: str = ""
    method: str = ""  # the RPC, e.g. "CreateKey"
    action: str = ""  # e.g. "key.create"
    resource_kind: str = ""  # workspace | key | provider | route | token
    resource: str = ""
    workspace: str = ""  # "" for global objects (providers, routes, unscoped tokens)
    before_json: str = Field(default="", sa_type=Text)
    after_json: str = Field(default="", sa_type=Text)


class AdminTokenRow(SQLModel, table=True):
    """An admin-API token (see :mod:`controlplane.domain.tokens`): only the SHA-256 of its secret
    is stored, never the secret. ``workspaces_json`` is a JSON list of workspace names (empty:
    every workspace). Revocation and expiry are timestamps (0 = not revoked / never)."""

    __tablename__ = "admin_token"

    id: str = Field(primary_key=True, max_length=32)  # "tok_…", public, safe to log
    name: str = ""
    role: str = Field(default="", max_length=32)  # admin | workspace-admin | viewer
    workspaces_json: str = Field(default="[]", sa_column=json_col("[]"))
    secret_sha256: str = Field(unique=True, index=True, max_length=64)
    prefix: str = ""
    created_at_ms: int = Field(default=0, sa_type=BigInteger)
    expires_at_ms: int = Field(default=0, sa_type=BigInteger)
    revoked_at_ms: int = Field(default=0, sa_type=BigInteger)
    last_used_at_ms: int = Field(default=0, sa_type=BigInteger)
    created_by: str = ""  # id of the creating token ("bootstrap" for the env admin token)
