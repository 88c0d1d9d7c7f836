"""Admin keys over real gRPC, on SQLite and PostgreSQL."""

import hashlib
import time

from google.protobuf.field_mask_pb2 import FieldMask
from grpc import StatusCode
from sqlmodel import select

from controlplane.store.models.config import VirtualKeyRow
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.conftest import (
    cost_event,
    expect_error,
    key_update,
    report_usage,
    seed_basics,
)


async def add_route(admin, name: str = "main", provider: str = "sim") -> pb.Route:
    return await admin.CreateRoute(
        apb.CreateRouteRequest(
            route=pb.Route(name=name, mode="fallback", targets=[pb.RouteTarget(provider=provider)])
        )
    )


async def test_create_returns_secret_once_and_stores_only_its_hash(cp, admin) -> None:
    seeded = await seed_basics(admin)
    key, secret = seeded["key"], seeded["secret"]
    assert secret.startswith("gw-") and key.id.startswith("key_")
    assert key.prefix == secret[:10] and key.workspace == "team-a" and key.provider == "sim"
    got = await admin.GetKey(apb.GetKeyRequest(id=key.id))
    assert got == key
    assert secret not in str(got)

    def rows(s):
        return list(s.exec(select(VirtualKeyRow)).all())

    (row,) = await cp.state.db.read(rows)
    assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(row.model_dump())


async def test_create_with_ttl_models_limits(admin) -> None:
    await seed_basics(admin)
    before = int(time.time() * 1000)
    resp = await admin.CreateKey(
        apb.CreateKeyRequest(
            workspace="team-a",
            name="ci bot",
            provider="sim",
            ttl_seconds=3600,
            models=["claude-sonnet-*", "claude-sonnet-*", "claude-haiku-4-5"],
            limits=pb.Limits(rpm=10, budgets=[pb.Budget(amount_micros=1, period=pb.PERIOD_WEEK)]),
        )
    )
    k = resp.key
    assert before + 3_600_000 <= k.expires_at_ms <= int(time.time() * 1000) + 3_600_000
    assert list(k.models) == ["claude-sonnet-*", "claude-haiku-4-5"]
    assert k.limits.rpm == 10 and k.limits.budgets[0].period == pb.PERIOD_WEEK


async def test_create_validation(admin) -> None:
    await seed_basics(admin)
    await add_route(admin)
    cases = [
        (
            apb.CreateKeyRequest(workspace="team-a", name="x"),
            StatusCode.INVALID_ARGUMENT,
            "exactly one of provider or route",
        ),
        (
            apb.CreateKeyRequest(workspace="team-a", provider="sim", route="main"),
            StatusCode.INVALID_ARGUMENT,
            "both were given",
        ),
        (
            apb.CreateKeyRequest(workspace="team-a", provider="nope"),
            StatusCode.NOT_FOUND,
            "provider 'nope' not found",
        ),
        (
            apb.CreateKeyRequest(workspace="team-a", route="nope"),
            StatusCode.NOT_FOUND,
            "route 'nope' not found",
        ),
        (
            apb.CreateKeyRequest(workspace="ghost", provider="sim"),
            StatusCode.NOT_FOUND,
            "workspace 'ghost' not found",
        ),
        (
            apb.CreateKeyRequest(workspace="team-a", provider="sim", ttl_seconds=-5),
            StatusCode.INVALID_ARGUMENT,
            "ttl_seconds",
        ),
        (
            apb.CreateKeyRequest(workspace="team-a", provider="sim", models=["a b"]),
            StatusCode.INVALID_ARGUMENT,
            "model pattern",
        ),
        (
            apb.CreateKeyRequest(workspace="team-a", provider="sim", limits=pb.Limits(tpm=-1)),
            StatusCode.INVALID_ARGUMENT,
            "tpm",
        ),
        (
            apb.CreateKeyRequest(workspace="team-a", provider="sim", name="a\x00b"),
            StatusCode.INVALID_ARGUMENT,
            "control characters",
        ),
    ]
    for req, code, text in cases:
        await expect_error(admin.CreateKey(req), code, text)
    assert (await admin.CreateKey(apb.CreateKeyRequest(workspace="team-a", route="main"))).key.route


async def test_list_filters_and_hides_revoked(admin) -> None:
    seeded = await seed_basics(admin)
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="team-b")))
    other = (await admin.CreateKey(apb.CreateKeyRequest(workspace="team-b", provider="sim"))).key
    listed = await admin.ListKeys(apb.ListKeysRequest())
    assert {k.id for k in listed.keys} == {seeded["key"].id, other.id}
    only_b = await admin.ListKeys(apb.ListKeysRequest(workspace="team-b"))
    assert [k.id for k in only_b.keys] == [other.id]
    await expect_error(admin.ListKeys(apb.ListKeysRequest(workspace="ghost")), StatusCode.NOT_FOUND)

    revoked = await admin.RevokeKey(apb.RevokeKeyRequest(id=other.id))
    assert revoked.revoked_at_ms > 0
    again = await admin.RevokeKey(apb.RevokeKeyRequest(id=other.id))
    assert again.revoked_at_ms == revoked.revoked_at_ms  # idempotent
    listed = await admin.ListKeys(apb.ListKeysRequest())
    assert [k.id for k in listed.keys] == [seeded["key"].id]
    listed = await admin.ListKeys(apb.ListKeysRequest(include_revoked=True))
    assert {k.id for k in listed.keys} == {seeded["key"].id, other.id}


