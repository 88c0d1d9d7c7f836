"""THE role matrix: every principal × every Admin, Telemetry, Discovery and SignIn RPC, over
real gRPC, on SQLite and PostgreSQL.

Principals: the bootstrap admin token, a created admin token, workspace-admins of ``ws-a`` and of
``ws-b``, an unscoped viewer and a viewer of ``ws-b``. Each RPC gets a valid request aimed at
``ws-a`` objects (fresh ones for mutations, so every call can succeed on its own). Allowed calls
must succeed; denied ones must be PERMISSION_DENIED. For every denied call aimed at a workspace
object, the same call aimed at an object that does not exist must give the same status and the
same message (with the object's name swapped): the caller learns nothing, not even existence.

The expectations below are written out by hand from the role semantics (README "Security"), not
derived from :mod:`controlplane.rpc_policies`, so a wrong rule there fails here.

This module is long because it is the role matrix itself: one valid request per RPC, listed here so
that a new RPC without a row fails the test.
"""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from grpc import StatusCode

from controlplane.server import Running, running
from controlplane.settings import Settings
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import discovery_pb2 as dpb
from gwapi.v1 import signin_pb2 as spb
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.conftest import ADMIN_TOKEN, DATAPLANE_TOKEN, Clients, make_settings

ROLES = ("bootstrap", "admin", "wsadmin_a", "wsadmin_b", "viewer", "viewer_b")
ADMINS = frozenset({"bootstrap", "admin"})
A_WRITERS = ADMINS | {"wsadmin_a"}
A_READERS = A_WRITERS | {"viewer"}
# Watch carries decrypted provider secrets: no created token, whatever its role, may call it.
DATAPLANE_CALLERS = frozenset({"bootstrap"})
EVERYONE = frozenset(ROLES)
MISSING_KEY = "key_00000000deadbeef"
MISSING_WS = "no-such-ws"
MISSING_REQUEST = "req-does-not-exist"
MISSING_DEV = "dev_00000000deadbeef"


def settings_for(db_url: str) -> Settings:
    extra: dict[str, Any] = {}
    if "master_key" in Settings.__dataclass_fields__:  # stored provider secrets
        extra["master_key"] = base64.b64encode(b"k" * 32).decode()
    return make_settings(db_url, **extra)


@dataclass
class Env:
    """The fixture objects and a client per principal."""

    channel: grpc.aio.Channel
    db: Any = None
    clients: dict[str, Clients] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    key_a: str = ""
    key_b: str = ""
    dev_a: str = ""
    counter: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def boot(self) -> Any:
        return self.clients["bootstrap"].admin

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    async def fresh_key(self, workspace: str = "ws-a") -> str:
        created = await self.boot.CreateKey(
            apb.CreateKeyRequest(workspace=workspace, name="fresh", provider="sim")
        )
        return str(created.key.id)

    async def fresh_provider(self, kind: str = "simulator") -> str:
        name = self.unique("prov")
        await self.boot.CreateProvider(
            apb.CreateProviderRequest(
                provider=pb.Provider(name=name, kind=kind, base_url="http://127.0.0.1:9")
            )
        )
        return name

    def fresh_developer(self, workspace: str = "ws-a") -> str:
        """A developer row as a sign-in would leave it (the sign-in flow has its own tests)."""
        from controlplane.signin.codes import new_developer_id
        from controlplane.store.models.signin import DeveloperRow

        dev_id = new_developer_id()
        n = next(self.counter)
        row = DeveloperRow(
            id=dev_id,
            issuer="https://login.example.com",
            subject=f"sub-{n}",
            workspace=workspace,
            email=f"dev{n}@example.com",
            created_at_ms=int(time.time() * 1000),
        )
        self.db.run_sync(lambda s: s.add(row))
        return dev_id

    async def ensure_sso(self) -> None:
        if not (await self.boot.GetSso(apb.GetSsoRequest())).configured:
            await self.boot.SetSso(_SET_SSO)

    async def fresh_route(self) -> str:
        name = self.unique("route")
        await self.boot.CreateRoute(
            apb.CreateRouteRequest(
                route=pb.Route(name=name, targets=[pb.RouteTarget(provider="sim")])
            )
        )
        return name


