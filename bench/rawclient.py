"""A raw asyncio HTTP/1.1 client for the benchmarks: one pre-rendered request per keep-alive
connection, timed to its first and last body byte.

Why raw and not httpx: on a 2-core machine the client competes with the gateway for CPU. httpx
costs several times more CPU per streamed response than this ~100-line protocol (header parsing,
per-chunk decoding, its own pool), which would both slow the gateway and inflate its measured
latency. This client writes one pre-rendered request (the Claude Code fixture body) per
keep-alive connection, parses the status line, ``content-length`` or ``chunked`` framing, and
timestamps the first body byte (TTFB) and the last (TTLB). It checks every response for status
200, the expected body length and the final ``message_stop`` event, and the first response of
every connection byte for byte.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


class BadResponse(Exception):
    pass


class ClientProtocol(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[float, float]] | None = None
        self.buf = bytearray()
        self.state = "idle"
        self.status = 0
        self.remaining = 0  # content-length mode: body bytes left
        self.chunked = False
        self.chunk_left = 0  # chunked mode: bytes left in the current chunk (+2 for CRLF)
        self.body_len = 0
        self.keep: bytearray | None = None
        self.t_first = 0.0
        self.closed = False
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(BadResponse(f"connection lost in state {self.state}: {exc}"))

    def send(self, request: bytes, keep_body: bool) -> asyncio.Future[tuple[float, float]]:
        if self.transport is None or self.closed or self.state != "idle":
            raise BadResponse(f"connection not reusable (state {self.state}, closed {self.closed})")
        self.waiter = asyncio.get_running_loop().create_future()
        self.state = "head"
        self.buf.clear()
        self.body_len = 0
        self.t_first = 0.0
        self.keep = bytearray() if keep_body else None
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.state == "head":
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            rest = bytes(self.buf[end + 4 :])
            self.buf.clear()
            self.status = int(head[9:12])
            self.chunked = b"\r\ntransfer-encoding: chunked" in head
            # e.g. Hypercorn's keep_alive_max_requests: reconnect for the next request
            self.closing = b"\r\nconnection: close" in head
            if not self.chunked:
                i = head.find(b"\r\ncontent-length:")
                if i < 0:
                    self._fail("response has neither content-length nor chunked framing")
                    return
                j = head.find(b"\r\n", i + 2)
                self.remaining = int(head[i + 17 : j if j >= 0 else None])
            self.state = "body"
            self.chunk_left = 0
            if rest:
                self._body(rest, now)
            elif not self.chunked and self.remaining == 0:
                self._done(now)
        elif self.state == "body":
            self._body(data, now)

    def _body(self, data: bytes, now: float) -> None:
        if not self.chunked:
            if not self.t_first:
                self.t_first = now
            self.body_len += len(data)
            if self.keep is not None:
                self.keep += data
            self.remaining -= len(data)
            if self.remaining <= 0:
                self._done(now)
            return
        buf = self.buf
        buf += data
        pos = 0
        n = len(buf)
        while pos < n:
            if self.chunk_left:
                take = min(self.chunk_left, n - pos)
                payload_end = pos + take
                # the last 2 bytes of chunk_left are the chunk's trailing CRLF
                data_bytes = max(0, min(take, self.chunk_left - 2))
                if data_bytes:
                    if not self.t_first:
                        self.t_first = now
                    self.body_len += data_bytes
                    if self.keep is not None:
                        self.keep += buf[pos : pos + data_bytes]
                self.chunk_left -= take
                pos = payload_end
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            if size == 0:
                if n < eol + 4:  # wait for the final CRLF (no trailers expected)
                    break
                del buf[:]
                self._done(now)
                return
            pos = eol + 2
            self.chunk_left = size + 2
        del buf[:pos]

    def _done(self, now: float) -> None:
        self.state = "idle"
        if self.closing and self.transport is not None:
            self.closed = True
            self.transport.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.t_first or now, now))

    def _fail(self, why: str) -> None:
        self.state = "broken"
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(BadResponse(why))
        if self.transport is not None:
            self.transport.close()


@dataclass
class Target:
    name: str
    host: str
    port: int
    request: bytes
    expected_body: bytes
    ok: int = 0  # every 200 with the right body, warm-up included


class Conn:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.proto: ClientProtocol | None = None
        self.verified = False

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(ClientProtocol, self.target.host, self.target.port)
        self.proto = proto
        self.verified = False

    async def request(self) -> tuple[float, float]:
        """One request; returns (ttfb, ttlb) in seconds. Raises BadResponse."""
        if self.proto is None or self.proto.closed:
            await self.open()
        assert self.proto is not None
        proto = self.proto
        keep = not self.verified
        t0 = time.perf_counter()
        t_first, t_last = await proto.send(self.target.request, keep)
        expected = self.target.expected_body
        if proto.status != 200:
            raise BadResponse(f"{self.target.name}: HTTP {proto.status}")
        if proto.body_len != len(expected):
            raise BadResponse(
                f"{self.target.name}: body of {proto.body_len} bytes, expected {len(expected)}"
            )
        if keep:
            if bytes(proto.keep or b"") != expected:
                raise BadResponse(f"{self.target.name}: body differs from the upstream's bytes")
            self.verified = True
        return t_first - t0, t_last - t0

    def close(self) -> None:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.close()


def build_request(host: str, port: int, body: bytes, auth: tuple[str, str]) -> bytes:
    """The request Claude Code sends (headers as observed from 2.1.197), with ``body``."""
    headers = [
        ("host", f"{host}:{port}"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("user-agent", "claude-cli/2.1.197 (external, sdk-cli)"),
        ("x-claude-code-session-id", "0b4c1f0e-bench-4000-8000-000000000001"),
        ("x-stainless-retry-count", "0"),
        ("x-stainless-timeout", "600"),
        (
            "anthropic-beta",
            "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14,"
            "context-management-2025-06-27,prompt-caching-scope-2026-01-05,effort-2025-11-24",
        ),
        ("anthropic-version", "2023-06-01"),
        auth,
        ("x-app", "cli"),
        ("connection", "keep-alive"),
        ("content-length", str(len(body))),
    ]
    head = "POST /v1/messages?beta=true HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode() + b"\r\n" + body
