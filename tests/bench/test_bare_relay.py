"""bench.bare_relay, the frameworks' floor of ``bench.sweep --floor``, relays what a data plane
would: the request body and credential as sent, the upstream's status, headers and streamed body
as received (so its CPU and latency are comparable with the gateway's)."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.bare_relay import BareRelay

EVENTS = [b"event: message_start\ndata: {}\n\n", b"event: ping\ndata: {}\n\n"] * 3


async def _upstream(seen: list[bytes]) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        seen.append(head + await reader.readexactly(length))
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nrequest-id: req_1\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for event in EVENTS:
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.sleep(0.01)  # separate reads: relayed one by one
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_the_bare_relay_passes_request_and_stream_through() -> None:
    seen: list[bytes] = []
    server, port = await _upstream(seen)
    relay = BareRelay(f"http://127.0.0.1:{port}")
    body = b'{"model":"m","stream":true}'
    incoming = [{"type": "http.request", "body": body[:10], "more_body": True},
                {"type": "http.request", "body": body[10:], "more_body": False}]  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "path": "/v1/messages",
        "headers": [(b"x-api-key", b"sk-provider"), (b"cookie", b"never"), (b"host", b"gw")],
    }
    try:
        await relay(scope, receive, send)
    finally:
        await relay.transport.aclose()
        server.close()
    request = seen[0]
    assert request.startswith(b"POST /v1/messages HTTP/1.1\r\n")
    assert request.endswith(b"\r\n\r\n" + body)
    assert b"x-api-key: sk-provider\r\n" in request.lower()
    assert b"cookie" not in request.lower()
    start = sent[0]
    assert start["status"] == 200
    assert (b"request-id", b"req_1") in start["headers"]
    assert all(k != b"transfer-encoding" for k, _ in start["headers"])
    chunks = [m["body"] for m in sent[1:]]
    assert chunks[-1] == b"" and b"".join(chunks) == b"".join(EVENTS)
    assert len(chunks) > 2  # streamed as it came, not gathered