async def test_update_key(admin) -> None:
    seeded = await seed_basics(admin)
    await add_route(admin)
    kid = seeded["key"].id
    upd = await admin.UpdateKey(
        apb.UpdateKeyRequest(
            key=pb.VirtualKey(
                id=kid,
                name="renamed",
                route="main",
                models=["claude-*"],
                limits=pb.Limits(rpm=3, rph=9),
            ),
            update_mask=FieldMask(paths=["name", "route", "limits.rpm"]),
        )
    )
    assert upd.name == "renamed"
    assert (upd.route, upd.provider) == ("main", "")  # switching target clears the other one
    assert list(upd.models) == []  # not in the mask
    assert (upd.limits.rpm, upd.limits.rph) == (3, 0)
    upd = await admin.UpdateKey(key_update(kid, expires_at_ms=123, models=["claude-*"]))
    assert upd.expires_at_ms == 123 and list(upd.models) == ["claude-*"]

    refused = [
        (key_update(kid, provider="sim", route="main"), StatusCode.INVALID_ARGUMENT, "exactly one"),
        (key_update(kid, provider="ghost"), StatusCode.NOT_FOUND, "provider 'ghost'"),
        (
            key_update(kid, workspace="x"),
            StatusCode.INVALID_ARGUMENT,
            "unknown update_mask path 'workspace'",
        ),
        (key_update("key_0000000000000000", name="x"), StatusCode.NOT_FOUND, ""),
        (key_update("bogus", name="x"), StatusCode.INVALID_ARGUMENT, "invalid key id"),
    ]
    for request, code, contains in refused:
        await expect_error(admin.UpdateKey(request), code, contains)

    await admin.RevokeKey(apb.RevokeKeyRequest(id=kid))
    await expect_error(
        admin.UpdateKey(key_update(kid, name="x")),
        StatusCode.FAILED_PRECONDITION,
        "revoked",
    )


async def test_delete_key(admin) -> None:
    seeded = await seed_basics(admin)
    await admin.DeleteKey(apb.DeleteKeyRequest(id=seeded["key"].id))
    await expect_error(admin.GetKey(apb.GetKeyRequest(id=seeded["key"].id)), StatusCode.NOT_FOUND)
    await expect_error(
        admin.DeleteKey(apb.DeleteKeyRequest(id=seeded["key"].id)), StatusCode.NOT_FOUND
    )
    await expect_error(
        admin.RevokeKey(apb.RevokeKeyRequest(id=seeded["key"].id)), StatusCode.NOT_FOUND
    )


async def test_budget_status_in_the_workspace_time_zone(admin, dataplane) -> None:
    await admin.CreateWorkspace(
        apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="tokyo", timezone="Asia/Tokyo"))
    )
    await admin.CreateProvider(
        apb.CreateProviderRequest(provider=pb.Provider(name="sim", kind="simulator"))
    )
    day = pb.Budget(amount_micros=5_000_000, period=pb.PERIOD_DAY)
    life = pb.Budget(amount_micros=50_000_000, period=pb.PERIOD_LIFETIME)
    created = await admin.CreateKey(
        apb.CreateKeyRequest(
            workspace="tokyo", name="k", provider="sim", limits=pb.Limits(budgets=[life, day])
        )
    )
    key = created.key
    assert [s.spent_micros for s in key.budget_status] == [0, 0]
    now = time.time_ns() // 1_000_000
    await report_usage(
        dataplane,
        [
            cost_event("old", now - 3 * 86_400_000, "tokyo", key.id, 1_000_000),
            cost_event("new", now, "tokyo", key.id, 250_000),
        ],
    )
    got = await admin.GetKey(apb.GetKeyRequest(id=key.id))
    d, lt = got.budget_status
    assert (d.budget, d.spent_micros) == (day, 250_000)
    # Tokyo midnight is 15:00 UTC.
    assert d.period_start_ms % 86_400_000 == 15 * 3_600_000
    assert d.period_start_ms <= now < d.period_end_ms
    assert (lt.budget, lt.period_start_ms, lt.period_end_ms, lt.spent_micros) == (
        life,
        0,
        0,
        1_250_000,
    )
    listed = await admin.ListKeys(apb.ListKeysRequest(workspace="tokyo"))
    assert list(listed.keys[0].budget_status) == list(got.budget_status)
