"""Admin workspaces over real gRPC, on SQLite and PostgreSQL."""

import time

from google.protobuf.field_mask_pb2 import FieldMask
from grpc import StatusCode

from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.conftest import (
    cost_event,
    expect_error,
    report_usage,
    seed_basics,
    ws_update,
)

DAY = pb.Budget(amount_micros=50_000_000, period=pb.PERIOD_DAY)
MONTH = pb.Budget(amount_micros=1_000_000_000, period=pb.PERIOD_MONTH)


def ws_req(name: str = "team-a", **kw: object) -> apb.CreateWorkspaceRequest:
    return apb.CreateWorkspaceRequest(workspace=pb.Workspace(name=name, **kw))  # type: ignore[arg-type]


async def test_create_get_list(admin) -> None:
    created = await admin.CreateWorkspace(
        ws_req(
            description="Team A",
            timezone="Europe/Paris",
            limits=pb.Limits(budgets=[MONTH, DAY], rpm=60),
        )
    )
    assert created.name == "team-a" and created.created_at_ms > 0
    assert created.created_at_ms == created.updated_at_ms
    # Budgets come back sorted by period.
    assert [b.period for b in created.limits.budgets] == [pb.PERIOD_DAY, pb.PERIOD_MONTH]
    got = await admin.GetWorkspace(apb.GetWorkspaceRequest(name="team-a"))
    assert got == created
    await admin.CreateWorkspace(ws_req("alpha"))
    listed = await admin.ListWorkspaces(apb.ListWorkspacesRequest())
    assert [w.name for w in listed.workspaces] == ["alpha", "team-a"]


async def test_create_validation(admin) -> None:
    await expect_error(
        admin.CreateWorkspace(ws_req("Team A")),
        StatusCode.INVALID_ARGUMENT,
        "invalid workspace name 'Team A'",
    )
    await expect_error(
        admin.CreateWorkspace(ws_req("")), StatusCode.INVALID_ARGUMENT, "workspace name is required"
    )
    await expect_error(
        admin.CreateWorkspace(ws_req(timezone="Nowhere/Land")),
        StatusCode.INVALID_ARGUMENT,
        "unknown time zone",
    )
    await expect_error(
        admin.CreateWorkspace(ws_req(limits=pb.Limits(budgets=[DAY, DAY]))),
        StatusCode.INVALID_ARGUMENT,
        "at most one budget per period",
    )
    await expect_error(
        admin.CreateWorkspace(ws_req(limits=pb.Limits(rpm=-1))),
        StatusCode.INVALID_ARGUMENT,
        "rpm must not be negative",
    )
    await expect_error(
        admin.CreateWorkspace(ws_req(limits=pb.Limits(budgets=[pb.Budget(amount_micros=5)]))),
        StatusCode.INVALID_ARGUMENT,
        "needs a period",
    )
    assert not (await admin.ListWorkspaces(apb.ListWorkspacesRequest())).workspaces


async def test_already_exists_and_not_found(admin) -> None:
    await admin.CreateWorkspace(ws_req())
    await expect_error(
        admin.CreateWorkspace(ws_req()),
        StatusCode.ALREADY_EXISTS,
        "workspace 'team-a' already exists",
    )
    await expect_error(
        admin.GetWorkspace(apb.GetWorkspaceRequest(name="nope")),
        StatusCode.NOT_FOUND,
        "workspace 'nope' not found",
    )
    await expect_error(
        admin.UpdateWorkspace(ws_update("nope", description="x")),
        StatusCode.NOT_FOUND,
    )
    await expect_error(
        admin.DeleteWorkspace(apb.DeleteWorkspaceRequest(name="nope")), StatusCode.NOT_FOUND
    )


