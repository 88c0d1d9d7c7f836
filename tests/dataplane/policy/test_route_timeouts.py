"""A route's timeouts reach the adapters: a hanging upstream fails fast (504), idle limits hold."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dataplane.config.snapshot import ProviderConfig, RouteConfig, RouteTarget
from dataplane.errors import GatewayError, UpstreamTimeout
from dataplane.policy.runtime import route_timeouts
from dataplane.providers.anthropic import AnthropicProvider
from dataplane.providers.base import UpstreamRequest
from dataplane.providers.bedrock import BedrockProvider
from dataplane.providers.transport import Timeouts, Transport
from dataplane.providers.vertex import VertexProvider
from tests.dataplane.providers import test_bedrock as bedrock_t
from tests.dataplane.providers import test_vertex as vertex_t
from tests.fakes import bedrock as fake_bedrock
from tests.fakes.anthropic import UPSTREAM_KEY, FakeAnthropic, Scripted, stream_frames
from tests.fakes.bedrock import FakeBedrock
from tests.fakes.vertex import FakeVertex, write_service_account


def route(first_byte_ms: int = 0, idle_ms: int = 0, connect_ms: int = 0) -> RouteConfig:
    return RouteConfig(
        "r",
        "fallback",
        (RouteTarget("p", 1, ""),),
        0,
        (),
        connect_ms,
        first_byte_ms,
        idle_ms,
        0,
    )


def test_route_timeouts_from_the_route_fields() -> None:
    assert route_timeouts(route()) is None
    assert route_timeouts(route(first_byte_ms=250)) == Timeouts(10.0, 600.0, 0.25)
    assert route_timeouts(route(idle_ms=30_000, connect_ms=2000)) == Timeouts(2.0, 30.0, None)


@pytest.fixture
def upstream_oauth_tokens() -> tuple[str, ...]:
    """This module's fake Anthropic API takes no subscription tokens."""
    return ()


def anthropic(upstream: FakeAnthropic, transport: Transport) -> AnthropicProvider:
    # The provider's own read timeout is long: only the route's can make it fail fast.
    cfg = ProviderConfig(
        "anthropic", "anthropic", upstream.base_url, "UPSTREAM_KEY", (("timeout_read_s", "30"),)
    )
    return AnthropicProvider(cfg, transport, {"UPSTREAM_KEY": UPSTREAM_KEY})


def messages(timeouts: Timeouts | None) -> UpstreamRequest:
    body = b'{"model":"claude-sonnet-4-5","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}'
    return UpstreamRequest(
        path="/v1/messages",
        query=b"",
        headers=((b"anthropic-version", b"2023-06-01"), (b"content-type", b"application/json")),
        body=body,
        model="claude-sonnet-4-5",
        stream=True,
        request_id="gwreq_t",
        json={},
        betas=(),
        timeouts=timeouts,
    )


async def test_first_byte_timeout_fails_a_hanging_anthropic_upstream_fast(
    upstream: FakeAnthropic, transport: Transport
) -> None:
    upstream.script.append(Scripted(hang=True))
    start = time.monotonic()
    with pytest.raises(GatewayError) as info:
        await anthropic(upstream, transport).send(messages(route_timeouts(route(200))))
    assert info.value.status == 504
    assert time.monotonic() - start < 1.5


async def test_without_route_timeouts_the_provider_default_applies(
    upstream: FakeAnthropic, transport: Transport
) -> None:
    response = await anthropic(upstream, transport).send(messages(None))
    assert response.status == 200
    body = await response.read()
    await response.aclose()
    assert b"message_stop" in body


async def test_idle_timeout_between_chunks_after_a_longer_first_byte_limit(
    upstream: FakeAnthropic, transport: Transport
) -> None:
    frames = stream_frames("claude-sonnet-4-5", ["a", "b"])
    provider = anthropic(upstream, transport)
    upstream.script.append(Scripted(frames=frames, delay=0.6))
    response = await provider.send(messages(Timeouts(connect=2.0, read=0.2, first_byte=5.0)))
    assert response.status == 200
    with pytest.raises(UpstreamTimeout):
        async for _ in response.aiter_raw():
            pass
    await response.aclose()
    # A pause longer than the first-byte limit but within the idle limit streams through.
    upstream.script.append(Scripted(frames=[frames[0], frames[-1]], delay=0.3))
    response = await provider.send(messages(Timeouts(connect=2.0, read=2.0, first_byte=0.2)))
    assert b"message_stop" in await response.read()
    await response.aclose()


async def test_bedrock_honours_the_route_first_byte_timeout(transport: Transport) -> None:
    fake = FakeBedrock()
    await fake.start()
    try:
        cfg = bedrock_t.config(fake.base_url)
        provider = BedrockProvider(cfg, transport, bedrock_t.ENV)
        fake.script.append(fake_bedrock.Scripted(hang=0.6, frames=[]))
        with pytest.raises(GatewayError) as info:
            await provider.send(_with(bedrock_t.messages_request(), Timeouts(2.0, 30.0, 0.2)))
        assert info.value.status == 504
        # Headers later than the idle limit but within the first-byte limit: fine.
        frames = fake_bedrock.stream_frames(bedrock_t.SONNET, ["hi"])
        fake.script.append(fake_bedrock.Scripted(hang=0.5, frames=frames))
        response = await provider.send(_with(bedrock_t.messages_request(), Timeouts(2.0, 0.2, 3.0)))
        assert response.status == 200
        assert b"message_stop" in await response.read()
        await response.aclose()
    finally:
        await fake.stop()


async def test_vertex_honours_the_route_first_byte_timeout(
    transport: Transport, tmp_path: Path
) -> None:
    fake = FakeVertex()
    await fake.start()
    try:
        sa = write_service_account(tmp_path, fake.token_uri)
        cfg = vertex_t.config(fake.api_base, region="us-east5", credentials_file=str(sa))
        provider = VertexProvider(cfg, transport, env={})
        fake.script.append(Scripted(hang=True))
        start = time.monotonic()
        with pytest.raises(GatewayError) as info:
            await provider.send(_with(vertex_t.request(), Timeouts(2.0, 30.0, 0.2)))
        assert info.value.status == 504
        assert time.monotonic() - start < 1.5
        await provider.aclose()
    finally:
        await fake.stop()


def _with(request: UpstreamRequest, timeouts: Timeouts) -> UpstreamRequest:
    from dataclasses import replace

    return replace(request, timeouts=timeouts)
