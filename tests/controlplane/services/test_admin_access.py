"""Workspace access controls over real gRPC, on SQLite and PostgreSQL: the allow-lists on
workspaces, keys refused outside them, delete guards, and the lists in the snapshot."""

from __future__ import annotations

from typing import Any

from google.protobuf.field_mask_pb2 import FieldMask
from grpc import StatusCode

from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.conftest import Clients, expect_error


async def setup(admin: Any) -> None:
    """Providers a, b, c (simulators) and routes main (a → b) and wide (a → c)."""
    for name in ("a", "b", "c"):
        await admin.CreateProvider(
            apb.CreateProviderRequest(
                provider=pb.Provider(name=name, kind="simulator", base_url="http://127.0.0.1:9")
            )
        )
    for name, targets in (("main", ["a", "b"]), ("wide", ["a", "c"])):
        await admin.CreateRoute(
            apb.CreateRouteRequest(
                route=pb.Route(
                    name=name,
                    mode="fallback",
                    targets=[pb.RouteTarget(provider=p) for p in targets],
                )
            )
        )


async def make_ws(admin: Any, name: str = "team-a", **lists: Any) -> pb.Workspace:
    return await admin.CreateWorkspace(
        apb.CreateWorkspaceRequest(workspace=pb.Workspace(name=name, **lists))
    )


async def update_ws(admin: Any, paths: list[str], **lists: Any) -> pb.Workspace:
    return await admin.UpdateWorkspace(
        apb.UpdateWorkspaceRequest(
            workspace=pb.Workspace(name="team-a", **lists), update_mask=FieldMask(paths=paths)
        )
    )


def key_req(**kw: Any) -> apb.CreateKeyRequest:
    return apb.CreateKeyRequest(workspace="team-a", name="k", **kw)


async def test_lists_are_stored_normalised_and_returned(admin) -> None:
    await setup(admin)
    ws = await make_ws(
        admin,
        allowed_providers=["b", "a", "b"],
        allowed_routes=["main"],
        allowed_models=["claude-sonnet-*", " claude-haiku-4-5 ", "claude-sonnet-*"],
    )
    assert list(ws.allowed_providers) == ["b", "a"]
    assert list(ws.allowed_routes) == ["main"]
    assert list(ws.allowed_models) == ["claude-sonnet-*", "claude-haiku-4-5"]
    got = await admin.GetWorkspace(apb.GetWorkspaceRequest(name="team-a"))
    assert got == ws
    listed = await admin.ListWorkspaces(apb.ListWorkspacesRequest())
    assert list(listed.workspaces[0].allowed_models) == ["claude-sonnet-*", "claude-haiku-4-5"]


async def test_create_refuses_unknown_or_malformed_entries(admin) -> None:
    await setup(admin)
    refused: list[tuple[dict[str, Any], str]] = [
        ({"allowed_providers": ["a", "ghost"]}, "allowed provider 'ghost' does not exist"),
        ({"allowed_routes": ["nope"]}, "allowed route 'nope' does not exist"),
        ({"allowed_providers": ["Bad Name"]}, "invalid allowed provider name"),
        ({"allowed_models": ["claude sonnet"]}, "invalid model pattern"),
    ]
    for lists, contains in refused:
        await expect_error(make_ws(admin, **lists), StatusCode.INVALID_ARGUMENT, contains)
    # Nothing was stored by the refused calls.
    listed = await admin.ListWorkspaces(apb.ListWorkspacesRequest())
    assert list(listed.workspaces) == []


async def test_update_mask_paths_set_and_clear_each_list(admin) -> None:
    await setup(admin)
    await make_ws(admin, allowed_providers=["a"], allowed_models=["claude-*"])
    ws = await update_ws(admin, ["allowed_routes"], allowed_routes=["main", "wide"])
    assert (list(ws.allowed_providers), list(ws.allowed_routes)) == (["a"], ["main", "wide"])
    assert list(ws.allowed_models) == ["claude-*"]  # not in the mask
    ws = await update_ws(admin, ["allowed_models"], allowed_models=["claude-haiku-*"])
    assert list(ws.allowed_models) == ["claude-haiku-*"]
    # An empty list in the mask clears it (everything allowed again).
    ws = await update_ws(admin, ["allowed_providers", "allowed_models"])
    assert list(ws.allowed_providers) == [] and list(ws.allowed_models) == []
    assert list(ws.allowed_routes) == ["main", "wide"]
    await expect_error(
        update_ws(admin, ["allowed_providers"], allowed_providers=["zzz"]),
        StatusCode.INVALID_ARGUMENT,
        "allowed provider 'zzz' does not exist",
    )


