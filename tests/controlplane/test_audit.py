"""The audit log: every admin change leaves exactly one row (who, what, before/after, when, from
where) in the transaction of the change; never a secret; scoped; TailAudit follows live.
Real gRPC on SQLite and PostgreSQL.

This module is long because each audited change is checked the same way (one row, in the change's
transaction, never a secret) on SQLite and PostgreSQL, and TailAudit's live follow is tested with
them."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from grpc import StatusCode
from sqlmodel import Session, select

from controlplane import audit_log, identity
from controlplane.identity import Principal, TokenRole
from controlplane.server import running
from controlplane.store.models.admin import AuditRow
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.conftest import (
    ADMIN_TOKEN,
    Clients,
    expect_error,
    key_update,
    make_settings,
    seed_basics,
    ws_update,
)


async def events(admin: Any, **filters: Any) -> list[apb.AuditEvent]:
    return list((await admin.ListAudit(apb.ListAuditRequest(limit=1000, **filters))).events)


async def latest(admin: Any) -> apb.AuditEvent:
    return (await admin.ListAudit(apb.ListAuditRequest(limit=1))).events[0]


def doc(text: str) -> dict[str, Any]:
    return json.loads(text) if text else {}


async def test_every_mutation_leaves_one_row_with_before_and_after(cp, admin) -> None:
    t0 = int(time.time() * 1000)
    expected: list[tuple[str, str, str]] = []  # (action, resource, workspace)

    async def step(action: str, resource: str, workspace: str) -> apb.AuditEvent:
        expected.append((action, resource, workspace))
        ev = await latest(admin)
        assert (ev.action, ev.resource, ev.workspace) == (action, resource, workspace)
        assert ev.resource_kind == action.split(".")[0]
        assert ev.actor == "bootstrap" and ev.actor_role == "admin" and ev.actor_name
        assert "127.0.0.1" in ev.peer  # where the call came from
        assert t0 <= ev.time_ms <= int(time.time() * 1000)
        return ev

    await admin.CreateWorkspace(
        apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="team-a", description="A"))
    )
    ev = await step("workspace.create", "team-a", "team-a")
    assert ev.method == "CreateWorkspace" and ev.before_json == ""
    assert doc(ev.after_json)["description"] == "A"

    await admin.UpdateWorkspace(
        apb.UpdateWorkspaceRequest(
            workspace=pb.Workspace(
                name="team-a",
                limits=pb.Limits(
                    budgets=[pb.Budget(amount_micros=5_000_000, period=pb.PERIOD_MONTH)]
                ),
            ),
            update_mask=FieldMask(paths=["limits.budgets"]),
        )
    )
    ev = await step("workspace.update", "team-a", "team-a")
    assert ev.method == "UpdateWorkspace"
    assert doc(ev.before_json)["limits"] == {}
    assert doc(ev.after_json)["limits"]["budgets"][0]["amount_micros"] == "5000000"
    assert "budget_status" not in ev.after_json  # output-only spend is not a change

    await admin.CreateProvider(
        apb.CreateProviderRequest(
            provider=pb.Provider(name="sim", kind="simulator", base_url="http://127.0.0.1:9")
        )
    )
    ev = await step("provider.create", "sim", "")
    assert doc(ev.after_json)["base_url"] == "http://127.0.0.1:9"
    await admin.UpdateProvider(
        apb.UpdateProviderRequest(
            provider=pb.Provider(name="sim", base_url="http://127.0.0.1:10"),
            update_mask=FieldMask(paths=["base_url"]),
        )
    )
    ev = await step("provider.update", "sim", "")
    assert doc(ev.before_json)["base_url"] == "http://127.0.0.1:9"
    assert doc(ev.after_json)["base_url"] == "http://127.0.0.1:10"

    await admin.CreateRoute(
        apb.CreateRouteRequest(
            route=pb.Route(name="main", targets=[pb.RouteTarget(provider="sim")])
        )
    )
    await step("route.create", "main", "")
    await admin.UpdateRoute(
        apb.UpdateRouteRequest(
            route=pb.Route(name="main", retries=2), update_mask=FieldMask(paths=["retries"])
        )
    )
    ev = await step("route.update", "main", "")
    assert "retries" not in doc(ev.before_json) and doc(ev.after_json)["retries"] == 2

    created = await admin.CreateKey(
        apb.CreateKeyRequest(workspace="team-a", name="alice", provider="sim")
    )
    key_id = created.key.id
    ev = await step("key.create", key_id, "team-a")
    assert ev.method == "CreateKey" and doc(ev.after_json)["name"] == "alice"
    await admin.UpdateKey(key_update(key_id, name="bob"))
    ev = await step("key.update", key_id, "team-a")
    assert doc(ev.before_json)["name"] == "alice" and doc(ev.after_json)["name"] == "bob"
    await admin.RevokeKey(apb.RevokeKeyRequest(id=key_id))
    ev = await step("key.revoke", key_id, "team-a")
    assert "revoked_at_ms" not in doc(ev.before_json) and doc(ev.after_json)["revoked_at_ms"]
    await admin.RevokeKey(apb.RevokeKeyRequest(id=key_id))  # already revoked: no change, no row
    await admin.DeleteKey(apb.DeleteKeyRequest(id=key_id))
    ev = await step("key.delete", key_id, "team-a")
    assert doc(ev.before_json)["name"] == "bob" and ev.after_json == ""

    await admin.DeleteRoute(apb.DeleteRouteRequest(name="main"))
    ev = await step("route.delete", "main", "")
    assert doc(ev.before_json)["retries"] == 2 and ev.after_json == ""
    await admin.DeleteProvider(apb.DeleteProviderRequest(name="sim"))
    await step("provider.delete", "sim", "")
    await admin.DeleteWorkspace(apb.DeleteWorkspaceRequest(name="team-a"))
    ev = await step("workspace.delete", "team-a", "team-a")
    assert ev.method == "DeleteWorkspace" and ev.after_json == ""

    got = await events(admin)
    assert [(e.action, e.resource, e.workspace) for e in reversed(got)] == expected
    assert len({e.id for e in got}) == len(got)


async def test_forced_workspace_delete_records_each_key(cp, admin) -> None:
    seeded = await seed_basics(admin)
    second = await admin.CreateKey(
        apb.CreateKeyRequest(workspace="team-a", name="b", provider="sim")
    )
    await admin.RevokeKey(apb.RevokeKeyRequest(id=second.key.id))
    await admin.DeleteWorkspace(apb.DeleteWorkspaceRequest(name="team-a", force=True))
    got = await events(admin, workspace="team-a")
    deletes = [(e.action, e.resource, e.method) for e in got if e.action.endswith(".delete")]
    keys = sorted([seeded["key"].id, second.key.id], reverse=True)  # newest first, by id order
    assert deletes == [
        ("workspace.delete", "team-a", "DeleteWorkspace"),
        *[("key.delete", k, "DeleteWorkspace") for k in keys],
    ]


async def test_failed_mutations_leave_no_row(cp, admin) -> None:
    await seed_basics(admin)
    before = await events(admin)
    await expect_error(
        admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="Bad Name"))),
        StatusCode.INVALID_ARGUMENT,
    )
    await expect_error(
        admin.CreateKey(apb.CreateKeyRequest(workspace="team-a", name="x", provider="nope")),
        StatusCode.NOT_FOUND,
    )
    await expect_error(
        admin.UpdateWorkspace(ws_update("team-a", timezone="Mars/Olympus")),
        StatusCode.INVALID_ARGUMENT,
    )
    await expect_error(  # the key still uses it
        admin.DeleteProvider(apb.DeleteProviderRequest(name="sim")), StatusCode.FAILED_PRECONDITION
    )
    await expect_error(
        admin.DeleteWorkspace(apb.DeleteWorkspaceRequest(name="team-a")),
        StatusCode.FAILED_PRECONDITION,
    )
    assert await events(admin) == before


def test_rolled_back_change_leaves_no_row_and_committed_one_does(db) -> None:
    def change_then_fail(s: Session) -> None:
        audit_log.record(
            s, 1, action="route.create", resource_kind="route", resource="r",
            before=None, after=pb.Route(name="r"),
        )  # fmt: skip
        raise RuntimeError("the change failed after its audit row was written")

    with pytest.raises(RuntimeError):
        db.run_sync(change_then_fail)
    assert db.read_sync(lambda s: s.exec(select(AuditRow)).all()) == []

    def change(s: Session) -> None:
        audit_log.record(
            s, 2, action="route.create", resource_kind="route", resource="r",
            before=None, after=pb.Route(name="r"),
        )  # fmt: skip

    db.run_sync(change)
    (row,) = db.read_sync(lambda s: s.exec(select(AuditRow)).all())
    assert (row.action, row.time_ms, row.actor) == ("route.create", 2, "bootstrap")


def test_record_refuses_messages_that_can_carry_secrets() -> None:
    key = pb.VirtualKey(id="key_1", prefix="gw-abc")
    for secretive in (
        apb.CreateKeyResponse(key=key, secret="gw-SECRET"),
        apb.CreateTokenResponse(secret="tga-SECRET"),
        apb.CreateProviderRequest(provider=pb.Provider(name="p"), api_key="sk-SECRET"),
        apb.RotateProviderSecretRequest(name="p", api_key="sk-SECRET"),
        apb.CreateKeyRequest(workspace="w"),
    ):
        with pytest.raises(TypeError, match="audit log refuses"):
            audit_log.to_json(secretive)  # type: ignore[arg-type]
    assert json.loads(audit_log.to_json(key)) == {"id": "key_1", "prefix": "gw-abc"}


async def test_audit_rows_never_contain_a_key_or_provider_secret(cp, admin) -> None:
    seeded = await seed_basics(admin)
    secret = seeded["secret"]
    await admin.RevokeKey(apb.RevokeKeyRequest(id=seeded["key"].id))
    more = await admin.CreateKey(apb.CreateKeyRequest(workspace="team-a", name="x", provider="sim"))
    await admin.DeleteWorkspace(apb.DeleteWorkspaceRequest(name="team-a", force=True))

    def everything(s: Session) -> str:
        return "\n".join(repr(r.model_dump()) for r in s.exec(select(AuditRow)).all())

    dump = await cp.state.db.read(everything)
    assert dump.count("key.") >= 4  # the key rows are really there...
    for leaked in (secret, more.secret, secret[10:], more.secret[10:]):
        assert leaked not in dump  # ...but not one secret, nor its unshown part


async def test_list_filters_kind_since_and_limit(cp, admin) -> None:
    await seed_basics(admin)
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="team-b")))
    kinds = await events(admin, resource_kind="workspace")
    assert [e.resource for e in kinds] == ["team-b", "team-a"]  # newest first
    assert [e.action for e in await events(admin, workspace="team-a")] == [
        "key.create",
        "workspace.create",
    ]
    newest = kinds[0]
    assert [e.id for e in await events(admin, since_ms=newest.time_ms)][-1] == newest.id
    assert len((await admin.ListAudit(apb.ListAuditRequest(limit=2))).events) == 2
    await expect_error(
        admin.ListAudit(apb.ListAuditRequest(resource_kind="user")),
        StatusCode.INVALID_ARGUMENT,
        "workspace, key, provider, route, token",
    )
    await expect_error(
        admin.ListAudit(apb.ListAuditRequest(limit=-1)), StatusCode.INVALID_ARGUMENT, "limit"
    )


def test_scope_hides_other_workspaces_and_global_objects(db) -> None:
    def seed(s: Session) -> None:
        for i, (kind, ws) in enumerate([("workspace", "a"), ("workspace", "b"), ("provider", "")]):
            audit_log.record(
                s, i, action=f"{kind}.create", resource_kind=kind, resource=ws or "p",
                workspace=ws, before=None, after=None,
            )  # fmt: skip

    db.run_sync(seed)

    def visible_to(scope: frozenset[str] | None, workspace: str = "") -> list[str]:
        got = db.read_sync(
            lambda s: audit_log.list_events(s, workspaces=scope, workspace=workspace)
        )
        return [e.resource for e in got]

    assert visible_to(None) == ["p", "b", "a"]
    assert visible_to(frozenset({"a"})) == ["a"]  # no global provider row for a scoped token
    assert visible_to(frozenset({"a"}), "b") == []
    assert visible_to(None, "b") == ["b"]
    assert visible_to(frozenset()) == []


async def test_scoped_principal_in_process(cp, admin) -> None:
    """The service reads the caller's scope from the principal the interceptor set."""
    from controlplane.services.admin import AdminService

    await seed_basics(admin)
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="team-b")))
    svc = AdminService(cp.state)
    token = identity.current.set(
        Principal(id="tok_x", name="b admin", role=TokenRole.WORKSPACE_ADMIN,
                  workspaces=frozenset({"team-b"}))
    )  # fmt: skip
    try:
        resp = await svc.ListAudit(apb.ListAuditRequest(), _Context())
        assert [(e.action, e.workspace) for e in resp.events] == [("workspace.create", "team-b")]
        with pytest.raises(_Aborted) as info:
            await svc.ListAudit(apb.ListAuditRequest(workspace="team-a"), _Context())
        assert info.value.code == StatusCode.PERMISSION_DENIED and "team-b" in info.value.details
    finally:
        identity.current.reset(token)


