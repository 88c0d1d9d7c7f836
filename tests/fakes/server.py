"""Serving a fake provider: Hypercorn on an ephemeral 127.0.0.1 port, started and stopped in-loop.

Subclasses implement the ASGI ``app``; ``lifespan`` is answered here so fakes only see HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any, Self

from hypercorn.asyncio import serve
from hypercorn.config import Config

from tests.fakes.strict import Strict, watch


async def read_body(receive: Any) -> bytes:
    """The whole body of an ASGI HTTP request, however many ``http.request`` messages carry it."""
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


class HeaderLookup:
    """For a recorded request keeping the raw ASGI ``headers``: one header's value by its
    lower-case name (the first, decoded as Latin-1), or None."""

    headers: list[tuple[bytes, bytes]]

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.decode().lower() == name:
                return v.decode("latin-1")
        return None


class LoopbackServer:
    port = 0
    _stop: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None
    _sock: socket.socket | None = None
    _started: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(512)
        self.port = self._sock.getsockname()[1]
        config = Config()
        # Hypercorn owns the fd and closes it when it stops: detach ours so that stop() never
        # closes the number a second time (by then it may be another test object's file).
        config.bind = [f"fd://{self._sock.detach()}"]
        config.accesslog = None
        config.graceful_timeout = 1
        self._task = asyncio.create_task(
            serve(self._asgi, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
        )
        # Serving once Hypercorn has run the lifespan startup (it listens right after; until
        # then the kernel queues connections on the socket, which is listening already). A
        # server that fails to start raises here.
        started = asyncio.ensure_future(self._started.wait())
        await asyncio.wait([started, self._task], return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            await self._task  # raises why it stopped
            raise RuntimeError(f"{type(self).__name__} stopped while starting")
        if isinstance(self, Strict):
            watch(self)

    async def __aenter__(self) -> Self:
        """Serving (:meth:`start`) inside the block, stopped (:meth:`stop`) on the way out."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        if self._sock is not None:
            with contextlib.suppress(OSError):  # Hypercorn may have closed the fd already
                self._sock.close()

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                    if self._started is not None:
                        self._started.set()
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await self.app(scope, receive, send)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise NotImplementedError