async def test_update_with_field_mask(admin) -> None:
    await admin.CreateWorkspace(
        ws_req(description="old", limits=pb.Limits(budgets=[DAY], rpm=60, tpm=1000))
    )
    upd = await admin.UpdateWorkspace(
        apb.UpdateWorkspaceRequest(
            workspace=pb.Workspace(
                name="team-a",
                description="new",
                timezone="Asia/Tokyo",
                limits=pb.Limits(rpm=5, tpm=7, budgets=[MONTH]),
            ),
            update_mask=FieldMask(paths=["description", "limits.rpm"]),
        )
    )
    assert upd.description == "new"
    assert upd.timezone == ""  # not in the mask
    assert upd.limits.rpm == 5 and upd.limits.tpm == 1000  # only rpm changed
    assert list(upd.limits.budgets) == [DAY]
    assert upd.updated_at_ms >= upd.created_at_ms

    upd = await admin.UpdateWorkspace(ws_update("team-a", limits=pb.Limits(budgets=[MONTH])))
    assert list(upd.limits.budgets) == [MONTH] and upd.limits.rpm == 0  # whole limits replaced

    upd = await admin.UpdateWorkspace(
        apb.UpdateWorkspaceRequest(
            workspace=pb.Workspace(name="team-a", limits=pb.Limits(budgets=[DAY])),
            update_mask=FieldMask(paths=["limits.budgets"]),
        )
    )
    assert list(upd.limits.budgets) == [DAY]


async def test_update_empty_mask_means_set_fields(admin) -> None:
    await admin.CreateWorkspace(ws_req(description="old", timezone="Europe/Paris"))
    upd = await admin.UpdateWorkspace(
        apb.UpdateWorkspaceRequest(workspace=pb.Workspace(name="team-a", description="new"))
    )
    assert upd.description == "new" and upd.timezone == "Europe/Paris"
    await expect_error(
        admin.UpdateWorkspace(apb.UpdateWorkspaceRequest(workspace=pb.Workspace(name="team-a"))),
        StatusCode.INVALID_ARGUMENT,
        "nothing to update",
    )


async def test_update_rejects_unknown_paths(admin) -> None:
    await admin.CreateWorkspace(ws_req())
    for path in ("name", "created_at_ms", "limits.foo", "bogus"):
        await expect_error(
            admin.UpdateWorkspace(
                apb.UpdateWorkspaceRequest(
                    workspace=pb.Workspace(name="team-a"), update_mask=FieldMask(paths=[path])
                )
            ),
            StatusCode.INVALID_ARGUMENT,
            f"unknown update_mask path '{path}'",
        )


async def test_delete_needs_force_when_keys_exist(admin) -> None:
    seeded = await seed_basics(admin)
    details = await expect_error(
        admin.DeleteWorkspace(apb.DeleteWorkspaceRequest(name="team-a")),
        StatusCode.FAILED_PRECONDITION,
        "still has 1 active key",
    )
    assert seeded["key"].id in details and "force" in details
    await admin.DeleteWorkspace(apb.DeleteWorkspaceRequest(name="team-a", force=True))
    await expect_error(admin.GetKey(apb.GetKeyRequest(id=seeded["key"].id)), StatusCode.NOT_FOUND)
    assert not (await admin.ListWorkspaces(apb.ListWorkspacesRequest())).workspaces


async def test_delete_with_only_revoked_keys(admin) -> None:
    seeded = await seed_basics(admin)
    await admin.RevokeKey(apb.RevokeKeyRequest(id=seeded["key"].id))
    await admin.DeleteWorkspace(apb.DeleteWorkspaceRequest(name="team-a"))
    await expect_error(admin.GetKey(apb.GetKeyRequest(id=seeded["key"].id)), StatusCode.NOT_FOUND)