class _Aborted(Exception):
    def __init__(self, code: StatusCode, details: str) -> None:
        self.code, self.details = code, details


class _Context:
    """Just enough of grpc.aio.ServicerContext for a refused in-process call."""

    async def abort(self, code: StatusCode, details: str = "") -> None:
        raise _Aborted(code, details)

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


async def read_n(call: Any, n: int, timeout: float = 5.0) -> list[apb.AuditEvent]:
    out: list[apb.AuditEvent] = []
    while len(out) < n:
        msg = await asyncio.wait_for(call.read(), timeout)
        assert msg is not grpc.aio.EOF
        out.append(msg)
    return out


async def test_tail_sends_history_then_follows_live_changes(cp, admin) -> None:
    await seed_basics(admin)  # workspace.create, provider.create, key.create
    call = admin.TailAudit(apb.TailAuditRequest(limit=2, follow=True), timeout=None)
    history = await read_n(call, 2)
    assert [e.action for e in history] == ["provider.create", "key.create"]  # oldest first
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="team-b")))
    (live,) = await read_n(call, 1)
    assert (live.action, live.resource, live.method) == (
        "workspace.create",
        "team-b",
        "CreateWorkspace",
    )
    assert live == (await events(admin))[0]  # the live event is the stored row
    await expect_error(  # a failed change publishes nothing
        admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="team-b"))),
        StatusCode.ALREADY_EXISTS,
    )
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(call.read())), 0.3)
    assert cp.state.audit.subscriber_count == 1
    call.cancel()
    for _ in range(100):  # the server drops the subscription when the client goes away
        if cp.state.audit.subscriber_count == 0:
            break
        await asyncio.sleep(0.02)
    assert cp.state.audit.subscriber_count == 0


