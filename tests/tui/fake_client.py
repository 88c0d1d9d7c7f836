"""A fixed-data stand-in for ``gwclient.client.GatewayClient``: no network, no clock dependence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import grpc

from gwapi.v1 import admin_pb2, common_pb2, discovery_pb2, telemetry_pb2
from gwclient.errors import ClientError

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


class FakeClient:
    target = "fake-control-plane:50051"

    def __init__(self, initial_logs: int = 3) -> None:
        self.fail: str = ""  # when set, every unary call raises ClientError with this message
        self.revoked: list[str] = []
        self.calls: list[str] = []
        self.workspaces = [
            common_pb2.Workspace(name="platform", budget_status=[_budget(100, 45, MONTH)]),
            common_pb2.Workspace(
                name="research", budget_status=[_budget(10, 9.5, DAY), _budget(500, 20, MONTH)]
            ),
            common_pb2.Workspace(name="sandbox"),
        ]
        self.keys = [
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
        self.providers = [
            common_pb2.Provider(
                name="anthropic", kind="anthropic", base_url="https://api.anthropic.com",
                api_key_env="ANTHROPIC_API_KEY",
            ),
            common_pb2.Provider(name="bedrock", kind="bedrock", options={"region": "us-east-1"}),
            common_pb2.Provider(name="sim", kind="simulator", options={"latency_ms": "50"}),
        ]  # fmt: skip
        self.dataplanes = discovery_pb2.ListDataPlanesResponse(
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
        self.usage = {
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
        self.developers = [
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
        self.disabled: list[str] = []
        self.usage["developer"] = [
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
        self.initial_logs = [log_event(n) for n in range(1, initial_logs + 1)]
        self._queue: asyncio.Queue[telemetry_pb2.UsageEvent] | None = None
        self.tail_calls = 0
        # request id -> (request body, response body) for requests whose workspace keeps bodies
        self.bodies: dict[str, tuple[bytes, bytes]] = {}
        # StreamStats: frames pushed per group_by; stats_error makes every stream call fail.
        self.stats_error: ClientError | None = None
        self.stats_calls: list[str] = []
        self._stats_queues: dict[str, asyncio.Queue[telemetry_pb2.StatsFrame]] = {}
        # TailAudit: the history, then events pushed with push_audit; audit_error fails the call.
        self.initial_audit = [audit_event(n) for n in range(1, 4)]
        self._audit_queue: asyncio.Queue[admin_pb2.AuditEvent] | None = None
        self.audit_error: ClientError | None = None
        self.audit_calls = 0

    @property
    def queue(self) -> asyncio.Queue[telemetry_pb2.UsageEvent]:
        if self._queue is None:
            self._queue = asyncio.Queue()
        return self._queue

    def push_log(self, event: telemetry_pb2.UsageEvent) -> None:
        self.queue.put_nowait(event)

    def _check(self, name: str) -> None:
        self.calls.append(name)
        if self.fail:
            raise ClientError(grpc.StatusCode.UNAVAILABLE, self.fail)

    async def list_workspaces(self) -> list[common_pb2.Workspace]:
        self._check("list_workspaces")
        return list(self.workspaces)

    async def list_keys(
        self, workspace: str = "", include_revoked: bool = False
    ) -> list[common_pb2.VirtualKey]:
        self._check("list_keys")
        return [k for k in self.keys if include_revoked or not k.revoked_at_ms]

    async def revoke_key(self, key_id: str) -> common_pb2.VirtualKey:
        self._check("revoke_key")
        self.revoked.append(key_id)
        for key in self.keys:
            if key.id == key_id:
                key.revoked_at_ms = 1_700_000_900_000
                return key
        raise ClientError(grpc.StatusCode.NOT_FOUND, f"key {key_id!r} does not exist")

    async def list_developers(
        self, workspace: str = "", include_disabled: bool = False
    ) -> list[common_pb2.Developer]:
        self._check("list_developers")
        return [d for d in self.developers if include_disabled or not d.disabled_at_ms]

    async def disable_developer(self, id_or_email: str) -> common_pb2.Developer:
        self._check("disable_developer")
        self.disabled.append(id_or_email)
        for developer in self.developers:
            if id_or_email in (developer.id, developer.email):
                developer.disabled_at_ms = 1_700_000_900_000
                developer.active_sessions = 0
                return developer
        raise ClientError(grpc.StatusCode.NOT_FOUND, f"developer {id_or_email!r} not found")

    async def list_providers(self) -> list[common_pb2.Provider]:
        self._check("list_providers")
        return list(self.providers)

    async def list_dataplanes(self) -> discovery_pb2.ListDataPlanesResponse:
        self._check("list_dataplanes")
        return self.dataplanes

    async def query_usage(
        self,
        *,
        workspace: str = "",
        key_id: str = "",
        group_by: str = "",
        since_ms: int = 0,
        until_ms: int = 0,
    ) -> Sequence[telemetry_pb2.UsageRow]:
        self._check(f"query_usage:{group_by}")
        return list(self.usage.get(group_by, []))

    async def tail_logs(
        self, *, follow: bool = False, limit: int = 20, workspace: str = "", key_id: str = ""
    ) -> AsyncIterator[telemetry_pb2.UsageEvent]:
        self.tail_calls += 1
        for event in self.initial_logs[-limit:]:
            yield event
        while follow:
            yield await self.queue.get()

    async def get_log(self, request_id: str) -> telemetry_pb2.UsageEvent:
        """The full record of a logged request; only those in ``self.bodies`` kept bodies."""
        self._check("get_log")
        event = next((e for e in self.initial_logs if e.request_id == request_id), None)
        if event is None or request_id not in self.bodies:
            raise ClientError(grpc.StatusCode.NOT_FOUND, f"no log for {request_id}")
        full = telemetry_pb2.UsageEvent()
        full.CopyFrom(event)
        request, response = self.bodies[request_id]
        full.request_headers.update({"anthropic-version": "2023-06-01", "x-api-key": "[redacted]"})
        full.request_body, full.response_body = request, response
        return full

    @property
    def audit_queue(self) -> asyncio.Queue[admin_pb2.AuditEvent]:
        if self._audit_queue is None:
            self._audit_queue = asyncio.Queue()
        return self._audit_queue

    def push_audit(self, event: admin_pb2.AuditEvent) -> None:
        self.audit_queue.put_nowait(event)

    async def tail_audit(
        self, *, follow: bool = False, limit: int = 20, workspace: str = ""
    ) -> AsyncIterator[admin_pb2.AuditEvent]:
        self.audit_calls += 1
        if self.audit_error is not None:
            raise self.audit_error
        for event in self.initial_audit[-limit:]:
            yield event
        while follow:
            yield await self.audit_queue.get()

    def stats_queue(self, group_by: str) -> asyncio.Queue[telemetry_pb2.StatsFrame]:
        return self._stats_queues.setdefault(group_by, asyncio.Queue())

    def push_stats(self, group_by: str, *rows: telemetry_pb2.StatsRow) -> None:
        self.stats_queue(group_by).put_nowait(
            telemetry_pb2.StatsFrame(time_ms=1_700_000_000_000, rows=rows)
        )

    async def stream_stats(
        self, group_by: str, window_s: int = 60, workspace: str = ""
    ) -> AsyncIterator[telemetry_pb2.StatsFrame]:
        self.stats_calls.append(group_by)
        if self.stats_error is not None:
            raise self.stats_error
        queue = self.stats_queue(group_by)
        while True:
            yield await queue.get()
