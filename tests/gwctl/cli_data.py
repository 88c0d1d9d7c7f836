"""gwctl tests' data, in the one admin-client fake (:mod:`tests.fakes.admin_client`): team-a in
Berlin and team-b, team-a's key alice (and a revoked one), three providers, three data planes."""

from __future__ import annotations

from typing import Any

import pytest

from gwapi.v1 import common_pb2, discovery_pb2, telemetry_pb2
from gwctl import main as gwctl_main
from tests.fakes.admin_client import FakeAdminClient

SECRET = "gw-Sup3rS3cretValue0123456789abcdef"


def sample_key(**overrides: Any) -> common_pb2.VirtualKey:
    key = common_pb2.VirtualKey(
        id="key_abc123",
        workspace="team-a",
        name="alice",
        prefix="gw-Sup3r",
        provider="anthropic",
        limits=common_pb2.Limits(
            budgets=[common_pb2.Budget(amount_micros=50_000_000, period=common_pb2.PERIOD_DAY)],
            rpm=60,
        ),
        created_at_ms=1_700_000_000_000,
    )
    for name, value in overrides.items():
        setattr(key, name, value)
    return key


def sample_workspace(**overrides: Any) -> common_pb2.Workspace:
    """team-a in Berlin with $50/day and a $1,000 lifetime budget, and their spend."""
    day = common_pb2.Budget(amount_micros=50_000_000, period=common_pb2.PERIOD_DAY)
    life = common_pb2.Budget(amount_micros=1_000_000_000, period=common_pb2.PERIOD_LIFETIME)
    ws = common_pb2.Workspace(
        name="team-a",
        timezone="Europe/Berlin",
        redis_failure="open",
        alert_webhook="https://hooks.example.com/tollgate",
        limits=common_pb2.Limits(budgets=[day, life], rpm=100),
        budget_status=[
            common_pb2.BudgetStatus(
                budget=day,
                period_start_ms=1_795_820_400_000,  # 2026-11-27T23:00:00Z, Berlin midnight
                period_end_ms=1_795_906_800_000,
                spent_micros=12_340_000,
            ),
            common_pb2.BudgetStatus(budget=life, spent_micros=1_000_020_000),
        ],
        created_at_ms=1_700_000_000_000,
    )
    for name, value in overrides.items():
        setattr(ws, name, value)
    return ws


def sample_alert(threshold: int = 80, scope: str = "key") -> telemetry_pb2.BudgetAlert:
    return telemetry_pb2.BudgetAlert(
        time_ms=1_795_850_000_000,
        scope=scope,
        id="key_abc123" if scope == "key" else "team-a",
        name="alice" if scope == "key" else "team-a",
        workspace="team-a",
        threshold_percent=threshold,
        budget=common_pb2.Budget(amount_micros=50_000_000, period=common_pb2.PERIOD_DAY),
        period_start_ms=1_795_824_000_000,
        spent_micros=40_012_345,
        webhook_status="delivered",
        webhook_attempts=2,
        webhook_last_attempt_ms=1_795_850_003_000,
        webhook_format="slack" if scope == "key" else "generic",
    )


def sample_event(n: int = 1) -> telemetry_pb2.UsageEvent:
    return telemetry_pb2.UsageEvent(
        request_id=f"req_{n:04d}",
        time_ms=1_700_000_000_000 + n,
        workspace="team-a",
        key_id="key_abc123",
        key_name="alice",
        session_id="0f8e7d6c-5b4a-3210-fedc-ba9876543210",
        model_requested="claude-sonnet-4-5",
        model_served="claude-sonnet-4-5",
        provider="anthropic",
        status=200,
        ttfb_ms=300,
        latency_ms=1234,
        usage=common_pb2.Usage(
            input_tokens=1200,
            output_tokens=340,
            cache_creation_input_tokens=5000,
            cache_read_input_tokens=20000,
            cost_micros=12_345,
        ),
    )


def key_with_spend(**overrides: Any) -> common_pb2.VirtualKey:
    """alice's key with today's spend (what GetKey returns: $12.34 of $50.00/day)."""
    key = sample_key(**overrides)
    key.budget_status.append(
        common_pb2.BudgetStatus(
            budget=key.limits.budgets[0],
            period_start_ms=1_795_824_000_000,  # 2026-11-28T00:00:00Z
            period_end_ms=1_795_910_400_000,
            spent_micros=12_340_000,
        )
    )
    return key


def cli_fake() -> FakeAdminClient:
    """The fake control plane gwctl's tests talk to; follows end after the history."""
    dataplanes = discovery_pb2.ListDataPlanesResponse(
        current_version="v2abcdef0123456789",
        dataplanes=[
            discovery_pb2.DataPlaneStatus(
                node_id="dp-1", listen="127.0.0.1:8080", connected=True,
                acked_version="v2abcdef0123456789",
                breakers={"anthropic": "open", "sim": "half_open"},
            ),
            discovery_pb2.DataPlaneStatus(
                node_id="dp-2", connected=False, acked_version="v1old",
                last_error="stream closed", breakers={"bedrock": "open"},
                quarantined_events=3,
            ),
            discovery_pb2.DataPlaneStatus(
                node_id="dp-3", connected=True, acked_version="v2abcdef0123456789",
                breakers={"sim": "half_open"},
            ),
        ],
    )  # fmt: skip
    # Listed first: a budget with cents (workspaces list), beside team-a (workspaces show).
    team_b = common_pb2.Workspace(
        name="team-b",
        limits=common_pb2.Limits(
            budgets=[
                common_pb2.Budget(amount_micros=1_000_500_000, period=common_pb2.PERIOD_MONTH)
            ],
            rpm=100,
        ),
    )
    return FakeAdminClient(
        workspaces=[team_b, sample_workspace()],
        keys=[key_with_spend(), sample_key(id="key_old", revoked_at_ms=1_700_000_000_500)],
        providers=[
            common_pb2.Provider(name="anthropic", kind="anthropic", api_key_env="ANTHROPIC_KEY"),
            common_pb2.Provider(name="bedrock", kind="bedrock", options={"region": "us-east-1"}),
            common_pb2.Provider(name="sim", kind="simulator"),
        ],
        dataplanes=dataplanes,
        new_key_id="key_abc123",
        new_key_secret=SECRET,
        ends_streams=True,
    )


def use_fake(monkeypatch: pytest.MonkeyPatch, fake: FakeAdminClient) -> FakeAdminClient:
    """gwctl's client is ``fake``, talked to as the admin with no control plane address in the
    environment (so none leaks in from the shell running the tests); returns ``fake``."""
    monkeypatch.setattr(gwctl_main, "GatewayClient", fake.connect)
    monkeypatch.setenv("TOLLGATE_ADMIN_TOKEN", "admin-secret-token")
    monkeypatch.delenv("TOLLGATE_CONTROL_PLANE", raising=False)
    return fake
