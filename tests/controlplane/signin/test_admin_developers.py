"""ListDevelopers / GetDeveloper / UpdateDeveloper / DisableDeveloper / EnableDeveloper over real
gRPC: lookups by id and email, limits overrides and effective limits, budget status, audit rows,
and workspace-scoped tokens."""

from __future__ import annotations

import time
from typing import Any

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from grpc import StatusCode
from sqlmodel import select

from controlplane.store.models.admin import AuditRow
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.conftest import Clients, expect_error
from tests.controlplane.signin.conftest import ALICE, Flow, workspace
from tests.fakes.oidc import Login

DAY = pb.Budget(amount_micros=20_000_000, period=pb.PERIOD_DAY)
MONTH = pb.Budget(amount_micros=300_000_000, period=pb.PERIOD_MONTH)
BOB = Login(sub="sub-bob", email="bob@example.com", name="Bob", groups=["research"])


async def two_developers(flow: Flow, admin: Any) -> tuple[pb.Developer, pb.Developer]:
    await workspace(admin, "research", ["research"], member_limits=pb.Limits(budgets=[DAY], rpm=30))
    await flow.sign_in(ALICE)
    await flow.sign_in(BOB)
    alice = await admin.GetDeveloper(apb.GetDeveloperRequest(id="alice@example.com"))
    bob = await admin.GetDeveloper(apb.GetDeveloperRequest(id="BOB@example.com"))
    return alice, bob


async def test_list_and_get(flow: Flow, admin: Any) -> None:
    alice, bob = await two_developers(flow, admin)
    assert alice.id.startswith("dev_") and (alice.workspace, bob.workspace) == (
        "platform",
        "research",
    )
    assert alice.subject == "sub-alice" and list(alice.groups) == ["platform-eng"]
    assert await admin.GetDeveloper(apb.GetDeveloperRequest(id=alice.id)) == alice
    listed = await admin.ListDevelopers(apb.ListDevelopersRequest())
    assert [d.email for d in listed.developers] == ["alice@example.com", "bob@example.com"]
    only = await admin.ListDevelopers(apb.ListDevelopersRequest(workspace="research"))
    assert [d.id for d in only.developers] == [bob.id]
    # Effective limits: the workspace's member limits, with budget status.
    assert not bob.has_limits and bob.effective_limits.rpm == 30
    assert [s.budget.period for s in bob.budget_status] == [pb.PERIOD_DAY]
    assert bob.budget_status[0].spent_micros == 0 and bob.active_sessions == 1


async def test_get_errors(flow: Flow, admin: Any) -> None:
    await expect_error(
        admin.GetDeveloper(apb.GetDeveloperRequest(id="dev_0000000000000000")),
        StatusCode.NOT_FOUND,
        "not found",
    )
    await expect_error(
        admin.GetDeveloper(apb.GetDeveloperRequest(id="nobody")),
        StatusCode.INVALID_ARGUMENT,
        "neither a developer id",
    )
    await expect_error(
        admin.GetDeveloper(apb.GetDeveloperRequest(id="")), StatusCode.INVALID_ARGUMENT, "required"
    )


async def test_same_email_twice_needs_the_id(flow: Flow, admin: Any) -> None:
    await flow.sign_in(ALICE)
    await flow.sign_in(Login(sub="another-sub", email="alice@example.com", groups=["platform-eng"]))
    await expect_error(
        admin.GetDeveloper(apb.GetDeveloperRequest(id="alice@example.com")),
        StatusCode.FAILED_PRECONDITION,
        "2 developers have the email",
    )


