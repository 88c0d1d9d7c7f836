"""A minimal OTLP/HTTP trace receiver for the benchmark's traced data plane (raw asyncio).

Answers ``POST /v1/traces`` with an empty 200 (keep-alive, ``content-length`` bodies, as the
OpenTelemetry exporter sends them) and counts the spans it received by decoding each export with
opentelemetry-proto, so the benchmark can check that tracing really exported. Anything else gets
a 404. At exit it prints ``otlp sink: N exports, M spans``.

Run: ``python -m bench.otlp_sink --ready-file PATH`` (the port is written to the file).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.child import announce, take_request, until_signalled

_OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


class Stats:
    exports = 0
    spans = 0
    bad = 0


class SinkProtocol(asyncio.Protocol):
    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (request := take_request(self.buf)) is not None:
            head, body = request
            self._answer(head.lower(), body)

    def _answer(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        if not head.startswith(b"post /v1/traces "):
            self.transport.write(_NOT_FOUND)
            return
        try:
            export = ExportTraceServiceRequest.FromString(body)
        except Exception:
            self.stats.bad += 1
        else:
            self.stats.exports += 1
            self.stats.spans += sum(
                len(ss.spans) for rs in export.resource_spans for ss in rs.scope_spans
            )
        self.transport.write(_OK)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(ready_file: Path) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    server = await loop.create_server(lambda: SinkProtocol(stats), "127.0.0.1", 0)
    announce(ready_file, str(server.sockets[0].getsockname()[1]))
    async with server:
        await until_signalled()
    print(
        f"otlp sink: {stats.exports} exports, {stats.spans} spans, {stats.bad} undecodable",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.ready_file))


if __name__ == "__main__":
    main()
