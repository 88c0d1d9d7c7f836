"""A signed-in developer's OTLP export (bearer access token, P1 sign-in): stamped with the
developer's identity for the collector and summed into activity; their token is checked like on
/v1/messages. Runs where the sign-in data plane (tests/fakes/signin.py) is present."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dataplane.process.server import DataPlane, Settings
from tests.dataplane.conftest import SECRET
from tests.dataplane.otlp_support import PROTOBUF, destination, fixture, raw_post
from tests.fakes import signin
from tests.fakes.anthropic import UPSTREAM_KEY, FakeAnthropic
from tests.fakes.otlp_collector import FakeCollector


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[DataPlane, FakeCollector, Any]]:
    upstream = FakeAnthropic()
    collector = FakeCollector()
    await upstream.start()
    await collector.start()
    snap = signin.sso_snapshot(upstream.base_url)
    snap.telemetry_destinations.append(destination("c", collector.base_url))
    # Only the RPCs a data plane calls are served (the rest answer UNIMPLEMENTED).
    cp = signin.FakeSignInControlPlane(snap)  # type: ignore[abstract]
    await cp.start()
    dp = DataPlane(
        Settings(
            listen="127.0.0.1:0",
            control_plane=cp.address,
            token=signin.DP_TOKEN,
            state_dir=tmp_path / "dp",
            env={"UPSTREAM_KEY": UPSTREAM_KEY},
            drain_seconds=0,
            graceful_s=1,
        )
    )
    await dp.start()
    await dp.wait_for_snapshot()
    try:
        yield dp, collector, cp
    finally:
        await dp.stop()
        await cp.stop()
        await collector.stop()
        await upstream.stop()


async def test_developer_export_is_stamped_and_summed(
    setup: tuple[DataPlane, FakeCollector, Any],
) -> None:
    dp, collector, _cp = setup
    for token in (signin.mint(), SECRET):
        status, _, answer = await raw_post(
            dp.port,
            "/v1/metrics",
            fixture("metrics-delta-01.pb"),
            {"authorization": f"Bearer {token}", "content-type": PROTOBUF},
            chunked=True,
        )
        assert status == 200, answer
    exports = await collector.wait_for(2)
    by_user = {e.resource_attributes()[0]["enduser.id"]: e for e in exports}
    developer = by_user[signin.DEVELOPER_EMAIL].resource_attributes()[0]
    assert developer["tollgate.developer.id"] == signin.DEVELOPER_ID
    assert developer["tollgate.developer.email"] == signin.DEVELOPER_EMAIL
    assert developer["tollgate.workspace"] == "team-a"
    assert "tollgate.key.id" not in developer
    key = by_user["alice-laptop"].resource_attributes()[0]
    assert key["tollgate.key.id"] == "key_alice" and "tollgate.developer.id" not in key
    telemetry = dp.telemetry
    assert telemetry is not None
    assert telemetry.reporter.pending_rows >= 1 or telemetry.metrics.activity_batches.get(
        ("accepted",)
    )


async def test_expired_token_is_refused_like_on_messages(
    setup: tuple[DataPlane, FakeCollector, Any],
) -> None:
    dp, collector, _cp = setup
    status, _, answer = await raw_post(
        dp.port,
        "/v1/logs",
        fixture("logs-00.pb"),
        {
            "authorization": f"Bearer {signin.mint(iat=time.time() - 7200)}",
            "content-type": PROTOBUF,
        },
        chunked=True,
    )
    assert status == 401 and b"authentication_error" in answer
    await asyncio.sleep(0.2)
    assert collector.received == []
