"""The control plane process: one grpc.aio server with Admin, Discovery, Telemetry, health and
reflection, authenticated by :class:`~controlplane.auth.AuthInterceptor`.

Entry points:

* ``build_server(settings) -> (server, port, state)`` — open the database (schema at this
  release's revision, see :mod:`controlplane.store.schema`; seed prices), build the first snapshot, bind ``settings.listen``; the server is not started. Call it
  from a running event loop.
* ``start(server, state)`` / ``stop(server, state)`` — start serving plus background work
  (periodic snapshot refresh; the fleet bus and its followers; once per fleet, on the leader:
  log-body, sign-in and audit retention purges and budget alerts — :mod:`controlplane.fleet`;
  after ingest, a throttled spend refresh);
  graceful shutdown (health NOT_SERVING, Watch and tail streams ended, in-flight calls get
  ``shutdown_grace_s``, alert work stopped, database disposed).
* ``running(settings)`` — async context manager doing all of the above; yields :class:`Running`
  (``port``, ``address``, ``state``, ``server``). Handy for tests and embedding.
* ``serve(settings)`` — run until SIGTERM/SIGINT. ``main(argv)`` — the command line.

With ``tls_cert``/``tls_key`` the port serves TLS only (:func:`server_credentials`). The master
key (:mod:`controlplane.secrets`) is loaded before anything else, so a bad one stops the start
with its message; stored secrets it cannot decrypt are logged and left out of snapshots. Secrets
under a previous master key (``--previous-master-key-file``) are re-encrypted under the current
one once the database is open and before anything is served (:func:`reencrypt_secrets`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy.exc import IntegrityError

from controlplane import identity
from controlplane.auth import Authenticator, AuthInterceptor
from controlplane.catalog import prices, providers, telemetry_destinations
from controlplane.catalog.common import now_ms
from controlplane.domain.pricing import load_default_prices, load_default_tool_rates
from controlplane.fleet import wiring as fleet
from controlplane.metrics import ControlPlaneMetrics, MetricsServer
from controlplane.secrets import MasterKey, load_master_key
from controlplane.services.admin import AdminService
from controlplane.services.discovery import DiscoveryService
from controlplane.services.signin import SignInService
from controlplane.services.state import AppState
from controlplane.services.telemetry import TelemetryService
from controlplane.settings import Settings
from controlplane.signin import reencrypt as signin_reencrypt
from controlplane.signin.engine import SignIn
from controlplane.snapshots.cache import SnapshotCache
from controlplane.store.db import Database, redact_url
from controlplane.store.schema import SchemaError
from controlplane.usage import rebuild
from controlplane.usage.alert_monitor import AlertMonitor
from controlplane.usage.spend import BudgetSpend
from gwapi.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    discovery_pb2,
    discovery_pb2_grpc,
    signin_pb2,
    signin_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
)
from gwcommon.tasks import cancel_and_wait
from gwcommon.usage_limits import MAX_MESSAGE_BYTES

log = logging.getLogger("controlplane")

# Who the audit log names for changes the control plane makes on its own at start.
SYSTEM = identity.Principal(
    id="system", name="control plane (startup)", role=identity.TokenRole.ADMIN
)

SERVICE_NAMES = (
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
    discovery_pb2.DESCRIPTOR.services_by_name["Discovery"].full_name,
    telemetry_pb2.DESCRIPTOR.services_by_name["Telemetry"].full_name,
    signin_pb2.DESCRIPTOR.services_by_name["SignIn"].full_name,
)
SERVER_OPTIONS = [
    # Ping idle connections so long-lived Watch streams survive NAT/load-balancer idle timeouts
    # and dead peers are noticed; let clients ping us as often as every 10 s.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    # Snapshots and usage batches can be large.
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),  # data planes batch far below it
]


def open_database(url: str, *, migrate: bool = False) -> Database:
    """Bring the schema to this release's revision (an empty database is initialised; one behind
    is upgraded only when ``migrate``, else :class:`SchemaError`), then seed the default prices
    (existing rows are never overwritten)."""
    db = Database(url)
    try:
        schema = db.prepare_schema(migrate=migrate)
    except BaseException:
        db.dispose()
        raise
    log.info(
        "database schema at revision %s (this release's head: %s)", schema.current, schema.head
    )
    # A database from before the ledger's totals (an upgrade): the leader's reconciler fills
    # them in the background (start-up does not wait for it).
    rebuild.ensure_built(db)
    defaults = load_default_prices()
    tools = load_default_tool_rates()
    for attempt in (1, 2):
        try:
            added = db.run_sync(lambda s: prices.seed(s, defaults, now_ms(), tools))
            break
        except IntegrityError:  # another replica seeded at the same moment: re-read and retry
            if attempt == 2:
                raise
    if added:
        log.info("seeded %d default prices", len(added))
    return db


def reencrypt_secrets(db: Database, master: MasterKey | None) -> list[str]:
    """Re-encrypt every stored secret under a previous master key with the current one, in one
    transaction audited as :data:`SYSTEM`; returns the providers rewritten (none without
    previous keys, and none on a second start)."""
    if master is None or not master.previous_ids:
        return []
    token = identity.current.set(SYSTEM)
    try:
        # One transaction for every stored secret: providers', telemetry collectors' and
        # sign-in's.
        names, destinations, signin_secrets = db.run_sync(
            lambda s: (
                providers.reencrypt_secrets(s, master, now_ms()),
                telemetry_destinations.reencrypt_secrets(s, master, now_ms()),
                signin_reencrypt.reencrypt(s, master, now_ms()),
            )
        )
    finally:
        identity.current.reset(token)
    if destinations:
        log.info(
            "re-encrypted the header values of %d telemetry destination(s) under master key %s",
            len(destinations),
            master.key_id,
        )
    if signin_secrets:
        log.info(
            "re-encrypted %d sign-in secret(s) (SSO client secret, signing keys) under master key %s",
            signin_secrets,
            master.key_id,
        )
    if names:
        log.info(
            "re-encrypted %d stored provider secret(s) under master key %s (previous key ids %s)",
            len(names),
            master.key_id,
            ", ".join(master.previous_ids),
        )
    else:
        log.info(
            "no stored provider secret is under a previous master key (%s): once every replica "
            "runs with master key %s, the previous keys can be dropped and destroyed",
            ", ".join(master.previous_ids),
            master.key_id,
        )
    return names


def server_credentials(cert_file: str, key_file: str) -> grpc.ServerCredentials:
    """TLS credentials from PEM files; ``ValueError`` naming the file that cannot be read."""
    pem: dict[str, bytes] = {}
    for what, path in (("--tls-cert", cert_file), ("--tls-key", key_file)):
        try:
            with open(path, "rb") as f:
                pem[what] = f.read()
        except OSError as exc:
            raise ValueError(f"cannot read {what} {path}: {exc.strerror}") from None
        if b"-----BEGIN" not in pem[what]:
            raise ValueError(f"{what} {path} is not a PEM file")
    return grpc.ssl_server_credentials([(pem["--tls-key"], pem["--tls-cert"])])


def build_server(settings: Settings) -> tuple[grpc.aio.Server, int, AppState]:
    settings.validate()
    master = load_master_key(
        settings.master_key,
        settings.master_key_file,
        settings.previous_master_key,
        settings.previous_master_key_files,
    )
    tls = server_credentials(settings.tls_cert, settings.tls_key) if settings.tls_cert else None
    db = open_database(settings.db_url, migrate=settings.migrate)
    try:
        reencrypt_secrets(db, master)
    except BaseException:
        db.dispose()
        raise
    cache = SnapshotCache(db, min_interval_s=settings.spend_refresh_s, master=master)
    metrics = ControlPlaneMetrics(
        watchers=lambda: state.registry.connected_count(), snapshot_version=lambda: cache.version
    )
    cache.on_build = metrics.snapshot_built
    cache.rebuild_sync()
    alerts = AlertMonitor(
        db,
        timeout_s=settings.webhook_timeout_s,
        attempts=settings.webhook_attempts,
        backoff_s=settings.webhook_backoff_s,
        max_delay_s=settings.webhook_max_delay_s,
        allow_internal=settings.allow_internal_webhooks,
    )
    authenticator = Authenticator(settings.admin_token, settings.dataplane_token, db)
    state = AppState(
        settings=settings,
        db=db,
        cache=cache,
        alerts=alerts,
        metrics=metrics,
        authenticator=authenticator,
    )

    def spend_seen(spends: Sequence[BudgetSpend], now: int) -> None:
        if state.is_leader:  # alerts are recorded once per fleet, by the leader
            alerts.observe(spends, now)

    cache.on_spend = spend_seen  # alerts use the spend the data planes are seeded with
    cache.spend_wanted = lambda: state.registry.connected_count() > 0 or state.is_leader
    alerts.feeder_idle = cache.drain
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(authenticator, db)],
        options=SERVER_OPTIONS,
    )
    # The telemetry-destination RPCs and ReportActivity come with the telemetry part of P1
    # (another branch); until it is merged their generated handlers answer UNIMPLEMENTED.
    admin = AdminService(state)
    admin_pb2_grpc.add_AdminServicer_to_server(admin, server)
    discovery_pb2_grpc.add_DiscoveryServicer_to_server(DiscoveryService(state), server)
    telemetry = TelemetryService(state)
    telemetry_pb2_grpc.add_TelemetryServicer_to_server(telemetry, server)
    state.signin = SignIn(state, master)
    signin_pb2_grpc.add_SignInServicer_to_server(SignInService(state.signin), server)
    state.health = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(state.health, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        if tls is None:
            port = server.add_insecure_port(settings.listen)
        else:
            port = server.add_secure_port(settings.listen, tls)
    except RuntimeError as exc:
        db.dispose()
        raise OSError(f"cannot listen on {settings.listen}: {exc}") from exc
    # Replicas on one database hear each other from here on (controlplane.fleet).
    state.fleet = fleet.build(state, leader_retry_s=settings.leader_retry_s)
    log.info(
        "database %s, snapshot %s, master key %s, %s",
        redact_url(db.url),
        cache.version or "<none>",
        master.key_id if master is not None else "<none: provider secrets cannot be stored>",
        "TLS" if tls is not None else "plaintext gRPC",
    )
    return server, port, state


async def start(server: grpc.aio.Server, state: AppState) -> None:
    await server.start()
    if state.settings.metrics_listen:
        state.metrics_server = MetricsServer(state.metrics, state.settings.metrics_listen)
        await state.metrics_server.start()
        log.info(
            "metrics on http://%s:%d/metrics",
            state.settings.metrics_listen.rpartition(":")[0],
            state.metrics_server.port,
        )
    for name in ("", *SERVICE_NAMES):
        await state.health.set(name, health_pb2.HealthCheckResponse.SERVING)
    state.tasks.append(
        asyncio.create_task(
            # A cheap catch-up every second (other replicas' changes); spend and signing keys
            # every snapshot_refresh_s.
            state.cache.refresh_forever(
                1.0,
                sweep_s=state.settings.snapshot_refresh_s,
                spend_sweep_s=state.settings.spend_sweep_s,
            ),
            name="snapshot-refresh",
        )
    )
    await fleet.start(state.fleet)
    days = state.settings.audit_retention_days
    if days:
        log.info("audit events older than %d days are purged hourly (by the leader)", days)
    else:
        log.info("audit log kept forever (set --audit-retention-days to purge old events)")


async def stop(server: grpc.aio.Server, state: AppState, grace: float | None = None) -> None:
    grace = state.settings.shutdown_grace_s if grace is None else grace
    await state.health.enter_graceful_shutdown()
    await fleet.stop(state.fleet, state.db.engine)  # leadership released first
    await state.cache.close()  # Watch streams end; data planes reconnect elsewhere / later
    state.hub.close()  # TailLogs follow streams end
    state.audit.close()  # TailAudit follow streams end
    for task in state.tasks:
        task.cancel()
    await server.stop(grace)
    for task in state.tasks:
        await cancel_and_wait(task)
    await state.alerts.close()
    await state.signin.close()
    if state.metrics_server is not None:
        await state.metrics_server.close()
    state.db.dispose()


@dataclass
class Running:
    server: grpc.aio.Server
    port: int
    state: AppState

    @property
    def address(self) -> str:
        host = self.state.settings.listen.rpartition(":")[0]
        return f"{host}:{self.port}"


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Running]:
    server, port, state = build_server(settings)
    await start(server, state)
    try:
        yield Running(server=server, port=port, state=state)
    finally:
        await stop(server, state)


async def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    async with running(settings) as r:
        log.info("control plane listening on %s", r.address)
        await stopping.wait()
        log.info("shutting down")


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Alembic narrates every step at INFO; controlplane.store.schema logs what matters.
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    # TOLLGATE_LOG_LEVEL=DEBUG, as for the data plane (an unknown name keeps INFO).
    level = logging.getLevelName(os.environ.get("TOLLGATE_LOG_LEVEL", "INFO").upper())
    configure_logging(level if isinstance(level, int) else logging.INFO)
    try:
        settings = Settings.from_args(argv)
        settings.validate()
    except ValueError as exc:
        print(f"tollgate control plane: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings))
    except (OSError, ValueError, SchemaError) as exc:
        print(f"tollgate control plane: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
