"""Authentication: every service, every token, over real gRPC (SQLite only: auth is DB-free)."""

import logging

import grpc
import pytest
from grpc import StatusCode
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from controlplane.auth import Authenticator, bearer_token
from controlplane.identity import BOOTSTRAP, TokenRole
from controlplane.rpc_policies import Rule, policy_for
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import discovery_pb2 as dpb
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.conftest import ADMIN_TOKEN, DATAPLANE_TOKEN, Clients, expect_error


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url


def test_policy_table() -> None:
    assert policy_for("/gwapi.v1.Admin/CreateWorkspace").rule is Rule.ADMIN_ONLY
    assert policy_for("/gwapi.v1.Admin/CreateKey").rule is Rule.WORKSPACE_WRITE
    assert policy_for("/gwapi.v1.Telemetry/QueryUsage").rule is Rule.SCOPED_READ
    assert policy_for("/gwapi.v1.Telemetry/GetLog").rule is Rule.WORKSPACE_READ
    assert policy_for("/gwapi.v1.Discovery/ListDataPlanes").rule is Rule.GLOBAL_READ
    assert policy_for("/gwapi.v1.Discovery/Watch").rule is Rule.DATAPLANE
    assert policy_for("/gwapi.v1.Telemetry/ReportUsage").rule is Rule.DATAPLANE
    assert policy_for("/grpc.health.v1.Health/Check").rule is Rule.OPEN
    reflection_info = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    assert policy_for(reflection_info).rule is Rule.OPEN
    assert policy_for("/some.Other/Method").rule is Rule.ADMIN_ONLY  # deny by default


async def test_bearer_parsing_and_default_dataplane_token() -> None:
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("Authorization", b"bearer  abc ")]) == "abc"
    assert bearer_token([("authorization", "Basic abc")]) == ""
    assert bearer_token([("x-other", "1")]) is None
    auth = Authenticator("adm", "")
    assert await auth.authenticate("adm", dataplane_call=True) is BOOTSTRAP
    assert (await auth.authenticate("adm", dataplane_call=False)).role is TokenRole.ADMIN
    with pytest.raises(ValueError, match="admin token"):
        Authenticator("", "x")


async def test_admin_calls_need_the_admin_token(channel: grpc.aio.Channel) -> None:
    req = apb.ListWorkspacesRequest()
    await expect_error(
        Clients(channel, None).admin.ListWorkspaces(req),
        StatusCode.UNAUTHENTICATED,
        "missing admin token: set TOLLGATE_ADMIN_TOKEN or pass --token-file PATH",
    )
    await expect_error(
        Clients(channel, "wrong").admin.ListWorkspaces(req),
        StatusCode.UNAUTHENTICATED,
        "invalid admin token",
    )
    await expect_error(
        Clients(channel, DATAPLANE_TOKEN).admin.ListWorkspaces(req),
        StatusCode.UNAUTHENTICATED,
        "needs an admin token",
    )
    await expect_error(
        Clients(channel, "").admin.ListWorkspaces(req), StatusCode.UNAUTHENTICATED, "malformed"
    )
    ok = await Clients(channel, ADMIN_TOKEN).admin.ListWorkspaces(req)
    assert list(ok.workspaces) == []


async def test_dataplane_token_is_limited_to_watch_and_report(channel: grpc.aio.Channel) -> None:
    dp = Clients(channel, DATAPLANE_TOKEN)
    await expect_error(dp.telemetry.QueryUsage(tpb.QueryUsageRequest()), StatusCode.UNAUTHENTICATED)
    await expect_error(dp.telemetry.ListAlerts(tpb.ListAlertsRequest()), StatusCode.UNAUTHENTICATED)
    await expect_error(
        dp.discovery.ListDataPlanes(dpb.ListDataPlanesRequest()), StatusCode.UNAUTHENTICATED
    )
    tail = dp.telemetry.TailLogs(tpb.TailLogsRequest())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in tail:
            pass
    assert info.value.code() == StatusCode.UNAUTHENTICATED

    for token in (DATAPLANE_TOKEN, ADMIN_TOKEN):
        resp = await Clients(channel, token).telemetry.ReportUsage(
            tpb.ReportUsageRequest(node_id="dp1", last_seq=7)
        )
        assert resp.acked_seq == 7
        call = Clients(channel, token).discovery.Watch()
        await call.write(dpb.WatchRequest(node_id=f"dp-{token[:8]}"))
        first = await call.read()
        assert first.version
        call.cancel()


async def test_watch_and_report_refuse_missing_or_wrong_tokens(channel: grpc.aio.Channel) -> None:
    await expect_error(
        Clients(channel, None).telemetry.ReportUsage(tpb.ReportUsageRequest()),
        StatusCode.UNAUTHENTICATED,
        "missing data-plane token",
    )
    await expect_error(
        Clients(channel, "nope").telemetry.ReportUsage(tpb.ReportUsageRequest()),
        StatusCode.UNAUTHENTICATED,
        "invalid data-plane token",
    )
    call = Clients(channel, "nope").discovery.Watch()
    await call.write(dpb.WatchRequest(node_id="x"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == StatusCode.UNAUTHENTICATED


async def test_health_and_reflection_are_open(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "gwapi.v1.Admin", "gwapi.v1.Discovery", "gwapi.v1.Telemetry"):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = refl.ServerReflectionInfo(timeout=5)
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    resp = await call.read()
    names = {s.name for s in resp.list_services_response.service}
    assert {"gwapi.v1.Admin", "gwapi.v1.Discovery", "gwapi.v1.Telemetry"} <= names
    await call.done_writing()


async def test_tokens_never_logged(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for token in (None, "wrong-token-xyz", DATAPLANE_TOKEN, ADMIN_TOKEN):
        try:
            await Clients(channel, token).admin.ListWorkspaces(apb.ListWorkspacesRequest())
        except grpc.aio.AioRpcError:
            pass
    assert "refused /gwapi.v1.Admin/ListWorkspaces" in caplog.text
    for secret in (ADMIN_TOKEN, DATAPLANE_TOKEN, "wrong-token-xyz"):
        assert secret not in caplog.text


def test_every_rpc_has_an_explicit_rule() -> None:
    """Deny by default is the fallback, not the plan: each method of the four services is
    listed in controlplane.rpc_policies.POLICIES, and rules that look at the request (resolvers) are
    only used where the interceptor can see one request (unary requests)."""
    from controlplane.rpc_policies import POLICIES
    from gwapi.v1 import admin_pb2, discovery_pb2, signin_pb2, telemetry_pb2

    for module in (admin_pb2, telemetry_pb2, discovery_pb2, signin_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                assert path in POLICIES, f"{path} has no access rule"
                if method.client_streaming:
                    assert POLICIES[path].resolve is None, path
    declared = {
        f"/{s.full_name}/{m.name}"
        for module in (admin_pb2, telemetry_pb2, discovery_pb2, signin_pb2)
        for s in module.DESCRIPTOR.services_by_name.values()
        for m in s.methods
    }
    assert set(POLICIES) == declared  # and no stale rule for a method that is gone