async def test_tail_filtered_to_a_workspace(cp, admin) -> None:
    await seed_basics(admin)
    call = admin.TailAudit(apb.TailAuditRequest(workspace="team-b", follow=True), timeout=None)
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="team-c")))
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="team-b")))
    (live,) = await read_n(call, 1)
    assert live.resource == "team-b"
    call.cancel()


async def test_a_workspace_admin_token_sees_and_follows_only_its_workspace(
    cp, admin, channel
) -> None:
    """End to end with a real scoped token: its own changes carry its identity; it sees neither
    other workspaces nor global objects; the token's secret is never in the log."""
    await seed_basics(admin)  # team-a, the global provider "sim", a key in team-a
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="team-b")))
    created = await admin.CreateToken(
        apb.CreateTokenRequest(name="b-admin", role="workspace-admin", workspaces=["team-b"])
    )
    tok = created.token
    scoped = Clients(channel, created.secret).admin
    call = scoped.TailAudit(apb.TailAuditRequest(limit=100, follow=True), timeout=None)
    history = await read_n(call, 2)
    assert [(e.action, e.resource) for e in history] == [
        ("workspace.create", "team-b"),
        ("token.create", tok.id),  # a token of one workspace is filed under it
    ]
    await scoped.UpdateWorkspace(ws_update("team-b", description="mine"))
    await admin.CreateKey(apb.CreateKeyRequest(workspace="team-a", name="x", provider="sim"))
    await admin.CreateKey(apb.CreateKeyRequest(workspace="team-b", name="y", provider="sim"))
    own, admins = await read_n(call, 2)  # team-a's key never arrives
    assert (own.action, own.actor, own.actor_name, own.actor_role) == (
        "workspace.update",
        tok.id,
        "b-admin",
        "workspace-admin",
    )
    assert (admins.action, admins.workspace, admins.actor) == ("key.create", "team-b", "bootstrap")
    call.cancel()

    listed = await events(scoped)
    assert {e.workspace for e in listed} == {"team-b"}  # no team-a, no provider
    assert len(listed) == 4
    await expect_error(scoped.ListAudit(apb.ListAuditRequest(workspace="team-a")),
                       StatusCode.PERMISSION_DENIED)  # fmt: skip
    everything = await events(admin)
    assert {"provider.create", "token.create"} <= {e.action for e in everything}
    dump = "\n".join(str(e) for e in everything)
    assert created.secret not in dump and created.secret[len(tok.prefix) :] not in dump


