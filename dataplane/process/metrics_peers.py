"""``/metrics`` across the workers of one data plane (``--workers N``).

A scrape lands on whichever worker the kernel hands the connection to, so every worker serves
its own registry on a private socket (a Linux abstract Unix socket named after the supervisor's
run, :meth:`WorkerRole.metrics_address`) and the scraped worker gathers all N: its own registry
in-process, the others over their sockets (in parallel, ``timeout`` each). Every sample gets a
``worker="<index>"`` label, so series stay distinct and a worker's restart is an ordinary counter
reset to Prometheus (``sum without (worker) (rate(...))`` is the data plane's total). One more
gauge, ``tollgate_worker_up{worker}``, says which workers answered: a scrape never silently shows
a subset. With one worker (no supervisor) nothing here runs and ``/metrics`` is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from dataplane.edge.metrics import Metrics
from dataplane.process.workerrole import WorkerRole

log = logging.getLogger("tollgate.metrics")

PEER_TIMEOUT_S = 2.0


def label_worker(text: bytes, index: int) -> dict[str, tuple[list[str], list[str]]]:
    """One worker's exposition, parsed into families: name -> (HELP/TYPE lines, samples with a
    ``worker`` label added). Relies on the renderer's shape (:mod:`gwcommon.prometheus`): each
    family's ``# HELP`` and ``# TYPE`` lines, then its samples."""
    families: dict[str, tuple[list[str], list[str]]] = {}
    current: tuple[list[str], list[str]] | None = None
    label = f'worker="{index}"'
    for line in text.decode().splitlines():
        if not line:
            continue
        if line.startswith("# "):
            parts = line.split(" ", 3)
            if parts[1] == "HELP" and len(parts) >= 3:
                current = families.setdefault(parts[2], ([], []))
                current[0].append(line)
            elif parts[1] == "TYPE" and current is not None:
                current[0].append(line)
            continue
        if current is None:
            continue
        brace, space = line.find("{"), line.find(" ")
        if 0 <= brace < space:  # name{labels} value: the first brace opens the label set
            current[1].append(f"{line[: brace + 1]}{label},{line[brace + 1 :]}")
        else:
            current[1].append(f"{line[:space]}{{{label}}}{line[space:]}")
    return families


def merge(parts: dict[int, bytes], count: int) -> bytes:
    """Workers' expositions as one: each family once, every worker's samples under it, and
    ``tollgate_worker_up`` for the ``count`` workers (1 for those in ``parts``)."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    for index in sorted(parts):
        for name, (head, samples) in label_worker(parts[index], index).items():
            family = out.setdefault(name, (head, []))
            family[1].extend(samples)
    lines: list[str] = []
    for head, samples in out.values():
        lines.extend(head)
        lines.extend(samples)
    lines.append(
        "# HELP tollgate_worker_up Whether the worker answered this scrape (1) or not (0)."
    )
    lines.append("# TYPE tollgate_worker_up gauge")
    lines.extend(
        f'tollgate_worker_up{{worker="{i}"}} {1 if i in parts else 0}' for i in range(count)
    )
    return ("\n".join(lines) + "\n").encode()


class MetricsPeers:
    """This worker's metrics socket, and the gathering scrape installed as ``metrics.scrape``."""

    def __init__(self, role: WorkerRole, metrics: Metrics, timeout: float = PEER_TIMEOUT_S) -> None:
        self.role = role
        self.metrics = metrics
        self.timeout = timeout
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        # Bound here, not by path=: uvloop refuses an abstract name as a path (EINVAL) but serves
        # and connects a socket bound to one.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.role.metrics_address(self.role.index))
        self._server = await asyncio.start_unix_server(self._serve, sock=sock)
        self.metrics.scrape = self.gather

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(self.metrics.render())
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _fetch(self, index: int) -> bytes | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(
                loop.sock_connect(sock, self.role.metrics_address(index)), self.timeout
            )
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        except (OSError, TimeoutError):
            sock.close()
            return None  # not running (restarting) or not answering: tollgate_worker_up 0
        try:
            return await asyncio.wait_for(reader.read(), self.timeout)  # to EOF
        except (OSError, TimeoutError):
            return None
        finally:
            writer.close()

    async def gather(self) -> bytes:
        others = [i for i in range(self.role.count) if i != self.role.index]
        fetched = await asyncio.gather(*(self._fetch(i) for i in others))
        parts = {i: text for i, text in zip(others, fetched, strict=True) if text}
        parts[self.role.index] = self.metrics.render()
        return merge(parts, self.role.count)
