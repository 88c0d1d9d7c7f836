"""The upstream transport against a raw loopback HTTP/1.1 server that records the exact bytes."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from dataplane.errors import (
    GatewayError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from dataplane.providers.transport import OutHeader, Timeouts, Transport, _ResponseHandler, failure

Reply = Callable[[asyncio.StreamWriter], Awaitable[None]]
FAST = Timeouts(connect=2.0, read=2.0)


@dataclass
class Seen:
    head: bytes
    body: bytes
    connection: int  # which TCP connection carried it (1, 2, …)

    @property
    def request_line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    @property
    def header_lines(self) -> list[bytes]:
        return self.head.split(b"\r\n")[1:]


@dataclass
class RawServer:
    """Reads requests with a Content-Length body; answers each with the next scripted reply."""

    replies: list[Reply] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    server: asyncio.Server | None = None
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while True:
                try:
                    head = (await reader.readuntil(b"\r\n\r\n"))[:-4]
                except asyncio.IncompleteReadError:
                    return
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                self.seen.append(Seen(head, await reader.readexactly(length), connection))
                await self.replies.pop(0)(writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def fixed(body: bytes, *headers: bytes) -> Reply:
    async def reply(writer: asyncio.StreamWriter) -> None:
        extra = b"".join(h + b"\r\n" for h in headers)
        writer.write(
            b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        await writer.drain()

    return reply


def chunked(*parts: bytes | float) -> Reply:
    """A chunked answer; a float is a pause (seconds) between chunks."""

    async def reply(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"X-Mixed-Case: Yes\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        await writer.drain()
        for part in parts:
            if isinstance(part, float):
                await asyncio.sleep(part)
                continue
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return reply


def aborted(rest: bytes) -> Reply:
    """A 200 whose headers and body so far are ``rest``, then the connection reset."""

    async def reply(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n" + rest)
        await writer.drain()
        writer.transport.abort()

    return reply


def hang(seconds: float) -> Reply:
    async def reply(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(seconds)

    return reply


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    s = RawServer()
    await s.start()
    yield s
    await s.stop()


async def test_request_goes_out_exactly_as_given(server: RawServer, transport: Transport) -> None:
    server.replies.append(fixed(b"{}"))
    body = '{"model":"x","messages":[{"role":"user","content":"Grüß 🚀"}]}'.encode()
    path = "/model/arn:aws:bedrock:us-east-1:1:application-inference-profile%2Fabc/invoke"
    headers: list[OutHeader] = [
        (b"anthropic-version", b"2023-06-01"),
        (b"anthropic-beta", b"a-1"),
        (b"anthropic-beta", b"b-2"),
        ("x-name", "café"),
        (b"x-utf8", "naïve ☃".encode()),
        (b"accept-encoding", b"identity"),
    ]
    response = await transport.request(
        "POST", server.url + path + "?beta=true&x=%2F", headers, body, FAST, "p"
    )
    assert await response.read() == b"{}"
    await response.aclose()
    (seen,) = server.seen
    assert seen.request_line == b"POST " + path.encode() + b"?beta=true&x=%2F HTTP/1.1"
    assert seen.body == body
    host = server.url.removeprefix("http://").encode()
    # Only Host and Content-Length are added: no User-Agent, Accept or Content-Type of aiohttp's.
    assert sorted(seen.header_lines) == sorted(
        [
            b"Host: " + host,
            b"anthropic-version: 2023-06-01",
            b"anthropic-beta: a-1",
            b"anthropic-beta: b-2",
            "x-name: café".encode(),
            "x-utf8: naïve ☃".encode(),
            b"accept-encoding: identity",
            b"Content-Length: %d" % len(body),
        ]
    )
    assert [line for line in seen.header_lines if line.startswith(b"anthropic-beta")] == [
        b"anthropic-beta: a-1",
        b"anthropic-beta: b-2",
    ]


async def test_chunks_arrive_as_sent_and_headers_are_raw(
    server: RawServer, transport: Transport
) -> None:
    server.replies.append(chunked(b"event: a\n\n", 0.3, b"event: b\n\n"))
    started = time.monotonic()
    response = await transport.request("POST", server.url + "/", [], b"", FAST, "p")
    assert response.status == 200
    assert (b"x-mixed-case", b"Yes") in response.headers
    assert response.header(b"content-type") == b"text/event-stream"
    assert response.header(b"nope") is None
    got: list[tuple[bytes, float]] = []
    async for chunk in response.aiter_raw():
        got.append((chunk, time.monotonic() - started))
    await response.aclose()
    assert [c for c, _ in got] == [b"event: a\n\n", b"event: b\n\n"]
    assert got[0][1] < 0.25 <= got[1][1]  # the first chunk was not held back for the second


async def test_a_slow_reader_pauses_the_upstream_and_gets_every_byte(
    server: RawServer, transport: Transport
) -> None:
    """Reading pauses while the relay does not keep up (aiohttp's buffer past its high-water
    mark) and resumes when it drains: the quiet per-chunk resume must not lose a wake-up."""
    parts = [b"%05d" % i + b"x" * 2043 for i in range(1000)]  # 2 MiB in 2 KiB chunks
    server.replies.append(chunked(*parts))
    response = await transport.request("POST", server.url + "/", [], b"", FAST, "p")
    protocol = response._response.connection.protocol  # type: ignore[union-attr]
    assert isinstance(protocol, _ResponseHandler)
    got: list[bytes] = []
    async with asyncio.timeout(10):  # a lost wake-up stalls the read forever: fail instead
        async for chunk in response.aiter_raw():
            got.append(chunk)
            if len(got) == 1:  # a slow client: the upstream's bytes pile up meanwhile
                for _ in range(100):
                    await asyncio.sleep(0.01)
                    if protocol._reading_paused:
                        break
                assert protocol._reading_paused, "the buffer never filled: no pause to resume"
    await response.aclose()
    assert b"".join(got) == b"".join(parts)


async def test_bodies_are_never_decompressed(server: RawServer, transport: Transport) -> None:
    packed = gzip.compress(b"hello")
    server.replies.append(fixed(packed, b"Content-Encoding: gzip"))
    response = await transport.request("POST", server.url + "/", [], b"x", FAST, "p")
    assert await response.read() == packed
    await response.aclose()


async def test_a_fully_read_connection_is_reused_a_half_read_one_is_not(
    server: RawServer, transport: Transport
) -> None:
    for _ in range(2):
        server.replies.append(fixed(b"whole"))
        response = await transport.request("POST", server.url + "/", [], b"", FAST, "p")
        assert await response.read() == b"whole"
        await response.aclose()
    assert [s.connection for s in server.seen] == [1, 1]
    server.replies.append(chunked(b"first", 5.0, b"never read"))
    response = await transport.request("POST", server.url + "/", [], b"", FAST, "p")
    assert await anext(response.aiter_raw()) == b"first"
    await response.aclose()  # mid-body: the connection must not serve the next request
    server.replies.append(fixed(b"fresh"))
    response = await transport.request("POST", server.url + "/", [], b"", FAST, "p")
    assert await response.read() == b"fresh"
    await response.aclose()
    assert [s.connection for s in server.seen] == [1, 1, 1, 2]


async def test_unreachable_is_502(transport: Transport) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(GatewayError) as info:
        await transport.request("POST", f"http://127.0.0.1:{port}/", [], b"", FAST, "prov")
    assert info.value.status == 502 and "could not reach provider 'prov'" in info.value.message
    with pytest.raises(GatewayError) as info:
        await transport.request("POST", "http://no-such-host.invalid/", [], b"", FAST, "prov")
    assert info.value.status == 502


async def test_no_headers_within_the_read_timeout_is_504(
    server: RawServer, transport: Transport
) -> None:
    server.replies.append(hang(3.0))
    with pytest.raises(GatewayError) as info:
        await transport.request(
            "POST", server.url + "/", [], b"", Timeouts(connect=2.0, read=0.2), "prov"
        )
    assert info.value.status == 504 and "'prov' did not answer in time" in info.value.message


async def test_a_silence_mid_stream_is_a_timeout_for_the_relay(
    server: RawServer, transport: Transport
) -> None:
    server.replies.append(chunked(b"event: a\n\n", 3.0, b"late"))
    response = await transport.request(
        "POST", server.url + "/", [], b"", Timeouts(connect=2.0, read=0.2), "prov"
    )
    chunks = response.aiter_raw()
    assert await anext(chunks) == b"event: a\n\n"
    with pytest.raises(Exception) as info:
        await anext(chunks)
    await response.aclose()
    assert isinstance(info.value, UpstreamTimeout)  # the relay emits a timeout_error event


async def test_a_dropped_stream_is_an_error_not_a_clean_end(
    server: RawServer, transport: Transport
) -> None:
    server.replies.append(aborted(b"Transfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"))
    response = await transport.request("POST", server.url + "/", [], b"", FAST, "p")
    chunks = response.aiter_raw()
    assert await anext(chunks) == b"first"
    with pytest.raises(Exception) as info:
        await anext(chunks)
    await response.aclose()
    assert isinstance(info.value, UpstreamProtocolError)


async def test_drain_reads_releases_and_maps_failures(
    server: RawServer, transport: Transport
) -> None:
    server.replies.append(fixed(b'{"error":1}'))
    response = await transport.request("POST", server.url + "/", [], b"", FAST, "p")
    assert await response.drain() == b'{"error":1}'
    server.replies.append(chunked(b"x", 3.0, b"y"))
    response = await transport.request(
        "POST", server.url + "/", [], b"", Timeouts(connect=2.0, read=0.2), "prov"
    )
    with pytest.raises(GatewayError) as info:
        await response.drain()
    assert info.value.status == 504


_KEY = ConnectionKey("p.example", 443, True, True, None, None, None, None)
UNREACHABLE = "The gateway could not reach provider 'p'"
SILENT = "Provider 'p' did not answer in time"


@pytest.mark.parametrize(
    ("exc", "kind", "status", "before_headers"),
    [
        (aiohttp.ConnectionTimeoutError(), UpstreamConnectError, 502, UNREACHABLE),
        (
            aiohttp.ClientConnectorError(_KEY, ConnectionRefusedError(111, "refused")),
            UpstreamConnectError,
            502,
            UNREACHABLE,
        ),
        (
            aiohttp.ClientConnectorDNSError(_KEY, OSError(-2, "Name or service not known")),
            UpstreamConnectError,
            502,
            UNREACHABLE,
        ),
        (aiohttp.ServerTimeoutError(), UpstreamTimeout, 504, SILENT),
        (aiohttp.SocketTimeoutError(), UpstreamTimeout, 504, SILENT),
        (TimeoutError(), UpstreamTimeout, 504, SILENT),
        (aiohttp.ServerDisconnectedError(), UpstreamProtocolError, 502, UNREACHABLE),
        (
            aiohttp.ClientPayloadError("Response payload is not completed"),
            UpstreamProtocolError,
            502,
            UNREACHABLE,
        ),
        (
            aiohttp.ClientOSError(104, "Connection reset by peer"),
            UpstreamProtocolError,
            502,
            UNREACHABLE,
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_every_aiohttp_failure_maps_to_one_node_of_the_tree(
    exc: BaseException, kind: type[UpstreamError], status: int, before_headers: str
) -> None:
    """The one mapping: the class says what happened, the status and message are what the
    client is told when the request fails before any answer (unchanged from before the tree)."""
    err = failure(exc, "p")
    assert type(err) is kind and err.status == status and err.message.startswith(before_headers)
    assert isinstance(err, UpstreamError)  # the attempt chain moves on, the breaker counts it
    mid = failure(exc, "p", mid_answer=True)
    assert type(mid) is kind and mid.status == status and "'p'" in mid.message


async def test_a_body_read_failure_is_mapped_too(server: RawServer, transport: Transport) -> None:
    server.replies.append(aborted(b"Content-Length: 100\r\n\r\nonly a part"))
    response = await transport.request("POST", server.url + "/", [], b"", FAST, "p")
    with pytest.raises(UpstreamProtocolError) as info:
        await response.read()
    await response.aclose()
    assert "The answer from provider 'p' broke off" in info.value.message
    assert isinstance(info.value.__cause__, aiohttp.ClientError)  # the original, for the log
    server.replies.append(chunked(b"x", 3.0, b"y"))
    response = await transport.request(
        "POST", server.url + "/", [], b"", Timeouts(connect=2.0, read=0.2), "p"
    )
    with pytest.raises(UpstreamTimeout):
        await response.read()
    await response.aclose()
