"""Run a data plane: Hypercorn serving the ASGI app, plus the snapshot and usage loops.

``gwctl dataplane serve --listen HOST:PORT --control-plane HOST:PORT [--state-dir DIR]
[--public-url https://…]`` calls :func:`main` (``--public-url``: the URL developers sign in to
with Claude Code, see :mod:`dataplane.signin`). Tests and benchmarks use :class:`DataPlane` directly (``await dp.start()``; port 0
picks a free port, read back from ``dp.port``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import grpc
from hypercorn.asyncio import serve
from hypercorn.config import Config

from dataplane.app import Health, build_app
from dataplane.breaker_sync import BreakerSync
from dataplane.cache_store import MemoryCache, RedisCache
from dataplane.counters.base import Counters
from dataplane.counters.memory import MemoryCounters
from dataplane.counters.redis import RedisCounters
from dataplane.limits import Limiter
from dataplane.metrics import Metrics
from dataplane.metrics_peers import MetricsPeers
from dataplane.private import make_private, private_dir, write_atomic
from dataplane.providers.registry import ProviderRegistry, shared_transport
from dataplane.reporter import Reporter
from dataplane.routing import Router
from dataplane.signin.client import SignInClient
from dataplane.signin.context import SignInContext
from dataplane.signin.publicurl import (
    PUBLIC_URL_ENV,
    PublicUrl,
    listener_is_loopback,
    parse_public_url,
)
from dataplane.signin.routes import SignInRoutes
from dataplane.snapshot import SnapshotHolder
from dataplane.spool import Spool
from dataplane.subscriber import Subscriber
from dataplane.supervise import supervise
from dataplane.telemetry.service import TelemetryService
from dataplane.workerrole import WorkerRole, bind_listener
from gwapi.v1 import telemetry_pb2, telemetry_pb2_grpc
from gwcommon.secret_files import read_secret_file
from gwcommon.tls import TLS_CA_ENV, read_ca

if TYPE_CHECKING:
    from dataplane.tracing.spans import Tracer

OTLP_ENDPOINT_ENV = "TOLLGATE_OTLP_ENDPOINT"

log = logging.getLogger("tollgate.dataplane")

DEFAULT_MAX_BODY = 32 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:8080"
    control_plane: str = "127.0.0.1:50051"
    token: str = ""
    state_dir: Path = Path(".tollgate/dataplane")
    max_body: int = DEFAULT_MAX_BODY
    # PEM CA that signed the control plane's certificate: talk to it over TLS ("" = plaintext).
    tls_ca: str = ""
    drain_seconds: float = 0.0  # how long /healthz reports draining before the listener closes
    # Slow clients: a connection must complete its request headers (or, idle between requests,
    # start the next one) within keep_alive_s, and a request's body must be complete within
    # body_timeout_s of its start (408 otherwise); either way the connection is freed.
    keep_alive_s: float = 75.0
    body_timeout_s: float = 60.0
    # How long in-flight requests may run on after the listener closed (SIGTERM, stop()).
    graceful_s: float = 30.0
    # Shared counters for budgets and rate limits across replicas; "" = in-process (one replica).
    redis_url: str = field(default="", repr=False)
    redis_prefix: str = "tollgate:"
    env: Mapping[str, str] | None = field(default=None, repr=False)
    # The URL developers sign in to with Claude Code (https://gw.example.com). "" = derived from
    # the request's Host, on a loopback listener only; elsewhere sign-in then says to set it.
    public_url: str = ""
    # The gateway's own traces (dataplane.tracing): an OTLP/HTTP collector's base URL, and the
    # headers its exports carry (an API key: never on the command line). "" = no tracing.
    otlp_endpoint: str = ""
    otlp_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    otlp_flush_s: float = 5.0  # at stop, how long queued spans may take to reach the collector
    # One worker of `--workers N` (dataplane.workers): its index, the listening socket it
    # inherited (or SO_REUSEPORT), its own node id, and the peers /metrics gathers from.
    worker: WorkerRole | None = None
    # Spools of workers that no longer run (another --workers count before): replayed too.
    adopt_spools: tuple[Path, ...] = ()


def parse_otlp_endpoint(url: str) -> str:
    """``--otlp-endpoint``: an http(s) URL with a host; refused with a readable reason."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"--otlp-endpoint must be an http:// or https:// URL of an OTLP/HTTP collector, "
            f"e.g. http://127.0.0.1:4318 (got {url[:100]!r})"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(
            "--otlp-endpoint takes no query, fragment or credentials: put an API key in a "
            "variable named by --otlp-headers-env"
        )
    return url


