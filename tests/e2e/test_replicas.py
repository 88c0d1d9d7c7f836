"""Several control-plane replicas on one PostgreSQL: a data plane connected to replica A refuses a
key revoked through replica B within a second, and a killed leader's jobs move to the survivor.

Replica A is an in-process server; the replica killed with SIGKILL is a real subprocess.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from controlplane.server import running
from dataplane.server import DataPlane, Settings
from gwclient.client import GatewayClient
from tests.controlplane.conftest import make_settings
from tests.controlplane.fleet.conftest import within
from tests.e2e.test_gateway import ADMIN, DP_TOKEN, ControlPlaneProcess, alice_in_team_a, call
from tests.fakes.anthropic import UPSTREAM_KEY, FakeAnthropic

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize(
        "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
    ),
]


def settings(db_url: str, **overrides: Any) -> Any:
    return make_settings(
        db_url, admin_token=ADMIN, dataplane_token=DP_TOKEN, leader_retry_s=0.1, **overrides
    )


async def _true(value: bool) -> bool:
    return value


async def test_a_key_revoked_through_b_is_refused_by_a_data_plane_on_a(
    db_url: str, tmp_path: Path
) -> None:
    upstream = FakeAnthropic()
    await upstream.start()
    try:
        async with running(settings(db_url)) as a, running(settings(db_url)) as b:
            await b.state.fleet.bus.listening.wait()
            await a.state.fleet.bus.listening.wait()
            async with GatewayClient(b.address, ADMIN) as admin_b:
                created = await alice_in_team_a(admin_b, upstream.base_url)
                dp = DataPlane(
                    Settings(
                        listen="127.0.0.1:0",
                        control_plane=a.address,  # connected to A only
                        token=DP_TOKEN,
                        state_dir=tmp_path / "dp",
                        env={"UPSTREAM_KEY": UPSTREAM_KEY},
                    )
                )
                await dp.start()
                try:
                    await dp.wait_for_snapshot()
                    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}") as http:

                        async def accepted() -> bool:
                            return (await call(http, created.secret)).status_code == 200

                        # The key, created through B, reaches the data plane through A.
                        await within(1.0, accepted, "a key created on B usable through A")
                        await admin_b.revoke_key(created.key.id)

                        async def refused() -> bool:
                            return (await call(http, created.secret)).status_code == 401

                        took = await within(1.0, refused, "a key revoked on B refused via A")
                        assert took < 1.0
                finally:
                    await dp.stop()
    finally:
        await upstream.stop()


async def test_a_killed_leader_hands_its_jobs_to_the_survivor(db_url: str, tmp_path: Path) -> None:
    doomed = ControlPlaneProcess(db_url, tmp_path / "cp.log")
    await doomed.start()  # first up: it takes the lock (the survivor starts after it)
    try:
        async with running(settings(db_url)) as survivor:
            leader = survivor.state.fleet.leader
            tried = leader.attempts
            await within(3.0, lambda: _true(leader.attempts >= tried + 3), "survivor tries")
            assert not leader.is_leader  # the subprocess holds the lock
            doomed.kill()  # SIGKILL: no goodbye; PostgreSQL ends its session and its lock
            killed_at = time.monotonic()
            await within(2.0, lambda: _true(leader.is_leader), "the survivor takes over")
            took = time.monotonic() - killed_at
            assert took < 1.0, f"failover took {took:.3f} s"
            assert {t.get_name() for t in leader._running} >= {"log-body-purge", "signin-purge"}
    finally:
        doomed.stop()
