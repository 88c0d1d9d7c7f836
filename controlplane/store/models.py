"""SQLModel tables: the control plane's system of record.

Conventions: times are Unix milliseconds (BIGINT); money is integer micro-dollars (BIGINT);
structured values (limits, options, targets, metadata) are JSON *text*, so the same schema runs on
SQLite and PostgreSQL. Virtual keys hold only the SHA-256 of their secret.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import false as sql_false
from sqlmodel import Field, SQLModel

# Every table registers on this metadata; db.create_all() uses it.
metadata = SQLModel.metadata


def _json(default: str) -> Column:  # type: ignore[type-arg]
    return Column(Text, nullable=False, default=default, server_default=default)


def _text(default: str = "") -> Column:  # type: ignore[type-arg]
    """A NOT NULL text column with a server default, so it can be added to an existing table."""
    return Column(String, nullable=False, default=default, server_default=default)


def _int(default: int = 0) -> Column:  # type: ignore[type-arg]
    """A NOT NULL integer column with a server default (addable to an existing table)."""
    return Column(Integer, nullable=False, default=default, server_default=str(default))


def _bool() -> Column:  # type: ignore[type-arg]
    """A NOT NULL boolean, false by default (addable to an existing table)."""
    return Column(Boolean, nullable=False, default=False, server_default=sql_false())


class WorkspaceRow(SQLModel, table=True):
    __tablename__ = "workspace"

    name: str = Field(primary_key=True, max_length=63)
    description: str = ""
    limits_json: str = Field(default="{}", sa_column=_json("{}"))
    timezone: str = ""
    created_at_ms: int = Field(default=0, sa_type=BigInteger)
    updated_at_ms: int = Field(default=0, sa_type=BigInteger)
    # "closed" | "open" ("" in rows written before the column existed: closed).
    redis_failure: str = Field(default="closed", sa_column=_text("closed"))
    alert_webhook: str = Field(default="", sa_column=_text(""))
    # The body POSTed to alert_webhook: "generic" | "slack".
    alert_format: str = Field(default="generic", sa_column=_text("generic"))
    min_client_version: str = Field(default="", sa_column=_text(""))
    # Request logging: none | metadata | full, the per-body cap, the retention of stored bodies.
    log_bodies: str = Field(default="none", sa_column=_text("none"))
    log_body_max_bytes: int = Field(default=262144, sa_column=_int(262144))
    log_retention_days: int = Field(default=30, sa_column=_int(30))
    # Access controls (JSON lists of names / glob patterns; [] = everything): gwcommon.allowlists.
    allowed_providers_json: str = Field(default="[]", sa_column=_json("[]"))
    allowed_routes_json: str = Field(default="[]", sa_column=_json("[]"))
    allowed_models_json: str = Field(default="[]", sa_column=_json("[]"))
    # Sign-in with Claude Code (see gwapi Workspace): which developers land here, their limits
    # and target, and the managed settings served to them.
    sso_groups_json: str = Field(default="[]", sa_column=_json("[]"))
    sso_priority: int = Field(default=0, sa_column=_int())
    member_limits_json: str = Field(default="{}", sa_column=_json("{}"))
    member_provider: str = Field(default="", sa_column=_text(""))
    member_route: str = Field(default="", sa_column=_text(""))
    managed_settings_json: str = Field(
        default="", sa_column=Column(Text, nullable=False, default="", server_default="")
    )
    managed_settings_checksum: str = Field(default="", sa_column=_text(""))
    managed_settings_updated_at_ms: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )


class VirtualKeyRow(SQLModel, table=True):
    __tablename__ = "virtual_key"

    id: str = Field(primary_key=True, max_length=32)
    secret_sha256: str = Field(unique=True, index=True, max_length=64)
    prefix: str = ""
    name: str = ""
    workspace: str = Field(foreign_key="workspace.name", index=True)
    limits_json: str = Field(default="{}", sa_column=_json("{}"))
    # Exactly one of provider / route is non-empty. No foreign key: "" means unset, and deletes
    # are guarded in the store with a message naming the dependants.
    provider: str = Field(default="", index=True)
    route: str = Field(default="", index=True)
    models_json: str = Field(default="[]", sa_column=_json("[]"))
    expires_at_ms: int = Field(default=0, sa_type=BigInteger)
    revoked_at_ms: int = Field(default=0, sa_type=BigInteger)
    created_at_ms: int = Field(default=0, sa_type=BigInteger)
    updated_at_ms: int = Field(default=0, sa_type=BigInteger)


class ProviderRow(SQLModel, table=True):
    __tablename__ = "provider"

    name: str = Field(primary_key=True, max_length=63)
    kind: str
    base_url: str = ""
    api_key_env: str = ""
    options_json: str = Field(default="{}", sa_column=_json("{}"))
    created_at_ms: int = Field(default=0, sa_type=BigInteger)
    updated_at_ms: int = Field(default=0, sa_type=BigInteger)
    # The provider's API key encrypted under the master key ("v1:<key id>:<base64>", see
    # controlplane.secrets); "" = none stored (the data plane's api_key_env applies).
    secret_ciphertext: str = Field(default="", sa_column=_text(""))
    secret_rotated_at_ms: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )


class RouteRow(SQLModel, table=True):
    __tablename__ = "route"

    name: str = Field(primary_key=True, max_length=63)
    mode: str = "fallback"
    # [{"provider": str, "weight": int, "model": str}, ...] in fallback order.
    targets_json: str = Field(default="[]", sa_column=_json("[]"))
    retries: int = 0
    retry_on_json: str = Field(default="[]", sa_column=_json("[]"))
    timeout_connect_ms: int = 0
    timeout_first_byte_ms: int = 0
    timeout_idle_ms: int = 0
    cache_ttl_s: int = 0
    created_at_ms: int = Field(default=0, sa_type=BigInteger)
    updated_at_ms: int = Field(default=0, sa_type=BigInteger)
    # Added with the response cache and circuit breaker (0 / false = the data plane's default).
    cache_sampled: bool = Field(default=False, sa_column=_bool())
    breaker_failures: int = Field(default=0, sa_column=_int())
    breaker_cooldown_s: int = Field(default=0, sa_column=_int())


class PriceRow(SQLModel, table=True):
    """Rates in micro-dollars per million tokens. Seeded from prices.json; operators may edit."""

    __tablename__ = "price"

    model_prefix: str = Field(primary_key=True, max_length=200)
    family: str
    family_default: bool = False
    input: int = Field(default=0, sa_type=BigInteger)
    output: int = Field(default=0, sa_type=BigInteger)
    cache_write_5m: int = Field(default=0, sa_type=BigInteger)
    cache_write_1h: int = Field(default=0, sa_type=BigInteger)
    cache_read: int = Field(default=0, sa_type=BigInteger)
    long_context_threshold: int = Field(default=0, sa_type=BigInteger)
    long_context_beta: str = ""
    long_input: int = Field(default=0, sa_type=BigInteger)
    long_output: int = Field(default=0, sa_type=BigInteger)
    long_cache_write_5m: int = Field(default=0, sa_type=BigInteger)
    long_cache_write_1h: int = Field(default=0, sa_type=BigInteger)
    long_cache_read: int = Field(default=0, sa_type=BigInteger)
    updated_at_ms: int = Field(default=0, sa_type=BigInteger)
    # Server-tool fees, micro-dollars per 1,000 requests. NULL = not set (a table from before
    # they existed): the control plane fills in the shipped rate at start, never over a value.
    web_search_per_1k: int | None = Field(default=None, sa_column=Column(BigInteger))
    web_fetch_per_1k: int | None = Field(default=None, sa_column=Column(BigInteger))


class UsageEventRow(SQLModel, table=True):
    """The usage ledger: one row per gateway request, keyed (idempotently) by request id."""

    __tablename__ = "usage_event"
    # Spend per scope in a period (snapshot seeds, budget status, alerts) reads only these
    # indexes: a range on time_ms within one key or workspace, summing cost_micros.
    __table_args__ = (
        Index("ix_usage_event_key_time_cost", "key_id", "time_ms", "cost_micros"),
        Index("ix_usage_event_workspace_time_cost", "workspace", "time_ms", "cost_micros"),
        Index("ix_usage_event_developer_time_cost", "developer_id", "time_ms", "cost_micros"),
        # The reconciler's queue (controlplane.usage.reconcile): only rows not yet counted in the
        # totals and rollups, so it stays as small as that backlog (empty in steady state).
        Index(
            "ix_usage_event_uncounted",
            "time_ms",
            postgresql_where=text("NOT ledger_counted"),
            sqlite_where=text("NOT ledger_counted"),
        ),
    )

    request_id: str = Field(primary_key=True, max_length=128)
    time_ms: int = Field(default=0, sa_type=BigInteger, index=True)
    workspace: str = Field(default="", index=True)
    key_id: str = Field(default="", index=True)
    key_name: str = ""
    session_id: str = Field(default="", index=True)
    metadata_json: str = Field(default="{}", sa_column=_json("{}"))
    model_requested: str = ""
    model_served: str = ""
    provider: str = ""
    attempts: int = 0
    status: int = 0
    error_type: str = ""
    error_message: str = Field(default="", sa_type=Text)
    ttfb_ms: int = Field(default=0, sa_type=BigInteger)
    latency_ms: int = Field(default=0, sa_type=BigInteger)
    input_tokens: int = Field(default=0, sa_type=BigInteger)
    output_tokens: int = Field(default=0, sa_type=BigInteger)
    cache_creation_input_tokens: int = Field(default=0, sa_type=BigInteger)
    cache_read_input_tokens: int = Field(default=0, sa_type=BigInteger)
    cache_write_5m_tokens: int = Field(default=0, sa_type=BigInteger)
    cache_write_1h_tokens: int = Field(default=0, sa_type=BigInteger)
    cost_micros: int = Field(default=0, sa_type=BigInteger)
    priced_as: str = ""
    stream: bool = False
    path: str = ""
    user_agent: str = ""
    client_version: str = ""
    dataplane_id: str = ""
    upstream_request_id: str = ""
    client_disconnected: bool = False
    received_at_ms: int = Field(default=0, sa_type=BigInteger)
    # A signed-in developer's request (key_id is then ""): spend per developer reads
    # ix_usage_event_developer_time_cost.
    developer_id: str = Field(default="", sa_column=_text(""))
    developer_email: str = Field(default="", sa_column=_text(""))
    # Routing and cache (P4): every upstream attempt as JSON, the cache outcome, what a hit saved.
    attempt_log_json: str = Field(default="[]", sa_column=_json("[]"))
    cache_status: str = Field(default="", sa_column=_text(""))
    cost_saved_micros: int = Field(
        default=0,
        sa_column=Column(BigInteger, nullable=False, default=0, server_default="0"),
    )
    # Server tools (their fees are in cost_micros) and whether output_tokens is an estimate.
    web_search_requests: int = Field(
        default=0,
        sa_column=Column(BigInteger, nullable=False, default=0, server_default="0"),
    )
    web_fetch_requests: int = Field(
        default=0,
        sa_column=Column(BigInteger, nullable=False, default=0, server_default="0"),
    )
    output_estimated: bool = Field(default=False, sa_column=_bool())
    # Whether the row is in spend_total and the rollups. This release's inserts say true (ingest
    # counts the row in the same transaction); the server default false is what a row inserted
    # by the previous release (which does not know the column) and every row from before
    # revision 0004 get, and the reconciler counts those (controlplane.usage.reconcile).
    ledger_counted: bool = Field(
        default=True,
        sa_column=Column(Boolean, nullable=False, default=True, server_default=sql_false()),
    )


class RequestLogBodyRow(SQLModel, table=True):
    """A request's logged headers and bodies (workspace policy ``log_bodies`` metadata/full), kept
    apart from the ledger so ``usage_event`` stays lean. Bodies are zlib-compressed; purged after
    the workspace's ``log_retention_days`` (by ``created_ms``)."""

    __tablename__ = "request_log_body"
    # The retention purge deletes, per workspace, the rows older than its cutoff (revision 0002).
    __table_args__ = (Index("ix_request_log_body_workspace_created", "workspace", "created_ms"),)

    request_id: str = Field(primary_key=True, max_length=128)
    workspace: str = Field(default="", index=True)
    created_ms: int = Field(default=0, sa_type=BigInteger, index=True)
    headers_json: str = Field(default="{}", sa_column=_json("{}"))
    request_body_z: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False))
    response_body_z: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False))
    request_body_size: int = Field(default=0, sa_type=BigInteger)
    response_body_size: int = Field(default=0, sa_type=BigInteger)
    truncated: bool = False


