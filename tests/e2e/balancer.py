"""A tiny TCP load balancer on loopback for the fleet tests: round-robin over backends.

Each accepted connection is relayed, bytes unchanged, to the next backend in turn. A backend
that refuses the connection (a process that is down, or whose listener has closed at the end
of its drain) is skipped and the next one tried, as nginx's ``proxy_next_upstream error`` does;
there are no health checks, so a draining data plane is left the way it tells clients to leave
it (503 and ``connection: close``). When either side of a relayed connection closes or fails,
the other side is closed too: a killed backend looks killed to its clients.

It records which backend each client connection reached (by the client's source port), so a
test can tell which process served a response; and, per connection (numbered in order of
acceptance), its own source port towards the backend, so a test can tell which of a backend's
processes (``--workers N``) holds a connection.
"""

from __future__ import annotations

import asyncio


async def relay(
    src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bytearray | None = None
) -> None:
    """Copy ``src`` to ``dst`` until ``src`` ends, appending each chunk to ``record`` too when one
    is given. A failure on either side propagates; ending ``dst`` is the caller's choice."""
    while data := await src.read(65536):
        if record is not None:
            record += data
        dst.write(data)
        await dst.drain()


class RoundRobin:
    """``await RoundRobin(["127.0.0.1:8001", …]).start()``; then ``address`` and ``port``."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = list(backends)  # "host:port"; replaced in place by replace()
        self.port = 0
        self.routes: dict[int, str] = {}  # client source port -> the backend it reached
        self.connections: dict[int, int] = {}  # client source port -> its connection number
        self.upstream_ports: dict[int, int] = {}  # our source port to a backend -> connection
        self.accepted = 0
        self._next = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    def replace(self, old: str, new: str) -> None:
        """A backend restarted on another port."""
        self.backends[self.backends.index(old)] = new

    async def _connect(self) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.backends)):
            backend = self.backends[self._next % len(self.backends)]
            self._next += 1
            host, _, port = backend.rpartition(":")
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
            except (OSError, TimeoutError):
                continue
            return backend, reader, writer
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        number = self.accepted
        upstream = await self._connect()
        if upstream is None:
            writer.transport.abort()  # every backend is down: the client sees a reset
            return
        backend, up_reader, up_writer = upstream
        peer = writer.get_extra_info("peername")
        if peer:
            self.routes[peer[1]] = backend
            self.connections[peer[1]] = number
        self.upstream_ports[up_writer.get_extra_info("sockname")[1]] = number
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                await relay(src, dst)
            except (OSError, RuntimeError):
                dst.transport.abort()  # a reset on one side is a reset on the other
            else:
                dst.close()  # a clean end: what was relayed is flushed first

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}
