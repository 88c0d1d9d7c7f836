"""One worker process of ``gwctl dataplane serve --workers N`` (started by :mod:`dataplane.workers`).

``python -m dataplane.worker`` reads one JSON line from stdin, the worker's
:class:`~dataplane.server.Settings` (:func:`settings_to_json`: secrets travel on this pipe, never in
argv or the environment), runs a :class:`~dataplane.server.DataPlane` on the listening socket the
role names, and writes ``ready`` to stdout once it listens. It drains and exits on SIGTERM/SIGINT,
and also when stdin reaches end of file: the supervisor holds that pipe open for the worker's
life, so a supervisor killed with SIGKILL leaves no worker behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from dataplane.server import DataPlane, Settings
from dataplane.workerrole import WorkerRole

log = logging.getLogger("tollgate.worker")


def settings_to_json(settings: Settings, log_level: str) -> str:
    out: dict[str, Any] = {"log_level": log_level}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, Path):
            value = str(value)
        elif f.name == "adopt_spools":
            value = [str(p) for p in value]
        elif isinstance(value, WorkerRole):
            value = dataclasses.asdict(value)
        elif f.name in ("env", "otlp_headers") and value is not None:
            value = dict(value)
        out[f.name] = value
    return json.dumps(out)


def settings_from_json(text: str) -> tuple[Settings, str]:
    raw: dict[str, Any] = json.loads(text)
    level = str(raw.pop("log_level", "INFO"))
    raw["state_dir"] = Path(raw["state_dir"])
    raw["adopt_spools"] = tuple(Path(p) for p in raw.get("adopt_spools", ()))
    if raw.get("worker") is not None:
        raw["worker"] = WorkerRole(**raw["worker"])
    return Settings(**raw), level


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
        raise SystemExit("dataplane.worker: no settings on stdin (it is started by --workers N)")
    settings, level = settings_from_json(line)
    index = settings.worker.index if settings.worker is not None else 0
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s %(levelname)s w{index} %(name)s: %(message)s",
    )
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
