"""The audit feed: every committed row once, in id order, also when a lower id commits later."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from controlplane.fanout import AuditHub
from controlplane.fleet.bus import Notice
from controlplane.fleet.feeds import AuditFeed, UsageFeed
from controlplane.store.db import Database
from controlplane.store.models.admin import AuditRow
from controlplane.usage.events import event_to_values
from controlplane.usage.ingest import insert_new
from tests.controlplane.services.test_telemetry import event

pytestmark = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def row(name: str) -> AuditRow:
    return AuditRow(action="create", resource_kind="workspace", resource=name, time_ms=1)


async def drain(sub) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    while not sub._queue.empty():
        ev = await sub.get()
        out.append(ev.resource)
    return out


async def test_a_lower_id_committed_later_is_published_once(db: Database) -> None:
    hub = AuditHub()
    clock = [0.0]
    feed = AuditFeed(db, hub, hole_ttl_s=60, clock=lambda: clock[0])
    await feed.start()
    await feed.close()  # driven by hand below
    sub = hub.subscribe()
    slow = Session(db.engine)
    slow.add(row("slow"))
    slow.flush()  # id assigned, not committed
    db.run_sync(lambda s: s.add(row("fast")))
    await feed.step()
    assert await drain(sub) == ["fast"] and feed.holes  # the slow id is waited for
    slow.commit()
    slow.close()
    await feed.step()
    assert await drain(sub) == ["slow"] and not feed.holes
    await feed.step()
    assert await drain(sub) == []  # nothing twice


async def test_a_rolled_back_id_is_given_up_after_the_ttl(db: Database) -> None:
    hub = AuditHub()
    clock = [0.0]
    feed = AuditFeed(db, hub, hole_ttl_s=60, clock=lambda: clock[0])
    await feed.start()
    await feed.close()
    sub = hub.subscribe()
    lost = Session(db.engine)
    lost.add(row("lost"))
    lost.flush()
    lost.rollback()
    lost.close()
    db.run_sync(lambda s: s.add(row("kept")))
    await feed.step()
    assert await drain(sub) == ["kept"] and len(feed.holes) == 1
    clock[0] = 61.0
    await feed.step()
    assert not feed.holes


def store(db: Database, rid: str, received_ms: int) -> None:
    ev = event(rid, t=received_ms - 100)
    db.run_sync(lambda s: insert_new(s, [event_to_values(ev, received_ms)]))


async def test_a_resync_hands_over_what_was_missed_once_and_no_further_back_than_it_remembers(
    db: Database,
) -> None:
    start = 1_000_000
    wall = [start - 30_000]  # the feed starts (with the server) before all this
    got: list[str] = []
    resyncs: list[int] = []
    feed = UsageFeed(
        db,
        lambda events: got.extend(ev.request_id for ev in events),
        lambda: resyncs.append(1),
        recent_s=60,
        wall_ms=lambda: wall[0],
    )
    wall[0] = start
    store(db, "own", start - 10)  # ingested here (handed over by ingest itself), then noted
    feed.remember([event("own")])
    store(db, "missed", start - 5)  # another replica's, while the bus was down
    store(db, "long-ago", start - 60_000)  # before the bus was last known to listen
    feed.notify(Notice("usage", "x", resync=True, since_ms=start - 1_000))
    await feed.step()
    assert got == ["missed"] and resyncs == [1]
    feed.notify(Notice("usage", "x", resync=True, since_ms=start - 1_000))
    await feed.step()
    assert got == ["missed"]  # nothing twice
    # Two minutes later, the feed has forgotten what it saw then: a catch-up from before that
    # would send "own" and "missed" again, so it starts where its memory starts.
    wall[0] += 120_000
    store(db, "later", wall[0] - 1_000)
    feed.remember([event("newer")])  # prunes the old entries
    feed.notify(Notice("usage", "x", resync=True, since_ms=start - 1_000))
    await feed.step()
    assert got == ["missed", "later"]
