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
import os
import signal
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

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
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            length = 0
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                length = int(head[i + 17 : j if j >= 0 else None])
            total = end + 4 + length
            if len(buf) < total:
                return
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            self._answer(head, body)

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
    tmp = ready_file.with_suffix(".tmp")
    tmp.write_text(str(server.sockets[0].getsockname()[1]))
    os.replace(tmp, ready_file)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
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