class BudgetAlertRow(SQLModel, table=True):
    """A budget crossing 50/80/100 % in one period: recorded once (the unique constraint), then
    POSTed to the workspace's webhook, whose outcome lands in ``webhook_status``."""

    __tablename__ = "budget_alert"
    __table_args__ = (
        UniqueConstraint(
            "scope",
            "scope_id",
            "period",
            "period_start_ms",
            "threshold_percent",
            name="uq_budget_alert_once",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    time_ms: int = Field(default=0, sa_type=BigInteger, index=True)
    scope: str = Field(max_length=16)  # "key" | "workspace"
    scope_id: str = Field(max_length=63)  # key id or workspace name
    name: str = ""  # key name or workspace name, when recorded
    workspace: str = Field(default="", index=True)
    threshold_percent: int = 0
    period: str = Field(max_length=16)  # "day" | "week" | "month" | "lifetime"
    period_id: str = ""  # gwcommon.periods.period_id, e.g. "day:2026-11-29@Europe/Berlin"
    amount_micros: int = Field(default=0, sa_type=BigInteger)
    period_start_ms: int = Field(default=0, sa_type=BigInteger)
    period_end_ms: int = Field(default=0, sa_type=BigInteger)  # 0 for lifetime
    spent_micros: int = Field(default=0, sa_type=BigInteger)
    # "" (no webhook) | "pending" | "retrying: <reason>" | "delivered" | "failed: <reason>" |
    # "refused: …"; the attempts made, when the last one ended and when the next is due.
    webhook_status: str = Field(default="", sa_type=Text)
    webhook_format: str = Field(default="", sa_column=_text(""))  # generic | slack
    webhook_attempts: int = Field(default=0, sa_column=_int())
    webhook_last_attempt_ms: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )
    webhook_next_attempt_ms: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0")
    )


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
    workspaces_json: str = Field(default="[]", sa_column=_json("[]"))
    secret_sha256: str = Field(unique=True, index=True, max_length=64)
    prefix: str = ""
    created_at_ms: int = Field(default=0, sa_type=BigInteger)
    expires_at_ms: int = Field(default=0, sa_type=BigInteger)
    revoked_at_ms: int = Field(default=0, sa_type=BigInteger)
    last_used_at_ms: int = Field(default=0, sa_type=BigInteger)
    created_by: str = ""  # id of the creating token ("bootstrap" for the env admin token)


