"""Sign-in with Claude Code: the SSO configuration, signing keys, developers, device grants and
refresh tokens."""

from __future__ import annotations

from sqlalchemy import BigInteger, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from controlplane.store.models.columns import bool_col, int_col, json_col, text_col


class SsoConfigRow(SQLModel, table=True):
    """The company's OIDC identity provider (one row, id 1). The client secret is encrypted
    under the master key (controlplane.secrets, bound to the name "sso"); JSON lists as text."""

    __tablename__ = "sso_config"

    id: int = Field(default=1, primary_key=True)
    issuer: str = ""
    client_id: str = ""
    client_secret_ciphertext: str = Field(default="", sa_column=text_col(""))
    scopes_json: str = Field(default="[]", sa_column=json_col("[]"))
    groups_claim: str = Field(default="groups", sa_column=text_col("groups"))
    allowed_email_domains_json: str = Field(default="[]", sa_column=json_col("[]"))
    access_token_ttl_s: int = Field(default=0, sa_column=int_col())
    refresh_idle_ttl_s: int = Field(default=0, sa_column=int_col())
    session_max_ttl_s: int = Field(default=0, sa_column=int_col())
    default_provider: str = Field(default="", sa_column=text_col(""))
    default_route: str = Field(default="", sa_column=text_col(""))
    updated_at_ms: int = Field(default=0, sa_type=BigInteger)


class SigningKeyRow(SQLModel, table=True):
    """An access-token signing key (HS256): 32 random bytes encrypted under the master key
    (bound to "signing-key:<kid>"). The newest unretired key signs; retired keys stay in
    snapshots until every token they signed has expired."""

    __tablename__ = "signing_key"

    kid: str = Field(primary_key=True, max_length=32)
    key_ciphertext: str = Field(default="", sa_column=text_col(""))
    created_at_ms: int = Field(default=0, sa_type=BigInteger, index=True)
    retired_at_ms: int = Field(default=0, sa_type=BigInteger)


class DeveloperRow(SQLModel, table=True):
    """A person signed in through SSO: one per IdP identity (issuer, subject), in one workspace.
    ``limits_json`` is the developer's own override (used only when ``has_limits``)."""

    __tablename__ = "developer"
    __table_args__ = (UniqueConstraint("issuer", "subject", name="uq_developer_identity"),)

    id: str = Field(primary_key=True, max_length=32)  # "dev_…", public, safe to log
    issuer: str = ""
    subject: str = Field(default="", max_length=255)
    # No foreign key on purpose: a developer outlives the deletion of its workspace (id, spend
    # and identity are kept); it is left out of snapshots and its refresh tokens are refused
    # until the next sign-in maps it to an existing workspace.
    workspace: str = Field(default="", index=True)
    email: str = Field(default="", index=True)
    name: str = ""
    groups_json: str = Field(default="[]", sa_column=json_col("[]"))
    limits_json: str = Field(default="{}", sa_column=json_col("{}"))
    has_limits: bool = Field(default=False, sa_column=bool_col())
    created_at_ms: int = Field(default=0, sa_type=BigInteger)
    updated_at_ms: int = Field(default=0, sa_type=BigInteger)
    last_sign_in_ms: int = Field(default=0, sa_type=BigInteger)
    disabled_at_ms: int = Field(default=0, sa_type=BigInteger)
    # Access tokens issued before this instant are refused by data planes (bumped on disable).
    tokens_not_before_ms: int = Field(default=0, sa_type=BigInteger)


class DeviceGrantRow(SQLModel, table=True):
    """One RFC 8628 device authorization and, once the user confirmed the code in a browser,
    that browser's sign-in at the IdP. Secrets are stored as SHA-256 (device code, state,
    browser binding) or encrypted (PKCE verifier). Deleted some time after it expires."""

    __tablename__ = "device_grant"

    device_code_sha256: str = Field(primary_key=True, max_length=64)
    user_code: str = Field(index=True, max_length=16)  # normalised: 8 letters, no dash
    # pending | approved | denied | consumed
    status: str = Field(default="pending", max_length=16)
    created_at_ms: int = Field(default=0, sa_type=BigInteger)
    expires_at_ms: int = Field(default=0, sa_type=BigInteger, index=True)
    interval_s: int = 5
    last_poll_ms: int = Field(default=0, sa_type=BigInteger)
    public_url: str = ""
    client_ip: str = ""
    developer_id: str = ""  # once approved
    denial: str = Field(default="", sa_type=Text)  # readable reason once denied
    # The browser step (set by BeginBrowser).
    state_sha256: str = Field(default="", index=True, max_length=64)
    nonce: str = ""
    pkce_verifier_ciphertext: str = Field(default="", sa_type=Text)
    browser_secret_sha256: str = Field(default="", max_length=64)
    browser_started_at_ms: int = Field(default=0, sa_type=BigInteger)


class RefreshTokenRow(SQLModel, table=True):
    """A refresh token (SHA-256 only). Single use: using it sets ``used_at_ms`` and issues the
    next token of the same family; presenting a used token again revokes the whole family."""

    __tablename__ = "refresh_token"

    token_sha256: str = Field(primary_key=True, max_length=64)
    family_id: str = Field(index=True, max_length=40)
    developer_id: str = Field(index=True, max_length=32)
    created_at_ms: int = Field(default=0, sa_type=BigInteger)
    expires_at_ms: int = Field(default=0, sa_type=BigInteger)  # idle expiry of this token
    family_expires_at_ms: int = Field(default=0, sa_type=BigInteger)  # absolute session end
    used_at_ms: int = Field(default=0, sa_type=BigInteger)
    revoked_at_ms: int = Field(default=0, sa_type=BigInteger)
