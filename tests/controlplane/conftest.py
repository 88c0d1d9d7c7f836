"""Fixtures for the control-plane tests: a real grpc.aio server on 127.0.0.1:0, in-process.

``cp`` runs once per database backend (``db_url`` from tests/conftest.py); a test module that
only needs one backend overrides ``db_url``. Clients are stubs wrapped so every call carries a
bearer token (``admin``, ``dataplane``, ``anon``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from controlplane.server import Running, running
from controlplane.settings import Settings
from controlplane.store.db import Database
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import admin_pb2_grpc, discovery_pb2_grpc, signin_pb2_grpc, telemetry_pb2_grpc
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import telemetry_pb2 as tpb

ADMIN_TOKEN = "test-admin-token-0123456789"
DATAPLANE_TOKEN = "test-dataplane-token-9876543210"


class Authed:
    """A stub whose every call carries ``authorization: Bearer <token>`` (or nothing)."""

    def __init__(self, stub: Any, token: str | None) -> None:
        self._stub = stub
        self._md = (("authorization", f"Bearer {token}"),) if token is not None else ()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("metadata", self._md)
            kwargs.setdefault("timeout", 10)
            return method(*args, **kwargs)

        return call


class Clients:
    def __init__(self, channel: grpc.aio.Channel, token: str | None) -> None:
        self.admin = Authed(admin_pb2_grpc.AdminStub(channel), token)
        self.discovery = Authed(discovery_pb2_grpc.DiscoveryStub(channel), token)
        self.telemetry = Authed(telemetry_pb2_grpc.TelemetryStub(channel), token)
        self.signin = Authed(signin_pb2_grpc.SignInStub(channel), token)


def make_settings(db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "db_url": db_url,
        "admin_token": ADMIN_TOKEN,
        "dataplane_token": DATAPLANE_TOKEN,
        "snapshot_refresh_s": 3600.0,
        "shutdown_grace_s": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def cp(db_url: str) -> AsyncIterator[Running]:
    async with running(make_settings(db_url)) as r:
        yield r


@pytest.fixture
async def channel(cp: Running) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(cp.address) as ch:
        yield ch


@pytest.fixture
def admin_clients(channel: grpc.aio.Channel) -> Clients:
    return Clients(channel, ADMIN_TOKEN)


@pytest.fixture
def admin(admin_clients: Clients) -> Any:
    return admin_clients.admin


@pytest.fixture
def dataplane(channel: grpc.aio.Channel) -> Clients:
    return Clients(channel, DATAPLANE_TOKEN)


@pytest.fixture
def db(db_url: str) -> Any:
    """A bare Database with the schema, for tests below the gRPC layer."""
    database = Database(db_url)
    database.create_all()
    yield database
    database.dispose()


async def seed_basics(admin: Any) -> dict[str, Any]:
    """A workspace, a simulator provider and a key on it; returns them (and the key's secret)."""
    ws = await admin.CreateWorkspace(
        apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="team-a", description="Team A"))
    )
    prov = await admin.CreateProvider(
        apb.CreateProviderRequest(
            provider=pb.Provider(name="sim", kind="simulator", base_url="http://127.0.0.1:9")
        )
    )
    created = await admin.CreateKey(
        apb.CreateKeyRequest(workspace="team-a", name="alice", provider="sim")
    )
    return {"workspace": ws, "provider": prov, "key": created.key, "secret": created.secret}


async def expect_error(awaitable: Any, code: grpc.StatusCode, contains: str = "") -> str:
    """Await ``awaitable`` and assert it fails with ``code``; returns the details."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    assert info.value.code() == code, (info.value.code(), info.value.details())
    details = info.value.details() or ""
    assert contains.lower() in details.lower(), details
    return details


def ws_update(name: str, **fields: Any) -> apb.UpdateWorkspaceRequest:
    """An UpdateWorkspace request for ``name`` that sets ``fields`` and masks exactly them."""
    return apb.UpdateWorkspaceRequest(
        workspace=pb.Workspace(name=name, **fields), update_mask=FieldMask(paths=list(fields))
    )


def key_update(key_id: str, **fields: Any) -> apb.UpdateKeyRequest:
    """An UpdateKey request for ``key_id`` that sets ``fields`` and masks exactly them."""
    return apb.UpdateKeyRequest(
        key=pb.VirtualKey(id=key_id, **fields), update_mask=FieldMask(paths=list(fields))
    )


def cost_event(
    request_id: str, time_ms: int, workspace: str, key_id: str, cost_micros: int
) -> tpb.UsageEvent:
    """A usage event that only costs: ``cost_micros`` spent by ``key_id`` in ``workspace``."""
    usage = pb.Usage(cost_micros=cost_micros)
    return tpb.UsageEvent(
        request_id=request_id, time_ms=time_ms, workspace=workspace, key_id=key_id, usage=usage
    )


async def report_usage(dataplane: Clients, events: list[tpb.UsageEvent]) -> None:
    """Reports ``events`` as the data plane ``dp`` does."""
    await dataplane.telemetry.ReportUsage(tpb.ReportUsageRequest(node_id="dp", events=events))