# -- Sign-in with Claude Code -------------------------------------------------------------------


class SsoConfigRow(SQLModel, table=True):
    """The company's OIDC identity provider (one row, id 1). The client secret is encrypted
    under the master key (controlplane.secrets, bound to the name "sso"); JSON lists as text."""

    __tablename__ = "sso_config"

    id: int = Field(default=1, primary_key=True)
    issuer: str = ""
    client_id: str = ""
    client_secret_ciphertext: str = Field(default="", sa_column=_text(""))
    scopes_json: str = Field(default="[]", sa_column=_json("[]"))
    groups_claim: str = Field(default="groups", sa_column=_text("groups"))
    allowed_email_domains_json: str = Field(default="[]", sa_column=_json("[]"))
    access_token_ttl_s: int = Field(default=0, sa_column=_int())
    refresh_idle_ttl_s: int = Field(default=0, sa_column=_int())
    session_max_ttl_s: int = Field(default=0, sa_column=_int())
    default_provider: str = Field(default="", sa_column=_text(""))
    default_route: str = Field(default="", sa_column=_text(""))
    updated_at_ms: int = Field(default=0, sa_type=BigInteger)


class SigningKeyRow(SQLModel, table=True):
    """An access-token signing key (HS256): 32 random bytes encrypted under the master key
    (bound to "signing-key:<kid>"). The newest unretired key signs; retired keys stay in
    snapshots until every token they signed has expired."""

    __tablename__ = "signing_key"

    kid: str = Field(primary_key=True, max_length=32)
    key_ciphertext: str = Field(default="", sa_column=_text(""))
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
    groups_json: str = Field(default="[]", sa_column=_json("[]"))
    limits_json: str = Field(default="{}", sa_column=_json("{}"))
    has_limits: bool = Field(default=False, sa_column=_bool())
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