async def test_settings_create_update_and_snapshot(cp, admin) -> None:
    created = await admin.CreateWorkspace(ws_req())
    assert (created.timezone, created.redis_failure, created.alert_webhook) == ("", "closed", "")
    created = await admin.CreateWorkspace(
        ws_req(
            "berlin",
            timezone="Europe/Berlin",
            redis_failure="open",
            alert_webhook="https://hooks.example.com/t/123",
        )
    )
    assert (created.timezone, created.redis_failure, created.alert_webhook) == (
        "Europe/Berlin",
        "open",
        "https://hooks.example.com/t/123",
    )
    assert await admin.GetWorkspace(apb.GetWorkspaceRequest(name="berlin")) == created

    upd = await admin.UpdateWorkspace(ws_update("berlin", redis_failure="closed", alert_webhook=""))
    assert (upd.timezone, upd.redis_failure, upd.alert_webhook) == ("Europe/Berlin", "closed", "")
    upd = await admin.UpdateWorkspace(
        apb.UpdateWorkspaceRequest(
            workspace=pb.Workspace(name="berlin", timezone="", redis_failure="open"),
            update_mask=FieldMask(paths=["timezone"]),
        )
    )
    assert (upd.timezone, upd.redis_failure) == ("", "closed")  # only the masked path changed

    await admin.UpdateWorkspace(
        apb.UpdateWorkspaceRequest(
            workspace=pb.Workspace(
                name="team-a", redis_failure="open", alert_webhook="https://hooks.example.com/x"
            )
        )  # empty mask: the set fields
    )
    snap = cp.state.cache.current
    team = next(w for w in snap.workspaces if w.name == "team-a")
    assert team.redis_failure == "open" and team.alert_webhook == ""  # the URL stays here


async def test_settings_validation(admin) -> None:
    await expect_error(
        admin.CreateWorkspace(ws_req(timezone="Europe/Gotham")),
        StatusCode.INVALID_ARGUMENT,
        "unknown time zone 'Europe/Gotham': use an IANA name such as 'Europe/Berlin'",
    )
    await expect_error(
        admin.CreateWorkspace(ws_req(redis_failure="maybe")),
        StatusCode.INVALID_ARGUMENT,
        "invalid redis_failure 'maybe'",
    )
    details = await expect_error(
        admin.CreateWorkspace(ws_req(alert_webhook="https://bot:hunter2@hooks.example.com/x")),
        StatusCode.INVALID_ARGUMENT,
        "credentials in the URL",
    )
    assert "hunter2" not in details
    await expect_error(
        admin.CreateWorkspace(ws_req(alert_webhook="mailto:ops@example.com")),
        StatusCode.INVALID_ARGUMENT,
        "use an http:// or https:// URL",
    )
    await admin.CreateWorkspace(ws_req())
    await expect_error(
        admin.UpdateWorkspace(ws_update("team-a", timezone="Mars/Olympus")),
        StatusCode.INVALID_ARGUMENT,
        "unknown time zone",
    )
    assert not (await admin.ListWorkspaces(apb.ListWorkspacesRequest())).workspaces[0].timezone


async def test_budget_status_on_get_and_list(admin, dataplane) -> None:
    await admin.CreateWorkspace(ws_req(limits=pb.Limits(budgets=[MONTH, DAY])))
    await admin.CreateWorkspace(ws_req("idle"))
    now = time.time_ns() // 1_000_000
    await report_usage(
        dataplane, [cost_event(f"r{i}", now, "team-a", "key_x", 1_234_567) for i in range(2)]
    )
    ws = await admin.GetWorkspace(apb.GetWorkspaceRequest(name="team-a"))
    assert [(s.budget.period, s.spent_micros) for s in ws.budget_status] == [
        (pb.PERIOD_DAY, 2_469_134),
        (pb.PERIOD_MONTH, 2_469_134),
    ]
    day = ws.budget_status[0]
    assert day.budget == DAY
    assert day.period_start_ms <= now < day.period_end_ms
    assert day.period_end_ms - day.period_start_ms == 86_400_000  # UTC: no DST
    listed = await admin.ListWorkspaces(apb.ListWorkspacesRequest())
    assert [list(w.budget_status) for w in listed.workspaces] == [[], list(ws.budget_status)]
