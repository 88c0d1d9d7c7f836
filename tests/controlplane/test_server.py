"""The server process: internal errors, restarts, price seeding, the command line."""

import asyncio
import os
import re
import signal
import sys

import grpc
import pytest
from grpc import StatusCode
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlmodel import Session, select

from controlplane import server as server_mod
from controlplane.catalog import workspaces
from controlplane.errors import INTERNAL_MESSAGE
from controlplane.server import open_database, running
from controlplane.store.models.config import PriceRow
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import discovery_pb2 as dpb
from tests.controlplane.conftest import (
    ADMIN_TOKEN,
    DATAPLANE_TOKEN,
    Clients,
    expect_error,
    make_settings,
    seed_basics,
)


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url


async def test_unexpected_errors_are_internal_and_logged(admin, monkeypatch, caplog) -> None:
    def explode(s: Session, now: int, scope: object = None) -> list[pb.Workspace]:
        raise RuntimeError("secret detail that must stay on the server")

    monkeypatch.setattr(workspaces, "list_all", explode)
    details = await expect_error(
        admin.ListWorkspaces(apb.ListWorkspacesRequest()), StatusCode.INTERNAL
    )
    assert details == INTERNAL_MESSAGE
    assert "secret detail" in caplog.text and "Traceback" in caplog.text


async def test_restart_keeps_data_and_version(db_url) -> None:
    async with running(make_settings(db_url)) as r, grpc.aio.insecure_channel(r.address) as ch:
        seeded = await seed_basics(Clients(ch, ADMIN_TOKEN).admin)
        version = r.state.cache.version
    async with running(make_settings(db_url)) as r, grpc.aio.insecure_channel(r.address) as ch:
        assert r.state.cache.version == version  # same content, same version: no resend needed
        key = await Clients(ch, ADMIN_TOKEN).admin.GetKey(apb.GetKeyRequest(id=seeded["key"].id))
        assert key == seeded["key"]
        call = Clients(ch, DATAPLANE_TOKEN).discovery.Watch()
        await call.write(dpb.WatchRequest(node_id="dp", version_info=version))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(call.read())), 0.2)
        call.cancel()


def test_price_seeding_never_overwrites(db_url) -> None:
    db = open_database(db_url)

    def edit(s: Session) -> None:
        row = s.get(PriceRow, "claude-opus-4-8")
        assert row is not None
        row.input = 1
        s.add(row)
        s.delete(s.get(PriceRow, "claude-3-5-haiku"))

    db.run_sync(edit)
    db.dispose()
    db = open_database(db_url)
    rows = db.read_sync(lambda s: {r.model_prefix: r for r in s.exec(select(PriceRow)).all()})
    assert rows["claude-opus-4-8"].input == 1  # the operator's edit survives a restart
    assert rows["claude-3-5-haiku"].input == 800_000  # a missing default is added back
    assert len(rows) == 11
    db.dispose()


def test_build_server_refuses_without_admin_token(db_url) -> None:
    with pytest.raises(ValueError, match="admin token is required"):
        server_mod.build_server(make_settings(db_url, admin_token="", dataplane_token=""))


def test_main_reports_bad_configuration(capsys, monkeypatch) -> None:
    for name in ("TOLLGATE_ADMIN_TOKEN", "TOLLGATE_DATAPLANE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(server_mod, "configure_logging", lambda *_a: None)  # keep pytest's handlers
    assert server_mod.main([]) == 2
    assert "set TOLLGATE_ADMIN_TOKEN or pass --admin-token-file PATH" in capsys.readouterr().err
    monkeypatch.setenv("TOLLGATE_ADMIN_TOKEN", "x")
    assert server_mod.main(["--listen", "127.0.0.1:0"]) == 2
    assert "a data-plane token is required" in capsys.readouterr().err
    monkeypatch.setenv("TOLLGATE_DATAPLANE_TOKEN", "y")
    assert server_mod.main(["--listen", "nope"]) == 2
    assert server_mod.main(["--admin-token", "x"]) == 2
    err = capsys.readouterr().err
    assert "--admin-token no longer takes the token on the command line" in err


async def test_process_serves_and_stops_on_sigterm(tmp_path) -> None:
    env = {**os.environ, "TOLLGATE_ADMIN_TOKEN": ADMIN_TOKEN, "TOLLGATE_DATAPLANE_TOKEN": "dp-x"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controlplane",
        "--listen",
        "127.0.0.1:0",
        "--db",
        f"sqlite:///{tmp_path}/cp.db",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        while True:
            line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
            assert line, "control plane exited early:\n" + "".join(lines)
            lines.append(line)
            m = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
            if m:
                address = m.group(1)
                break
        async with grpc.aio.insecure_channel(address) as ch:
            resp = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
            await Clients(ch, ADMIN_TOKEN).admin.CreateWorkspace(
                apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="w"))
            )
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        rest = (await proc.stderr.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log_text = "".join(lines) + rest
    assert "shutting down" in log_text
    assert ADMIN_TOKEN not in log_text and "dp-x" not in log_text