async def make_token(boot: Any, name: str, role: str, workspaces: list[str]) -> str:
    resp = await boot.CreateToken(
        apb.CreateTokenRequest(name=name, role=role, workspaces=workspaces)
    )
    return str(resp.secret)


def usage_event(rid: str, workspace: str, key_id: str) -> tpb.UsageEvent:
    return tpb.UsageEvent(
        request_id=rid,
        time_ms=int(time.time() * 1000),
        workspace=workspace,
        key_id=key_id,
        provider="sim",
        model_served="claude-x",
        status=200,
        latency_ms=20,
        usage=pb.Usage(input_tokens=10, output_tokens=5, cost_micros=7),
    )


_SET_SSO = apb.SetSsoRequest(
    sso=apb.SsoConfig(issuer="https://login.example.com", client_id="tollgate"),
    client_secret="matrix-client-secret",
)


async def build_env(channel: grpc.aio.Channel, db: Any = None) -> Env:
    env = Env(channel, db)
    env.clients["bootstrap"] = Clients(channel, ADMIN_TOKEN)
    boot = env.boot
    for name in ("ws-a", "ws-b"):
        await boot.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name=name)))
    await boot.CreateProvider(
        apb.CreateProviderRequest(
            provider=pb.Provider(name="sim", kind="simulator", base_url="http://127.0.0.1:9")
        )
    )
    env.key_a = await env.fresh_key("ws-a")
    env.key_b = await env.fresh_key("ws-b")
    if db is not None:
        env.dev_a = env.fresh_developer("ws-a")
        env.fresh_developer("ws-b")
    dp = Clients(channel, DATAPLANE_TOKEN)
    await dp.telemetry.ReportUsage(
        tpb.ReportUsageRequest(
            node_id="dp-fixture",
            events=[
                usage_event("req-a", "ws-a", env.key_a),
                usage_event("req-b", "ws-b", env.key_b),
            ],
            last_seq=1,
        )
    )
    tokens = {
        "admin": ("ops", "admin", []),
        "wsadmin_a": ("team a lead", "workspace-admin", ["ws-a"]),
        "wsadmin_b": ("team b lead", "workspace-admin", ["ws-b"]),
        "viewer": ("dashboards", "viewer", []),
        "viewer_b": ("team b dashboards", "viewer", ["ws-b"]),
    }
    for role, (name, kind, workspaces) in tokens.items():
        env.secrets[role] = await make_token(boot, name, kind, workspaces)
        env.clients[role] = Clients(channel, env.secrets[role])
    return env


# A builder returns (request, label): label is the name of the ws-a object the request targets
# ("" when it targets none); with missing=True the request names an object that does not exist.
Builder = Callable[[Env, bool], Awaitable[tuple[Message, str]]]


@dataclass(frozen=True)
class Case:
    service: str  # "admin" | "telemetry" | "discovery" | "signin"
    method: str
    allowed: frozenset[str]
    build: Builder
    scoped: bool = False  # aimed at a workspace object: has a "does not exist" variant


def _ws(missing: bool) -> str:
    return MISSING_WS if missing else "ws-a"


async def _create_workspace(env: Env, _m: bool) -> tuple[Message, str]:
    name = env.unique("ws-new")
    return apb.CreateWorkspaceRequest(workspace=pb.Workspace(name=name)), ""


async def _get_workspace(env: Env, m: bool) -> tuple[Message, str]:
    return apb.GetWorkspaceRequest(name=_ws(m)), _ws(m)


async def _update_workspace(env: Env, m: bool) -> tuple[Message, str]:
    ws = pb.Workspace(name=_ws(m), description="changed")
    return apb.UpdateWorkspaceRequest(
        workspace=ws, update_mask=FieldMask(paths=["description"])
    ), _ws(m)


async def _delete_workspace(env: Env, _m: bool) -> tuple[Message, str]:
    name = env.unique("ws-del")
    await env.boot.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name=name)))
    return apb.DeleteWorkspaceRequest(name=name), ""


async def _create_key(env: Env, m: bool) -> tuple[Message, str]:
    return apb.CreateKeyRequest(workspace=_ws(m), name="k", provider="sim"), _ws(m)


