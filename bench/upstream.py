"""A deliberately fast fake Anthropic upstream for the benchmark (raw asyncio, HTTP/1.1).

Answers ``POST /v1/messages`` (any query string) with a pre-rendered 200-event Anthropic SSE
stream, ``HEAD``/``GET /`` with an empty 200, anything else with an Anthropic-shaped 404. It does
the least work an HTTP/1.1 server can do so the benchmark measures the gateway, not the fake:
no framework, no per-request JSON, the response bytes rendered once at start.

* Keep-alive; request bodies framed by ``content-length`` (what the gateway and the load
  generator send); pipelined requests are answered in order.
* The response has a ``content-length``; its body is written in ``writes`` slices (default 8,
  ~3.5 KB each) so the gateway sees a stream arriving in pieces rather than one buffer.
* ``x-api-key`` is not checked (the strict fake in ``tests/fakes`` does that); the count of
  requests that carried one is printed at exit, for the record.

Paced mode (``--pace-ms MS --events N``, for ``bench.streams``): each answer is chunked and
generated over time, as a model would: ``message_start`` and ``content_block_start`` at once, then
one ``text_delta`` every MS milliseconds on the connection's own schedule (start + k·MS, so no
drift), then ``content_block_stop``, ``message_delta`` (``output_tokens`` = N) and
``message_stop``. Each delta's text begins with the upstream's ``time.monotonic_ns()`` at the
moment of the write, 19 digits (CLOCK_MONOTONIC is one clock for every process on the box), so a
client can compute each token's delay. Usage is that of the fast mode, so metering stays exact.
Without ``--pace-ms`` the behaviour is unchanged.

Run: ``python -m bench.upstream --port 0 --ready-file PATH`` (the port is written to the file).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import deque
from pathlib import Path

from bench.child import announce, take_request, until_signalled
from dataplane.simulator import SimulatedReply

TEXT_DELTAS = 195  # + message_start, content_block_start, content_block_stop, message_delta,
# message_stop = 200 events

USAGE_START = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 2500,
    "cache_read_input_tokens": 18000,
    "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 500},
    "output_tokens": 1,
    "service_tier": "standard",
}


def render_stream(model: str = "claude-sonnet-4-5", deltas: int = TEXT_DELTAS) -> list[bytes]:
    """The events of one streamed answer, each as its own SSE frame: the gateway's own rendering
    of an Anthropic stream (the simulator's), without its ``ping``."""
    texts = tuple(f"token{i:03d} of the benchmark answer " for i in range(deltas))
    message = {
        "id": "msg_bench_0001",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "".join(texts)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {**USAGE_START, "output_tokens": deltas},
    }
    frames = SimulatedReply(message, texts).sse_frames()
    del frames[2]  # the ping: an answer stays TEXT_DELTAS + 5 = 200 events, as measured before
    return frames


def render_body() -> bytes:
    return b"".join(render_stream())


def _slices(body: bytes, writes: int) -> list[bytes]:
    size = max(1, -(-len(body) // max(1, writes)))
    return [body[i : i + size] for i in range(0, len(body), size)]


def render_response(body: bytes, writes: int) -> list[bytes]:
    head = (
        b"HTTP/1.1 200 OK\r\n"
        b"content-type: text/event-stream; charset=utf-8\r\n"
        b"cache-control: no-cache\r\n"
        b"request-id: req_bench_upstream\r\n"
        b"anthropic-ratelimit-requests-remaining: 999\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"\r\n"
    )
    parts = _slices(body, writes)
    parts[0] = head + parts[0]
    return parts


_EMPTY_200 = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
_NOT_FOUND_BODY = b'{"type":"error","error":{"type":"not_found_error","message":"not found"}}'
_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(_NOT_FOUND_BODY)).encode()
    + b"\r\n\r\n"
    + _NOT_FOUND_BODY
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


PACED_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\n"
    b"request-id: req_bench_upstream\r\n"
    b"transfer-encoding: chunked\r\n"
    b"\r\n"
)
# A text delta around its 19-digit emit timestamp (monotonic ns): fixed length, so each tick
# renders one bytes join and no JSON.
_DELTA_PREFIX = (
    b"event: content_block_delta\ndata: "
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"'
)
_DELTA_SUFFIX = b' token"}}\n\n'
_DELTA_CHUNK_HEAD = b"%x\r\n" % (len(_DELTA_PREFIX) + 19 + len(_DELTA_SUFFIX))


class Paced:
    """A paced answer's schedule: the frames before and after the deltas, the pace, the count."""

    def __init__(self, pace_s: float, events: int) -> None:
        frames = render_stream(deltas=events)
        self.pace_s, self.events = pace_s, events
        self.first = PACED_HEAD + _chunk(frames[0]) + _chunk(frames[1])
        self.last = b"".join(_chunk(f) for f in frames[-3:]) + b"0\r\n\r\n"


class Stats:
    requests = 0
    with_api_key = 0


class UpstreamProtocol(asyncio.Protocol):
    """One connection: parse request heads, skip bodies, write the canned answer."""

    def __init__(self, response: list[bytes], stats: Stats, paced: Paced | None = None) -> None:
        self.response = response
        self.stats = stats
        self.paced = paced
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        # Paced mode: the answer being generated (its timer, deltas sent, start) and the heads
        # of pipelined requests waiting for it to end.
        self.timer: asyncio.TimerHandle | None = None
        self.sent = 0
        self.t0 = 0.0
        self.waiting: deque[bytes] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (request := take_request(self.buf)) is not None:
            head = request[0]
            if self.timer is not None:
                self.waiting.append(head)
            else:
                self._answer(head)

    def _answer(self, head: bytes) -> None:
        assert self.transport is not None
        line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
        method, _, rest = line.partition(b" ")
        target = rest.partition(b" ")[0]
        path = target.partition(b"?")[0]
        if method == b"POST" and path == b"/v1/messages":
            self.stats.requests += 1
            if b"\r\nx-api-key:" in head.lower():
                self.stats.with_api_key += 1
            if self.paced is not None:
                self._start_paced(self.paced)
                return
            for part in self.response:
                self.transport.write(part)
        elif path == b"/" and method in (b"HEAD", b"GET"):
            self.transport.write(_EMPTY_200)
        else:
            self.transport.write(_NOT_FOUND)

    def _start_paced(self, paced: Paced) -> None:
        assert self.transport is not None
        self.transport.write(paced.first)
        loop = asyncio.get_running_loop()
        self.sent, self.t0 = 0, loop.time()
        self.timer = loop.call_at(self.t0 + paced.pace_s, self._tick, paced)

    def _tick(self, paced: Paced) -> None:
        transport = self.transport
        if transport is None:
            return
        transport.write(
            b"".join(
                (
                    _DELTA_CHUNK_HEAD,
                    _DELTA_PREFIX,
                    b"%019d" % time.monotonic_ns(),
                    _DELTA_SUFFIX,
                    b"\r\n",
                )
            )
        )
        self.sent += 1
        if self.sent < paced.events:
            due = self.t0 + (self.sent + 1) * paced.pace_s
            self.timer = asyncio.get_running_loop().call_at(due, self._tick, paced)
            return
        transport.write(paced.last)
        self.timer = None
        if self.waiting:
            self._answer(self.waiting.popleft())

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


async def serve(
    port: int, writes: int, ready_file: Path | None, paced: Paced | None = None
) -> None:
    loop = asyncio.get_running_loop()
    response = render_response(render_body(), writes)
    stats = Stats()
    server = await loop.create_server(
        lambda: UpstreamProtocol(response, stats, paced),
        "127.0.0.1",
        port,
        backlog=1024,
        reuse_address=True,
    )
    actual = server.sockets[0].getsockname()[1]
    if ready_file is not None:
        announce(ready_file, str(actual))
    async with server:
        await until_signalled()
    print(f"upstream: {stats.requests} requests, {stats.with_api_key} with x-api-key", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--writes", type=int, default=8, help="slices the body is written in")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument(
        "--pace-ms", type=float, default=0.0, help="paced mode: one text delta every MS ms"
    )
    parser.add_argument(
        "--events", type=int, default=TEXT_DELTAS, help="paced mode: text deltas per answer"
    )
    args = parser.parse_args(argv)
    if args.pace_ms < 0 or args.events < 1:
        parser.error("--pace-ms must be >= 0 and --events >= 1")
    paced = Paced(args.pace_ms / 1000, args.events) if args.pace_ms else None
    asyncio.run(serve(args.port, args.writes, args.ready_file, paced))


if __name__ == "__main__":
    main()
