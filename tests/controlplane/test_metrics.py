"""The control plane's ``/metrics`` (``--metrics-listen``): watchers, snapshot builds, ingest."""

from __future__ import annotations

import asyncio
import time

import grpc
import httpx

from controlplane.server import running
from controlplane.settings import Settings
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.conftest import DATAPLANE_TOKEN, Clients, make_settings


def test_metrics_listen_flag() -> None:
    s = Settings.from_args(["--metrics-listen", "127.0.0.1:9464"], env={})
    assert s.metrics_listen == "127.0.0.1:9464"
    assert Settings.from_args([], env={}).metrics_listen == ""


async def test_scrape_after_ingest(db_url: str) -> None:
    async with running(make_settings(db_url, metrics_listen="127.0.0.1:0")) as cp:
        server = cp.state.metrics_server
        assert server is not None and server.port
        async with grpc.aio.insecure_channel(cp.address) as ch:
            telemetry = Clients(ch, DATAPLANE_TOKEN).telemetry
            now = int(time.time() * 1000)
            events = [
                tpb.UsageEvent(request_id=f"r{i}", time_ms=now - 1500, workspace="w")
                for i in range(3)
            ]
            request = tpb.ReportUsageRequest(node_id="dp-1", events=events, last_seq=3)
            await telemetry.ReportUsage(request)
            await telemetry.ReportUsage(request)  # a replay: all duplicates
        leader = cp.state.fleet.leader
        if not leader.is_leader:  # PostgreSQL: the lock is taken in the background
            await asyncio.wait_for(leader.changed.wait(), 5)
        await asyncio.wait_for(_listening(cp), 5)
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{server.port}/metrics")
            missing = await http.get(f"http://127.0.0.1:{server.port}/nope")
    assert r.status_code == 200 and missing.status_code == 404
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert "# TYPE tollgate_cp_watchers gauge" in text
    assert "tollgate_cp_watchers 0" in text
    assert "tollgate_cp_ingest_batches_total 2" in text
    assert 'tollgate_cp_ingest_events_total{result="accepted"} 3' in text
    assert 'tollgate_cp_ingest_events_total{result="duplicate"} 3' in text
    assert "tollgate_cp_ingest_lag_seconds_count 6" in text
    assert 'tollgate_cp_ingest_lag_seconds_bucket{le="1"} 0' in text
    assert "tollgate_cp_snapshot_build_seconds_count" in text
    assert 'tollgate_cp_snapshot_info{version="' in text
    # One replica (SQLite, or alone on PostgreSQL): the leader, hearing the fleet bus.
    assert "tollgate_cp_fleet_leader 1" in text
    assert "tollgate_cp_fleet_bus_up 1" in text
    assert "# TYPE tollgate_cp_fleet_notices gauge" in text


async def _listening(cp) -> None:
    listening = getattr(cp.state.fleet.bus, "listening", None)
    if listening is not None:
        await listening.wait()


async def test_metrics_off_by_default(cp) -> None:
    assert cp.state.metrics_server is None
