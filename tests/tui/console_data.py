"""The console tests' data, in the one admin-client fake (:mod:`tests.fakes.admin_client`)."""

from __future__ import annotations

from gwapi.v1 import admin_pb2, common_pb2, discovery_pb2, telemetry_pb2
from tests.fakes.admin_client import FakeAdminClient

DAY = common_pb2.PERIOD_DAY
MONTH = common_pb2.PERIOD_MONTH


def _budget(
    amount_usd: float, spent_usd: float, period: common_pb2.Period.ValueType
) -> common_pb2.BudgetStatus:
    return common_pb2.BudgetStatus(
        budget=common_pb2.Budget(amount_micros=int(amount_usd * 1e6), period=period),
        spent_micros=int(spent_usd * 1e6),
    )


def log_event(n: int, **fields: object) -> telemetry_pb2.UsageEvent:
    event = telemetry_pb2.UsageEvent(
        request_id=f"req_{n:04d}",
        time_ms=1_700_000_000_000 + n * 1000,
        workspace="research" if n % 2 else "platform",
        key_id=f"key_{n % 3}",
        key_name="ci-bot" if n % 2 else "alice",
        model_requested="claude-sonnet-4",
        model_served="claude-sonnet-4",
        provider="anthropic",
        attempts=1,
        status=200,
        latency_ms=800 + n,
        ttfb_ms=300,
        session_id=f"sess-{n % 2}",
        usage=common_pb2.Usage(input_tokens=1000 + n, output_tokens=200, cost_micros=4_500),
        attempt_log=[
            telemetry_pb2.Attempt(
                provider="anthropic", model="claude-sonnet-4", status=200, outcome="served"
            )
        ],
    )
    for name, value in fields.items():
        if name == "attempt_log":
            del event.attempt_log[:]
            event.attempt_log.extend(value)  # type: ignore[arg-type]
        else:
            setattr(event, name, value)
    return event


def audit_event(n: int, **fields: object) -> admin_pb2.AuditEvent:
    """Event ``n``: alternately a workspace budget change and a key creation."""
    event = admin_pb2.AuditEvent(
        id=n,
        time_ms=1_700_000_000_000 + n * 1000,
        actor="bootstrap",
        actor_name="bootstrap admin token",
        actor_role="admin",
        peer=f"ipv4:10.0.0.{n}:50123",
    )
    if n % 2:
        event.MergeFrom(
            admin_pb2.AuditEvent(
                method="UpdateWorkspace", action="workspace.update", resource_kind="workspace",
                resource="research", workspace="research",
                before_json='{"limits": {"rpm": 60}, "name": "research"}',
                after_json='{"limits": {"rpm": 120}, "name": "research"}',
            )
        )  # fmt: skip
    else:
        event.MergeFrom(
            admin_pb2.AuditEvent(
                method="CreateKey", action="key.create", resource_kind="key",
                resource=f"key_{n}", workspace="platform",
                after_json=f'{{"id": "key_{n}", "name": "bot-{n}", "workspace": "platform"}}',
            )
        )  # fmt: skip
    for name, value in fields.items():
        setattr(event, name, value)
    return event


