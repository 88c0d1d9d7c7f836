"""Baseline: the schema when migrations were introduced.

The tables exactly as ``metadata.create_all`` made them before this revision existed.

Revision ID: 0001
Revises: (none)

Written out table by table (generated once by Alembic from the models, then reviewed) so that
later model changes never alter it: a database made by a control plane from before migrations
is compared with this revision (controlplane.store.migrations.adopt) and stamped with it. Never
edit this file; change the schema in a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None
# Nothing came before it; the flag only matters for revisions that follow one.
backward_compatible = False


def upgrade() -> None:
    op.create_table(
        "activity_batch",
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "batch_id"),
    )
    op.create_index(
        "ix_activity_batch_received_at_ms", "activity_batch", ["received_at_ms"], unique=False
    )

    op.create_table(
        "admin_token",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("workspaces_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_used_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_admin_token_secret_sha256", "admin_token", ["secret_sha256"], unique=True)

    op.create_table(
        "audit_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("actor_name", sa.String(), nullable=False),
        sa.Column("actor_role", sa.String(), nullable=False),
        sa.Column("peer", sa.String(), nullable=False),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("resource_kind", sa.String(), nullable=False),
        sa.Column("resource", sa.String(), nullable=False),
        sa.Column("workspace", sa.String(), nullable=False),
        sa.Column("before_json", sa.Text(), nullable=False),
        sa.Column("after_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_event_time_ms", "audit_event", ["time_ms"], unique=False)
    op.create_index(
        "ix_audit_event_workspace_time", "audit_event", ["workspace", "time_ms"], unique=False
    )

    op.create_table(
        "budget_alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("workspace", sa.String(), nullable=False),
        sa.Column("threshold_percent", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("period_id", sa.String(), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("period_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("period_end_ms", sa.BigInteger(), nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), nullable=False),
        sa.Column("webhook_status", sa.Text(), nullable=False),
        sa.Column("webhook_format", sa.String(), server_default="", nullable=False),
        sa.Column("webhook_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("webhook_last_attempt_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("webhook_next_attempt_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "scope",
            "scope_id",
            "period",
            "period_start_ms",
            "threshold_percent",
            name="uq_budget_alert_once",
        ),
    )
    op.create_index("ix_budget_alert_time_ms", "budget_alert", ["time_ms"], unique=False)
    op.create_index("ix_budget_alert_workspace", "budget_alert", ["workspace"], unique=False)

    op.create_table(
        "developer",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("issuer", sa.String(), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("workspace", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("groups_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("limits_json", sa.Text(), server_default="{}", nullable=False),
        sa.Column("has_limits", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_sign_in_ms", sa.BigInteger(), nullable=False),
        sa.Column("disabled_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("tokens_not_before_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issuer", "subject", name="uq_developer_identity"),
    )
    op.create_index("ix_developer_email", "developer", ["email"], unique=False)
    op.create_index("ix_developer_workspace", "developer", ["workspace"], unique=False)

    op.create_table(
        "developer_activity",
        sa.Column("developer_id", sa.String(length=32), nullable=False),
        sa.Column("day_ms", sa.BigInteger(), nullable=False),
        sa.Column("workspace", sa.String(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_creation_tokens", sa.BigInteger(), nullable=False),
        sa.Column("lines_added", sa.BigInteger(), nullable=False),
        sa.Column("lines_removed", sa.BigInteger(), nullable=False),
        sa.Column("commits", sa.BigInteger(), nullable=False),
        sa.Column("pull_requests", sa.BigInteger(), nullable=False),
        sa.Column("edits_accepted", sa.BigInteger(), nullable=False),
        sa.Column("edits_rejected", sa.BigInteger(), nullable=False),
        sa.Column("sessions", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("developer_id", "day_ms"),
    )
    op.create_index(
        "ix_developer_activity_workspace", "developer_activity", ["workspace"], unique=False
    )

    op.create_table(
        "device_grant",
        sa.Column("device_code_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_code", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("last_poll_ms", sa.BigInteger(), nullable=False),
        sa.Column("public_url", sa.String(), nullable=False),
        sa.Column("client_ip", sa.String(), nullable=False),
        sa.Column("developer_id", sa.String(), nullable=False),
        sa.Column("denial", sa.Text(), nullable=False),
        sa.Column("state_sha256", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(), nullable=False),
        sa.Column("pkce_verifier_ciphertext", sa.Text(), nullable=False),
        sa.Column("browser_secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("browser_started_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_code_sha256"),
    )
    op.create_index(
        "ix_device_grant_expires_at_ms", "device_grant", ["expires_at_ms"], unique=False
    )
    op.create_index("ix_device_grant_state_sha256", "device_grant", ["state_sha256"], unique=False)
    op.create_index("ix_device_grant_user_code", "device_grant", ["user_code"], unique=False)

    op.create_table(
        "price",
        sa.Column("model_prefix", sa.String(length=200), nullable=False),
        sa.Column("family", sa.String(), nullable=False),
        sa.Column("family_default", sa.Boolean(), nullable=False),
        sa.Column("input", sa.BigInteger(), nullable=False),
        sa.Column("output", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_5m", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_1h", sa.BigInteger(), nullable=False),
        sa.Column("cache_read", sa.BigInteger(), nullable=False),
        sa.Column("long_context_threshold", sa.BigInteger(), nullable=False),
        sa.Column("long_context_beta", sa.String(), nullable=False),
        sa.Column("long_input", sa.BigInteger(), nullable=False),
        sa.Column("long_output", sa.BigInteger(), nullable=False),
        sa.Column("long_cache_write_5m", sa.BigInteger(), nullable=False),
        sa.Column("long_cache_write_1h", sa.BigInteger(), nullable=False),
        sa.Column("long_cache_read", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("web_search_per_1k", sa.BigInteger(), nullable=True),
        sa.Column("web_fetch_per_1k", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("model_prefix"),
    )
    op.create_table(
        "provider",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("base_url", sa.String(), nullable=False),
        sa.Column("api_key_env", sa.String(), nullable=False),
        sa.Column("options_json", sa.Text(), server_default="{}", nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("secret_ciphertext", sa.String(), server_default="", nullable=False),
        sa.Column("secret_rotated_at_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "refresh_token",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("family_id", sa.String(length=40), nullable=False),
        sa.Column("developer_id", sa.String(length=32), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("family_expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("used_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("token_sha256"),
    )
    op.create_index(
        "ix_refresh_token_developer_id", "refresh_token", ["developer_id"], unique=False
    )
    op.create_index("ix_refresh_token_family_id", "refresh_token", ["family_id"], unique=False)

    op.create_table(
        "request_log_body",
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("workspace", sa.String(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("headers_json", sa.Text(), server_default="{}", nullable=False),
        sa.Column("request_body_z", sa.LargeBinary(), nullable=False),
        sa.Column("response_body_z", sa.LargeBinary(), nullable=False),
        sa.Column("request_body_size", sa.BigInteger(), nullable=False),
        sa.Column("response_body_size", sa.BigInteger(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index(
        "ix_request_log_body_created_ms", "request_log_body", ["created_ms"], unique=False
    )
    op.create_index(
        "ix_request_log_body_workspace", "request_log_body", ["workspace"], unique=False
    )

    op.create_table(
        "route",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("mode", sa.String(), nullable=False),
        sa.Column("targets_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("retry_on_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("timeout_connect_ms", sa.Integer(), nullable=False),
        sa.Column("timeout_first_byte_ms", sa.Integer(), nullable=False),
        sa.Column("timeout_idle_ms", sa.Integer(), nullable=False),
        sa.Column("cache_ttl_s", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("cache_sampled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("breaker_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("breaker_cooldown_s", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "signing_key",
        sa.Column("kid", sa.String(length=32), nullable=False),
        sa.Column("key_ciphertext", sa.String(), server_default="", nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("retired_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kid"),
    )
    op.create_index("ix_signing_key_created_at_ms", "signing_key", ["created_at_ms"], unique=False)

    op.create_table(
        "sso_config",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(), nullable=False),
        sa.Column("client_id", sa.String(), nullable=False),
        sa.Column("client_secret_ciphertext", sa.String(), server_default="", nullable=False),
        sa.Column("scopes_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("groups_claim", sa.String(), server_default="groups", nullable=False),
        sa.Column("allowed_email_domains_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("access_token_ttl_s", sa.Integer(), server_default="0", nullable=False),
        sa.Column("refresh_idle_ttl_s", sa.Integer(), server_default="0", nullable=False),
        sa.Column("session_max_ttl_s", sa.Integer(), server_default="0", nullable=False),
        sa.Column("default_provider", sa.String(), server_default="", nullable=False),
        sa.Column("default_route", sa.String(), server_default="", nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "telemetry_destination",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("headers_ciphertext", sa.Text(), nullable=False),
        sa.Column("header_names_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("signals_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "usage_event",
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("workspace", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("key_name", sa.String(), nullable=False),
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("metadata_json", sa.Text(), server_default="{}", nullable=False),
        sa.Column("model_requested", sa.String(), nullable=False),
        sa.Column("model_served", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("ttfb_ms", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_creation_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_5m_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_1h_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("priced_as", sa.String(), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("user_agent", sa.String(), nullable=False),
        sa.Column("client_version", sa.String(), nullable=False),
        sa.Column("dataplane_id", sa.String(), nullable=False),
        sa.Column("upstream_request_id", sa.String(), nullable=False),
        sa.Column("client_disconnected", sa.Boolean(), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("developer_id", sa.String(), server_default="", nullable=False),
        sa.Column("developer_email", sa.String(), server_default="", nullable=False),
        sa.Column("attempt_log_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("cache_status", sa.String(), server_default="", nullable=False),
        sa.Column("cost_saved_micros", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("web_search_requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("web_fetch_requests", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("output_estimated", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index(
        "ix_usage_event_developer_time_cost",
        "usage_event",
        ["developer_id", "time_ms", "cost_micros"],
        unique=False,
    )
    op.create_index("ix_usage_event_key_id", "usage_event", ["key_id"], unique=False)
    op.create_index(
        "ix_usage_event_key_time_cost",
        "usage_event",
        ["key_id", "time_ms", "cost_micros"],
        unique=False,
    )
    op.create_index("ix_usage_event_session_id", "usage_event", ["session_id"], unique=False)
    op.create_index("ix_usage_event_time_ms", "usage_event", ["time_ms"], unique=False)
    op.create_index("ix_usage_event_workspace", "usage_event", ["workspace"], unique=False)
    op.create_index(
        "ix_usage_event_workspace_time_cost",
        "usage_event",
        ["workspace", "time_ms", "cost_micros"],
        unique=False,
    )

    op.create_table(
        "workspace",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("limits_json", sa.Text(), server_default="{}", nullable=False),
        sa.Column("timezone", sa.String(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("redis_failure", sa.String(), server_default="closed", nullable=False),
        sa.Column("alert_webhook", sa.String(), server_default="", nullable=False),
        sa.Column("alert_format", sa.String(), server_default="generic", nullable=False),
        sa.Column("min_client_version", sa.String(), server_default="", nullable=False),
        sa.Column("log_bodies", sa.String(), server_default="none", nullable=False),
        sa.Column("log_body_max_bytes", sa.Integer(), server_default="262144", nullable=False),
        sa.Column("log_retention_days", sa.Integer(), server_default="30", nullable=False),
        sa.Column("allowed_providers_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("allowed_routes_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("allowed_models_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("sso_groups_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("sso_priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("member_limits_json", sa.Text(), server_default="{}", nullable=False),
        sa.Column("member_provider", sa.String(), server_default="", nullable=False),
        sa.Column("member_route", sa.String(), server_default="", nullable=False),
        sa.Column("managed_settings_json", sa.Text(), server_default="", nullable=False),
        sa.Column("managed_settings_checksum", sa.String(), server_default="", nullable=False),
        sa.Column(
            "managed_settings_updated_at_ms", sa.BigInteger(), server_default="0", nullable=False
        ),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "virtual_key",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("workspace", sa.String(), nullable=False),
        sa.Column("limits_json", sa.Text(), server_default="{}", nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("route", sa.String(), nullable=False),
        sa.Column("models_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace"],
            ["workspace.name"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_virtual_key_provider", "virtual_key", ["provider"], unique=False)
    op.create_index("ix_virtual_key_route", "virtual_key", ["route"], unique=False)
    op.create_index("ix_virtual_key_secret_sha256", "virtual_key", ["secret_sha256"], unique=True)
    op.create_index("ix_virtual_key_workspace", "virtual_key", ["workspace"], unique=False)
