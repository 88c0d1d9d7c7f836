"""Circuit breaker state travels from a data plane to the control plane and ``gwctl``.

A real control-plane process and a data plane: a route whose primary is unreachable
(127.0.0.1:9) opens that target's breaker after two failures; the data plane reports it on its
Watch stream and ListDataPlanes (and ``gwctl providers list``) shows it within a few seconds.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from gwapi.v1 import admin_pb2, common_pb2
from gwclient.client import GatewayClient
from tests.e2e.providers_support import DEAD_URL, dead_then
from tests.e2e.test_gateway import ADMIN, ROOT, ControlPlaneProcess, body, start_dp
from tests.fakes.anthropic import FakeAnthropic

pytestmark = pytest.mark.e2e


async def test_open_breaker_is_visible_in_list_dataplanes_and_gwctl(
    upstream: FakeAnthropic, tmp_path: Path
) -> None:
    cp = ControlPlaneProcess(f"sqlite:///{tmp_path / 'cp.db'}", tmp_path / "cp.log")
    await cp.start()
    admin = GatewayClient(cp.address, ADMIN)
    dp = None
    try:
        await admin.create_workspace(common_pb2.Workspace(name="team-a"))
        for name, url in (("dead", DEAD_URL), ("anthropic", upstream.base_url)):
            await admin.create_provider(
                common_pb2.Provider(
                    name=name, kind="anthropic", base_url=url, api_key_env="UPSTREAM_KEY"
                )
            )
        await admin.create_route(dead_then("anthropic"))
        created = await admin.create_key(
            admin_pb2.CreateKeyRequest(workspace="team-a", name="alice", route="main")
        )
        dp = await start_dp(cp, tmp_path / "dp")
        await dp.wait_for_snapshot()
        assert not (await admin.list_dataplanes()).dataplanes[0].breakers

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}", timeout=30) as c:
            for _ in range(3):  # served by the fallback while the dead target fails
                r = await c.post(
                    "/v1/messages",
                    content=body(),
                    headers={
                        "x-api-key": created.secret,
                        "anthropic-version": "2023-06-01",
                        "content-type": "application/json",
                    },
                )
                assert r.status_code == 200, r.text
        assert dp.breaker.states().get("dead") == "open"

        started = time.monotonic()
        while True:
            (status,) = (await admin.list_dataplanes()).dataplanes
            if dict(status.breakers) == {"dead": "open"}:
                break
            assert time.monotonic() - started < 5, f"breakers still {dict(status.breakers)}"
            await asyncio.sleep(0.1)
        assert status.connected and status.node_id == dp.node_id
        assert status.acked_version  # a status report is not an ACK, and did not clear one

        env = {**os.environ, "TOLLGATE_ADMIN_TOKEN": ADMIN, "TOLLGATE_CONTROL_PLANE": cp.address}
        gwctl = [sys.executable, "-m", "gwctl.main", "providers", "list"]
        text = await asyncio.to_thread(
            subprocess.run, gwctl, cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        rows = {line.split()[0]: line for line in text.stdout.splitlines()[1:]}
        assert rows["dead"].rstrip().endswith(f"open on {dp.node_id}")
        assert rows["anthropic"].rstrip().endswith("-")
        js = await asyncio.to_thread(
            subprocess.run, [*gwctl, "-o", "json"], cwd=ROOT, env=env, capture_output=True,
            check=True,
        )  # fmt: skip
        doc = {p["name"]: p["breakers"] for p in orjson.loads(js.stdout)}
        assert doc == {"dead": {dp.node_id: "open"}, "anthropic": {}}
    finally:
        if dp is not None:
            await dp.stop()
        await admin.close()
        cp.stop()