class TelemetryDestinationRow(SQLModel, table=True):
    """An OTLP/HTTP collector Claude Code's telemetry is forwarded to. Header values (API keys)
    are encrypted under the master key as one JSON object (bound to "telemetry:<name>")."""

    __tablename__ = "telemetry_destination"

    name: str = Field(primary_key=True, max_length=63)
    url: str = ""
    headers_ciphertext: str = Field(default="", sa_type=Text)
    header_names_json: str = Field(default="[]", sa_column=_json("[]"))
    signals_json: str = Field(default="[]", sa_column=_json("[]"))
    created_at_ms: int = Field(default=0, sa_type=BigInteger)


class DeveloperActivityRow(SQLModel, table=True):
    """What a developer's Claude Code reported about itself (OTLP metrics), summed per UTC day."""

    __tablename__ = "developer_activity"

    developer_id: str = Field(primary_key=True, max_length=32)
    day_ms: int = Field(primary_key=True, sa_type=BigInteger)  # UTC midnight
    workspace: str = Field(default="", index=True)
    cost_micros: int = Field(default=0, sa_type=BigInteger)
    input_tokens: int = Field(default=0, sa_type=BigInteger)
    output_tokens: int = Field(default=0, sa_type=BigInteger)
    cache_read_tokens: int = Field(default=0, sa_type=BigInteger)
    cache_creation_tokens: int = Field(default=0, sa_type=BigInteger)
    lines_added: int = Field(default=0, sa_type=BigInteger)
    lines_removed: int = Field(default=0, sa_type=BigInteger)
    commits: int = Field(default=0, sa_type=BigInteger)
    pull_requests: int = Field(default=0, sa_type=BigInteger)
    edits_accepted: int = Field(default=0, sa_type=BigInteger)
    edits_rejected: int = Field(default=0, sa_type=BigInteger)
    sessions: int = Field(default=0, sa_type=BigInteger)
    updated_at_ms: int = Field(default=0, sa_type=BigInteger)


