"""``gwctl telemetry destinations add|list|remove`` end to end against a real control plane
(SQLite, with a master key, in a background thread): header values never printed, -o json,
readable refusals and exit codes, and the snapshot a data plane then receives."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import grpc
import pytest

from gwapi.v1 import discovery_pb2, discovery_pb2_grpc
from tests.gwctl.cli import DATAPLANE, gw

pytestmark = pytest.mark.usefixtures("gwctl_env")

API_KEY = "hny-collector-key-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def control_plane_settings() -> dict[str, Any]:
    return {"master_key": base64.b64encode(b"t" * 32).decode()}


def snapshot_destinations(address: str) -> dict[str, discovery_pb2.TelemetryDestinationConfig]:
    async def watch() -> discovery_pb2.Snapshot:
        async with grpc.aio.insecure_channel(address) as ch:
            call = discovery_pb2_grpc.DiscoveryStub(ch).Watch(
                metadata=(("authorization", f"Bearer {DATAPLANE}"),)
            )
            await call.write(discovery_pb2.WatchRequest(node_id="dp-gwctl"))
            response = await call.read()
            call.cancel()
            return response.snapshot

    snap = asyncio.run(watch())
    return {d.name: d for d in snap.telemetry_destinations}


def test_destinations_lifecycle(
    capsys: pytest.CaptureFixture[str], control_plane: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = gw(capsys, "telemetry", "destinations", "list")
    assert code == 0 and "no telemetry destinations" in err

    code, out, err = gw(
        capsys,
        "telemetry", "destinations", "add", "honeycomb",
        "--url", "https://api.honeycomb.example.com",
        "--header", f"X-Honeycomb-Team={API_KEY}",
        "--header", "x-honeycomb-dataset: claude-code",
        "--signals", "metrics,logs",
    )  # fmt: skip
    assert code == 0, err
    assert "honeycomb" in out and "metrics,logs" in out
    assert "x-honeycomb-dataset, x-honeycomb-team" in out
    assert API_KEY not in out + err

    monkeypatch.setenv("OTLP_KEY", API_KEY)
    code, out, err = gw(
        capsys,
        "telemetry", "dest", "add", "local", "--url", "http://127.0.0.1:4318/",
        "--header-env", "authorization=OTLP_KEY", "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["name"] == "local" and doc["url"] == "http://127.0.0.1:4318"
    assert doc["signals"] == ["metrics", "logs", "traces"]
    assert doc["header_names"] == ["authorization"]

    code, out, err = gw(capsys, "telemetry", "destinations", "list")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["NAME", "URL", "SIGNALS", "HEADERS", "CREATED"]
    assert "honeycomb" in out and "local" in out and API_KEY not in out
    listed = json.loads(gw(capsys, "telemetry", "destinations", "list", "-o", "json")[1])
    assert [d["name"] for d in listed] == ["honeycomb", "local"]
    assert API_KEY not in json.dumps(listed)

    # Data planes receive the values, decrypted, over their stream.
    dests = snapshot_destinations(control_plane)
    assert dict(dests["honeycomb"].headers) == {
        "x-honeycomb-team": API_KEY,
        "x-honeycomb-dataset": "claude-code",
    }
    assert list(dests["honeycomb"].signals) == ["metrics", "logs"]

    # remove: confirmation, then gone (also from the snapshot).
    code, _, err = gw(capsys, "telemetry", "destinations", "remove", "honeycomb")
    assert code == 2 and "--yes" in err
    code, out, err = gw(capsys, "telemetry", "destinations", "rm", "honeycomb", "--yes")
    assert code == 0 and "removed telemetry destination honeycomb" in out
    assert list(snapshot_destinations(control_plane)) == ["local"]
    code, _, err = gw(capsys, "telemetry", "destinations", "remove", "honeycomb", "--yes")
    assert code == 1 and "not found" in err

    # The audit log names the destinations, never a header value.
    code, out, err = gw(capsys, "audit", "--kind", "telemetry_destination", "-o", "json")
    assert code == 0, err
    assert "telemetry_destination.remove" in out and API_KEY not in out


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        (["--url", "http://otel.example.com"], 1, "https only"),
        (["--url", "https://otel.example.com", "--signals", "metrics,spans"], 2, "subset"),
        (["--url", "https://otel.example.com", "--header", "no-separator"], 2, "NAME=VALUE"),
        (["--url", "https://otel.example.com", "--header", "x-key="], 2, "no value"),
        (
            ["--url", "https://otel.example.com", "--header-env", "x-key=NOT_SET_ANYWHERE"],
            2,
            "not set",
        ),
        (["--url", "https://otel.example.com", "--header", "a=1", "--header", "A=2"], 2, "twice"),
        (
            ["--url", "https://otel.example.com", "--header", "content-type=x"],
            1,
            "data plane itself",
        ),
    ],
)
def test_add_refusals(
    capsys: pytest.CaptureFixture[str], argv: list[str], code: int, text: str
) -> None:
    got, _, err = gw(capsys, "telemetry", "destinations", "add", "bad", *argv)
    assert got == code, err
    assert text in err
    assert "Traceback" not in err


def test_header_parse_errors_never_echo_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "sk-should-not-be-echoed-" + uuid.uuid4().hex
    code, out, err = gw(
        capsys,
        "telemetry", "destinations", "add", "x", "--url", "https://a.example.com",
        "--header", f"bad name {secret}",
    )  # fmt: skip
    assert code == 2 and "invalid header" in err
    assert secret not in err + out
