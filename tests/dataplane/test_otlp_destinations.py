"""Telemetry destinations in the data plane's snapshot: parsing that never refuses a snapshot,
header values kept out of reprs and out of the disk cache, and a restart from that cache."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from dataplane.disk_cache import SNAPSHOT_FILE, load_cached, save_cached
from dataplane.snapshot import Snapshot
from dataplane.subscriber import Subscriber
from dataplane.telemetry.forwarder import Forwarder
from dataplane.telemetry.metrics import TelemetryMetrics
from gwapi.v1 import discovery_pb2
from tests.dataplane import runtimes
from tests.dataplane.conftest import build_snapshot
from tests.dataplane.otlp_support import destination, fixture
from tests.fakes.otlp_collector import FakeCollector

COLLECTOR_KEY = "otlp-collector-key-abcdef0123456789"


def snapshot_with(*dests: discovery_pb2.TelemetryDestinationConfig) -> discovery_pb2.Snapshot:
    snap = build_snapshot("http://127.0.0.1:9")
    snap.telemetry_destinations.extend(dests)
    return snap


def test_destinations_parse_and_bad_ones_are_skipped() -> None:
    snap = Snapshot.from_proto(
        snapshot_with(
            destination("all", "https://otel.example.com/base/", headers={"x-k": "v"}),
            destination("some", "http://127.0.0.1:4318", ["logs", "profiles"]),
            destination("bad-scheme", "ftp://otel.example.com"),
            destination("no-host", "http://"),
            destination("query", "https://otel.example.com/?token=x"),
            destination("all", "https://duplicate.example.com"),
        )
    )
    by_name = {d.name: d for d in snap.telemetry_destinations}
    assert list(by_name) == ["all", "some"]
    assert by_name["all"].url == "https://otel.example.com/base"
    assert by_name["all"].endpoint("metrics") == "https://otel.example.com/base/v1/metrics"
    assert by_name["all"].signals == frozenset({"metrics", "logs", "traces"})
    assert by_name["some"].signals == frozenset({"logs"})  # unknown "profiles" ignored
    assert not by_name["all"].headers_missing


def test_header_values_never_show() -> None:
    snap = Snapshot.from_proto(
        snapshot_with(destination("c", "https://c.example.com", headers={"x-key": COLLECTOR_KEY}))
    )
    assert COLLECTOR_KEY not in repr(snap)
    assert COLLECTOR_KEY not in repr(snap.telemetry_destinations)
    assert snap.telemetry_destinations[0].headers == (("x-key", COLLECTOR_KEY),)


def test_the_disk_cache_never_holds_header_values(tmp_path: Path) -> None:
    msg = snapshot_with(
        destination("c", "https://c.example.com", headers={"x-api-key": COLLECTOR_KEY})
    )
    save_cached(tmp_path, msg)
    raw = (tmp_path / SNAPSHOT_FILE).read_bytes()
    assert COLLECTOR_KEY.encode() not in raw
    assert b"x-api-key" in raw  # the name stays: the value is known to be missing
    assert msg.telemetry_destinations[0].headers["x-api-key"] == COLLECTOR_KEY  # caller's intact
    cached = load_cached(tmp_path)
    assert cached is not None
    [dest] = cached.telemetry_destinations
    assert dest.headers_missing and dest.headers == (("x-api-key", ""),)


async def test_restart_from_the_cache_asks_again_and_sends_nothing_meanwhile(
    tmp_path: Path,
) -> None:
    collector = FakeCollector(required_headers={"x-api-key": COLLECTOR_KEY})
    await collector.start()
    msg = snapshot_with(destination("c", collector.base_url, headers={"x-api-key": COLLECTOR_KEY}))
    save_cached(tmp_path, msg)
    holder = runtimes.holder()
    channel = grpc.aio.insecure_channel("127.0.0.1:1")  # lazy: never connected here
    sub = Subscriber(channel, "t", holder, tmp_path, "dp-1", "127.0.0.1:1")
    metrics = TelemetryMetrics()
    forwarder = Forwarder(metrics)
    try:
        assert sub.load_cached()
        assert sub.running_version() == ""  # the control plane must resend the header values
        cached = holder.current
        assert cached is not None
        forwarder.submit("metrics", fixture("metrics-delta-01.pb"), cached.telemetry_destinations)
        assert metrics.dropped.get(("c", "no_credentials")) == 1
        # The stream delivers the values: forwarded with them.
        holder.swap(Snapshot.from_proto(msg))
        assert sub.running_version() == msg.version
        current = holder.current
        assert current is not None
        forwarder.submit("metrics", fixture("metrics-delta-01.pb"), current.telemetry_destinations)
        await collector.wait_for(1)
    finally:
        await forwarder.aclose(1)
        await channel.close()
        await collector.stop()


@pytest.mark.parametrize("signals", [[], ["metrics"]])
def test_takes(signals: list[str]) -> None:
    snap = Snapshot.from_proto(snapshot_with(destination("d", "http://127.0.0.1:1", signals)))
    [dest] = snap.telemetry_destinations
    assert dest.takes("metrics")
    assert dest.takes("logs") == (not signals)
