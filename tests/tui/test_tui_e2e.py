"""The TUI with the real GatewayClient against a real control plane (loopback, in a thread):
rows appear, reported traffic shows on screen within 2 s, the live tail delivers, revoking
a key reaches the server, and hostile client strings are drawn as text."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest
from textual.pilot import Pilot

from gwapi.v1 import admin_pb2, common_pb2, telemetry_pb2, telemetry_pb2_grpc
from gwclient.client import GatewayClient
from tests.tui.conftest import find_on_screen, screen_lines
from tests.tui.e2e_support import sqlite_control_plane
from tui.app import TollgateApp
from tui.screens.request_detail import RequestDetailScreen
from tui.widgets.logs import LogsView
from tui.widgets.views import OverviewView

pytestmark = pytest.mark.e2e

ADMIN = "tui-admin-" + uuid.uuid4().hex
DATAPLANE = "tui-dataplane-" + uuid.uuid4().hex
REQ_1H = OverviewView.COLUMNS.index("REQ 1h")
SPEND = OverviewView.COLUMNS.index("SPEND / BUDGET")


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with sqlite_control_plane(tmp_path_factory, ADMIN, DATAPLANE) as address:
        yield address


def report(address: str, events: list[telemetry_pb2.UsageEvent], seq: int) -> None:
    with grpc.insecure_channel(address) as channel:
        telemetry_pb2_grpc.TelemetryStub(channel).ReportUsage(
            telemetry_pb2.ReportUsageRequest(node_id="dp-tui", events=events, last_seq=seq),
            metadata=(("authorization", f"Bearer {DATAPLANE}"),),
            timeout=10,
        )


def usage_event(ws: str, key_id: str, n: int) -> telemetry_pb2.UsageEvent:
    return telemetry_pb2.UsageEvent(
        request_id=f"req_{ws}_{n}",
        time_ms=int(time.time() * 1000) - 1000,
        workspace=ws,
        key_id=key_id,
        session_id=f"sess-{ws}",
        model_requested="claude-sonnet-4",
        model_served="claude-sonnet-4",
        provider="sim",
        attempts=1,
        status=200,
        latency_ms=500,
        usage=common_pb2.Usage(input_tokens=100, output_tokens=10, cost_micros=250_000),
    )


async def wait_until(pilot: Pilot[None], until: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not until():
        assert time.monotonic() < deadline, "not on screen in time"
        await pilot.pause(0.05)


async def test_tui_against_a_real_control_plane(control_plane: str) -> None:
    ws = "tui-" + uuid.uuid4().hex[:6]
    async with GatewayClient(control_plane, ADMIN) as client:
        await client.create_workspace(
            common_pb2.Workspace(
                name=ws,
                limits=common_pb2.Limits(
                    budgets=[
                        common_pb2.Budget(amount_micros=10_000_000, period=common_pb2.PERIOD_DAY)
                    ]
                ),
            )
        )
        await client.create_provider(common_pb2.Provider(name=ws, kind="simulator"))
        created = await client.create_key(
            admin_pb2.CreateKeyRequest(workspace=ws, name="bob", provider=ws)
        )
    key_id = created.key.id
    report(control_plane, [usage_event(ws, key_id, 1)], seq=1)

    app = TollgateApp(target=control_plane, token=ADMIN)
    async with app.run_test(size=(80, 24)) as pilot:
        overview = app.current_view

        def requests_shown() -> str:
            row = next((r for r in overview.shown if r.key == ws), None)
            return getattr(row.cells[REQ_1H], "plain", "") if row else ""

        await wait_until(pilot, lambda: requests_shown() == "1", 5)
        report(control_plane, [usage_event(ws, key_id, n) for n in (2, 3)], seq=2)
        # Within a few of the console's 1 s refreshes of traffic (each refresh is several RPCs;
        # a latency figure belongs in a benchmark, not here).
        await wait_until(pilot, lambda: requests_shown() == "3", 4)
        bar = next(r for r in overview.shown if r.key == ws).cells[SPEND]
        assert "$0.75/$10.00 day" in getattr(bar, "plain", "")

        await pilot.press("5")
        logs = app.query_one(LogsView)
        await wait_until(pilot, lambda: f"req_{ws}_3" in logs.events, 5)
        report(control_plane, [usage_event(ws, key_id, 4)], seq=3)
        await wait_until(pilot, lambda: f"req_{ws}_4" in logs.events, 4)

        await pilot.press("2")
        keys = app.current_view
        await wait_until(pilot, lambda: any(r.key == key_id for r in keys.shown), 5)
        await pilot.press("slash", *"bob", "enter")
        assert [r.key for r in keys.shown] == [key_id]
        await pilot.press("r", "y")
        await wait_until(pilot, lambda: key_id in app.revoked, 5)
        assert app.status_bar.message == f"revoked {key_id}"
    async with GatewayClient(control_plane, ADMIN) as client:
        assert (await client.get_key(key_id)).revoked_at_ms > 0


async def test_unreachable_control_plane_is_a_status_line_not_a_crash() -> None:
    app = TollgateApp(target="127.0.0.1:9", token="x")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: "cannot reach" in app.status_bar.message, 10)
        await pilot.press("2", "3", "4", "5", "1")
        assert app.status_bar.error


async def test_hostile_client_strings_from_a_real_control_plane_are_shown_as_text(
    control_plane: str,
) -> None:
    """Usage events carrying markup and terminal controls (what any client can put in a model
    name, a session id or metadata) reach the console through ingest and the live tail: the
    Logs view keeps working, shows them literally, and a click on ``[@click=app.quit]`` is just
    a click on a row."""
    ws = "tui-x-" + uuid.uuid4().hex[:6]
    tag = uuid.uuid4().hex[:6]
    hostile = [
        usage_event(ws, "key_x", 1),
        usage_event(ws, "key_x", 2),
        usage_event(ws, "key_x", 3),
    ]
    hostile[0].model_requested = hostile[0].model_served = "x[/]"
    hostile[1].model_requested = hostile[1].model_served = f"[@click=app.quit]{tag}[/]"
    hostile[2].model_requested = hostile[2].model_served = "m\x1b[2J\x1b]0;pwned\x07"
    hostile[2].session_id = f"s-{tag}\x1b[31m[/]"
    hostile[2].metadata.update({"team": "t\rforged[/]"})
    report(control_plane, hostile, seq=10)

    app = TollgateApp(target=control_plane, token=ADMIN)
    async with app.run_test(size=(220, 30)) as pilot:
        await pilot.press("5")
        logs = app.query_one(LogsView)
        await wait_until(pilot, lambda: f"req_{ws}_3" in logs.events, 5)
        await pilot.pause()
        assert find_on_screen(app, "x[/]")
        assert find_on_screen(app, "m\\x1b[2J\\x1b]0;pwned\\x07")
        click = f"[@click=app.quit]{tag}[/]"
        where = find_on_screen(app, click)
        assert where is not None
        await pilot.click(offset=(where.x + len("[@click=app.quit]"), where.y))
        await pilot.pause()
        assert app.is_running and app.return_code is None
        for line in screen_lines(app):
            assert "\x1b" not in line and "\r" not in line and "\x07" not in line

        logs.table.move_cursor(row=[r.key for r in logs.shown].index(f"req_{ws}_3"))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RequestDetailScreen), 2)
        await pilot.pause()
        assert find_on_screen(app, f"s-{tag}\\x1b[31m[/]")
        assert find_on_screen(app, "t\\rforged[/]")
        await pilot.press("escape")

        await pilot.press("4")
        sessions = app.current_view
        await wait_until(pilot, lambda: any(tag in r.key for r in sessions.shown), 5)
        await pilot.pause()
        assert find_on_screen(app, f"s-{tag}\\x1b[31m[/]")
        assert app.is_running
