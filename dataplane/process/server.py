"""Run a data plane: Hypercorn serving the ASGI app, plus the snapshot and usage loops.

``gwctl dataplane serve --listen HOST:PORT --control-plane HOST:PORT [--state-dir DIR]
[--public-url https://…]`` calls :func:`main` (``--public-url``: the URL developers sign in to
with Claude Code, see :mod:`dataplane.edge.signin`). Tests and benchmarks use :class:`DataPlane` directly (``await dp.start()``; port 0
picks a free port, read back from ``dp.port``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config

from dataplane.edge.app import Health, build_app
from dataplane.edge.metrics import Metrics
from dataplane.edge.signin.client import SignInClient
from dataplane.edge.signin.context import SignInContext
from dataplane.edge.signin.publicurl import (
    PublicUrl,
    listener_is_loopback,
    parse_public_url,
)
from dataplane.edge.signin.routes import SignInRoutes
from dataplane.policy.breaker import CircuitBreaker
from dataplane.policy.cache_store import MemoryCache, RedisCache
from dataplane.policy.counters.base import Counters
from dataplane.policy.counters.memory import MemoryCounters
from dataplane.policy.counters.redis import RedisCounters
from dataplane.policy.limits import Limiter
from dataplane.policy.routing import Router
from dataplane.policy.runtime import SnapshotHolder
from dataplane.private import private_dir
from dataplane.process import gctune, hangup
from dataplane.process.heapsnap import HeapSnapshots
from dataplane.process.looplag import LoopLag
from dataplane.process.metrics_peers import MetricsPeers
from dataplane.process.settings import (  # re-exported: Settings and the flag checks live there
    DEFAULT_MAX_BODY,
    OTLP_ENDPOINT_ENV,
    Settings,
    otlp_headers_from_env,
    parse_otlp_endpoint,
)
from dataplane.process.settings import node_id as _node_id
from dataplane.process.supervise import supervise
from dataplane.process.workerrole import BACKLOG, bind_listener
from dataplane.providers.registry import ProviderRegistry, shared_transport
from dataplane.sync.breaker_sync import BreakerSync
from dataplane.sync.reporter import Reporter
from dataplane.sync.spool import Spool
from dataplane.sync.subscriber import Subscriber
from dataplane.telemetry.service import TelemetryService
from gwapi.v1 import telemetry_pb2, telemetry_pb2_grpc
from gwcommon.tls import read_ca

if TYPE_CHECKING:
    from dataplane.edge.tracing.spans import Tracer

log = logging.getLogger("tollgate.dataplane")

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


class DataPlane:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Validated here too (main() already did), so a bad URL never reaches a redirect.
        self.public_url = PublicUrl(
            parse_public_url(settings.public_url) if settings.public_url else "",
            listener_is_loopback(settings.listen),
        )
        state_dir = settings.state_dir
        private_dir(state_dir)  # 0700: the spool may hold prompts (full body logging)
        role = settings.worker
        self.node_id = role.node_id if role is not None else _node_id(state_dir)
        # Each snapshot is compiled, adapters included, into the runtime requests pin.
        self.holder = SnapshotHolder(ProviderRegistry(shared_transport(), settings.env))
        # One set of breakers per data plane: the attempt chain orders targets with them and
        # feeds them; they are reported (and shared through Redis when configured).
        self.breaker = CircuitBreaker()
        self.router = Router()
        self.health = Health(self.holder)
        self._channel: grpc.aio.Channel | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[None]] = []
        self.peers: MetricsPeers | None = None
        self._stop = asyncio.Event()
        self._socket: socket.socket | None = None
        self.port = 0
        self.spool = Spool(state_dir / "spool")
        self.reporter: Reporter | None = None
        # Spools left by workers that no longer run: only replayed (nothing new goes there).
        self.adopted = [
            Reporter(Spool(path), self._send_batch, self.node_id) for path in settings.adopt_spools
        ]
        self.counters: Counters = (
            RedisCounters.from_url(settings.redis_url, prefix=settings.redis_prefix)
            if settings.redis_url
            else MemoryCounters()
        )
        self.limiter = Limiter(self.counters)
        # Response cache: shared through Redis with the counters when configured.
        self.cache: MemoryCache | RedisCache = (
            RedisCache.from_url(settings.redis_url, prefix=settings.redis_prefix)
            if settings.redis_url
            else MemoryCache()
        )
        self.subscriber: Subscriber | None = None
        self.telemetry: TelemetryService | None = None
        self.tracer: Tracer | None = None
        if settings.otlp_endpoint:  # the SDK is loaded only by a data plane that traces
            from dataplane.edge.tracing.spans import Tracer

            self.tracer = Tracer(settings.otlp_endpoint, self.node_id, settings.otlp_headers)
        # Background loops restarted by dataplane.process.supervise when they die: name -> restarts.
        self.restarts: dict[str, int] = {}
        self.metrics = Metrics(
            breaker_states=self.breaker.states,
            snapshot_version=lambda: s.version if (s := self.holder.current) else None,
            backlog=lambda: (
                (self.reporter.backlog if self.reporter is not None else 0)
                + sum(a.backlog for a in self.adopted)
            ),
            spool_state=self._spool_state,
            quarantined=lambda: self.spool.quarantined,
            restarts=lambda: dict(self.restarts),
        )
        # Event-loop lag on /metrics: whether this worker's loop keeps up (sampled from start()).
        self.loop_lag = LoopLag()
        self.loop_lag.register(self.metrics.registry)
        # Heap snapshots on SIGUSR2, only when TOLLGATE_TRACEMALLOC asks (a bad value fails here).
        self.heap = HeapSnapshots.from_env(
            settings.env if settings.env is not None else os.environ, state_dir
        )
        # Breakers shared with the other data planes in the background (decisions stay local).
        self.breaker_sync: BreakerSync | None = (
            BreakerSync.from_url(settings.redis_url, self.breaker, prefix=settings.redis_prefix)
            if settings.redis_url
            else None
        )

    def _spool_state(self) -> tuple[int, int, int]:
        dropped = self.spool.dropped + (self.reporter.dropped if self.reporter is not None else 0)
        return int(self.spool.write_failing), self.spool.memory_only, dropped

    async def _send_batch(self, request: telemetry_pb2.ReportUsageRequest) -> int:
        assert self._channel is not None
        stub = telemetry_pb2_grpc.TelemetryStub(self._channel)
        response = await stub.ReportUsage(
            request,
            metadata=(("authorization", f"Bearer {self.settings.token}"),),
            timeout=10,
        )
        return int(response.acked_seq)

    async def _send_activity(
        self, request: telemetry_pb2.ReportActivityRequest
    ) -> telemetry_pb2.ReportActivityResponse:
        assert self._channel is not None
        stub = telemetry_pb2_grpc.TelemetryStub(self._channel)
        response: telemetry_pb2.ReportActivityResponse = await stub.ReportActivity(
            request,
            metadata=(("authorization", f"Bearer {self.settings.token}"),),
            timeout=10,
        )
        return response

    def _bind(self) -> socket.socket:
        role = self.settings.worker
        if role is not None and role.listen_fd >= 0:  # the supervisor's socket, inherited
            return socket.socket(fileno=role.listen_fd)
        return bind_listener(self.settings.listen, reuse_port=role is not None)

    async def start(self) -> None:
        s = self.settings
        # One channel (TLS with tls_ca) for the snapshot stream and the usage reporter alike.
        ca = read_ca(s.tls_ca)
        self._channel = (
            grpc.aio.insecure_channel(s.control_plane, options=CHANNEL_OPTIONS)
            if ca is None
            else grpc.aio.secure_channel(
                s.control_plane,
                grpc.ssl_channel_credentials(root_certificates=ca),
                options=CHANNEL_OPTIONS,
            )
        )
        self._socket = self._bind()
        self.port = self._socket.getsockname()[1]
        listen = f"{s.listen.rpartition(':')[0]}:{self.port}"  # the real port when asked for :0
        self.subscriber = Subscriber(
            self._channel,
            s.token,
            self.holder,
            s.state_dir,
            self.node_id,
            listen,
            status=self.breaker.states,
            quarantined=lambda: self.spool.quarantined,
            tls=bool(s.tls_ca),
        )
        role = s.worker
        root = s.state_dir.parent.parent  # a worker's directory is STATE/workers/<i>
        self.subscriber.load_cached(
            [root, *sorted((root / "workers").glob("*"))] if role is not None else ()
        )
        self.reporter = Reporter(self.spool, self._send_batch, self.node_id)
        # Sign-in: every step is one SignIn call over the same channel, data-plane token.
        signin = SignInRoutes(
            SignInContext(
                self.holder,
                SignInClient(self._channel, s.token),
                self.public_url,
                self.metrics.signin,
            )
        )
        self.telemetry = TelemetryService(self._send_activity, self.node_id, self.metrics.registry)
        app = build_app(
            self.holder,
            self.router,
            self.breaker,
            self.reporter.record,
            self.node_id,
            s.max_body,
            self.health,
            self.limiter,
            self.cache,
            self.metrics,
            body_timeout_s=s.body_timeout_s,
            signin=signin,
            otlp=self.telemetry.handler,
            tracer=self.tracer,
        )
        # Hypercorn owns the listening fd from here on and closes it at shutdown. Detach ours:
        # closing it again later would close whatever file reused that number meanwhile (seen:
        # the usage spool's segment, mid-write, during a drain).
        config = http_config(self._socket.detach(), s.keep_alive_s, s.graceful_s)
        self._tasks = [
            asyncio.create_task(
                supervise("snapshot-watch", self.subscriber.run, self.restarts),
                name="snapshot-watch",
            ),
            asyncio.create_task(
                supervise("usage-reporter", self.reporter.run, self.restarts),
                name="usage-reporter",
            ),
            asyncio.create_task(
                serve(app, config, shutdown_trigger=self._stop.wait, mode="asgi"),  # type: ignore[arg-type]
                name="http",
            ),
        ]
        self._background.append(asyncio.create_task(self.loop_lag.run(), name="loop-lag"))
        for i, adopted in enumerate(self.adopted):
            name = f"usage-reporter-adopted-{i}"
            self._background.append(
                asyncio.create_task(supervise(name, adopted.run, self.restarts), name=name)
            )
        if self.settings.worker is not None:
            self.peers = MetricsPeers(self.settings.worker, self.metrics)
            await self.peers.start()
        if self.breaker_sync is not None:
            self.breaker_sync.start()
        self.telemetry.start()
        if self.heap is not None:
            self.heap.install(asyncio.get_running_loop())
        log.info(
            "data plane %s listening on %s:%d", self.node_id, s.listen.rpartition(":")[0], self.port
        )

    async def wait_for_snapshot(self, timeout: float = 10.0) -> None:
        async def poll() -> None:
            while self.holder.current is None:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(poll(), timeout)

    async def stop(self) -> None:
        """Drain: report unhealthy, stop accepting, finish in-flight requests, flush usage."""
        self.health.draining = True
        if self.heap is not None:
            self.heap.uninstall(asyncio.get_running_loop())
        if self.settings.drain_seconds:
            await asyncio.sleep(self.settings.drain_seconds)
        self._stop.set()
        http = self._tasks[2] if len(self._tasks) == 3 else None
        if http is not None:
            try:
                await asyncio.wait_for(http, timeout=self.settings.graceful_s + 5)
            except (TimeoutError, asyncio.CancelledError):
                pass
        for task in (*self._tasks[:2], *self._background):
            task.cancel()
        await asyncio.gather(*self._tasks[:2], *self._background, return_exceptions=True)
        if self.peers is not None:
            await self.peers.stop()
        if self.reporter is not None:
            await self.reporter.flush(timeout=5)
        for adopted in self.adopted:
            await adopted.flush(timeout=2)
        if self.telemetry is not None:
            await self.telemetry.stop(timeout=4)
        if self.tracer is not None:
            await self._stop_tracer(self.tracer, self.settings.otlp_flush_s)
        if self.breaker_sync is not None:
            await self.breaker_sync.stop()
        await self.holder.aclose()
        await self.limiter.aclose()
        await self.counters.aclose()
        if isinstance(self.cache, RedisCache):
            await self.cache.aclose()
        if self._channel is not None:
            await self._channel.close()
        if self._socket is not None:
            with contextlib.suppress(OSError):  # detached once Hypercorn has it: then a no-op
                self._socket.close()

    async def _stop_tracer(self, tracer: Tracer, timeout: float) -> None:
        if not await tracer.aclose(timeout):
            log.warning("tracing: spans still queued after %.0f s were not exported", timeout)


_T = TypeVar("_T")


def http_config(fd: int, keep_alive_s: float, graceful_s: float) -> Config:
    """Hypercorn's configuration for serving on the listening socket ``fd`` (which it then owns),
    with the hang-up fix installed: the data plane's, and the benchmarks' bare relay's (so the
    frameworks' floor is measured on the same server settings)."""
    hangup.install()  # a client's FIN closes its idle connection now, not 75 s later
    config = Config()
    config.bind = [f"fd://{fd}"]
    # Hypercorn calls listen() again on that fd with its own backlog (100 by default), which
    # would undo ours: at a few hundred connections opened at once (an agent fleet starting,
    # a deploy) the accept queue overflowed and clients saw resets.
    config.backlog = BACKLOG
    config.accesslog = None
    config.errorlog = logging.getLogger("tollgate.http")
    config.keep_alive_timeout = keep_alive_s
    config.graceful_timeout = graceful_s
    config.include_server_header = False
    config.h11_max_incomplete_size = 64 * 1024
    return config


def run_loop(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run`` for a data-plane process, on uvloop: the event loop's own bookkeeping
    (ready queue, selector, transports' writes) is a large share of a request's CPU on asyncio's
    pure-Python loop, and libuv's costs less per request (``make bench``). Everything the data
    plane runs (Hypercorn, aiohttp, grpc.aio, signal handlers) is plain asyncio on top of it."""
    gctune.settle()  # everything imported so far lives as long as the process
    return uvloop.run(main)


async def run(settings: Settings) -> None:
    dp = DataPlane(settings)
    await dp.start()
    # Start-up's long-lived objects out of the collector's way once the snapshot is in.
    settled = asyncio.create_task(gctune.settle_after(dp.wait_for_snapshot(timeout=60)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    settled.cancel()
    log.info("shutting down: draining in-flight requests")
    await dp.stop()


from dataplane.process.cli import main  # noqa: E402  (`gwctl dataplane serve`; cli imports this lazily)

__all__ = [
    "DEFAULT_MAX_BODY",
    "OTLP_ENDPOINT_ENV",
    "DataPlane",
    "Settings",
    "main",
    "otlp_headers_from_env",
    "parse_otlp_endpoint",
    "run",
]