async def test_create_key_refused_outside_the_workspace(admin) -> None:
    await setup(admin)
    await make_ws(admin, allowed_providers=["a", "b"], allowed_models=["claude-sonnet-*"])
    ok = await admin.CreateKey(key_req(provider="a", models=["claude-sonnet-4-5*"]))
    assert ok.key.provider == "a"
    assert (await admin.CreateKey(key_req(provider="b"))).key.models == []  # workspace list applies
    details = await expect_error(
        admin.CreateKey(key_req(provider="c")),
        StatusCode.INVALID_ARGUMENT,
        "workspace 'team-a' allows providers a, b; the key targets provider 'c'",
    )
    assert "allowed_providers" in details  # says what to do
    await expect_error(
        admin.CreateKey(key_req(provider="a", models=["claude-*"])),
        StatusCode.INVALID_ARGUMENT,
        "allows models claude-sonnet-*; the key's model pattern(s) claude-* go beyond them",
    )
    # No allowed_routes: a route is allowed only when it stays within the providers.
    assert (await admin.CreateKey(key_req(route="main"))).key.route == "main"
    await expect_error(
        admin.CreateKey(key_req(route="wide")),
        StatusCode.INVALID_ARGUMENT,
        "route 'wide', which reaches provider 'c'",
    )
    keys = await admin.ListKeys(apb.ListKeysRequest(workspace="team-a"))
    assert len(keys.keys) == 3


async def test_routes_list_admits_listed_routes_only(admin) -> None:
    await setup(admin)
    await make_ws(admin, allowed_routes=["wide"])
    # A listed route is allowed whatever it reaches: its admin chose the targets.
    assert (await admin.CreateKey(key_req(route="wide"))).key.route == "wide"
    await expect_error(
        admin.CreateKey(key_req(route="main")),
        StatusCode.INVALID_ARGUMENT,
        "allows routes wide; the key targets route 'main'",
    )
    await expect_error(
        admin.CreateKey(key_req(provider="a")),
        StatusCode.INVALID_ARGUMENT,
        "the key targets provider 'a'",
    )


async def test_update_key_checks_what_it_changes(admin) -> None:
    await setup(admin)
    await make_ws(admin, allowed_providers=["a"], allowed_models=["claude-haiku-*"])
    key = (await admin.CreateKey(key_req(provider="a"))).key

    async def upd(paths: list[str], **kw: Any) -> pb.VirtualKey:
        return await admin.UpdateKey(
            apb.UpdateKeyRequest(
                key=pb.VirtualKey(id=key.id, **kw), update_mask=FieldMask(paths=paths)
            )
        )

    await expect_error(
        upd(["provider"], provider="b"),
        StatusCode.INVALID_ARGUMENT,
        "allows providers a; the key targets provider 'b'",
    )
    await expect_error(
        upd(["models"], models=["claude-opus-*"]),
        StatusCode.INVALID_ARGUMENT,
        "allows models claude-haiku-*",
    )
    assert list((await upd(["models"], models=["claude-haiku-4-5"])).models) == ["claude-haiku-4-5"]
    got = await admin.GetKey(apb.GetKeyRequest(id=key.id))
    assert got.provider == "a"

    # Narrowing the workspace leaves the key outside it; unrelated edits still work.
    await update_ws(admin, ["allowed_models"], allowed_models=["claude-sonnet-*"])
    assert (await upd(["name"], name="renamed")).name == "renamed"


async def test_narrowing_is_allowed_while_keys_fall_outside(admin) -> None:
    await setup(admin)
    await make_ws(admin)
    key = (await admin.CreateKey(key_req(provider="c", models=["claude-*"]))).key
    ws = await update_ws(
        admin,
        ["allowed_providers", "allowed_models"],
        allowed_providers=["a"],
        allowed_models=["claude-haiku-*"],
    )
    assert list(ws.allowed_providers) == ["a"]
    # The key is still there (data planes refuse it per request) ...
    assert (await admin.GetKey(apb.GetKeyRequest(id=key.id))).provider == "c"


