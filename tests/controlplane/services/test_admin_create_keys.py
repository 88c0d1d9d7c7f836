"""Admin.CreateKeys: many keys of one workspace in one transaction, checked like CreateKey."""

from __future__ import annotations

from typing import Any

from grpc import StatusCode

from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.conftest import Clients, expect_error, seed_basics


def req(name: str, **kw: Any) -> apb.CreateKeyRequest:
    return apb.CreateKeyRequest(name=name, provider=kw.pop("provider", "sim"), **kw)


async def test_create_keys_all_or_nothing_and_scoped(cp: Any, admin: Any, channel: Any) -> None:
    await seed_basics(admin)
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="team-b")))
    before = cp.state.cache.publication
    resp = await admin.CreateKeys(
        apb.CreateKeysRequest(workspace="team-a", keys=[req("k1"), req("k2", workspace="team-a")])
    )
    assert [k.key.name for k in resp.keys] == ["k1", "k2"]
    assert all(k.secret.startswith("gw-") and k.key.workspace == "team-a" for k in resp.keys)
    assert cp.state.cache.publication == before + 1  # one publication for the whole call
    listed = await admin.ListKeys(apb.ListKeysRequest(workspace="team-a"))
    assert {"k1", "k2"} <= {k.name for k in listed.keys}

    # One bad key refuses the whole call: nothing is created.
    await expect_error(
        admin.CreateKeys(
            apb.CreateKeysRequest(workspace="team-a", keys=[req("k3"), req("k4", provider="nope")])
        ),
        StatusCode.NOT_FOUND,
    )
    listed = await admin.ListKeys(apb.ListKeysRequest(workspace="team-a"))
    assert "k3" not in {k.name for k in listed.keys}
    await expect_error(
        admin.CreateKeys(
            apb.CreateKeysRequest(workspace="team-a", keys=[req("k5", workspace="team-b")])
        ),
        StatusCode.INVALID_ARGUMENT,
        "one workspace per CreateKeys call",
    )
    # A workspace-admin of team-b cannot create keys in team-a.
    minted = await admin.CreateToken(
        apb.CreateTokenRequest(name="lead", role="workspace-admin", workspaces=["team-b"])
    )
    lead = Clients(channel, minted.secret).admin
    await expect_error(
        lead.CreateKeys(apb.CreateKeysRequest(workspace="team-a", keys=[req("k6")])),
        StatusCode.PERMISSION_DENIED,
    )
    ok = await lead.CreateKeys(apb.CreateKeysRequest(workspace="team-b", keys=[req("k7")]))
    assert ok.keys[0].key.workspace == "team-b"
