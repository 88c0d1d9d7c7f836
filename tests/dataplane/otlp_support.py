"""Shared pieces of the OTLP tests: the captured fixtures, a data plane with telemetry
destinations, and raw HTTP posts (chunked or with Content-Length)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from dataplane.config.snapshot import Snapshot
from dataplane.process.server import DataPlane
from gwapi.v1 import discovery_pb2

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "otlp"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixtures(pattern: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted(FIXTURES.glob(pattern))]


def destination(
    name: str,
    url: str,
    signals: Iterable[str] = (),
    headers: dict[str, str] | None = None,
) -> discovery_pb2.TelemetryDestinationConfig:
    return discovery_pb2.TelemetryDestinationConfig(
        name=name, url=url, signals=list(signals), headers=headers or {}
    )


def with_destinations(
    dp: DataPlane, snap: discovery_pb2.Snapshot, *dests: discovery_pb2.TelemetryDestinationConfig
) -> None:
    """Swap in ``snap`` carrying ``dests`` (a new version)."""
    msg = discovery_pb2.Snapshot()
    msg.CopyFrom(snap)
    msg.version = snap.version + "-tel" + str(len(dests))
    del msg.telemetry_destinations[:]
    msg.telemetry_destinations.extend(dests)
    dp.holder.swap(Snapshot.from_proto(msg))


async def raw_post(
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    chunked: bool,
    chunk_size: int = 1000,
) -> tuple[int, dict[str, str], bytes]:
    """POST over a fresh TCP connection: chunked (no Content-Length, as Claude Code's exporter
    sends) or with Content-Length. Returns (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"POST {path} HTTP/1.1", f"host: 127.0.0.1:{port}", "connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if chunked:
        lines.append("transfer-encoding: chunked")
    else:
        lines.append(f"content-length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    if chunked:
        for i in range(0, len(body), chunk_size):
            part = body[i : i + chunk_size]
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
    else:
        writer.write(body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    response_headers = {}
    for line in header_lines:
        k, _, v = line.partition(":")
        response_headers[k.strip().lower()] = v.strip()
    if response_headers.get("transfer-encoding") == "chunked":
        body_out = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            body_out += rest[:size]
            rest = rest[size + 2 :]
        return status, response_headers, body_out
    return status, response_headers, rest