async def test_snapshot_carries_the_lists_and_tolerates_keys_outside(cp, admin) -> None:
    await setup(admin)
    await make_ws(admin)
    await admin.CreateKey(key_req(provider="c"))
    await update_ws(
        admin,
        ["allowed_providers", "allowed_routes", "allowed_models"],
        allowed_providers=["a"],
        allowed_routes=["main"],
        allowed_models=["claude-haiku-*"],
    )
    snap = cp.state.cache.current
    assert snap is not None and cp.state.cache.last_error == ""
    (ws,) = snap.workspaces
    assert list(ws.allowed_providers) == ["a"]
    assert list(ws.allowed_routes) == ["main"]
    assert list(ws.allowed_models) == ["claude-haiku-*"]
    assert [k.provider for k in snap.keys] == ["c"]  # non-compliant key still published


async def test_delete_provider_or_route_refused_while_an_allow_list_names_it(admin) -> None:
    await setup(admin)
    await make_ws(admin, allowed_providers=["c"], allowed_routes=["wide"])
    await make_ws(admin, "team-b", allowed_providers=["c"])
    await admin.DeleteRoute(apb.DeleteRouteRequest(name="main"))  # named nowhere
    await expect_error(
        admin.DeleteRoute(apb.DeleteRouteRequest(name="wide")),
        StatusCode.FAILED_PRECONDITION,
        "route 'wide' is still used by workspace 'team-a' (allowed_routes)",
    )
    await update_ws(admin, ["allowed_routes"])
    await admin.DeleteRoute(apb.DeleteRouteRequest(name="wide"))
    details = await expect_error(
        admin.DeleteProvider(apb.DeleteProviderRequest(name="c")),
        StatusCode.FAILED_PRECONDITION,
        "workspace 'team-a' (allowed_providers)",
    )
    assert "workspace 'team-b' (allowed_providers)" in details


async def test_a_workspace_admin_cannot_widen_its_own_workspace(admin, channel) -> None:
    await setup(admin)
    await make_ws(admin, allowed_providers=["a"], allowed_models=["claude-haiku-*"])
    minted = await admin.CreateToken(
        apb.CreateTokenRequest(name="lead", role="workspace-admin", workspaces=["team-a"])
    )
    lead = Clients(channel, minted.secret).admin
    for paths, lists in (
        (["allowed_providers"], {"allowed_providers": ["a", "c"]}),
        (["allowed_models"], {"allowed_models": ["claude-*"]}),
        ([], {"allowed_routes": ["wide"]}),  # an empty mask means the fields that are set
    ):
        await expect_error(
            update_ws(lead, paths, **lists),
            StatusCode.PERMISSION_DENIED,
            "needs an admin token",
        )
    # Keys the workspace-admin creates are held to the lists like anyone's.
    await expect_error(
        lead.CreateKey(key_req(provider="c")),
        StatusCode.INVALID_ARGUMENT,
        "allows providers a; the key targets provider 'c'",
    )
    assert (await lead.CreateKey(key_req(provider="a"))).key.provider == "a"
    ws = await admin.GetWorkspace(apb.GetWorkspaceRequest(name="team-a"))
    assert list(ws.allowed_providers) == ["a"] and list(ws.allowed_models) == ["claude-haiku-*"]


def test_workspace_rows_written_without_the_access_columns_allow_all(db_url: str) -> None:
    """A workspace written by code from before access controls (an older replica during a
    rolling upgrade) gets the columns' server defaults: it allows everything."""
    from controlplane.catalog.allowlists import allowed_of
    from controlplane.catalog.convert import workspace_to_pb
    from controlplane.store.models.config import WorkspaceRow
    from tests.controlplane.store.schema_data import written_by_older_code

    row = written_by_older_code(
        db_url,
        "INSERT INTO workspace (name, description, timezone, created_at_ms, "
        "updated_at_ms) VALUES ('old', '', '', 1, 1)",
        WorkspaceRow,
        "old",
    )
    assert allowed_of(row) == allowed_of(WorkspaceRow(name="new"))
    msg = workspace_to_pb(row)
    assert (list(msg.allowed_providers), list(msg.allowed_routes)) == ([], [])
    assert list(msg.allowed_models) == []