async def test_provider_api_keys_never_reach_the_audit_log(db_url: str) -> None:
    """Create with an api_key, rotate it, remove it: three rows that say a secret is stored
    (has_secret, secret_rotated_at_ms) and none holding the secret itself."""
    secret, rotated = "sk-ant-api03-audit-one-0123456789", "sk-ant-api03-audit-two-9876543210"
    master = base64.b64encode(b"M" * 32).decode()
    async with running(make_settings(db_url, master_key=master)) as r:
        async with grpc.aio.insecure_channel(r.address) as ch:
            admin = Clients(ch, ADMIN_TOKEN).admin
            await admin.CreateProvider(
                apb.CreateProviderRequest(
                    provider=pb.Provider(name="anth", kind="anthropic"), api_key=secret
                )
            )
            await admin.RotateProviderSecret(
                apb.RotateProviderSecretRequest(name="anth", api_key=rotated)
            )
            await admin.RotateProviderSecret(apb.RotateProviderSecretRequest(name="anth"))
            got = list(reversed(await events(admin)))

            def everything(s: Session) -> str:
                return "\n".join(repr(row.model_dump()) for row in s.exec(select(AuditRow)).all())

            dump = await r.state.db.read(everything)
    assert [e.action for e in got] == [
        "provider.create",
        "provider.rotate_secret",
        "provider.rotate_secret",
    ]
    assert doc(got[0].after_json)["has_secret"] is True
    assert got[1].method == "RotateProviderSecret"
    assert (
        doc(got[1].before_json)["secret_rotated_at_ms"]
        != doc(got[1].after_json)["secret_rotated_at_ms"]
    )
    assert "has_secret" not in doc(got[2].after_json)  # removed: false, the proto default
    for leaked in (secret, rotated, secret[14:], rotated[14:]):
        assert leaked not in dump