async def _create_keys(env: Env, m: bool) -> tuple[Message, str]:
    one = apb.CreateKeyRequest(workspace=_ws(m), name="k", provider="sim")
    return apb.CreateKeysRequest(workspace=_ws(m), keys=[one]), _ws(m)


async def _get_key(env: Env, m: bool) -> tuple[Message, str]:
    key = MISSING_KEY if m else env.key_a
    return apb.GetKeyRequest(id=key), key


async def _fresh_key_id(env: Env, m: bool) -> str:
    return MISSING_KEY if m else await env.fresh_key()


async def _update_key(env: Env, m: bool) -> tuple[Message, str]:
    key = await _fresh_key_id(env, m)
    msg = pb.VirtualKey(id=key, name="renamed")
    return apb.UpdateKeyRequest(key=msg, update_mask=FieldMask(paths=["name"])), key


async def _revoke_key(env: Env, m: bool) -> tuple[Message, str]:
    key = await _fresh_key_id(env, m)
    return apb.RevokeKeyRequest(id=key), key


async def _delete_key(env: Env, m: bool) -> tuple[Message, str]:
    key = await _fresh_key_id(env, m)
    return apb.DeleteKeyRequest(id=key), key


async def _list_keys(env: Env, m: bool) -> tuple[Message, str]:
    return apb.ListKeysRequest(workspace=_ws(m)), _ws(m)


async def _create_provider(env: Env, _m: bool) -> tuple[Message, str]:
    prov = pb.Provider(name=env.unique("prov"), kind="simulator", base_url="http://127.0.0.1:9")
    return apb.CreateProviderRequest(provider=prov), ""


async def _update_provider(env: Env, _m: bool) -> tuple[Message, str]:
    prov = pb.Provider(name=await env.fresh_provider(), base_url="http://127.0.0.1:8")
    return apb.UpdateProviderRequest(provider=prov, update_mask=FieldMask(paths=["base_url"])), ""


async def _delete_provider(env: Env, _m: bool) -> tuple[Message, str]:
    return apb.DeleteProviderRequest(name=await env.fresh_provider()), ""


async def _rotate_secret(env: Env, _m: bool) -> tuple[Message, str]:
    name = await env.fresh_provider("anthropic")
    return apb.RotateProviderSecretRequest(name=name, api_key="sk-ant-test-0123456789abcdef"), ""


async def _validate(env: Env, _m: bool) -> tuple[Message, str]:
    prov = pb.Provider(name=env.unique("prov"), kind="simulator")
    return apb.ValidateRequest(providers=[prov]), ""


async def _create_route(env: Env, _m: bool) -> tuple[Message, str]:
    route = pb.Route(name=env.unique("route"), targets=[pb.RouteTarget(provider="sim")])
    return apb.CreateRouteRequest(route=route), ""


async def _update_route(env: Env, _m: bool) -> tuple[Message, str]:
    route = pb.Route(name=await env.fresh_route(), retries=2)
    return apb.UpdateRouteRequest(route=route, update_mask=FieldMask(paths=["retries"])), ""


async def _delete_route(env: Env, _m: bool) -> tuple[Message, str]:
    return apb.DeleteRouteRequest(name=await env.fresh_route()), ""


async def _create_token(env: Env, _m: bool) -> tuple[Message, str]:
    return apb.CreateTokenRequest(name=env.unique("tok"), role="viewer"), ""


async def _revoke_token(env: Env, _m: bool) -> tuple[Message, str]:
    created = await env.boot.CreateToken(apb.CreateTokenRequest(name="victim", role="viewer"))
    return apb.RevokeTokenRequest(id=created.token.id), ""


async def _add_destination(env: Env, _m: bool) -> tuple[Message, str]:
    dest = apb.TelemetryDestination(name=env.unique("otel"), url="https://otel.example.com")
    return apb.AddTelemetryDestinationRequest(destination=dest, headers={"x-key": "v"}), ""


async def _remove_destination(env: Env, m: bool) -> tuple[Message, str]:
    request, _ = await _add_destination(env, m)
    created = await env.boot.AddTelemetryDestination(request)
    return apb.RemoveTelemetryDestinationRequest(name=created.name), ""


def _plain(request: Message) -> Builder:
    async def build(env: Env, _m: bool) -> tuple[Message, str]:
        return request, ""

    return build


