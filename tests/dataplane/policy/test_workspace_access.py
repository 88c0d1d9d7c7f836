"""Workspace access controls at request time: 403 ``permission_error`` naming what is allowed,
on every front door, before any limit is reserved, logged as a usage event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from dataplane.config.snapshot import Snapshot
from dataplane.process.server import DataPlane
from gwapi.v1 import common_pb2, discovery_pb2
from tests.dataplane.conftest import (
    LIMITED,
    SECRET,
    SIMULATED,
    build_snapshot,
    sha,
    start_dataplane,
    usage_events,
)
from tests.fakes.anthropic import FakeAnthropic

ROUTED = "gw-routed-0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
HEADERS = {
    "authorization": f"Bearer {SECRET}",
    "anthropic-version": "2023-06-01",
    "content-type": "application/json",
    "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
}


def body(model: str) -> bytes:
    return orjson.dumps(
        {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    )


def snapshot(upstream: FakeAnthropic, version: str = "v1", **access: object) -> Snapshot:
    """The conftest snapshot plus a route ``r`` (anthropic → dead) and a key on it, with
    ``access`` (allowed_* lists, limits) set on workspace team-a."""
    msg = build_snapshot(upstream.base_url, version)
    msg.routes.append(
        common_pb2.Route(
            name="r",
            mode="fallback",
            targets=[
                common_pb2.RouteTarget(provider="anthropic"),
                common_pb2.RouteTarget(provider="dead"),
            ],
        )
    )
    msg.keys.append(
        discovery_pb2.SnapshotKey(
            id="key_routed", secret_sha256=sha(ROUTED), name="routed", workspace="team-a", route="r"
        )
    )
    ws = msg.workspaces[0]
    for field, value in access.items():
        if field == "limits":
            ws.limits.CopyFrom(value)  # type: ignore[arg-type]
        else:
            getattr(ws, field).extend(value)
    return Snapshot.from_proto(msg)


@pytest.fixture
async def dp(tmp_path: Path, upstream: FakeAnthropic) -> AsyncIterator[DataPlane]:
    plane = await start_dataplane(tmp_path / "dp", None, max_body=1024 * 1024)
    yield plane
    await plane.stop()


@pytest.fixture
async def client(dp: DataPlane) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}", timeout=10) as c:
        yield c


def refusal(r: httpx.Response) -> str:
    assert r.status_code == 403, r.text
    assert r.headers["x-should-retry"] == "false"
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "permission_error"
    assert err["request_id"] == r.headers["request-id"]
    return str(err["error"]["message"])


async def test_model_outside_the_workspace_is_refused_naming_the_allowed_ones(
    dp, client, upstream
) -> None:
    dp.holder.swap(snapshot(upstream, allowed_models=["claude-sonnet-*", "claude-haiku-*"]))
    r = await client.post("/v1/messages", content=body("claude-opus-4-8"), headers=HEADERS)
    message = refusal(r)
    assert "claude-opus-4-8" in message and "workspace 'team-a'" in message
    assert "(allowed: claude-sonnet-*, claude-haiku-*)" in message and "/model" in message
    assert upstream.requests == []
    (event,) = await usage_events(dp, 1)
    assert (event.status, event.error_type) == (403, "permission_error")
    assert event.model_requested == "claude-opus-4-8" and event.key_id == "key_alice"
    assert "not allowed in workspace" in event.error_message

    r = await client.post("/v1/messages", content=body("claude-haiku-4-5"), headers=HEADERS)
    assert r.status_code == 200
    assert len(upstream.requests) == 1


async def test_count_tokens_is_refused_too(dp, client, upstream) -> None:
    dp.holder.swap(snapshot(upstream, allowed_models=["claude-haiku-*"]))
    r = await client.post(
        "/v1/messages/count_tokens", content=body("claude-opus-4-8"), headers=HEADERS
    )
    assert "not allowed in workspace 'team-a'" in refusal(r)
    assert upstream.requests == []


async def test_key_and_workspace_lists_both_apply(dp, client, upstream) -> None:
    # The key allows claude-haiku-*, the workspace claude-haiku-4-5 only.
    dp.holder.swap(snapshot(upstream, allowed_models=["claude-haiku-4-5"]))
    limited = {**HEADERS, "authorization": f"Bearer {LIMITED}"}
    r = await client.post("/v1/messages", content=body("claude-haiku-4-6"), headers=limited)
    assert "(allowed: claude-haiku-4-5)" in refusal(r)
    r = await client.post("/v1/messages", content=body("claude-haiku-4-5"), headers=limited)
    assert r.status_code == 200


async def test_refusals_consume_no_rate_limit(dp, client, upstream) -> None:
    dp.holder.swap(
        snapshot(upstream, allowed_models=["claude-haiku-*"], limits=common_pb2.Limits(rpm=1))
    )
    for _ in range(3):
        refusal(await client.post("/v1/messages", content=body("claude-opus-4-8"), headers=HEADERS))
    # The one request a minute is still there for an allowed model ...
    r = await client.post("/v1/messages", content=body("claude-haiku-4-5"), headers=HEADERS)
    assert r.status_code == 200
    # ... and it really was the last one.
    r = await client.post("/v1/messages", content=body("claude-haiku-4-5"), headers=HEADERS)
    assert r.status_code == 429


async def test_narrowing_refuses_an_existing_key(dp, client, upstream) -> None:
    dp.holder.swap(snapshot(upstream))
    r = await client.post("/v1/messages", content=body("claude-haiku-4-5"), headers=HEADERS)
    assert r.status_code == 200
    # The control plane narrowed team-a to the simulator; alice's key targets anthropic.
    dp.holder.swap(snapshot(upstream, "v2", allowed_providers=["sim"]))
    r = await client.post("/v1/messages", content=body("claude-haiku-4-5"), headers=HEADERS)
    message = refusal(r)
    assert "Virtual key 'alice-laptop' targets provider 'anthropic'" in message
    assert "workspace 'team-a' does not allow (allowed: providers sim)" in message
    assert len(upstream.requests) == 1
    sim = {**HEADERS, "authorization": f"Bearer {SIMULATED}"}
    r = await client.post("/v1/messages", content=body("claude-haiku-4-5"), headers=sim)
    assert r.status_code == 200


async def test_route_keys(dp, client, upstream) -> None:
    routed = {**HEADERS, "authorization": f"Bearer {ROUTED}"}
    # Providers listed, routes not: a route must stay within them (r also reaches 'dead').
    dp.holder.swap(snapshot(upstream, allowed_providers=["anthropic"]))
    r = await client.post("/v1/messages", content=body("claude-haiku-4-5"), headers=routed)
    assert "uses route 'r', which reaches provider 'dead'" in refusal(r)
    # Listing the route allows it, whatever it reaches.
    dp.holder.swap(snapshot(upstream, "v2", allowed_providers=["anthropic"], allowed_routes=["r"]))
    r = await client.post("/v1/messages", content=body("claude-haiku-4-5"), headers=routed)
    assert r.status_code == 200
    # Routes only: a key aimed straight at a provider is outside.
    dp.holder.swap(snapshot(upstream, "v3", allowed_routes=["r"]))
    r = await client.post("/v1/messages", content=body("claude-haiku-4-5"), headers=HEADERS)
    assert "targets provider 'anthropic'" in refusal(r)
    assert "(allowed: routes r)" in r.json()["error"]["message"]


async def test_bedrock_door_refuses_in_bedrock_shape(dp, client, upstream) -> None:
    dp.holder.swap(snapshot(upstream, allowed_models=["claude-haiku-*"]))
    bedrock_body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }
    r = await client.post(
        "/bedrock/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke",
        content=orjson.dumps(bedrock_body),
        headers=HEADERS,
    )
    assert r.status_code == 403
    assert r.headers["x-amzn-errortype"] == "AccessDeniedException"
    err = r.json()
    assert "claude-sonnet-4-5-20250929" in err["message"]
    assert "(allowed: claude-haiku-*)" in err["message"]
    assert err["error"]["type"] == "permission_error"
    assert upstream.requests == []
    (event,) = await usage_events(dp, 1)
    assert event.status == 403 and event.path.startswith("/bedrock/model/")


async def test_vertex_door_refuses_with_an_anthropic_error(dp, client, upstream) -> None:
    dp.holder.swap(snapshot(upstream, allowed_models=["claude-haiku-*"]))
    path = (
        "/vertex/v1/projects/p/locations/us-east5/publishers/anthropic/models/"
        "claude-opus-4-8:rawPredict"
    )
    vertex_body = {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }
    r = await client.post(path, content=orjson.dumps(vertex_body), headers=HEADERS)
    assert "Model 'claude-opus-4-8' is not allowed in workspace 'team-a'" in refusal(r)
    assert upstream.requests == []


async def test_model_listings_follow_the_workspace(dp, client, upstream) -> None:
    dp.holder.swap(snapshot(upstream, allowed_models=["claude-sonnet-*", "claude-haiku-*"]))
    r = await client.get("/v1/models", headers=HEADERS)
    assert [m["id"] for m in r.json()["data"]] == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    r = await client.get("/bedrock/inference-profiles", headers=HEADERS)
    ids = {p["inferenceProfileId"] for p in r.json()["inferenceProfileSummaries"]}
    assert ids == {
        f"{geo}.anthropic.{m}"
        for geo in ("us", "global")
        for m in ("claude-sonnet-4-5", "claude-haiku-4-5")
    }
    # Without a key the AWS SDK's call still lists everything the gateway meters.
    r = await client.get("/bedrock/inference-profiles")
    ids = {p["inferenceProfileId"] for p in r.json()["inferenceProfileSummaries"]}
    assert "us.anthropic.claude-opus-4-8" in ids