class ActivityBatchRow(SQLModel, table=True):
    """Batches of DeveloperActivity already ingested: ReportActivity is idempotent on them."""

    __tablename__ = "activity_batch"

    node_id: str = Field(primary_key=True, max_length=128)
    batch_id: str = Field(primary_key=True, max_length=64)
    received_at_ms: int = Field(default=0, sa_type=BigInteger, index=True)


class ConfigChangeRow(SQLModel, table=True):
    """One configuration resource changed (written by :mod:`controlplane.snapshots.changes` in
    the transaction of the change, never by catalog code). ``seq`` is monotonic: a snapshot
    cache that has read up to ``seq`` N re-reads only the resources named after N. Rows older
    than an hour are trimmed; a cache whose last seq was trimmed reads everything again."""

    __tablename__ = "config_change"

    seq: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    kind: str = Field(default="", max_length=32)  # see changes.KINDS
    name: str = Field(default="", max_length=200)  # the resource's key ("*": all of the kind)
    at_ms: int = Field(default=0, sa_type=BigInteger)


# --- The ledger's derived tables (controlplane.usage.totals / rollups): maintained in the
# transaction that inserts usage_event rows, rebuilt from them by `gwctl controlplane
# rebuild-ledger`. Raw events stay the source of truth.


class SpendTotalRow(SQLModel, table=True):
    """Spend of one scope (key id, workspace name, developer id) in one budget period (day, week,
    month in the workspace's time zone as of ingest; lifetime with ``period_start_ms`` 0).
    ``updated_at_ms`` (indexed) lets a reader fetch the totals changed since a moment."""

    __tablename__ = "spend_total"

    # Key order: one window's cells of one scope kind (every developer's today) are one range.
    scope_kind: str = Field(primary_key=True, max_length=16)
    period: str = Field(primary_key=True, max_length=16)
    period_start_ms: int = Field(primary_key=True, sa_type=BigInteger)
    scope_id: str = Field(primary_key=True, max_length=256)
    spent_micros: int = Field(default=0, sa_type=BigInteger)
    requests: int = Field(default=0, sa_type=BigInteger)
    updated_at_ms: int = Field(default=0, sa_type=BigInteger, index=True)


