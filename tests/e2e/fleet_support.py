"""The fleet test's traffic: a small concurrent client of the gateway, and what it saw.

Each worker has its own connection pool (keep-alive, as Claude Code) and loops over the virtual
keys in turn, sending streamed ``/v1/messages``. For every answer it records the gateway's
request id, the status, when the answer ended, and which data plane served it (the balancer's
route for the connection's source port). A 503 (a draining replica, or one whose counters are
unreachable) and a transport error are retried, as Claude Code retries them; a 429 (budget
spent) is final for that request.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from tests.e2e.balancer import RoundRobin
from tests.e2e.workers_support import per_worker

MODEL = "claude-sonnet-4-5-20250929"
BODY = orjson.dumps(
    {
        "model": MODEL,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "hello fleet"}],
    }
)


def headers(secret: str) -> dict[str, str]:
    return {
        "x-api-key": secret,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "x-claude-code-session-id": "fleet",
    }


@dataclass(frozen=True, slots=True)
class Answer:
    request_id: str
    key: str  # the secret's index in Traffic.keys
    status: int
    done: float  # time.monotonic() when the answer ended
    served_by: str  # the data plane's "host:port"
    connection: int = 0  # the balancer's number for the client connection (0: not known)


@dataclass
class Traffic:
    url: str
    balancer: RoundRobin
    keys: list[str]  # secrets; the workers use the first `rotating` (more may be added)
    rotating: int = 0
    answers: list[Answer] = field(default_factory=list)
    interrupted: set[str] = field(default_factory=set)  # headers came, then the stream broke
    transport_errors: int = 0
    incomplete: list[str] = field(default_factory=list)  # a 200 whose stream did not end well
    refusals: Counter[bytes] = field(default_factory=Counter)  # non-200 bodies, cut, counted
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, workers: int) -> None:
        self.rotating = self.rotating or len(self.keys)
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(workers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def ok(self) -> dict[str, Answer]:
        return {a.request_id: a for a in self.answers if a.status == 200}

    def count(self, status: int) -> int:
        return sum(1 for a in self.answers if a.status == status)

    async def _worker(self, index: int) -> None:
        n = index
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as client:
            while not self._stop.is_set():
                key = n % self.rotating
                n += 1
                await self.send(client, key, self.balancer.routes)

    async def send(
        self, client: httpx.AsyncClient, key: int, routes: dict[int, str] | None = None
    ) -> Answer | None:
        """One request; its answer is recorded (and returned) unless the transport failed."""
        try:
            async with client.stream(
                "POST", "/v1/messages", content=BODY, headers=headers(self.keys[key])
            ) as response:
                request_id = response.headers.get("x-tollgate-request-id", "")
                stream = response.extensions.get("network_stream")
                local = stream.get_extra_info("client_addr") if stream is not None else None
                try:
                    raw = await response.aread()
                except httpx.TransportError:
                    self.interrupted.add(request_id)
                    return None
        except httpx.TransportError:
            self.transport_errors += 1
            await asyncio.sleep(0.02)  # a retry's pause, as a client's backoff
            return None
        if response.status_code != 200:
            self.refusals[raw.split(b'"request_id"')[0][:200]] += 1
        if response.status_code == 200 and not raw.rstrip().endswith(
            b'data: {"type":"message_stop"}'
        ):
            self.incomplete.append(request_id)
        connection = 0
        if routes is None:
            served_by = str(client.base_url.netloc.decode())
        else:
            served_by = routes.get(local[1], "?") if local else "?"
            connection = self.balancer.connections.get(local[1], 0) if local else 0
        answer = Answer(
            request_id, str(key), response.status_code, time.monotonic(), served_by, connection
        )
        self.answers.append(answer)
        return answer


def worker_pid(state: Path, index: int) -> int:
    """The pid of worker ``index`` of the data plane on ``state`` (``--workers N``)."""
    return int((state / "workers" / str(index) / "pid").read_text())


def alive(pid: int) -> bool:
    """Running (not a zombie the supervisor has yet to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def all_workers_serve(url: str, workers: int) -> bool:
    """Every worker answers the gathered scrape and holds a snapshot."""
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            text = (await client.get("/metrics")).text
    except httpx.HTTPError:
        return False
    up = per_worker(text, "tollgate_worker_up")
    return (
        sum(up.values()) == workers and len(per_worker(text, "tollgate_snapshot_info")) == workers
    )


def tcp_peer_ports(pid: int, port: int) -> set[int]:
    """The remote ports of the IPv4 loopback TCP connections process ``pid`` holds on local
    ``port`` (from /proc: its socket inodes, matched in the namespace's table)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    peers = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        peer = int(remote.rpartition(":")[2], 16)
        if inode in inodes and int(local.rpartition(":")[2], 16) == port and peer:
            peers.add(peer)
    return peers


async def usage_backlog(url: str) -> float:
    """Usage events a data plane has yet to see acknowledged, summed over its workers."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        text = (await client.get("/metrics")).text
    return sum(per_worker(text, "tollgate_usage_backlog").values())