def otlp_headers_from_env(var: str, env: Mapping[str, str]) -> dict[str, str]:
    """The headers in ``env[var]``, ``k=v,k2=v2`` as ``OTEL_EXPORTER_OTLP_HEADERS`` (values
    URL-encoded)."""
    from opentelemetry.util.re import parse_env_headers

    value = env.get(var, "")
    if not value:
        raise ValueError(f"--otlp-headers-env names {var}, which is not set or empty")
    headers = dict(parse_env_headers(value, liberal=True))
    if not headers:
        raise ValueError(f"{var} holds no header: write it as name=value[,name2=value2]")
    return headers


def _node_id(state_dir: Path) -> str:
    """A stable identity for this replica, kept across restarts."""
    path = state_dir / "node-id"
    try:
        node = path.read_text().strip()
        make_private(path)
        return node
    except FileNotFoundError:
        node = "dp-" + uuid.uuid4().hex[:12]
        write_atomic(path, node.encode())
        return node


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
        self.holder = SnapshotHolder()
        self.registry = ProviderRegistry(shared_transport(), settings.env)
        self.holder.on_swap(self.registry.update)
        self.router = Router(self.registry)  # one per data plane: its breakers are reported
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
            from dataplane.tracing.spans import Tracer

            self.tracer = Tracer(settings.otlp_endpoint, self.node_id, settings.otlp_headers)
        # Background loops restarted by dataplane.supervise when they die: name -> restarts.
        self.restarts: dict[str, int] = {}
        self.metrics = Metrics(
            breaker_states=self.router.breaker_states,
            snapshot_version=lambda: s.version if (s := self.holder.current) else None,
            backlog=lambda: (
                (self.reporter.backlog if self.reporter is not None else 0)
                + sum(a.backlog for a in self.adopted)
            ),
            spool_state=self._spool_state,
            quarantined=lambda: self.spool.quarantined,
            restarts=lambda: dict(self.restarts),
        )
        # Breakers shared with the other data planes in the background (decisions stay local).
        self.breaker_sync: BreakerSync | None = (
            BreakerSync.from_url(
                settings.redis_url, self.router.breaker, prefix=settings.redis_prefix
            )
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
            status=self.router.breaker_states,
            quarantined=lambda: self.spool.quarantined,
            tls=bool(s.tls_ca),
        )
        self.subscriber.load_cached()
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
        config = Config()
        # Hypercorn owns the listening fd from here on and closes it at shutdown. Detach ours:
        # closing it again later would close whatever file reused that number meanwhile (seen:
        # the usage spool's segment, mid-write, during a drain).
        config.bind = [f"fd://{self._socket.detach()}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("tollgate.http")
        config.keep_alive_timeout = s.keep_alive_s
        config.graceful_timeout = s.graceful_s
        config.include_server_header = False
        config.h11_max_incomplete_size = 64 * 1024
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
                serve(app, config, shutdown_trigger=self._stop.wait),  # type: ignore[arg-type]
                name="http",
            ),
        ]
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
        await self.registry.aclose()
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


