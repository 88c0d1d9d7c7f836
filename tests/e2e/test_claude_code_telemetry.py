"""The real Claude Code CLI sends its own OTLP telemetry to a data plane, which forwards it to a
strict fake collector with the caller's identity: the acceptance path of issue P1 scope 4.

Set-up: a control plane (SQLite, master key), a telemetry destination added over the Admin API
with an API-key header (encrypted, then decrypted into the snapshot), a virtual key, a data
plane behind a byte-recording TCP tap, the strict fake Anthropic and the fake collector.
``claude -p hello`` runs with ``CLAUDE_CODE_ENABLE_TELEMETRY=1``, ``OTEL_*_EXPORTER=otlp`` and
``OTEL_EXPORTER_OTLP_ENDPOINT`` = the gateway with ``OTEL_EXPORTER_OTLP_HEADERS`` carrying the
virtual key (what gateway sign-in does with the bearer token: the CLI then sends the same OTLP
to ``{gateway}/v1/{signal}``). Claude Code 2.1.197's exporter sends every body chunked (no
Content-Length), which the tap checks, in protobuf or JSON as ``OTEL_EXPORTER_OTLP_PROTOCOL``
says; the collector must receive metrics and logs stamped with ``enduser.id``,
``tollgate.key.id`` and ``tollgate.workspace``.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from sqlmodel import select

from controlplane.server import Running, running
from controlplane.settings import Settings as ControlPlaneSettings
from controlplane.store.models.usage import DeveloperActivityRow
from dataplane.process.server import DataPlane
from dataplane.telemetry.identity import Identity
from gwapi.v1 import admin_pb2
from gwclient.client import GatewayClient
from tests.dataplane.otlp_support import fixtures
from tests.e2e.test_claude_code import (
    CLAUDE,
    TcpTap,
    ThroughTap,
    claude_env,
    key_on_fake,
    run_claude,
    tapped_dataplane,
)
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.otlp_collector import FakeCollector

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ADMIN_TOKEN = "admin-token-telemetry-e2e"
DP_TOKEN = "dataplane-token-telemetry-e2e"
WORKSPACE = "telemetry-e2e"
COLLECTOR_KEY = "collector-key-telemetry-e2e-0123456789"


@dataclass
class Setup(ThroughTap):
    cp: Running
    fake: FakeAnthropic
    collector: FakeCollector
    dataplane: DataPlane
    tap: TcpTap
    secret: str
    key_id: str


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    fake = FakeAnthropic(text="Telemetry test answer.")
    collector = FakeCollector(required_headers={"x-api-key": COLLECTOR_KEY})
    await fake.start()
    await collector.start()
    settings = ControlPlaneSettings(
        listen="127.0.0.1:0",
        db_url=f"sqlite:///{tmp_path / 'tollgate.db'}",
        admin_token=ADMIN_TOKEN,
        dataplane_token=DP_TOKEN,
        master_key=base64.b64encode(b"e" * 32).decode(),
    )
    try:
        async with (
            running(settings) as cp,
            GatewayClient(f"127.0.0.1:{cp.port}", ADMIN_TOKEN) as admin,
        ):
            created = await key_on_fake(admin, WORKSPACE, fake.base_url, "ci-laptop")
            await admin.add_telemetry_destination(
                admin_pb2.TelemetryDestination(name="collector", url=collector.base_url),
                {"x-api-key": COLLECTOR_KEY},
            )
            async with tapped_dataplane(cp.port, DP_TOKEN, tmp_path / "dataplane") as (dp, tap):
                yield Setup(cp, fake, collector, dp, tap, created.secret, created.key.id)
    finally:
        with contextlib.suppress(OSError):
            await collector.stop()
        with contextlib.suppress(OSError):
            await fake.stop()


def raw_heads(tap: TcpTap) -> list[bytes]:
    """The request heads (line + headers) of every OTLP export Claude Code sent."""
    heads = []
    for stream in tap.sent:
        buf = bytes(stream)
        start = 0
        while (i := buf.find(b"POST /v1/", start)) >= 0:
            end = buf.find(b"\r\n\r\n", i)
            head = buf[i:end]
            if head.split(b" ")[1] in (b"/v1/metrics", b"/v1/logs", b"/v1/traces"):
                heads.append(head)
            start = end
    return heads


@pytest.mark.skipif(not CLAUDE.exists(), reason="Claude Code is not installed: run `make install`")
@pytest.mark.parametrize(
    ("protocol", "content_type"),
    [("http/protobuf", "application/x-protobuf"), ("http/json", "application/json")],
)
async def test_claude_code_telemetry_reaches_the_collector_with_identity(
    setup: Setup, tmp_path: Path, protocol: str, content_type: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".claude.json").write_text('{"hasCompletedOnboarding": true, "theme": "dark"}')
    workdir = tmp_path / "project"
    workdir.mkdir()
    env = claude_env(home, setup.base_url, setup.secret)
    env.update(
        {
            "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_ENDPOINT": setup.base_url,
            "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer {setup.secret}",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_LOGS_EXPORT_INTERVAL": "1000",
        }
    )
    code, out, err = await run_claude(env, workdir)  # holds the machine-wide CLI lock
    assert code == 0, f"claude exited {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert setup.fake.text in out

    exports = await setup.collector.wait_for(2, timeout=15)
    signals = {e.signal for e in exports}
    assert {"metrics", "logs"} <= signals, signals
    for export in exports:
        assert export.headers["x-api-key"] == COLLECTOR_KEY
        for attrs in export.resource_attributes():
            assert attrs["service.name"] == "claude-code"
            assert attrs["enduser.id"] == "ci-laptop"
            assert attrs["tollgate.key.id"] == setup.key_id
            assert attrs["tollgate.workspace"] == WORKSPACE
    names = {
        m.name
        for e in exports
        if e.signal == "metrics"
        for rm in e.message.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert "claude_code.cost.usage" in names and "claude_code.token.usage" in names, names

    # What Claude Code sent: chunked bodies in the protocol's content type, never refused.
    heads = raw_heads(setup.tap)
    assert heads, "Claude Code sent no OTLP export through the tap"
    for head in heads:
        lowered = head.lower()
        assert b"transfer-encoding: chunked" in lowered, head
        assert b"content-length" not in lowered, head
        assert f"content-type: {content_type}".encode() in lowered, head
    rejected = [
        line
        for line in setup.dataplane.metrics.render().decode().splitlines()
        if line.startswith("tollgate_otlp_rejected_total")
    ]
    assert rejected == [], rejected


async def test_developer_activity_reaches_the_control_plane(setup: Setup) -> None:
    """The data plane's own ReportActivity call (its channel and data-plane token) against the
    real control plane; then a graceful stop flushes what was summed since."""
    telemetry = setup.dataplane.telemetry
    assert telemetry is not None
    dev = Identity(workspace=WORKSPACE, developer_id="dev_e2e", developer_email="e2e@example.com")
    now = int(time.time() * 1000)
    exports = [
        metrics_service_pb2.ExportMetricsServiceRequest.FromString(b)
        for b in fixtures("metrics-delta-*.pb")
    ]
    for export in exports[:3]:
        telemetry.aggregator.add(export, dev, now)
    assert await telemetry.reporter.report_once()
    for export in exports[3:]:
        telemetry.aggregator.add(export, dev, now)
    await setup.dataplane.stop()  # flushes the rest

    def rows(s: Any) -> list[DeveloperActivityRow]:
        return list(s.exec(select(DeveloperActivityRow)).all())

    [row] = setup.cp.state.db.read_sync(rows)
    assert (row.developer_id, row.workspace) == ("dev_e2e", WORKSPACE)
    assert (row.cost_micros, row.lines_added, row.commits, row.pull_requests) == (32_610, 6, 1, 1)
    assert (row.edits_accepted, row.sessions, row.input_tokens) == (2, 1, 412)
