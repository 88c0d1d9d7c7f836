"""The Developers view with the real GatewayClient against a real control plane whose developer
signed in through the real sign-in path: the row appears with the metered spend, and ``d`` +
``y`` disables the developer on the server."""

from __future__ import annotations

import io
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest
from textual.pilot import Pilot

from gwapi.v1 import common_pb2, telemetry_pb2, telemetry_pb2_grpc
from gwclient.client import GatewayClient
from gwctl.main import main
from tests.gwctl.signin_support import CLIENT_SECRET, MASTER_KEY, Login, sign_in, threaded_idp
from tests.gwctl.threaded_cp import threaded_control_plane
from tui.app import TollgateApp
from tui.screens.confirm import ConfirmScreen
from tui.widgets.developers import DevelopersView

pytestmark = pytest.mark.e2e
import controlplane.settings as settings_mod  # noqa: E402

ADMIN = "tui-dev-admin-" + uuid.uuid4().hex
DATAPLANE = "tui-dev-dataplane-" + uuid.uuid4().hex
DANA = Login(sub="sub-dana", email="dana@example.com", name="Dana", groups=["eng"])
COST = DevelopersView.COLUMNS.index("COST 7d")
STATE = DevelopersView.COLUMNS.index("STATE")


def gwctl(*argv: str, stdin: str = "") -> None:
    saved = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = io.StringIO(stdin), io.StringIO()
    try:
        assert main(list(argv)) == 0, argv
    finally:
        sys.stdin, sys.stdout = saved


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a control plane where dana signed in to workspace eng ($10/day each)."""
    settings = settings_mod.Settings(
        listen="127.0.0.1:0",
        db_url=f"sqlite:///{tmp_path_factory.mktemp('cp') / 'tollgate.db'}",
        admin_token=ADMIN,
        dataplane_token=DATAPLANE,
        master_key=MASTER_KEY,
        shutdown_grace_s=0.2,
    )
    mp = pytest.MonkeyPatch()
    with threaded_control_plane(settings) as address, threaded_idp() as idp:
        mp.setenv("TOLLGATE_CONTROL_PLANE", address)
        mp.setenv("TOLLGATE_ADMIN_TOKEN", ADMIN)
        try:
            gwctl("sso", "set", "--issuer", idp.issuer, "--client-id", idp.client_id,
                  "--client-secret-stdin", stdin=CLIENT_SECRET)  # fmt: skip
            gwctl("providers", "create", "sim", "--kind", "simulator")
            gwctl("workspaces", "create", "eng", "--sso-group", "eng", "--member-provider", "sim",
                  "--member-budget", "10/day")  # fmt: skip
            sign_in(address, DATAPLANE, idp, DANA)
        finally:
            mp.undo()
        yield address


def report(address: str, developer_id: str) -> None:
    event = telemetry_pb2.UsageEvent(
        request_id="req_tui_dev_" + uuid.uuid4().hex[:6],
        time_ms=int(time.time() * 1000) - 1000,
        workspace="eng",
        developer_id=developer_id,
        developer_email=DANA.email,
        model_served="claude-sonnet-4",
        provider="sim",
        status=200,
        usage=common_pb2.Usage(input_tokens=100, output_tokens=10, cost_micros=750_000),
    )
    with grpc.insecure_channel(address) as channel:
        telemetry_pb2_grpc.TelemetryStub(channel).ReportUsage(
            telemetry_pb2.ReportUsageRequest(node_id="dp-tui", events=[event], last_seq=1),
            metadata=(("authorization", f"Bearer {DATAPLANE}"),),
            timeout=10,
        )


async def wait_until(pilot: Pilot[None], until: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not until():
        assert time.monotonic() < deadline, "not on screen in time"
        await pilot.pause(0.05)


def cell(view: DevelopersView, key: str, column: int) -> str:
    row = next((r for r in view.shown if r.key == key), None)
    if row is None:
        return ""
    value = row.cells[column]
    return value.plain if hasattr(value, "plain") else str(value)


async def test_developers_view_against_a_real_control_plane(control_plane: str) -> None:
    address = control_plane
    async with GatewayClient(address, ADMIN) as client:
        dana = await client.get_developer(DANA.email)
        app = TollgateApp(client, poll_interval=0.2)
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.press("7")
            view = app.current_view
            assert isinstance(view, DevelopersView)
            await wait_until(pilot, lambda: cell(view, dana.id, STATE) == "active", 5)
            assert cell(view, dana.id, 0) == DANA.email
            report(address, dana.id)
            await wait_until(pilot, lambda: cell(view, dana.id, COST) == "$0.75", 5)
            spend = view.COLUMNS.index("SPEND / BUDGET")
            await wait_until(pilot, lambda: "$0.75/$10.00 day" in cell(view, dana.id, spend), 5)

            await pilot.press("d")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 2)
            await pilot.press("y")
            await wait_until(pilot, lambda: cell(view, dana.id, STATE) == "disabled", 5)
        assert (await client.get_developer(dana.id)).disabled_at_ms > 0
