"""The audit feed: every committed row once, in id order, also when a lower id commits later."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from controlplane.audit import AuditHub
from controlplane.fleet.feeds import AuditFeed
from controlplane.store.db import Database
from controlplane.store.models import AuditRow

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
