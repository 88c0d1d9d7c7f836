"""A real control plane in a background thread, for CLI tests that run ``gwctl.main.main`` (which
owns its own event loop) on the test thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from controlplane import server as server_mod
from controlplane.settings import Settings


@contextlib.contextmanager
def threaded_control_plane(settings: Settings) -> Iterator[str]:
    """Yields the running control plane's address; stops it and its loop on exit."""
    ready = threading.Event()
    box: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        try:
            async with server_mod.running(settings) as running:
                box["address"] = running.address
                box["stop"] = asyncio.Event()
                ready.set()
                await box["stop"].wait()
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "control plane did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield box["address"]
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(15)
        loop.close()
