"""The frameworks' floor: the data plane's process shell relaying ``POST /v1/messages`` with no
gateway in between (``make bench-sweep`` with ``--floor``).

``python -m bench.bare_relay --ready-file F --upstream http://127.0.0.1:PORT``

What it shares with a Tollgate data plane, on purpose: ``run_loop`` (uvloop, the garbage
collector's settings), Hypercorn configured by the same ``http_config`` (backlog, keep-alive,
hang-up handling), and the upstream :class:`~dataplane.providers.transport.Transport`
(aiohttp) with its timeouts. What it leaves out: everything the gateway does (authentication, routing and fallback,
limits and budgets, the SSE metering and pricing, the usage event and the request log, metrics).
Its request body is read whole and sent as received; the answer's headers and body chunks are
relayed as they arrive. The client's ``x-api-key`` goes upstream as is (the load generator gives
it the provider's key, as for a direct call).

So the CPU a paced stream costs here is what Hypercorn, aiohttp and the event loop cost for the
same bytes: the part of the gateway's cost that no change to Tollgate's own code can remove. It
writes ``{"port": …, "pid": …}`` to the ready file; SIGTERM stops it. ``GET /metrics`` answers an
empty exposition (the stream benchmarks scrape every process they measure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve

from bench.child import announce
from dataplane.process.server import http_config, run_loop
from dataplane.process.workerrole import bind_listener
from dataplane.providers.transport import Timeouts, Transport

_FORWARDED = (b"x-api-key", b"anthropic-version", b"anthropic-beta", b"content-type")
# The server frames the answer itself; these are the upstream connection's own.
_NOT_RELAYED = (b"content-length", b"transfer-encoding", b"connection", b"keep-alive")


class BareRelay:
    """The ASGI app: read the body, send it upstream, relay the answer chunk by chunk."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.transport = Transport()
        self.timeouts = Timeouts(connect=10.0, read=60.0)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await self.transport.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/metrics":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        parts = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = [(k, v) for k, v in scope["headers"] if k in _FORWARDED]
        response = await self.transport.request(
            "POST", self.upstream + scope["path"], headers, b"".join(parts), self.timeouts, "bare"
        )
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [(k, v) for k, v in response.headers if k not in _NOT_RELAYED],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()


async def _serve(args: argparse.Namespace) -> None:
    sock = bind_listener("127.0.0.1:0")  # listening already: connections queue from now on
    port = sock.getsockname()[1]
    config = http_config(sock.detach(), keep_alive_s=75.0, graceful_s=5.0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = BareRelay(args.upstream)
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    announce(args.ready_file, json.dumps({"port": port, "pid": os.getpid()}))
    await server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL")
    logging.basicConfig(level=logging.WARNING)
    run_loop(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
