"""The configuration tables: workspaces, virtual keys, providers, routes, prices, telemetry
destinations, and the change log that tells snapshot caches which of them changed."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    Text,
)
from sqlmodel import Field, SQLModel

from controlplane.store.models.columns import bigint_col, bool_col, int_col, json_col, text_col


class WorkspaceRow(SQLModel, table=True):
    __tablename__ = "workspace"

    name: str = Field(primary_key=True, max_length=63)
    description: str = ""
    limits_json: str = Field(default="{}", sa_column=json_col("{}"))
    timezone: str = ""
    created_at_ms: int = Field(default=0, sa_type=BigInteger)
    updated_at_ms: int = Field(default=0, sa_type=BigInteger)
    # "closed" | "open" ("" in rows written before the column existed: closed).
    redis_failure: str = Field(default="closed", sa_column=text_col("closed"))
    alert_webhook: str = Field(default="", sa_column=text_col(""))
    # The body POSTed to alert_webhook: "generic" | "slack".
    alert_format: str = Field(default="generic", sa_column=text_col("generic"))
    min_client_version: str = Field(default="", sa_column=text_col(""))
    # Request logging: none | metadata | full, the per-body cap, the retention of stored bodies.
    log_bodies: str = Field(default="none", sa_column=text_col("none"))
    log_body_max_bytes: int = Field(default=262144, sa_column=int_col(262144))
    log_retention_days: int = Field(default=30, sa_column=int_col(30))
    # Access controls (JSON lists of names / glob patterns; [] = everything): gwcommon.allowlists.
    allowed_providers_json: str = Field(default="[]", sa_column=json_col("[]"))
    allowed_routes_json: str = Field(default="[]", sa_column=json_col("[]"))
    allowed_models_json: str = Field(default="[]", sa_column=json_col("[]"))
    # Sign-in with Claude Code (see gwapi Workspace): which developers land here, their limits
    # and target, and the managed settings served to them.
    sso_groups_json: str = Field(default="[]", sa_column=json_col("[]"))
    sso_priority: int = Field(default=0, sa_column=int_col())
    member_limits_json: str = Field(default="{}", sa_column=json_col("{}"))
    member_provider: str = Field(default="", sa_column=text_col(""))
    member_route: str = Field(default="", sa_column=text_col(""))
    managed_settings_json: str = Field(default="", sa_column=json_col(""))
    managed_settings_checksum: str = Field(default="", sa_column=text_col(""))
    managed_settings_updated_at_ms: int = Field(default=0, sa_column=bigint_col())


class VirtualKeyRow(SQLModel, table=True):
    __tablename__ = "virtual_key"

    id: str = Field(primary_key=True, max_length=32)
    secret_sha256: str = Field(unique=True, index=True, max_length=64)
    prefix: str = ""
    name: str = ""
    workspace: str = Field(foreign_key="workspace.name", index=True)
    limits_json: str = Field(default="{}", sa_column=json_col("{}"))
    # Exactly one of provider / route is non-empty. No foreign key: "" means unset, and deletes
    # are guarded in the store with a message naming the dependants.
    provider: str = Field(default="", index=True)
    route: str = Field(default="", index=True)
    models_json: str = Field(default="[]", sa_column=json_col("[]"))
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
    options_json: str = Field(default="{}", sa_column=json_col("{}"))
    created_at_ms: int = Field(default=0, sa_type=BigInteger)
    updated_at_ms: int = Field(default=0, sa_type=BigInteger)
    # The provider's API key encrypted under the master key ("v1:<key id>:<base64>", see
    # controlplane.secrets); "" = none stored (the data plane's api_key_env applies).
    secret_ciphertext: str = Field(default="", sa_column=text_col(""))
    secret_rotated_at_ms: int = Field(default=0, sa_column=bigint_col())


class RouteRow(SQLModel, table=True):
    __tablename__ = "route"

    name: str = Field(primary_key=True, max_length=63)
    mode: str = "fallback"
    # [{"provider": str, "weight": int, "model": str}, ...] in fallback order.
    targets_json: str = Field(default="[]", sa_column=json_col("[]"))
    retries: int = 0
    retry_on_json: str = Field(default="[]", sa_column=json_col("[]"))
    timeout_connect_ms: int = 0
    timeout_first_byte_ms: int = 0
    timeout_idle_ms: int = 0
    cache_ttl_s: int = 0
    created_at_ms: int = Field(default=0, sa_type=BigInteger)
    updated_at_ms: int = Field(default=0, sa_type=BigInteger)
    # Added with the response cache and circuit breaker (0 / false = the data plane's default).
    cache_sampled: bool = Field(default=False, sa_column=bool_col())
    breaker_failures: int = Field(default=0, sa_column=int_col())
    breaker_cooldown_s: int = Field(default=0, sa_column=int_col())


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


class TelemetryDestinationRow(SQLModel, table=True):
    """An OTLP/HTTP collector Claude Code's telemetry is forwarded to. Header values (API keys)
    are encrypted under the master key as one JSON object (bound to "telemetry:<name>")."""

    __tablename__ = "telemetry_destination"

    name: str = Field(primary_key=True, max_length=63)
    url: str = ""
    headers_ciphertext: str = Field(default="", sa_type=Text)
    header_names_json: str = Field(default="[]", sa_column=json_col("[]"))
    signals_json: str = Field(default="[]", sa_column=json_col("[]"))
    created_at_ms: int = Field(default=0, sa_type=BigInteger)


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