def _scoped_filter(make: Callable[[str], Message]) -> Builder:
    async def build(env: Env, m: bool) -> tuple[Message, str]:
        return make(_ws(m)), _ws(m)

    return build


async def _get_log(env: Env, m: bool) -> tuple[Message, str]:
    rid = MISSING_REQUEST if m else "req-a"
    return tpb.GetLogRequest(request_id=rid), rid


async def _delete_sso(env: Env, _m: bool) -> tuple[Message, str]:
    await env.ensure_sso()
    return apb.DeleteSsoRequest(), ""


async def _rotate_signing_key(env: Env, _m: bool) -> tuple[Message, str]:
    await env.ensure_sso()
    return apb.RotateSigningKeyRequest(), ""


async def _get_developer(env: Env, m: bool) -> tuple[Message, str]:
    dev = MISSING_DEV if m else env.dev_a
    return apb.GetDeveloperRequest(id=dev), dev


def _fresh_dev(env: Env, m: bool) -> str:
    return MISSING_DEV if m else env.fresh_developer()


async def _update_developer(env: Env, m: bool) -> tuple[Message, str]:
    dev = _fresh_dev(env, m)
    msg = pb.Developer(id=dev, limits=pb.Limits(rpm=5))
    return apb.UpdateDeveloperRequest(
        developer=msg, update_mask=FieldMask(paths=["limits.rpm"])
    ), dev


async def _disable_developer(env: Env, m: bool) -> tuple[Message, str]:
    dev = _fresh_dev(env, m)
    return apb.DisableDeveloperRequest(id=dev), dev


async def _enable_developer(env: Env, m: bool) -> tuple[Message, str]:
    dev = _fresh_dev(env, m)
    return apb.EnableDeveloperRequest(id=dev), dev


PUBLIC = "https://gw.example.test"


