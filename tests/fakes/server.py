"""Serving a fake provider: Hypercorn on an ephemeral 127.0.0.1 port, started and stopped in-loop.

Subclasses implement the ASGI ``app``; ``lifespan`` is answered here so fakes only see HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config


class LoopbackServer:
    port = 0
    _stop: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None
    _sock: socket.socket | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._stop = asyncio.Event()
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
        await asyncio.sleep(0.05)

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
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await self.app(scope, receive, send)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise NotImplementedError
