"""A workspace's sign-in fields over real gRPC: sso_groups, sso_priority, member limits and
target, managed settings (validation, canonical form, checksum), in responses and snapshots."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from grpc import StatusCode

from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.conftest import Clients, expect_error

POLICY = '{\n  "permissions": {"deny": ["Bash(rm:*)"]},\n  "env": {"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}\n}'


async def setup(admin: Any) -> None:
    for name in ("sim", "sim2"):
        await admin.CreateProvider(
            apb.CreateProviderRequest(provider=pb.Provider(name=name, kind="simulator"))
        )
    await admin.CreateRoute(
        apb.CreateRouteRequest(route=pb.Route(name="rt", targets=[pb.RouteTarget(provider="sim")]))
    )


def update(name: str, paths: list[str], **fields: Any) -> apb.UpdateWorkspaceRequest:
    return apb.UpdateWorkspaceRequest(
        workspace=pb.Workspace(name=name, **fields), update_mask=FieldMask(paths=paths)
    )


async def test_create_with_every_sign_in_field(admin: Any, cp: Any) -> None:
    await setup(admin)
    created = await admin.CreateWorkspace(
        apb.CreateWorkspaceRequest(
            workspace=pb.Workspace(
                name="platform",
                sso_groups=["platform-eng", "Platform Leads", "platform-eng"],
                sso_priority=10,
                member_limits=pb.Limits(
                    rpm=120, budgets=[pb.Budget(amount_micros=50_000_000, period=pb.PERIOD_DAY)]
                ),
                member_provider="sim",
                managed_settings_json=POLICY,
            )
        )
    )
    assert (
        list(created.sso_groups) == ["platform-eng", "Platform Leads"]
        and created.sso_priority == 10
    )
    assert created.member_limits.rpm == 120 and created.member_provider == "sim"
    canonical = json.dumps(json.loads(POLICY), sort_keys=True, separators=(",", ":"))
    assert created.managed_settings_json == canonical
    assert created.managed_settings_checksum == hashlib.sha256(canonical.encode()).hexdigest()
    assert created.managed_settings_updated_at_ms == created.created_at_ms
    snap_ws = next(w for w in cp.state.cache.current.workspaces if w.name == "platform")
    assert snap_ws.managed_settings_json == canonical and snap_ws.managed_settings_checksum
    assert snap_ws.member_provider == "" and list(snap_ws.sso_groups) == [
        "platform-eng",
        "Platform Leads",
    ]


async def test_same_policy_written_differently_keeps_its_checksum(admin: Any) -> None:
    await admin.CreateWorkspace(
        apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="w", managed_settings_json=POLICY))
    )
    first = await admin.GetWorkspace(apb.GetWorkspaceRequest(name="w"))
    respaced = json.dumps(json.loads(POLICY), indent=4)
    second = await admin.UpdateWorkspace(
        update("w", ["managed_settings_json"], managed_settings_json=respaced)
    )
    assert second.managed_settings_checksum == first.managed_settings_checksum
    assert second.managed_settings_updated_at_ms == first.managed_settings_updated_at_ms
    empty = await admin.UpdateWorkspace(
        update("w", ["managed_settings_json"], managed_settings_json="{}")
    )
    assert empty.managed_settings_json == "{}" and empty.managed_settings_checksum
    gone = await admin.UpdateWorkspace(
        update("w", ["managed_settings_json"], managed_settings_json="")
    )
    assert gone.managed_settings_json == "" and gone.managed_settings_checksum == ""


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('"just a string"', "must be a JSON object"),
        ('{"env": {"A": 1}}', "env value 'A' must be a string"),
        ('{"env": {"A": true}}', "got a JSON true/false"),
        ('{"env": ["A=1"]}', '"env" must be an object'),
        ('{"a": 1, "a": 2}', "the key 'a' appears twice"),
        ('{"a": NaN}', "NaN is not valid JSON"),
        ('{"a": 1', "not valid JSON"),
        ('{"a": "' + "x" * (64 * 1024) + '"}', "at most 65536"),
        ("[" * 50 + "]" * 50, "must be a JSON object"),
        ('{"a":' * 40 + "1" + "}" * 40, "nested too deeply"),
    ],
)
async def test_managed_settings_validation(admin: Any, text: str, words: str) -> None:
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="w")))
    details = await expect_error(
        admin.UpdateWorkspace(update("w", ["managed_settings_json"], managed_settings_json=text)),
        StatusCode.INVALID_ARGUMENT,
        words,
    )
    assert len(details) < 400
    assert (await admin.GetWorkspace(apb.GetWorkspaceRequest(name="w"))).managed_settings_json == ""


@pytest.mark.parametrize(
    ("groups", "words"),
    [
        ([""], "invalid sso group ''"),
        ([" padded"], "no leading or trailing blanks"),
        (["a\x00b"], "control"),
        (["x" * 257], "too long"),
        (["g"] * 1 + [f"g{i}" for i in range(100)], "too many sso_groups"),
    ],
)
async def test_sso_groups_validation(admin: Any, groups: list[str], words: str) -> None:
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="w")))
    await expect_error(
        admin.UpdateWorkspace(update("w", ["sso_groups"], sso_groups=groups)),
        StatusCode.INVALID_ARGUMENT,
        words,
    )


async def test_sso_priority_and_star(admin: Any) -> None:
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="w")))
    done = await admin.UpdateWorkspace(
        update("w", ["sso_groups", "sso_priority"], sso_groups=["*"], sso_priority=5)
    )
    assert list(done.sso_groups) == ["*"] and done.sso_priority == 5
    await expect_error(
        admin.UpdateWorkspace(update("w", ["sso_priority"], sso_priority=-1)),
        StatusCode.INVALID_ARGUMENT,
        "sso_priority",
    )


async def test_member_target_rules(admin: Any) -> None:
    await setup(admin)
    await admin.CreateWorkspace(
        apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="w", allowed_providers=["sim"]))
    )
    await expect_error(
        admin.UpdateWorkspace(update("w", ["member_provider"], member_provider="nope")),
        StatusCode.NOT_FOUND,
        "member_provider 'nope' not found",
    )
    await expect_error(
        admin.UpdateWorkspace(
            update(
                "w", ["member_provider", "member_route"], member_provider="sim", member_route="rt"
            )
        ),
        StatusCode.INVALID_ARGUMENT,
        "not both",
    )
    await expect_error(
        admin.UpdateWorkspace(update("w", ["member_provider"], member_provider="sim2")),
        StatusCode.INVALID_ARGUMENT,
        "allows providers sim; the workspace's developers target provider 'sim2'",
    )
    done = await admin.UpdateWorkspace(update("w", ["member_provider"], member_provider="sim"))
    assert done.member_provider == "sim"
    switched = await admin.UpdateWorkspace(
        update("w", ["member_route", "allowed_routes"], member_route="rt", allowed_routes=["rt"])
    )
    assert (switched.member_provider, switched.member_route) == ("", "rt")
    await expect_error(
        admin.DeleteRoute(apb.DeleteRouteRequest(name="rt")),
        StatusCode.FAILED_PRECONDITION,
        "workspace 'w' (member_route)",
    )
    cleared = await admin.UpdateWorkspace(update("w", ["member_route"], member_route=""))
    assert (cleared.member_provider, cleared.member_route) == ("", "")


async def test_member_limits_paths(admin: Any) -> None:
    await admin.CreateWorkspace(
        apb.CreateWorkspaceRequest(
            workspace=pb.Workspace(name="w", member_limits=pb.Limits(rpm=10, tpm=1000))
        )
    )
    done = await admin.UpdateWorkspace(
        update("w", ["member_limits.rpm"], member_limits=pb.Limits(rpm=60))
    )
    assert (done.member_limits.rpm, done.member_limits.tpm) == (60, 1000)
    await expect_error(
        admin.UpdateWorkspace(update("w", ["member_limits"], member_limits=pb.Limits(rph=-5))),
        StatusCode.INVALID_ARGUMENT,
        "member_limits.rph must not be negative",
    )


async def test_sign_in_fields_need_an_admin_token(admin: Any, channel: Any) -> None:
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="w")))
    created = await admin.CreateToken(
        apb.CreateTokenRequest(name="lead", role="workspace-admin", workspaces=["w"])
    )
    lead = Clients(channel, created.secret).admin
    for path, fields in (
        ("managed_settings_json", {"managed_settings_json": "{}"}),
        ("sso_groups", {"sso_groups": ["x"]}),
        ("member_limits.rpm", {"member_limits": pb.Limits(rpm=1)}),
    ):
        await expect_error(
            lead.UpdateWorkspace(update("w", [path], **fields)), StatusCode.PERMISSION_DENIED, path
        )
