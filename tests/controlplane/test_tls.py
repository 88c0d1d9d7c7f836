"""gRPC over TLS with a throw-away CA: the control plane serves TLS (``--tls-cert/--tls-key``);
gwctl, the console's client and a data plane (snapshot stream and usage reporter) connect with
``--tls-ca``; a client trusting another CA, and a plaintext client, are refused with messages
that say why."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest

from controlplane.server import Running, build_server, running
from dataplane.process.server import DataPlane
from dataplane.process.server import Settings as DataPlaneSettings
from gwapi.v1 import admin_pb2, common_pb2
from gwclient.client import GatewayClient
from gwclient.errors import ClientError
from gwctl.main import main as gwctl_main
from tests.controlplane.conftest import ADMIN_TOKEN, DATAPLANE_TOKEN, make_settings
from tests.gwctl.threaded_cp import threaded_control_plane
from tests.tls_support import Pki, make_pki

BODY = orjson.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}],
    }
)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
async def tls_cp(pki: Pki, sqlite_url: str) -> AsyncIterator[Running]:
    settings = make_settings(sqlite_url, tls_cert=str(pki.cert), tls_key=str(pki.key))
    async with running(settings) as r:
        yield r


async def test_a_client_trusting_the_ca_works(tls_cp: Running, pki: Pki) -> None:
    async with GatewayClient(tls_cp.address, ADMIN_TOKEN, tls_ca=str(pki.ca)) as client:
        assert await client.health() == "SERVING"
        await client.create_workspace(common_pb2.Workspace(name="team-a"))
        assert [w.name for w in await client.list_workspaces()] == ["team-a"]
    # The certificate names localhost too.
    target = f"localhost:{tls_cp.port}"
    async with GatewayClient(target, ADMIN_TOKEN, tls_ca=str(pki.ca)) as client:
        assert [w.name for w in await client.list_workspaces()] == ["team-a"]


async def test_a_client_trusting_another_ca_is_refused(tls_cp: Running, pki: Pki) -> None:
    async with GatewayClient(tls_cp.address, ADMIN_TOKEN, tls_ca=str(pki.other_ca)) as client:
        with pytest.raises(ClientError) as info:
            await client.list_workspaces()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert info.value.message.startswith(f"cannot connect to the control plane at {tls_cp.address}")
    assert "TLS handshake failed" in info.value.message and "--tls-ca" in info.value.message


async def test_a_plaintext_client_is_told_about_tls(tls_cp: Running) -> None:
    async with GatewayClient(tls_cp.address, ADMIN_TOKEN) as client:
        with pytest.raises(ClientError) as info:
            await client.list_workspaces()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert "if the control plane serves TLS, pass --tls-ca" in info.value.message


async def test_a_tls_client_against_a_plaintext_server(cp: Running, pki: Pki) -> None:
    async with GatewayClient(cp.address, ADMIN_TOKEN, tls_ca=str(pki.ca)) as client:
        with pytest.raises(ClientError) as info:
            await client.list_workspaces()
    assert "TLS handshake failed" in info.value.message
    assert "does not speak TLS" in info.value.message


def test_unreadable_or_non_pem_files_stop_the_start(
    pki: Pki, sqlite_url: str, tmp_path: Path
) -> None:
    not_pem = tmp_path / "x.pem"
    not_pem.write_text("hello")
    for cert, key, message in [
        (str(tmp_path / "missing.pem"), str(pki.key), "cannot read --tls-cert"),
        (str(pki.cert), str(not_pem), "--tls-key .* is not a PEM file"),
    ]:
        with pytest.raises(ValueError, match=message):
            build_server(make_settings(sqlite_url, tls_cert=cert, tls_key=key))
    with pytest.raises(ValueError, match="holds no PEM certificate"):
        GatewayClient("127.0.0.1:1", tls_ca=str(not_pem))


def test_gwctl_over_tls(
    pki: Pki, sqlite_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings = make_settings(sqlite_url, tls_cert=str(pki.cert), tls_key=str(pki.key))
    with threaded_control_plane(settings) as address:
        base = ["--control-plane", address, "--token", ADMIN_TOKEN]
        assert gwctl_main([*base, "--tls-ca", str(pki.ca), "workspaces", "create", "ws1"]) == 0
        # The option works after the subcommand too, like --token.
        assert gwctl_main(["workspaces", "list", "-o", "json", *base, "--tls-ca", str(pki.ca)]) == 0
        assert '"ws1"' in capsys.readouterr().out
        assert gwctl_main([*base, "--tls-ca", str(pki.other_ca), "workspaces", "list"]) == 1
        assert "TLS handshake failed" in capsys.readouterr().err
        assert gwctl_main([*base, "workspaces", "list"]) == 1
        assert "pass --tls-ca" in capsys.readouterr().err
        missing = str(tmp_path / "nope.pem")
        assert gwctl_main([*base, "--tls-ca", missing, "workspaces", "list"]) == 2
        assert f"cannot read --tls-ca {missing}" in capsys.readouterr().err


def data_plane_of(cp: Running, tmp_path: Path, **settings: Any) -> DataPlane:
    """A data plane (not started) of ``cp``, with its state in ``tmp_path/dp``."""
    return DataPlane(
        DataPlaneSettings(
            listen="127.0.0.1:0",
            control_plane=cp.address,
            token=DATAPLANE_TOKEN,
            state_dir=tmp_path / "dp",
            **settings,
        )
    )


async def test_a_data_plane_over_tls_gets_snapshots_and_reports_usage(
    tls_cp: Running, pki: Pki, tmp_path: Path
) -> None:
    async with GatewayClient(tls_cp.address, ADMIN_TOKEN, tls_ca=str(pki.ca)) as admin:
        await admin.create_workspace(common_pb2.Workspace(name="ws"))
        await admin.create_provider(common_pb2.Provider(name="sim", kind="simulator"))
        key = await admin.create_key(
            admin_pb2.CreateKeyRequest(workspace="ws", name="k", provider="sim")
        )
        dp = data_plane_of(tls_cp, tmp_path, tls_ca=str(pki.ca))
        await dp.start()
        try:
            await dp.wait_for_snapshot()
            headers = {"x-api-key": key.secret, "anthropic-version": "2023-06-01"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}") as http:
                r = await http.post("/v1/messages", content=BODY, headers=headers)
            assert r.status_code == 200, r.text
            deadline = time.monotonic() + 10
            while True:  # the usage reporter shares the TLS channel
                rows = await admin.query_usage(workspace="ws")
                if rows and rows[0].requests == 1:
                    break
                assert time.monotonic() < deadline, "usage never reached the control plane"
                await asyncio.sleep(0.1)
        finally:
            await dp.stop()


async def test_a_plaintext_data_plane_says_why_it_cannot_connect(
    tls_cp: Running, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "tollgate.subscriber")
    dp = data_plane_of(tls_cp, tmp_path)
    await dp.start()
    try:
        with pytest.raises(TimeoutError):
            await dp.wait_for_snapshot(timeout=1.5)
    finally:
        await dp.stop()
    assert "if the control plane serves TLS, pass --tls-ca" in caplog.text
