"""GatewayClient against a small in-process grpc.aio server: metadata, errors, streams, health."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gwapi.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    telemetry_pb2,
    telemetry_pb2_grpc,
)
from gwclient.client import GatewayClient
from gwclient.errors import ClientError, translate_error

TOKEN = "tok-very-secret"


def _authorized(context: Any) -> bool:
    return dict(context.invocation_metadata()).get("authorization") == f"Bearer {TOKEN}"


class Admin(admin_pb2_grpc.AdminServicer):
    masks: list[list[str]] = []

    async def GetWorkspace(self, request: Any, context: Any) -> common_pb2.Workspace:
        if not _authorized(context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid admin token")
        if request.name == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "workspace 'missing' does not exist")
        return common_pb2.Workspace(name=request.name)

    async def UpdateWorkspace(self, request: Any, context: Any) -> common_pb2.Workspace:
        Admin.masks.append(list(request.update_mask.paths))
        return request.workspace

    async def ListKeys(self, request: Any, context: Any) -> admin_pb2.ListKeysResponse:
        keys = [common_pb2.VirtualKey(id="key_1", workspace=request.workspace)]
        if request.include_revoked:
            keys.append(common_pb2.VirtualKey(id="key_2", revoked_at_ms=1))
        return admin_pb2.ListKeysResponse(keys=keys)


class Telemetry(telemetry_pb2_grpc.TelemetryServicer):
    async def TailLogs(self, request: Any, context: Any) -> AsyncIterator[telemetry_pb2.UsageEvent]:
        for i in range(request.limit):
            yield telemetry_pb2.UsageEvent(request_id=f"req_{i}", workspace=request.workspace)
        if request.workspace == "broken":
            await context.abort(grpc.StatusCode.INTERNAL, "ledger unavailable")


async def _server(with_health: bool) -> tuple[aio.Server, int]:
    server = aio.server()
    # Only the methods the tests call are served (the rest answer UNIMPLEMENTED).
    admin_pb2_grpc.add_AdminServicer_to_server(Admin(), server)  # type: ignore[abstract]
    telemetry_pb2_grpc.add_TelemetryServicer_to_server(Telemetry(), server)  # type: ignore[abstract]
    if with_health:
        servicer = health.aio.HealthServicer()
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.fixture
async def target() -> AsyncIterator[str]:
    server, port = await _server(with_health=False)
    yield f"127.0.0.1:{port}"
    await server.stop(None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_sends_the_token_and_returns_protobufs(target: str) -> None:
    async with GatewayClient(target, TOKEN) as client:
        ws = await client.get_workspace("team-a")
    assert isinstance(ws, common_pb2.Workspace)
    assert ws.name == "team-a"


async def test_refusals_keep_the_server_message(target: str) -> None:
    async with GatewayClient(target, TOKEN) as client:
        with pytest.raises(ClientError) as info:
            await client.get_workspace("missing")
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert info.value.message == "workspace 'missing' does not exist"


async def test_missing_token_is_unauthenticated(target: str) -> None:
    async with GatewayClient(target, "") as client:
        with pytest.raises(ClientError) as info:
            await client.get_workspace("team-a")
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.message == "missing or invalid admin token"


async def test_unreachable_control_plane_says_so() -> None:
    target = f"127.0.0.1:{_free_port()}"
    async with GatewayClient(target, TOKEN, timeout=5) as client:
        with pytest.raises(ClientError) as info:
            await client.list_workspaces()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert info.value.message == (
        f"cannot reach the control plane at {target}: is it running? (gwctl controlplane serve)"
    )
    assert TOKEN not in repr(info.value)


async def test_unimplemented_names_the_call(target: str) -> None:
    async with GatewayClient(target, TOKEN) as client:
        with pytest.raises(ClientError) as info:
            await client.list_prices()
    assert info.value.code == grpc.StatusCode.UNIMPLEMENTED
    assert "does not implement ListPrices" in info.value.message


async def test_update_mask_and_list_arguments(target: str) -> None:
    Admin.masks = []
    async with GatewayClient(target, TOKEN) as client:
        ws = await client.update_workspace(
            common_pb2.Workspace(name="a", description="d"), ["description"]
        )
        keys = await client.list_keys("team-a", include_revoked=True)
    assert ws.description == "d"
    assert Admin.masks == [["description"]]
    assert [k.id for k in keys] == ["key_1", "key_2"]
    assert keys[0].workspace == "team-a"


async def test_tail_logs_streams_and_translates_errors(target: str) -> None:
    async with GatewayClient(target, TOKEN) as client:
        events = [e async for e in client.tail_logs(limit=3, workspace="w")]
        assert [e.request_id for e in events] == ["req_0", "req_1", "req_2"]
        seen = []
        with pytest.raises(ClientError) as info:
            async for event in client.tail_logs(limit=1, workspace="broken"):
                seen.append(event.request_id)
    assert seen == ["req_0"]
    assert info.value.code == grpc.StatusCode.INTERNAL
    assert info.value.message == "ledger unavailable"


async def test_health() -> None:
    server, port = await _server(with_health=True)
    try:
        async with GatewayClient(f"127.0.0.1:{port}") as client:
            assert await client.health() == "SERVING"
    finally:
        await server.stop(None)
    server, port = await _server(with_health=False)
    try:
        async with GatewayClient(f"127.0.0.1:{port}") as client:
            assert await client.health() == "UNIMPLEMENTED"  # up, just without a health service
    finally:
        await server.stop(None)


def _rpc_error(code: grpc.StatusCode, details: str) -> aio.AioRpcError:
    return aio.AioRpcError(code, aio.Metadata(), aio.Metadata(), details=details)


def test_translate_error_keeps_intentional_unavailable() -> None:
    err = translate_error(
        _rpc_error(grpc.StatusCode.UNAVAILABLE, "database is unreachable: retry shortly"), "h:1"
    )
    assert err.message == "database is unreachable: retry shortly"
    err = translate_error(
        _rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"), "h:1"
    )
    assert err.message.startswith("cannot reach the control plane at h:1")
    err = translate_error(_rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), "h:1")
    assert err.message == "the control plane at h:1 did not answer in time"


async def test_repr_never_shows_the_token() -> None:
    async with GatewayClient("127.0.0.1:1", TOKEN) as client:
        assert TOKEN not in repr(client)
