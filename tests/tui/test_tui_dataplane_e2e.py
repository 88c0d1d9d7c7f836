"""The console while real traffic flows: simulated requests through a real data plane, usage
reported to the real control plane, and the TUI's request count and spend rising within 2 s."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from dataplane.process.server import DataPlane
from dataplane.process.server import Settings as DataPlaneSettings
from gwapi.v1 import admin_pb2, common_pb2
from gwclient.client import GatewayClient
from tests.tui.test_tui_e2e import ADMIN, DATAPLANE, control_plane, wait_until  # noqa: F401
from tui.app import TollgateApp
from tui.widgets.views import OverviewView

pytestmark = pytest.mark.e2e

BODY = orjson.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
)


async def test_traffic_through_a_data_plane_shows_up_within_two_seconds(
    control_plane: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    ws = "live-" + uuid.uuid4().hex[:6]
    async with GatewayClient(control_plane, ADMIN) as client:
        await client.create_workspace(common_pb2.Workspace(name=ws))
        await client.create_provider(common_pb2.Provider(name=ws, kind="simulator"))
        created = await client.create_key(
            admin_pb2.CreateKeyRequest(workspace=ws, name="live", provider=ws)
        )
    dp = DataPlane(
        DataPlaneSettings(
            listen="127.0.0.1:0", control_plane=control_plane, token=DATAPLANE, state_dir=tmp_path
        )
    )
    await dp.start()
    try:
        await dp.wait_for_snapshot()
        headers = {
            "x-api-key": created.secret,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        }

        async def traffic(n: int) -> None:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}") as http:
                for _ in range(n):
                    r = await http.post("/v1/messages", content=BODY, headers=headers)
                    assert r.status_code == 200
                    await r.aread()

        app = TollgateApp(target=control_plane, token=ADMIN)
        async with app.run_test(size=(80, 24)) as pilot:
            overview = app.current_view

            def cells() -> list[str]:
                row = next((r for r in overview.shown if r.key == ws), None)
                return [getattr(c, "plain", str(c)) for c in row.cells] if row else []

            def requests() -> str:
                shown = cells()
                return shown[OverviewView.COLUMNS.index("REQ 1h")] if shown else ""

            await wait_until(pilot, lambda: bool(cells()), 5)
            await traffic(2)
            await wait_until(pilot, lambda: requests() == "2", 2)  # within 2 s of the traffic
            before = cells()
            await traffic(3)
            await wait_until(pilot, lambda: requests() == "5", 2)
            assert cells() != before
    finally:
        await dp.stop()
