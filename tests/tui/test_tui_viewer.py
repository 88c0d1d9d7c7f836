"""The TUI with a viewer token against a real control plane: every view loads without a refusal
(the console only reads), and a revoke attempt without --readonly ends as a clear status-bar
message from the server, not a crash, with the key untouched."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from textual.pilot import Pilot

from gwapi.v1 import admin_pb2, common_pb2
from gwclient.client import GatewayClient
from tests.tui.e2e_support import sqlite_control_plane
from tui.app import TollgateApp

pytestmark = pytest.mark.e2e

ADMIN = "tui-viewer-admin-" + uuid.uuid4().hex
DATAPLANE = "tui-viewer-dataplane-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with sqlite_control_plane(tmp_path_factory, ADMIN, DATAPLANE) as address:
        yield address


async def wait_until(pilot: Pilot[None], until: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not until():
        assert time.monotonic() < deadline, "not on screen in time"
        await pilot.pause(0.05)


async def seed(address: str) -> tuple[str, str, str]:
    """A workspace with a key; returns (key id, key name, a viewer token's secret)."""
    ws = "view-" + uuid.uuid4().hex[:6]
    async with GatewayClient(address, ADMIN) as client:
        await client.create_workspace(common_pb2.Workspace(name=ws))
        await client.create_provider(common_pb2.Provider(name=ws, kind="simulator"))
        created = await client.create_key(
            admin_pb2.CreateKeyRequest(workspace=ws, name=f"bob-{ws}", provider=ws)
        )
        viewer = await client.create_token("dashboards", "viewer")
    return created.key.id, created.key.name, viewer.secret


@pytest.mark.parametrize("readonly", [True, False])
async def test_every_view_loads_with_a_viewer_token(control_plane: str, readonly: bool) -> None:
    key_id, name, secret = await seed(control_plane)
    app = TollgateApp(target=control_plane, token=secret, readonly=readonly)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        keys = app.current_view
        await wait_until(pilot, lambda: any(r.key == key_id for r in keys.shown), 5)
        for view in ("1", "3", "4", "5", "2"):
            await pilot.press(view)
            await pilot.pause(0.3)
            assert not app.status_bar.error, app.status_bar.message

        await pilot.press("slash", *name, "enter")
        assert [r.key for r in keys.shown] == [key_id]
        await pilot.press("r")
        if readonly:
            await wait_until(pilot, lambda: "read-only" in app.status_bar.message, 5)
        else:
            await pilot.press("y")  # the console asks; the server refuses
            await wait_until(pilot, lambda: app.status_bar.error, 5)
            assert app.status_bar.message == (f"revoke {key_id}: this token is read-only (viewer)")
        assert key_id not in app.revoked
    async with GatewayClient(control_plane, ADMIN) as client:
        assert (await client.get_key(key_id)).revoked_at_ms == 0
