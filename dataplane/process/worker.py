"""One worker process of ``gwctl dataplane serve --workers N`` (started by :mod:`dataplane.process.workers`).

``python -m dataplane.process.worker`` reads one JSON line from stdin, the worker's
:class:`~dataplane.process.server.Settings` (:func:`dataplane.process.settings.settings_to_json`: secrets travel on this pipe, never in
argv or the environment), runs a :class:`~dataplane.process.server.DataPlane` on the listening socket the
role names, and writes ``ready`` to stdout once it listens. It drains and exits on SIGTERM/SIGINT,
and also when stdin reaches end of file: the supervisor holds that pipe open for the worker's
life, so a supervisor killed with SIGKILL leaves no worker behind.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from dataplane.process.server import DataPlane, run_loop
from dataplane.process.settings import Settings, settings_from_json

log = logging.getLogger("tollgate.worker")


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def serve(settings: Settings) -> None:
    dp = DataPlane(settings)
    await dp.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    orphaned = asyncio.create_task(_stdin_closed())
    orphaned.add_done_callback(lambda _: stop.set())
    await stop.wait()
    if orphaned.done() and not orphaned.cancelled():
        log.warning("the supervisor is gone: draining and exiting")
    orphaned.cancel()
    await dp.stop()


def main() -> None:
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(
            "dataplane.process.worker: no settings on stdin (it is started by --workers N)"
        )
    settings, level = settings_from_json(line)
    index = settings.worker.index if settings.worker is not None else 0
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s %(levelname)s w{index} %(name)s: %(message)s",
    )
    run_loop(serve(settings))


if __name__ == "__main__":
    main()
