"""What each fleet topic does to a running control plane, and the once-per-fleet jobs.

:func:`build` (at server build, before anything is served) picks the bus and the leadership for
the database and binds the session hooks; :func:`start` / :func:`stop` run and end them.

=========  =====================================================================================
topic      on this replica
=========  =====================================================================================
config     another replica's change: ``SnapshotCache.rebuild()`` ("catch up with the database
           now"), coalesced (changes arriving during a rebuild cause one more, not one each)
tokens     another replica's change: the admin-token cache is emptied (a revocation holds here
           at once, and ends open streams within the interceptor's recheck)
audit      any replica's change: :class:`~controlplane.fleet.feeds.AuditFeed` reads the new rows
usage      another replica's ingest: :class:`~controlplane.fleet.feeds.UsageFeed` reads the
           named rows into TailLogs, StreamStats, alerts (leader only) and, while data planes
           are connected here, the throttled spend refresh (a replica without data planes
           leaves spend to its periodic refresh, so it does not rebuild every 2 s for nothing)
=========  =====================================================================================

Once per fleet (the leader): the ledger reconciler (usage events no replica counted into the
totals yet: :mod:`controlplane.usage.reconcile`), purges of logged bodies, of the audit log past its retention, of
sign-in's expired grants, and budget alert evaluation with its webhooks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from controlplane import audit_retention
from controlplane.fleet import topics
from controlplane.fleet.bus import FleetBus, LocalBus, Notice
from controlplane.fleet.feeds import AuditFeed, UsageFeed, Woken
from controlplane.fleet.leader import Leadership, PgLeader, SoleLeader
from controlplane.fleet.pg import PgBus
from controlplane.services.state import AppState
from controlplane.snapshots.cache import SnapshotCache
from controlplane.snapshots.spend_seeds import spend_scopes
from controlplane.usage import rebuild as ledger_rebuild
from controlplane.usage import reconcile
from controlplane.usage.request_logs import purge_forever
from controlplane.usage.totals import scopes_of
from gwapi.v1 import telemetry_pb2 as tpb

log = logging.getLogger(__name__)


class ConfigFollower(Woken):
    """Rebuilds the snapshot when woken; wake-ups during a rebuild coalesce into one more."""

    def __init__(self, cache: SnapshotCache) -> None:
        super().__init__("config-follow", poll_s=None)
        self._cache = cache

    async def step(self) -> None:
        woken = time.perf_counter()
        published = await self._cache.rebuild()
        log.debug(
            "caught up with another replica's change in %.1f ms (new version: %s)",
            (time.perf_counter() - woken) * 1000,
            published,
        )


@dataclass
class Fleet:
    bus: FleetBus
    leader: Leadership
    config: ConfigFollower
    audit: AuditFeed
    usage: UsageFeed


def build(state: AppState, *, leader_retry_s: float | None = None) -> Fleet:
    """The fleet parts for ``state``'s database, wired to ``state``; not started."""
    db = state.db
    bus: FleetBus
    leader: Leadership
    if db.dialect == "postgresql":
        bus = PgBus(db)
        leader = PgLeader(db) if leader_retry_s is None else PgLeader(db, retry_s=leader_retry_s)
    else:
        bus, leader = LocalBus(), SoleLeader()
    topics.bind(db.engine, bus)

    def remote_usage(events: list[tpb.UsageEvent]) -> None:
        state.hub.publish(events)
        state.stats.add(events)
        # Spend seeds matter to connected planes, and to the leader's budget alerts.
        if state.registry.connected_count() or leader.is_leader:
            state.cache.rebuild_soon(spend_scopes(events))

    config = ConfigFollower(state.cache)
    audit_feed = AuditFeed(db, state.audit)
    usage = UsageFeed(db, remote_usage, state.cache.rebuild_soon)
    bus.subscribe(topics.CONFIG, config.wake, own=False)
    bus.subscribe(topics.TOKENS, _forget_tokens(state), own=False)
    bus.subscribe(topics.AUDIT, audit_feed.wake, own=True)
    bus.subscribe(topics.USAGE, usage.notify, own=False)

    def counted(rows: Sequence[Mapping[str, Any]]) -> None:
        if state.registry.connected_count() or leader.is_leader:
            state.cache.rebuild_soon({scope for row in rows for scope in scopes_of(row)})

    # Usage events no replica counted yet (an upgraded database, a previous release's inserts).
    leader.add_job("ledger-reconcile", lambda: reconcile.reconcile_forever(db, on_counted=counted))
    leader.add_job("log-body-purge", lambda: purge_forever(db))
    leader.add_job("signin-purge", lambda: state.signin.purge_forever())
    days = state.settings.audit_retention_days
    if days:
        leader.add_job("audit-purge", lambda: audit_retention.purge_forever(db, days))
    usage_days = state.settings.usage_retention_days
    if usage_days:  # raw usage events only: spend totals and rollups are kept
        leader.add_job("usage-event-purge", lambda: ledger_rebuild.purge_forever(db, usage_days))
    state.metrics.fleet(
        leader=lambda: leader.is_leader,
        listening=lambda: not isinstance(bus, PgBus) or bus.listening.is_set(),
        notices=lambda: bus.delivered,
    )
    return Fleet(bus, leader, config, audit_feed, usage)


def _forget_tokens(state: AppState) -> Callable[[Notice], None]:
    def forget(_notice: Notice) -> None:
        if state.authenticator is not None:
            state.authenticator.forget_all()

    return forget


async def start(fleet: Fleet) -> None:
    for part in (fleet.audit, fleet.usage, fleet.config, fleet.bus, fleet.leader):
        await part.start()
    log.info("fleet: bus %s, leadership %s", fleet.bus.kind, fleet.leader.kind)


async def stop(fleet: Fleet, engine: Engine) -> None:
    """Leadership first (its jobs stop before another replica may start them), then the rest."""
    await fleet.leader.close()
    for part in (fleet.bus, fleet.config, fleet.usage, fleet.audit):
        await part.close()
    topics.bind(engine, None)
