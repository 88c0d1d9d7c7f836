"""Every Admin mutation publishes a new snapshot before it answers; reads never do."""

from typing import Any

from google.protobuf.field_mask_pb2 import FieldMask

from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.conftest import seed_basics


async def test_each_mutation_publishes_a_new_snapshot(cp, admin) -> None:
    cache = cp.state.cache
    seen = [cache.version]

    async def changed(awaitable) -> Any:
        result = await awaitable
        assert cache.version != seen[-1], "mutation did not publish a new snapshot"
        seen.append(cache.version)
        return result

    async def unchanged(awaitable) -> Any:
        result = await awaitable
        assert cache.version == seen[-1]
        return result

    await changed(
        admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="w")))
    )
    await changed(
        admin.UpdateWorkspace(
            apb.UpdateWorkspaceRequest(
                workspace=pb.Workspace(name="w", limits=pb.Limits(rpm=5)),
                update_mask=FieldMask(paths=["limits.rpm"]),
            )
        )
    )
    await changed(
        admin.CreateProvider(
            apb.CreateProviderRequest(
                provider=pb.Provider(name="p", kind="simulator", base_url="http://127.0.0.1:1")
            )
        )
    )
    await changed(
        admin.UpdateProvider(
            apb.UpdateProviderRequest(
                provider=pb.Provider(name="p", options={"latency_ms": "1"}),
                update_mask=FieldMask(paths=["options"]),
            )
        )
    )
    await changed(
        admin.CreateRoute(
            apb.CreateRouteRequest(route=pb.Route(name="r", targets=[pb.RouteTarget(provider="p")]))
        )
    )
    await changed(
        admin.UpdateRoute(
            apb.UpdateRouteRequest(
                route=pb.Route(name="r", retries=2), update_mask=FieldMask(paths=["retries"])
            )
        )
    )
    key = (await changed(admin.CreateKey(apb.CreateKeyRequest(workspace="w", route="r")))).key
    await changed(
        admin.UpdateKey(
            apb.UpdateKeyRequest(
                key=pb.VirtualKey(
                    id=key.id,
                    limits=pb.Limits(
                        budgets=[pb.Budget(amount_micros=5_000_000, period=pb.PERIOD_DAY)]
                    ),
                ),
                update_mask=FieldMask(paths=["limits.budgets"]),
            )
        )
    )
    snap_key = next(k for k in cache.current.keys if k.id == key.id)
    assert snap_key.limits.budgets[0].amount_micros == 5_000_000 and snap_key.route == "r"
    await changed(admin.RevokeKey(apb.RevokeKeyRequest(id=key.id)))
    await changed(admin.DeleteKey(apb.DeleteKeyRequest(id=key.id)))
    assert cache.version == seen[6]  # as before CreateKey: identical content, identical version
    await changed(admin.DeleteRoute(apb.DeleteRouteRequest(name="r")))
    await changed(admin.DeleteProvider(apb.DeleteProviderRequest(name="p")))
    await changed(admin.DeleteWorkspace(apb.DeleteWorkspaceRequest(name="w")))
    assert cache.version == seen[0]  # back to the original content: back to the original version

    await unchanged(admin.ListWorkspaces(apb.ListWorkspacesRequest()))
    await unchanged(admin.ListPrices(apb.ListPricesRequest()))


async def test_snapshot_never_carries_the_secret(cp, admin) -> None:
    seeded = await seed_basics(admin)
    blob = cp.state.cache.current.SerializeToString()
    assert seeded["secret"].encode() not in blob
    assert seeded["secret"][3:].encode() not in blob