async def run(settings: Settings) -> None:
    dp = DataPlane(settings)
    await dp.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining in-flight requests")
    await dp.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gwctl dataplane serve", description=__doc__)
    parser.add_argument("--listen", default=os.environ.get("TOLLGATE_LISTEN", "127.0.0.1:8080"))
    parser.add_argument(
        "--control-plane", default=os.environ.get("TOLLGATE_CONTROL_PLANE", "127.0.0.1:50051")
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        default=os.environ.get("TOLLGATE_DATAPLANE_TOKEN_FILE", ""),
        help="file (mode 0600) holding the data-plane token (env TOLLGATE_DATAPLANE_TOKEN_FILE, "
        "or the token itself in TOLLGATE_DATAPLANE_TOKEN)",
    )
    # The old value-taking flag: refused, since `ps` and shell history would show the token.
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", type=Path, default=Path(".tollgate/dataplane"))
    parser.add_argument(
        "--tls-ca",
        default=os.environ.get(TLS_CA_ENV, ""),
        help=f"connect to the control plane over TLS, trusting this PEM CA (env {TLS_CA_ENV})",
    )
    parser.add_argument("--max-body-mb", type=int, default=DEFAULT_MAX_BODY // (1024 * 1024))
    parser.add_argument("--drain-seconds", type=float, default=2.0)
    parser.add_argument(
        "--keep-alive-s",
        type=float,
        default=75.0,
        help="close a connection idle this long, or whose request headers are still incomplete",
    )
    parser.add_argument(
        "--body-timeout-s",
        type=float,
        default=60.0,
        help="answer 408 and close when a request body is not complete this long after its start",
    )
    parser.add_argument(
        "--graceful-s",
        type=float,
        default=30.0,
        help="on SIGTERM, how long in-flight requests may finish after the listener closed",
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get("TOLLGATE_REDIS", ""),
        help="redis://… shared by all data planes for budgets and rate limits "
        "(env TOLLGATE_REDIS; default: in-process counters, for a single data plane)",
    )
    parser.add_argument("--redis-prefix", default="tollgate:")
    parser.add_argument(
        "--public-url",
        default=os.environ.get(PUBLIC_URL_ENV, ""),
        help="the URL developers sign in to with Claude Code, e.g. https://gw.example.com "
        f"(env {PUBLIC_URL_ENV}); its /oauth/callback is the redirect URI to register at the "
        "identity provider. Without it, only a data plane listening on loopback serves sign-in",
    )
    parser.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        default=os.environ.get(OTLP_ENDPOINT_ENV, ""),
        help="trace the gateway itself: export one span tree per request over OTLP/HTTP to this "
        f"collector, e.g. http://127.0.0.1:4318 (env {OTLP_ENDPOINT_ENV}; default: no tracing)",
    )
    parser.add_argument(
        "--otlp-headers-env",
        metavar="VAR",
        default="",
        help="the environment variable holding the collector's headers, name=value[,…] "
        "(e.g. an API key; OTEL_EXPORTER_OTLP_HEADERS is read too)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ["TOLLGATE_WORKERS"]) if os.environ.get("TOLLGATE_WORKERS") else None,
        metavar="N",
        help="data-plane processes on the one listening port (env TOLLGATE_WORKERS; default: one "
        "per core with --redis, else 1: without Redis, limits cannot be exact across processes)",
    )
    parser.add_argument("--log-level", default=os.environ.get("TOLLGATE_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.token is not None:
        parser.error(
            "--token no longer takes the token on the command line (`ps` and shell history show "
            "it): set TOLLGATE_DATAPLANE_TOKEN or pass --token-file PATH (mode 0600)"
        )
    # Never the admin token: a data plane needs only Watch and ReportUsage.
    token = os.environ.get("TOLLGATE_DATAPLANE_TOKEN", "")
    if args.token_file:
        try:
            token = read_secret_file(args.token_file, "data-plane token")
        except ValueError as exc:
            parser.error(str(exc))
    if not token:
        parser.error(
            "a data-plane token is required: set TOLLGATE_DATAPLANE_TOKEN or pass --token-file "
            "PATH (the control plane's data-plane token, not the admin token)"
        )
    try:
        read_ca(args.tls_ca)  # a bad --tls-ca is a usage error, not a traceback
        public_url = parse_public_url(args.public_url) if args.public_url else ""
        otlp_endpoint = parse_otlp_endpoint(args.otlp_endpoint) if args.otlp_endpoint else ""
        otlp_headers = (
            otlp_headers_from_env(args.otlp_headers_env, os.environ)
            if args.otlp_headers_env
            else {}
        )
        if otlp_headers and not otlp_endpoint:
            raise ValueError("--otlp-headers-env needs --otlp-endpoint")
    except ValueError as exc:
        parser.error(str(exc))
    from dataplane.workers import cores, decide_workers, orphan_spools, run_workers

    try:
        workers, why = decide_workers(args.workers, bool(args.redis), cores())
    except ValueError as exc:
        parser.error(str(exc))
    settings = Settings(
        listen=args.listen,
        control_plane=args.control_plane,
        token=token,
        state_dir=args.state_dir,
        tls_ca=args.tls_ca,
        max_body=args.max_body_mb * 1024 * 1024,
        drain_seconds=args.drain_seconds,
        keep_alive_s=args.keep_alive_s,
        body_timeout_s=args.body_timeout_s,
        graceful_s=args.graceful_s,
        redis_url=args.redis,
        redis_prefix=args.redis_prefix,
        public_url=public_url,
        otlp_endpoint=otlp_endpoint,
        otlp_headers=otlp_headers,
    )
    log.info("running %s", why)
    if workers > 1:
        code = run_workers(settings, workers, args.log_level)
        if code:
            raise SystemExit(code)
        return
    # One process, no supervisor; it also replays spools a --workers N run left behind.
    settings = replace(settings, adopt_spools=tuple(orphan_spools(settings.state_dir, 1)[0]))
    asyncio.run(run(settings))