def console_fake(initial_logs: int = 3) -> FakeAdminClient:
    """Three workspaces, keys, providers, developers, usage per grouping, ``initial_logs`` logged
    requests and three audit events; follows wait for what the test pushes."""
    workspaces = [
        common_pb2.Workspace(name="platform", budget_status=[_budget(100, 45, MONTH)]),
        common_pb2.Workspace(
            name="research", budget_status=[_budget(10, 9.5, DAY), _budget(500, 20, MONTH)]
        ),
        common_pb2.Workspace(name="sandbox"),
    ]
    keys = [
        common_pb2.VirtualKey(
            id="key_b", name="ci-bot", workspace="research", provider="anthropic",
            created_at_ms=1_700_000_300_000, budget_status=[_budget(5, 1, DAY)],
        ),
        common_pb2.VirtualKey(
            id="key_a", name="alice", workspace="platform", route="claude-default",
            created_at_ms=1_700_000_100_000,
        ),
        common_pb2.VirtualKey(
            id="key_c", name="old-laptop", workspace="platform", provider="anthropic",
            created_at_ms=1_700_000_200_000, revoked_at_ms=1_700_000_400_000,
        ),
    ]  # fmt: skip
    providers = [
        common_pb2.Provider(
            name="anthropic", kind="anthropic", base_url="https://api.anthropic.com",
            api_key_env="ANTHROPIC_API_KEY",
        ),
        common_pb2.Provider(name="bedrock", kind="bedrock", options={"region": "us-east-1"}),
        common_pb2.Provider(name="sim", kind="simulator", options={"latency_ms": "50"}),
    ]  # fmt: skip
    dataplanes = discovery_pb2.ListDataPlanesResponse(
        current_version="v42",
        dataplanes=[
            discovery_pb2.DataPlaneStatus(
                node_id="dp-1", connected=True, breakers={"bedrock": "open"}
            ),
            discovery_pb2.DataPlaneStatus(
                node_id="dp-2", connected=True, breakers={"sim": "half_open"}
            ),
        ],
    )
    usage = {
        "workspace": [
            telemetry_pb2.UsageRow(group="platform", requests=120, errors=0, cost_micros=2_400_000),
            telemetry_pb2.UsageRow(group="research", requests=40, errors=4, cost_micros=900_000),
        ],
        "session": [
            telemetry_pb2.UsageRow(
                group="sess-alpha", requests=12, input_tokens=50_000, output_tokens=4_000,
                cache_read_input_tokens=120_000, cost_micros=1_250_000,
            ),
            telemetry_pb2.UsageRow(group="sess-beta", requests=3, errors=1, cost_micros=30_000),
        ],
    }  # fmt: skip
    developers = [
        common_pb2.Developer(
            id="dev_00000000000000a1", email="alice@example.com", name="Alice",
            workspace="platform", groups=["platform-eng"], subject="sub-alice",
            last_sign_in_ms=1_700_000_500_000, created_at_ms=1_699_000_000_000,
            budget_status=[_budget(50, 12, DAY)], active_sessions=2,
            effective_limits=common_pb2.Limits(
                budgets=[common_pb2.Budget(amount_micros=50_000_000, period=DAY)], rpm=120
            ),
        ),
        common_pb2.Developer(
            id="dev_00000000000000b2", email="bob@example.com", name="Bob",
            workspace="research", groups=["research"], subject="sub-bob",
            last_sign_in_ms=1_700_000_400_000, created_at_ms=1_699_500_000_000,
            active_sessions=1,
        ),
        common_pb2.Developer(
            id="dev_00000000000000c3", email="carol@example.com", name="Carol",
            workspace="platform", last_sign_in_ms=1_699_900_000_000,
            disabled_at_ms=1_700_000_100_000,
        ),
    ]  # fmt: skip
    usage["developer"] = [
        telemetry_pb2.UsageRow(
            group="alice@example.com", developer_email="alice@example.com",
            workspace="platform", requests=40, cost_micros=12_000_000,
            client_cost_micros=13_500_000, lines_added=900, lines_removed=120, commits=6,
            pull_requests=3, edits_accepted=41, edits_rejected=4, client_sessions=5,
        ),
        telemetry_pb2.UsageRow(
            group="bob@example.com", developer_email="bob@example.com", workspace="research",
            requests=3, cost_micros=400_000, client_cost_micros=402_000, lines_added=10,
        ),
        telemetry_pb2.UsageRow(group="", requests=160, cost_micros=3_300_000),
    ]  # fmt: skip
    return FakeAdminClient(
        workspaces=workspaces,
        keys=keys,
        providers=providers,
        developers=developers,
        dataplanes=dataplanes,
        usage=usage,
        logs=[log_event(n) for n in range(1, initial_logs + 1)],
        audit=[audit_event(n) for n in range(1, 4)],
    )