def _sum() -> Any:
    """A NOT NULL BIGINT defaulting to 0 (a fresh Column per table: the measures are shared)."""
    return Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})


def _dim(default: str = "") -> Any:
    return Field(default=default, sa_column_kwargs={"server_default": default})


class _RollupMeasures(SQLModel):
    """What a rollup cell sums (see controlplane.usage.rollups.MEASURES)."""

    requests: int = _sum()
    errors: int = _sum()
    input_tokens: int = _sum()
    output_tokens: int = _sum()
    cache_creation_input_tokens: int = _sum()
    cache_read_input_tokens: int = _sum()
    cost_micros: int = _sum()
    web_search_requests: int = _sum()
    web_fetch_requests: int = _sum()
    cost_saved_micros: int = _sum()
    cache_hits: int = _sum()
    first_ms: int = _sum()  # min time_ms
    last_ms: int = _sum()  # max time_ms
    key_name: str = _dim()  # max
    developer_email: str = _dim()  # max
    updated_at_ms: int = _sum()


class UsageHourRow(_RollupMeasures, table=True):
    """Usage per UTC hour and (workspace, key, developer, model, provider, client version,
    session, metadata): every ``gwctl usage`` grouping can be answered from it."""

    __tablename__ = "usage_rollup_hour"
    __table_args__ = (
        Index("ix_usage_rollup_hour_workspace", "workspace", "bucket_ms"),
        Index("ix_usage_rollup_hour_key", "key_id", "bucket_ms"),
        Index("ix_usage_rollup_hour_developer", "developer_id", "bucket_ms"),
    )

    bucket_ms: int = Field(primary_key=True, sa_type=BigInteger)
    dims_key: str = Field(primary_key=True, max_length=32)  # hash of the dimensions below
    workspace: str = _dim()
    key_id: str = _dim()
    developer_id: str = _dim()
    model: str = _dim()  # served, else requested
    provider: str = _dim()
    client_version: str = _dim()
    session_id: str = _dim()
    metadata_json: str = Field(
        default="{}", sa_type=Text, sa_column_kwargs={"server_default": "{}"}
    )


class UsageDayRow(_RollupMeasures, table=True):
    """Usage per UTC day and (workspace, key, developer, model, provider, client version)."""

    __tablename__ = "usage_rollup_day"
    __table_args__ = (
        Index("ix_usage_rollup_day_workspace", "workspace", "bucket_ms"),
        Index("ix_usage_rollup_day_key", "key_id", "bucket_ms"),
        Index("ix_usage_rollup_day_developer", "developer_id", "bucket_ms"),
    )

    bucket_ms: int = Field(primary_key=True, sa_type=BigInteger)
    dims_key: str = Field(primary_key=True, max_length=32)
    workspace: str = _dim()
    key_id: str = _dim()
    developer_id: str = _dim()
    model: str = _dim()
    provider: str = _dim()
    client_version: str = _dim()


class LedgerStateRow(SQLModel, table=True):
    """One row: how far raw usage events were purged (``purged_before_ms``, 0 = never) and when
    the derived tables were last rebuilt from them."""

    __tablename__ = "ledger_state"

    id: int = Field(default=1, primary_key=True)
    purged_before_ms: int = Field(default=0, sa_type=BigInteger)
    rebuilt_at_ms: int = Field(default=0, sa_type=BigInteger)
    rebuilt_events: int = Field(default=0, sa_type=BigInteger)
