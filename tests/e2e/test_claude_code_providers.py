"""The real Claude Code CLI through the gateway to Bedrock and Vertex, in every client format.

(a) Anthropic-format client → Bedrock provider      (b) Bedrock-format client → Bedrock provider
(c) Anthropic-format client → Vertex provider       (d) Vertex-format client  → Vertex provider

The upstreams are the strict fakes: the Bedrock fake verifies every SigV4 signature with the
secret it knows, the Vertex fake only accepts OAuth tokens its own token endpoint issued against a
service-account JWT it verified. Each run must complete the prompt and be metered exactly: the
tokens the fake reported, priced at the served model's rates, to the micro-dollar.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controlplane.server import running
from controlplane.settings import Settings as ControlPlaneSettings
from dataplane.metering.meter import TokenUsage
from dataplane.metering.pricing import PriceTable
from dataplane.process.server import DataPlane
from dataplane.process.server import Settings as DataPlaneSettings
from gwapi.v1 import admin_pb2, common_pb2, telemetry_pb2
from gwclient.client import GatewayClient
from tests.e2e.providers_support import bedrock_at, vertex_at
from tests.e2e.test_claude_code import claude_env, run_claude
from tests.fakes.anthropic import DEFAULT_USAGE, FakeAnthropic, Scripted
from tests.fakes.bedrock import ACCESS_KEY, SECRET_KEY, FakeBedrock
from tests.fakes.vertex import FakeVertex, write_service_account

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(150),
    pytest.mark.usefixtures("claude_code"),  # missing: a skip here, a failure under CI
]

ADMIN = "admin-token-providers-e2e"
DP_TOKEN = "dataplane-token-providers-e2e"
ENV = {"E2E_AWS_ACCESS": ACCESS_KEY, "E2E_AWS_SECRET": SECRET_KEY}
OVERRIDE = (
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0"  # the route's model for its Bedrock target
)


@dataclass
class Stack:
    bedrock: FakeBedrock
    vertex: FakeVertex
    admin: GatewayClient
    dp: DataPlane
    keys: dict[str, str]  # provider name (or "fallback" for the route) -> virtual key
    primary: FakeAnthropic

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.dp.port}"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    bedrock = FakeBedrock(text="Bedrock-fake says hi through Tollgate.")
    vertex = FakeVertex(text="Vertex-fake says hi through Tollgate.")
    await bedrock.start()
    # An Anthropic provider that is down (every call 529 Overloaded): the route's primary.
    primary = FakeAnthropic(api_key=ACCESS_KEY, text="never served")  # its key: $E2E_AWS_ACCESS
    primary.on_request = lambda _req: Scripted(
        status=529,
        headers=[(b"content-type", b"application/json")],
        frames=[b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'],
    )
    await primary.start()
    await vertex.start()
    sa_file = write_service_account(tmp_path, vertex.token_uri)
    settings = ControlPlaneSettings(
        listen="127.0.0.1:0",
        db_url=f"sqlite:///{tmp_path / 'cp.db'}",
        admin_token=ADMIN,
        dataplane_token=DP_TOKEN,
    )
    try:
        async with running(settings) as cp, GatewayClient(f"127.0.0.1:{cp.port}", ADMIN) as admin:
            await admin.create_workspace(common_pb2.Workspace(name="cloud"))
            await admin.create_provider(
                bedrock_at(bedrock.base_url, "bedrock", "E2E_AWS_ACCESS", "E2E_AWS_SECRET")
            )
            await admin.create_provider(vertex_at(vertex.api_base, vertex.project, sa_file))
            await admin.create_provider(
                common_pb2.Provider(
                    name="anthropic",
                    kind="anthropic",
                    base_url=primary.base_url,
                    api_key_env="E2E_AWS_ACCESS",
                )
            )
            await admin.create_route(
                common_pb2.Route(
                    name="fallback",
                    mode="fallback",
                    targets=[
                        common_pb2.RouteTarget(provider="anthropic"),
                        common_pb2.RouteTarget(provider="bedrock", model=OVERRIDE),
                    ],
                )
            )
            created = await admin.create_key(
                admin_pb2.CreateKeyRequest(workspace="cloud", name="cc-fallback", route="fallback")
            )
            keys = {"fallback": created.secret}
            for provider in ("bedrock", "vertex"):
                created = await admin.create_key(
                    admin_pb2.CreateKeyRequest(
                        workspace="cloud", name=f"cc-{provider}", provider=provider
                    )
                )
                keys[provider] = created.secret
            dp = DataPlane(
                DataPlaneSettings(
                    listen="127.0.0.1:0",
                    control_plane=f"127.0.0.1:{cp.port}",
                    token=DP_TOKEN,
                    state_dir=tmp_path / "dp",
                    env=ENV,
                )
            )
            await dp.start()
            try:
                await dp.wait_for_snapshot()
                yield Stack(bedrock, vertex, admin, dp, keys, primary)
            finally:
                await dp.stop()
    finally:
        for fake in (bedrock, vertex, primary):
            with contextlib.suppress(OSError):
                await fake.stop()


def client_env(stack: Stack, home: Path, door: str, provider: str) -> dict[str, str]:
    env = claude_env(home, stack.url, stack.keys[provider])
    if door == "bedrock":
        del env["ANTHROPIC_BASE_URL"]
        env |= {
            "CLAUDE_CODE_USE_BEDROCK": "1",
            "ANTHROPIC_BEDROCK_BASE_URL": f"{stack.url}/bedrock",
            "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1",
            "AWS_REGION": "us-east-1",
        }
    elif door == "vertex":
        del env["ANTHROPIC_BASE_URL"]
        env |= {
            "CLAUDE_CODE_USE_VERTEX": "1",
            "ANTHROPIC_VERTEX_BASE_URL": f"{stack.url}/vertex/v1",
            "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
            "ANTHROPIC_VERTEX_PROJECT_ID": "developer-project",
            "CLOUD_ML_REGION": "us-east5",
        }
    return env


async def events_of(admin: GatewayClient, key_name: str) -> list[telemetry_pb2.UsageEvent]:
    """The usage events of key ``key_name``, once the first reached the control plane."""
    events: list[telemetry_pb2.UsageEvent] = []
    for _ in range(100):
        events = [e async for e in admin.tail_logs(limit=100) if e.key_name == key_name]
        if events:
            break
        await asyncio.sleep(0.1)
    assert events, "no usage reached the control plane"
    return events


def usage_of(event: telemetry_pb2.UsageEvent) -> TokenUsage:
    """The token counts an event was metered on."""
    u = event.usage
    return TokenUsage(
        u.input_tokens,
        u.output_tokens,
        u.cache_creation_input_tokens,
        u.cache_read_input_tokens,
        u.cache_write_5m_tokens,
        u.cache_write_1h_tokens,
    )


def expected_usage() -> TokenUsage:
    split: dict[str, Any] = DEFAULT_USAGE["cache_creation"]
    return TokenUsage(
        input_tokens=DEFAULT_USAGE["input_tokens"],
        output_tokens=42,
        cache_creation_input_tokens=DEFAULT_USAGE["cache_creation_input_tokens"],
        cache_read_input_tokens=DEFAULT_USAGE["cache_read_input_tokens"],
        cache_write_5m_tokens=split["ephemeral_5m_input_tokens"],
        cache_write_1h_tokens=split["ephemeral_1h_input_tokens"],
    )


@pytest.mark.parametrize(
    ("door", "provider"),
    [
        ("anthropic", "bedrock"),
        ("bedrock", "bedrock"),
        ("anthropic", "vertex"),
        ("vertex", "vertex"),
    ],
)
async def test_claude_code_through_bedrock_and_vertex(
    stack: Stack, tmp_path: Path, door: str, provider: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    code, out, err = await run_claude(client_env(stack, home, door, provider), tmp_path)
    fake = stack.bedrock if provider == "bedrock" else stack.vertex
    seen = [
        f"{r.method} {getattr(r, 'path', None) or getattr(r, 'raw_path', '')}"
        for r in fake.requests
    ]
    assert code == 0, f"claude exited {code}\nstdout: {out[-1500:]}\nstderr: {err[-1500:]}\n{seen}"
    assert fake.text in out, f"stdout: {out[-1500:]}\n{seen}"
    for r in fake.requests:  # the virtual key never reaches a provider
        assert stack.keys[provider].encode() not in r.body
        assert all(stack.keys[provider].encode() not in v for _, v in r.headers)
    if provider == "vertex":
        assert stack.vertex.issuances == 1  # one token served every request

    # Metered exactly: the fake's token counts at the served model's price, to the micro-dollar.
    prices = PriceTable.from_proto(await stack.admin.list_prices())
    events = await events_of(stack.admin, f"cc-{provider}")
    for event in events:
        assert event.status == 200 and event.provider == provider and not event.error_type
        u = event.usage
        got = usage_of(event)
        assert got == expected_usage()
        assert u.cost_micros == prices.price(event.model_served, got).cost_micros > 0
        assert event.session_id
        assert event.path.startswith(
            {"anthropic": "/v1/", "bedrock": "/bedrock/", "vertex": "/vertex/"}[door]
        )


async def test_claude_code_falls_back_from_anthropic_to_bedrock_with_a_model_override(
    stack: Stack, tmp_path: Path
) -> None:
    """The primary is overloaded: Claude Code never notices, Bedrock serves the route's model."""
    home = tmp_path / "home"
    home.mkdir()
    env = claude_env(home, stack.url, stack.keys["fallback"])
    code, out, err = await run_claude(env, tmp_path)
    assert code == 0, f"claude exited {code}\nstdout: {out[-1500:]}\nstderr: {err[-1500:]}"
    assert stack.bedrock.text in out
    assert stack.primary.requests, "the primary was never tried"
    assert all(r.model_id == OVERRIDE for r in stack.bedrock.requests), [
        r.model_id for r in stack.bedrock.requests
    ]
    prices = PriceTable.from_proto(await stack.admin.list_prices())
    events = await events_of(stack.admin, "cc-fallback")
    for event in events:
        assert event.status == 200 and event.provider == "bedrock"
        assert [a.outcome for a in event.attempt_log] == ["fell_back", "served"]
        assert event.attempt_log[1].model == OVERRIDE
        u = event.usage
        got = usage_of(event)
        assert got == expected_usage()
        # Priced as the model that served (Sonnet 4.5), not the one Claude Code asked for.
        assert u.cost_micros == prices.price("claude-sonnet-4-5-20250929", got).cost_micros
