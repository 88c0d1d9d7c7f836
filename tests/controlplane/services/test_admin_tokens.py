"""Admin tokens over real gRPC (SQLite and PostgreSQL): create/list/revoke/WhoAmI, what each role
sees in lists, expiry and revocation, hashes only at rest, audit rows and logs without secrets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from grpc import StatusCode
from sqlalchemy import MetaData, select

from controlplane.auth import Authenticator
from controlplane.catalog import tokens as token_store
from controlplane.server import Running
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.conftest import DATAPLANE_TOKEN, Clients, expect_error


async def workspace(admin: Any, name: str) -> None:
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name=name)))


async def token(admin: Any, role: str, *workspaces: str, ttl: int = 0, name: str = "t") -> Any:
    return await admin.CreateToken(
        apb.CreateTokenRequest(name=name, role=role, workspaces=list(workspaces), ttl_seconds=ttl)
    )


@pytest.fixture
async def two_teams(admin: Any) -> None:
    await workspace(admin, "ws-a")
    await workspace(admin, "ws-b")
    await admin.CreateProvider(
        apb.CreateProviderRequest(
            provider=pb.Provider(name="sim", kind="simulator", base_url="http://127.0.0.1:9")
        )
    )
    for ws in ("ws-a", "ws-a", "ws-b"):
        await admin.CreateKey(apb.CreateKeyRequest(workspace=ws, name="k", provider="sim"))


def event(rid: str, ws: str) -> tpb.UsageEvent:
    return tpb.UsageEvent(
        request_id=rid,
        time_ms=int(time.time() * 1000),
        workspace=ws,
        key_id="key_00000000000000aa",
        provider="sim",
        status=200,
        latency_ms=5,
        usage=pb.Usage(input_tokens=1, output_tokens=1, cost_micros=100),
    )


async def test_create_list_revoke_and_whoami(admin, channel) -> None:
    await workspace(admin, "ws-a")
    created = await token(admin, "workspace-admin", "ws-a", name="team a lead", ttl=3600)
    t = created.token
    assert created.secret.startswith("tga-") and t.id.startswith("tok_")
    assert t.role == "workspace-admin" and list(t.workspaces) == ["ws-a"]
    assert t.prefix == created.secret[: len(t.prefix)] and created.secret != t.prefix
    assert t.created_by == "bootstrap" and t.revoked_at_ms == 0
    assert t.expires_at_ms - t.created_at_ms == 3_600_000

    me = await Clients(channel, created.secret).admin.WhoAmI(apb.WhoAmIRequest())
    assert (me.id, me.name, me.role, list(me.workspaces)) == (
        t.id,
        "team a lead",
        "workspace-admin",
        ["ws-a"],
    )
    assert me.last_used_at_ms > 0  # the first use is recorded
    boot = await admin.WhoAmI(apb.WhoAmIRequest())
    assert (boot.id, boot.role) == ("bootstrap", "admin")

    # A created admin token can mint tokens itself; created_by names it.
    admin2 = await token(admin, "admin", name="ops")
    minted = await Clients(channel, admin2.secret).admin.CreateToken(
        apb.CreateTokenRequest(name="by ops", role="viewer")
    )
    assert minted.token.created_by == admin2.token.id

    listed = (await admin.ListTokens(apb.ListTokensRequest())).tokens
    assert {x.id for x in listed} == {t.id, admin2.token.id, minted.token.id}
    assert all(not hasattr(x, "secret") for x in listed)

    revoked = await admin.RevokeToken(apb.RevokeTokenRequest(id=t.id))
    assert revoked.revoked_at_ms > 0
    again = await admin.RevokeToken(apb.RevokeTokenRequest(id=t.id))
    assert again.revoked_at_ms == revoked.revoked_at_ms  # idempotent
    active = (await admin.ListTokens(apb.ListTokensRequest())).tokens
    assert t.id not in {x.id for x in active}
    everything = (await admin.ListTokens(apb.ListTokensRequest(include_revoked=True))).tokens
    assert t.id in {x.id for x in everything}
    await expect_error(
        admin.RevokeToken(apb.RevokeTokenRequest(id="tok_0000000000000000")),
        StatusCode.NOT_FOUND,
        "tok_0000000000000000",
    )


@pytest.mark.parametrize(
    ("role", "workspaces", "message"),
    [
        ("workspace-admin", [], "at least one workspace"),
        ("workspace-admin", ["nope"], "workspace 'nope' does not exist"),
        ("viewer", ["ws-a", "nope"], "workspace 'nope' does not exist"),
        ("admin", ["ws-a"], "admin token covers every workspace"),
        ("superuser", [], "unknown role 'superuser'"),
    ],
)
async def test_invalid_tokens_are_refused(admin, role, workspaces, message) -> None:
    await workspace(admin, "ws-a")
    await expect_error(
        admin.CreateToken(apb.CreateTokenRequest(name="x", role=role, workspaces=workspaces)),
        StatusCode.INVALID_ARGUMENT,
        message,
    )
    assert list((await admin.ListTokens(apb.ListTokensRequest())).tokens) == []


async def test_revoked_token_is_refused_at_once(admin, channel, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    created = await token(admin, "viewer", name="dash")
    viewer = Clients(channel, created.secret).admin
    await viewer.ListWorkspaces(apb.ListWorkspacesRequest())  # cached now
    await admin.RevokeToken(apb.RevokeTokenRequest(id=created.token.id))
    details = await expect_error(
        viewer.ListWorkspaces(apb.ListWorkspacesRequest()), StatusCode.UNAUTHENTICATED, "revoked"
    )
    assert created.token.id in details and created.secret not in details
    assert created.secret not in caplog.text


async def test_expired_token_is_refused(admin, channel) -> None:
    created = await token(admin, "viewer", ttl=1, name="short")
    viewer = Clients(channel, created.secret).admin
    await viewer.ListWorkspaces(apb.ListWorkspacesRequest())
    await asyncio.sleep(max(0.0, created.token.expires_at_ms / 1000 - time.time()) + 0.05)
    details = await expect_error(
        viewer.ListWorkspaces(apb.ListWorkspacesRequest()), StatusCode.UNAUTHENTICATED, "expired"
    )
    assert "ask an admin for a new one" in details and created.secret not in details
    await expect_error(
        Clients(channel, created.secret + "x").admin.WhoAmI(apb.WhoAmIRequest()),
        StatusCode.UNAUTHENTICATED,
        "invalid admin token",
    )


async def test_only_hashes_are_stored(cp: Running, admin) -> None:
    created = await token(admin, "admin", name="ops")
    meta = MetaData()
    meta.reflect(bind=cp.state.db.engine)
    table = meta.tables["admin_token"]
    with cp.state.db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(table))]
    assert len(rows) == 1
    assert rows[0]["secret_sha256"] == hashlib.sha256(created.secret.encode()).hexdigest()
    assert all(created.secret not in str(v) for v in rows[0].values())
    # The audit row of the creation carries the token as shown by the API: prefix, no secret.
    audit = (await admin.ListAudit(apb.ListAuditRequest(resource_kind="token"))).events
    assert [e.action for e in audit] == ["token.create"]
    assert json.loads(audit[0].after_json)["id"] == created.token.id
    assert created.secret not in audit[0].after_json


@pytest.mark.usefixtures("two_teams")
async def test_lists_are_filtered_to_the_tokens_workspaces(admin, channel) -> None:
    dp = Clients(channel, DATAPLANE_TOKEN)
    await dp.telemetry.ReportUsage(
        tpb.ReportUsageRequest(
            node_id="dp", events=[event("r-a", "ws-a"), event("r-b", "ws-b")], last_seq=1
        )
    )
    lead = Clients(channel, (await token(admin, "workspace-admin", "ws-a")).secret)

    keys = (await lead.admin.ListKeys(apb.ListKeysRequest())).keys
    assert len(keys) == 2 and {k.workspace for k in keys} == {"ws-a"}
    all_keys = (await admin.ListKeys(apb.ListKeysRequest())).keys
    assert {k.workspace for k in all_keys} == {"ws-a", "ws-b"}
    names = [
        w.name for w in (await lead.admin.ListWorkspaces(apb.ListWorkspacesRequest())).workspaces
    ]
    assert names == ["ws-a"]

    rows = (await lead.telemetry.QueryUsage(tpb.QueryUsageRequest(group_by="workspace"))).rows
    assert [(r.group, r.requests) for r in rows] == [("ws-a", 1)]
    total = (await lead.telemetry.QueryUsage(tpb.QueryUsageRequest())).rows
    assert total[0].requests == 1  # ws-b's request does not count, even in the total

    tail = [e.request_id async for e in lead.telemetry.TailLogs(tpb.TailLogsRequest(limit=50))]
    assert tail == ["r-a"]

    stream = lead.telemetry.StreamStats(tpb.StreamStatsRequest(group_by="provider"))
    frame = await stream.read()
    stream.cancel()
    assert [(r.group, r.cost_micros) for r in frame.rows] == [("sim", 100)]  # ws-a's share only

    await expect_error(
        lead.telemetry.GetLog(tpb.GetLogRequest(request_id="r-b")),
        StatusCode.PERMISSION_DENIED,
        "request 'r-b': not found in the workspaces this token can access",
    )
    assert (await lead.telemetry.GetLog(tpb.GetLogRequest(request_id="r-a"))).workspace == "ws-a"


@pytest.mark.usefixtures("two_teams")
async def test_workspace_admin_changes_only_its_own_settings(admin, channel) -> None:
    lead = Clients(channel, (await token(admin, "workspace-admin", "ws-a")).secret).admin

    def update(paths: list[str], **fields: Any) -> Any:
        ws = pb.Workspace(name="ws-a", **fields)
        return lead.UpdateWorkspace(
            apb.UpdateWorkspaceRequest(workspace=ws, update_mask=FieldMask(paths=paths))
        )

    done = await update(["description", "alert_webhook"], description="ours")
    assert done.description == "ours"
    details = await expect_error(
        update(["limits.rpm"], limits=pb.Limits(rpm=5)),
        StatusCode.PERMISSION_DENIED,
        "changing limits.rpm of a workspace needs an admin token",
    )
    assert "description" in details  # says what it may change
    await expect_error(
        update(["timezone", "redis_failure"], timezone="Europe/Berlin"),
        StatusCode.PERMISSION_DENIED,
        "redis_failure, timezone",
    )
    await expect_error(
        update(["allowed_providers"], allowed_providers=["sim"]),
        StatusCode.PERMISSION_DENIED,
        "allowed_providers",
    )
    # An empty mask means "every field that is set": a limit hidden there is caught too.
    await expect_error(
        update([], description="x", limits=pb.Limits(rpm=5)),
        StatusCode.PERMISSION_DENIED,
        "limits",
    )
    unchanged = await admin.GetWorkspace(apb.GetWorkspaceRequest(name="ws-a"))
    assert unchanged.description == "ours" and unchanged.limits.rpm == 0

    # Keys in its workspace: create, update limits, revoke.
    created = await lead.CreateKey(
        apb.CreateKeyRequest(workspace="ws-a", name="ci", provider="sim", limits=pb.Limits(rpm=10))
    )
    limited = await lead.UpdateKey(
        apb.UpdateKeyRequest(
            key=pb.VirtualKey(id=created.key.id, limits=pb.Limits(rpm=20)),
            update_mask=FieldMask(paths=["limits.rpm"]),
        )
    )
    assert limited.limits.rpm == 20
    assert (await lead.RevokeKey(apb.RevokeKeyRequest(id=created.key.id))).revoked_at_ms > 0
    # The audit log names the token that made the change (identity set in the handler's task).
    events = (await admin.ListAudit(apb.ListAuditRequest(resource_kind="key", limit=1))).events
    me = await lead.WhoAmI(apb.WhoAmIRequest())
    assert (events[0].action, events[0].actor, events[0].actor_role) == (
        "key.revoke",
        me.id,
        "workspace-admin",
    )


@pytest.mark.usefixtures("two_teams")
async def test_viewer_is_read_only(admin, channel) -> None:
    viewer = Clients(channel, (await token(admin, "viewer")).secret).admin
    assert len((await viewer.ListKeys(apb.ListKeysRequest())).keys) == 3
    key_id = (await viewer.ListKeys(apb.ListKeysRequest())).keys[0].id
    for call in (
        viewer.RevokeKey(apb.RevokeKeyRequest(id=key_id)),
        viewer.CreateKey(apb.CreateKeyRequest(workspace="ws-a", name="x", provider="sim")),
        viewer.DeleteWorkspace(apb.DeleteWorkspaceRequest(name="ws-b")),
        viewer.CreateToken(apb.CreateTokenRequest(name="x", role="admin")),
    ):
        await expect_error(call, StatusCode.PERMISSION_DENIED, "this token is read-only (viewer)")
    await expect_error(
        viewer.ListTokens(apb.ListTokensRequest()),
        StatusCode.PERMISSION_DENIED,
        "ListTokens needs an admin token (this token is viewer)",
    )
    assert (await admin.GetKey(apb.GetKeyRequest(id=key_id))).revoked_at_ms == 0


async def test_cache_lifetime_bounds_revocation_on_other_replicas(cp: Running, admin) -> None:
    """This process forgets a revoked token at once; another replica (its own cache) keeps
    accepting it until its cached entry is older than cache_ttl_s."""
    created = await token(admin, "viewer", name="dash")
    now = [100.0]  # the other replica's monotonic clock: moved by hand, not by a loaded box
    other = Authenticator(
        "other-admin", "other-dp", cp.state.db, cache_ttl_s=0.3, monotonic=lambda: now[0]
    )
    assert (await other.authenticate(created.secret, dataplane_call=False)).id == created.token.id
    await admin.RevokeToken(apb.RevokeTokenRequest(id=created.token.id))
    now[0] += 0.29
    still = await other.authenticate(created.secret, dataplane_call=False)  # within its TTL
    assert still.id == created.token.id
    now[0] += 0.02  # the cached entry is now older than the TTL
    with pytest.raises(Exception, match="was revoked"):
        await other.authenticate(created.secret, dataplane_call=False)
    # The row itself says so too.
    row = await cp.state.db.read(lambda s: token_store.get_row(s, created.token.id))
    assert row.revoked_at_ms > 0


async def test_secrets_never_reach_the_logs(admin, channel, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    created = await token(admin, "viewer", name="dash")
    viewer = Clients(channel, created.secret).admin
    await viewer.WhoAmI(apb.WhoAmIRequest())
    with pytest.raises(grpc.aio.AioRpcError):
        await viewer.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="x")))
    await admin.RevokeToken(apb.RevokeTokenRequest(id=created.token.id))
    with pytest.raises(grpc.aio.AioRpcError):
        await viewer.WhoAmI(apb.WhoAmIRequest())
    assert created.token.id in caplog.text  # the public id is what the log names
    assert created.secret not in caplog.text
    assert created.secret[len(created.token.prefix) :] not in caplog.text