CASES = [
    Case("admin", "CreateWorkspace", ADMINS, _create_workspace),
    Case("admin", "GetWorkspace", A_READERS, _get_workspace, scoped=True),
    Case("admin", "ListWorkspaces", EVERYONE, _plain(apb.ListWorkspacesRequest())),
    Case("admin", "UpdateWorkspace", A_WRITERS, _update_workspace, scoped=True),
    Case("admin", "DeleteWorkspace", ADMINS, _delete_workspace),
    Case("admin", "CreateKey", A_WRITERS, _create_key, scoped=True),
    Case("admin", "CreateKeys", A_WRITERS, _create_keys, scoped=True),
    Case("admin", "GetKey", A_READERS, _get_key, scoped=True),
    Case("admin", "ListKeys", A_READERS, _list_keys, scoped=True),
    Case("admin", "UpdateKey", A_WRITERS, _update_key, scoped=True),
    Case("admin", "RevokeKey", A_WRITERS, _revoke_key, scoped=True),
    Case("admin", "DeleteKey", A_WRITERS, _delete_key, scoped=True),
    Case("admin", "CreateProvider", ADMINS, _create_provider),
    Case("admin", "GetProvider", EVERYONE, _plain(apb.GetProviderRequest(name="sim"))),
    Case("admin", "ListProviders", EVERYONE, _plain(apb.ListProvidersRequest())),
    Case("admin", "UpdateProvider", ADMINS, _update_provider),
    Case("admin", "DeleteProvider", ADMINS, _delete_provider),
    Case("admin", "RotateProviderSecret", ADMINS, _rotate_secret),
    Case("admin", "CreateRoute", ADMINS, _create_route),
    Case("admin", "GetRoute", EVERYONE, _plain(apb.GetRouteRequest(name="fixed-route"))),
    Case("admin", "ListRoutes", EVERYONE, _plain(apb.ListRoutesRequest())),
    Case("admin", "UpdateRoute", ADMINS, _update_route),
    Case("admin", "DeleteRoute", ADMINS, _delete_route),
    Case("admin", "ListPrices", EVERYONE, _plain(apb.ListPricesRequest())),
    Case("admin", "Validate", ADMINS, _validate),
    Case("admin", "CreateToken", ADMINS, _create_token),
    Case("admin", "ListTokens", ADMINS, _plain(apb.ListTokensRequest(include_revoked=True))),
    Case("admin", "RevokeToken", ADMINS, _revoke_token),
    Case("admin", "WhoAmI", EVERYONE, _plain(apb.WhoAmIRequest())),
    Case(
        "admin",
        "ListAudit",
        A_READERS,
        _scoped_filter(lambda w: apb.ListAuditRequest(workspace=w)),
        scoped=True,
    ),
    Case(
        "admin",
        "TailAudit",
        A_READERS,
        _scoped_filter(lambda w: apb.TailAuditRequest(workspace=w)),
        scoped=True,
    ),
    Case(
        "admin",
        "ListTelemetryDestinations",
        EVERYONE,
        _plain(apb.ListTelemetryDestinationsRequest()),
    ),
    Case("admin", "AddTelemetryDestination", ADMINS, _add_destination),
    Case("admin", "RemoveTelemetryDestination", ADMINS, _remove_destination),
    Case(
        "telemetry",
        "ReportActivity",
        DATAPLANE_CALLERS,
        _plain(
            tpb.ReportActivityRequest(
                node_id="dp-matrix",
                batch_id="b-matrix",
                activity=[tpb.DeveloperActivity(developer_id="dev_x", time_ms=1, commits=1)],
            )
        ),
    ),
    Case(
        "telemetry",
        "ReportUsage",
        DATAPLANE_CALLERS,
        _plain(tpb.ReportUsageRequest(node_id="dp-matrix", last_seq=1)),
    ),
    Case(
        "telemetry",
        "QueryUsage",
        A_READERS,
        _scoped_filter(lambda w: tpb.QueryUsageRequest(workspace=w)),
        scoped=True,
    ),
    Case(
        "telemetry",
        "TailLogs",
        A_READERS,
        _scoped_filter(lambda w: tpb.TailLogsRequest(workspace=w)),
        scoped=True,
    ),
    Case(
        "telemetry",
        "ListAlerts",
        A_READERS,
        _scoped_filter(lambda w: tpb.ListAlertsRequest(workspace=w)),
        scoped=True,
    ),
    Case(
        "telemetry",
        "StreamStats",
        A_READERS,
        _scoped_filter(lambda w: tpb.StreamStatsRequest(group_by="workspace", workspace=w)),
        scoped=True,
    ),
    Case("telemetry", "GetLog", A_READERS, _get_log, scoped=True),
    Case("discovery", "Watch", DATAPLANE_CALLERS, _plain(dpb.WatchRequest(node_id="dp-matrix"))),
    Case(
        "discovery",
        "DeltaWatch",
        DATAPLANE_CALLERS,
        _plain(dpb.DeltaWatchRequest(node_id="dp-matrix")),
    ),
    Case("discovery", "ListDataPlanes", EVERYONE, _plain(dpb.ListDataPlanesRequest())),
    # -- sign-in with Claude Code
    Case("admin", "GetSso", ADMINS, _plain(apb.GetSsoRequest())),
    Case("admin", "SetSso", ADMINS, _plain(_SET_SSO)),
    Case("admin", "DeleteSso", ADMINS, _delete_sso),
    Case("admin", "RotateSigningKey", ADMINS, _rotate_signing_key),
    Case(
        "admin",
        "ListDevelopers",
        A_READERS,
        _scoped_filter(lambda w: apb.ListDevelopersRequest(workspace=w)),
        scoped=True,
    ),
    Case("admin", "GetDeveloper", A_READERS, _get_developer, scoped=True),
    Case("admin", "UpdateDeveloper", A_WRITERS, _update_developer, scoped=True),
    Case("admin", "DisableDeveloper", A_WRITERS, _disable_developer, scoped=True),
    Case("admin", "EnableDeveloper", A_WRITERS, _enable_developer, scoped=True),
    Case(
        "signin",
        "StartDevice",
        DATAPLANE_CALLERS,
        _plain(spb.StartDeviceRequest(public_url=PUBLIC)),
    ),
    Case("signin", "PollDevice", DATAPLANE_CALLERS, _plain(spb.PollDeviceRequest(device_code="x"))),
    Case(
        "signin",
        "BeginBrowser",
        DATAPLANE_CALLERS,
        _plain(spb.BeginBrowserRequest(user_code="BCDF-GHJK", public_url=PUBLIC)),
    ),
    Case(
        "signin",
        "CompleteBrowser",
        DATAPLANE_CALLERS,
        _plain(spb.CompleteBrowserRequest(state="x", code="y", public_url=PUBLIC)),
    ),
    Case("signin", "Refresh", DATAPLANE_CALLERS, _plain(spb.RefreshRequest(refresh_token="x"))),
]