async def test_update_limits_override_and_clear(flow: Flow, admin: Any, ready: Any) -> None:
    _, bob = await two_developers(flow, admin)
    updated = await admin.UpdateDeveloper(
        apb.UpdateDeveloperRequest(
            developer=pb.Developer(id=bob.id, limits=pb.Limits(budgets=[MONTH])),
            update_mask=FieldMask(paths=["limits.budgets"]),
        )
    )
    # The first override starts from the member limits: rpm 30 is kept, the budget replaced.
    assert updated.has_limits and updated.limits.rpm == 30
    assert [b.period for b in updated.effective_limits.budgets] == [pb.PERIOD_MONTH]
    snap_bob = next(d for d in ready.state.cache.current.developers if d.id == bob.id)
    assert snap_bob.limits == updated.effective_limits
    cleared = await admin.UpdateDeveloper(
        apb.UpdateDeveloperRequest(developer=pb.Developer(id=bob.id), clear_limits=True)
    )
    assert not cleared.has_limits and cleared.effective_limits.rpm == 30
    await expect_error(
        admin.UpdateDeveloper(
            apb.UpdateDeveloperRequest(
                developer=pb.Developer(id=bob.id, limits=pb.Limits(rpm=-1)),
                update_mask=FieldMask(paths=["limits"]),
            )
        ),
        StatusCode.INVALID_ARGUMENT,
        "rpm must not be negative",
    )
    await expect_error(
        admin.UpdateDeveloper(
            apb.UpdateDeveloperRequest(
                developer=pb.Developer(id=bob.id), update_mask=FieldMask(paths=["email"])
            )
        ),
        StatusCode.INVALID_ARGUMENT,
        "unknown update_mask path 'email'",
    )
    actions = ready.state.db.read_sync(
        lambda s: [
            r.action
            for r in s.exec(select(AuditRow).where(AuditRow.resource_kind == "developer")).all()
        ]
    )
    assert actions.count("developer.update") == 2


async def test_disable_enable_audit_and_idempotence(flow: Flow, admin: Any, ready: Any) -> None:
    await flow.sign_in(ALICE)
    first = await admin.DisableDeveloper(apb.DisableDeveloperRequest(id="alice@example.com"))
    again = await admin.DisableDeveloper(apb.DisableDeveloperRequest(id=first.id))
    assert again.disabled_at_ms == first.disabled_at_ms
    hidden = await admin.ListDevelopers(apb.ListDevelopersRequest())
    assert list(hidden.developers) == []
    shown = await admin.ListDevelopers(apb.ListDevelopersRequest(include_disabled=True))
    assert [d.id for d in shown.developers] == [first.id]
    enabled = await admin.EnableDeveloper(apb.EnableDeveloperRequest(id=first.id))
    assert enabled.disabled_at_ms == 0
    rows = ready.state.db.read_sync(
        lambda s: s.exec(
            select(AuditRow).where(AuditRow.resource == first.id).order_by(AuditRow.id)
        ).all()
    )
    assert [r.action for r in rows] == [
        "developer.sign_in",
        "developer.disable",
        "developer.enable",
    ]
    assert rows[1].actor == "bootstrap" and rows[1].workspace == "platform"
    assert '"disabled_at_ms"' in rows[1].after_json


async def test_workspace_admin_sees_and_changes_only_its_developers(
    flow: Flow, admin: Any, channel: Any
) -> None:
    alice, bob = await two_developers(flow, admin)
    created = await admin.CreateToken(
        apb.CreateTokenRequest(name="lead", role="workspace-admin", workspaces=["research"])
    )
    lead = Clients(channel, created.secret).admin
    listed = await lead.ListDevelopers(apb.ListDevelopersRequest())
    assert [d.id for d in listed.developers] == [bob.id]
    await lead.DisableDeveloper(apb.DisableDeveloperRequest(id="bob@example.com"))
    for target in (alice.id, "alice@example.com", "dev_00000000deadbeef"):
        details = await expect_error(
            lead.GetDeveloper(apb.GetDeveloperRequest(id=target)), StatusCode.PERMISSION_DENIED
        )
        assert details == f"developer {target!r}: not found in the workspaces this token can access"
    await expect_error(
        lead.GetSso(apb.GetSsoRequest()), StatusCode.PERMISSION_DENIED, "admin token"
    )


async def test_budget_status_counts_the_developers_spend(
    flow: Flow, admin: Any, dp: Clients
) -> None:
    _, bob = await two_developers(flow, admin)
    now = int(time.time() * 1000)
    events = [
        tpb.UsageEvent(
            request_id=f"r-{i}",
            time_ms=now,
            workspace="research",
            developer_id=bob.id,
            developer_email=bob.email,
            provider="sim",
            status=200,
            usage=pb.Usage(cost_micros=2_500_000),
        )
        for i in range(3)
    ]
    await dp.telemetry.ReportUsage(tpb.ReportUsageRequest(node_id="dp", events=events, last_seq=1))
    got = await admin.GetDeveloper(apb.GetDeveloperRequest(id=bob.id))
    assert got.budget_status[0].spent_micros == 7_500_000


async def test_data_plane_token_cannot_manage_developers(flow: Flow, dp: Clients) -> None:
    try:
        await dp.admin.ListDevelopers(apb.ListDevelopersRequest())
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == StatusCode.UNAUTHENTICATED and "SignIn" in (exc.details() or "")
    else:  # pragma: no cover
        raise AssertionError("the data-plane token listed developers")
