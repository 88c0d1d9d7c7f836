"""A stand-in for ``tui.client.GatewayClient``: canned protobufs, recorded calls, no network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from gwapi.v1 import admin_pb2, common_pb2, discovery_pb2, telemetry_pb2
from tui.client import ClientError

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


class FakeClient:
    """Only what the CLI tests touch. ``calls`` records (method, args) for assertions."""

    calls: list[tuple[str, Any]] = []
    fail: ClientError | None = None
    usage_rows: list[telemetry_pb2.UsageRow] = []
    events: list[telemetry_pb2.UsageEvent] = []
    alerts: list[telemetry_pb2.BudgetAlert] = []

    def __init__(self, target: str, token: str = "", **_: Any) -> None:
        self.target = target
        self.token = token
        FakeClient.calls.append(("__init__", (target, token)))

    async def __aenter__(self) -> FakeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def _record(self, name: str, *args: Any) -> None:
        FakeClient.calls.append((name, args))
        if FakeClient.fail is not None:
            raise FakeClient.fail

    async def create_workspace(self, ws: common_pb2.Workspace) -> common_pb2.Workspace:
        self._record("create_workspace", ws)
        return ws

    async def update_workspace(
        self, ws: common_pb2.Workspace, paths: list[str]
    ) -> common_pb2.Workspace:
        self._record("update_workspace", ws, list(paths))
        return ws

    async def get_workspace(self, name: str) -> common_pb2.Workspace:
        self._record("get_workspace", name)
        return sample_workspace(name=name)

    async def get_key(self, key_id: str) -> common_pb2.VirtualKey:
        self._record("get_key", key_id)
        key = sample_key(id=key_id)
        key.budget_status.append(
            common_pb2.BudgetStatus(
                budget=key.limits.budgets[0],
                period_start_ms=1_795_824_000_000,  # 2026-11-28T00:00:00Z
                period_end_ms=1_795_910_400_000,
                spent_micros=12_340_000,
            )
        )
        return key

    async def list_alerts(self, **kwargs: Any) -> list[telemetry_pb2.BudgetAlert]:
        self._record("list_alerts", kwargs)
        return list(FakeClient.alerts)

    async def list_workspaces(self) -> list[common_pb2.Workspace]:
        self._record("list_workspaces")
        return [
            common_pb2.Workspace(
                name="team-a",
                limits=common_pb2.Limits(
                    budgets=[
                        common_pb2.Budget(
                            amount_micros=1_000_500_000, period=common_pb2.PERIOD_MONTH
                        )
                    ],
                    rpm=100,
                ),
            )
        ]

    async def create_key(self, request: admin_pb2.CreateKeyRequest) -> admin_pb2.CreateKeyResponse:
        self._record("create_key", request)
        key = sample_key(workspace=request.workspace, name=request.name, provider=request.provider)
        return admin_pb2.CreateKeyResponse(key=key, secret=SECRET)

    async def create_keys(
        self, workspace: str, requests: list[admin_pb2.CreateKeyRequest]
    ) -> admin_pb2.CreateKeysResponse:
        """Recorded as one ``create_key`` per key (what the calls amount to)."""
        return admin_pb2.CreateKeysResponse(keys=[await self.create_key(r) for r in requests])

    async def list_keys(
        self, workspace: str = "", include_revoked: bool = False
    ) -> list[common_pb2.VirtualKey]:
        self._record("list_keys", workspace, include_revoked)
        return [sample_key(), sample_key(id="key_old", revoked_at_ms=1_700_000_000_500)]

    async def update_key(
        self, key: common_pb2.VirtualKey, paths: list[str]
    ) -> common_pb2.VirtualKey:
        self._record("update_key", key, list(paths))
        return sample_key()

    async def revoke_key(self, key_id: str) -> common_pb2.VirtualKey:
        self._record("revoke_key", key_id)
        return sample_key(id=key_id, revoked_at_ms=1_700_000_000_500)

    async def create_route(self, route: common_pb2.Route) -> common_pb2.Route:
        self._record("create_route", route)
        return route

    async def create_provider(self, provider: common_pb2.Provider) -> common_pb2.Provider:
        self._record("create_provider", provider)
        return provider

    async def validate(
        self,
        providers: Any = (),
        routes: Any = (),
        workspaces: Any = (),
    ) -> list[admin_pb2.ValidationResult]:
        """Every object accepted as it is (the control plane's rules are its own tests')."""
        self._record("validate", list(providers), list(routes), list(workspaces))
        return [
            *(admin_pb2.ValidationResult(kind="provider", name=p.name, provider=p) for p in providers),
            *(admin_pb2.ValidationResult(kind="route", name=r.name, route=r) for r in routes),
            *(admin_pb2.ValidationResult(kind="workspace", name=w.name, workspace=w)
              for w in workspaces),
        ]  # fmt: skip

    async def list_providers(self) -> list[common_pb2.Provider]:
        self._record("list_providers")
        return [
            common_pb2.Provider(name="anthropic", kind="anthropic", api_key_env="ANTHROPIC_KEY"),
            common_pb2.Provider(name="bedrock", kind="bedrock", options={"region": "us-east-1"}),
            common_pb2.Provider(name="sim", kind="simulator"),
        ]

    async def query_usage(self, **kwargs: Any) -> list[telemetry_pb2.UsageRow]:
        self._record("query_usage", kwargs)
        return list(FakeClient.usage_rows)

    async def tail_logs(self, **kwargs: Any) -> AsyncIterator[telemetry_pb2.UsageEvent]:
        self._record("tail_logs", kwargs)
        for event in FakeClient.events:
            yield event

    async def list_dataplanes(self) -> discovery_pb2.ListDataPlanesResponse:
        self._record("list_dataplanes")
        return discovery_pb2.ListDataPlanesResponse(
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


def refusal(code: grpc.StatusCode, message: str) -> ClientError:
    return ClientError(code, message)
