"""The objects every servicer shares, bundled once by the server."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlmodel import Session

from controlplane.auth import Authenticator
from controlplane.catalog.common import now_ms
from controlplane.fanout import AuditHub, UsageHub
from controlplane.metrics import ControlPlaneMetrics, MetricsServer
from controlplane.services.registry import DataPlaneRegistry
from controlplane.settings import Settings
from controlplane.snapshots.cache import SnapshotCache
from controlplane.store.db import Database
from controlplane.usage.alert_monitor import AlertMonitor
from controlplane.usage.stats import StatsAggregator

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class AppState:
    settings: Settings
    db: Database
    cache: SnapshotCache
    alerts: AlertMonitor
    hub: UsageHub = field(default_factory=UsageHub)
    audit: AuditHub = field(default_factory=AuditHub)  # TailAudit followers
    stats: StatsAggregator = field(default_factory=StatsAggregator)  # live StreamStats
    registry: DataPlaneRegistry = field(default_factory=DataPlaneRegistry)
    health: Any = None  # grpc_health aio HealthServicer, set by the server
    tasks: list[Any] = field(default_factory=list)  # background asyncio tasks
    metrics: ControlPlaneMetrics = field(default_factory=ControlPlaneMetrics)
    metrics_server: MetricsServer | None = None  # with --metrics-listen
    authenticator: Authenticator | None = None  # the interceptor's (RevokeToken empties its cache)
    signin: Any = None  # controlplane.signin.engine.SignIn, set by the server
    fleet: Any = None  # controlplane.fleet.wiring.Fleet, set by the server

    @property
    def is_leader(self) -> bool:
        """Whether this replica runs the once-per-fleet work (alone, or elected)."""
        return self.fleet is None or bool(self.fleet.leader.is_leader)

    async def mutate(self, fn: Callable[[Session, int], T]) -> T:
        """Run ``fn(session, now_ms)`` in one committed transaction, then publish a new snapshot.

        The snapshot is rebuilt before returning, so when an admin call answers, connected data
        planes are already being sent the change. A failed rebuild does not fail the (committed)
        mutation: it is logged, and the periodic refresh retries it.
        """
        result = await self.change(fn)
        try:
            await self.cache.rebuild()
        except Exception:
            log.exception("snapshot rebuild after a mutation failed; will retry periodically")
        return result

    async def change(self, fn: Callable[[Session, int], T]) -> T:
        """Run ``fn(session, now_ms)`` in one committed transaction. For admin changes that data
        planes need not see (tokens); others: ``mutate``. The audit rows it records reach
        ``TailAudit`` followers of every replica through the fleet's audit feed
        (:mod:`controlplane.fleet.feeds`), once committed."""
        now = now_ms()
        return await self.db.run(lambda s: fn(s, now))