def test_the_matrix_covers_every_method() -> None:
    """A new RPC without a row here fails this test (and so gets a rule and a matrix row)."""
    from gwapi.v1 import admin_pb2, discovery_pb2, signin_pb2, telemetry_pb2

    declared = {
        (svc.name.lower(), m.name)
        for module in (admin_pb2, telemetry_pb2, discovery_pb2, signin_pb2)
        for svc in module.DESCRIPTOR.services_by_name.values()
        for m in svc.methods
    }
    assert {(c.service, c.method) for c in CASES} == declared


async def call(clients: Clients, case: Case, request: Message) -> tuple[StatusCode, str]:
    """Make the call as ``clients``; its status and details (OK, "" on success)."""
    stub = getattr(clients, case.service)
    try:
        if case.method in ("Watch", "DeltaWatch"):
            stream = getattr(stub, case.method)()
            await stream.write(request)
            await stream.read()
            stream.cancel()
        elif case.method in ("TailLogs", "TailAudit", "StreamStats"):
            stream = getattr(stub, case.method)(request)
            async for _ in stream:
                break  # StreamStats never ends by itself: its first frame is the answer
            stream.cancel()
        else:
            await getattr(stub, case.method)(request)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return StatusCode.OK, ""


@pytest.fixture
async def matrix_cp(db_url: str) -> Any:
    async with running(settings_for(db_url)) as r:
        yield r


async def test_role_matrix(matrix_cp: Running) -> None:
    async with grpc.aio.insecure_channel(matrix_cp.address) as channel:
        env = await build_env(channel, matrix_cp.state.db)
        await env.boot.CreateRoute(
            apb.CreateRouteRequest(
                route=pb.Route(name="fixed-route", targets=[pb.RouteTarget(provider="sim")])
            )
        )
        failures: list[str] = []
        for case, role in itertools.product(CASES, ROLES):
            request, label = await case.build(env, False)
            code, details = await call(env.clients[role], case, request)
            where = f"{case.method} as {role}"
            if role in case.allowed:
                if code != StatusCode.OK:
                    failures.append(f"{where}: expected OK, got {code.name}: {details}")
                continue
            if code != StatusCode.PERMISSION_DENIED:
                failures.append(f"{where}: expected PERMISSION_DENIED, got {code.name}: {details}")
                continue
            for secret in env.secrets.values():
                assert secret not in details
            if not case.scoped:
                continue
            # Learns nothing: the same call about an object that does not exist.
            missing_request, missing_label = await case.build(env, True)
            code2, details2 = await call(env.clients[role], case, missing_request)
            if (code2, details2.replace(missing_label, "<x>")) != (
                code,
                details.replace(label, "<x>"),
            ):
                failures.append(
                    f"{where}: existing vs missing differ: {code.name} {details!r} / "
                    f"{code2.name} {details2!r}"
                )
        assert not failures, "\n".join(failures)


async def test_unscoped_principals_get_not_found_for_missing_objects(matrix_cp: Running) -> None:
    async with grpc.aio.insecure_channel(matrix_cp.address) as channel:
        env = await build_env(channel)
        for role in ("bootstrap", "admin", "viewer"):
            code, details = await call(
                env.clients[role],
                Case("admin", "GetKey", EVERYONE, _get_key),
                apb.GetKeyRequest(id=MISSING_KEY),
            )
            assert (code, MISSING_KEY in details) == (StatusCode.NOT_FOUND, True), (role, details)
        for role in ("wsadmin_a", "wsadmin_b", "viewer_b"):
            code, details = await call(
                env.clients[role],
                Case("admin", "GetKey", EVERYONE, _get_key),
                apb.GetKeyRequest(id=MISSING_KEY),
            )
            assert code == StatusCode.PERMISSION_DENIED
            assert details == (
                f"key {MISSING_KEY!r}: not found in the workspaces this token can access"
            )
