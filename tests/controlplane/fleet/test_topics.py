"""The session hooks announce committed writes by table; payloads stay under PostgreSQL's limit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import delete
from sqlmodel import Session

from controlplane.fleet import topics
from controlplane.fleet.bus import LocalBus, Notice
from controlplane.fleet.pg import MAX_PAYLOAD, parse, payloads
from controlplane.store.db import Database
from controlplane.store.models.admin import AuditRow
from controlplane.store.models.config import WorkspaceRow


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url  # the hooks are the same for both databases


class Recorder(LocalBus):
    def __init__(self) -> None:
        super().__init__()
        self.staged: list[dict[str, list[str]]] = []
        self.done: list[dict[str, list[str]]] = []

    def stage(self, session: Any, found: dict[str, list[str]]) -> None:
        self.staged.append({k: list(v) for k, v in found.items()})

    def committed(self, found: dict[str, list[str]]) -> None:
        self.done.append({k: list(v) for k, v in found.items()})


@pytest.fixture
def bus(db: Database) -> Any:
    rec = Recorder()
    topics.bind(db.engine, rec)
    yield rec
    topics.bind(db.engine, None)


def test_orm_and_core_writes_are_announced_once_per_topic_on_commit(db: Database, bus) -> None:
    def work(s: Session) -> None:
        s.add(WorkspaceRow(name="w1"))  # flushed by the commit itself
        s.add(AuditRow(action="x", resource_kind="workspace", resource="w1"))
        s.flush()
        s.exec(delete(AuditRow).where(AuditRow.id == -1))  # a Core statement
        topics.attach(s, topics.USAGE, ["r1", "r2"])

    db.run_sync(work)
    assert bus.staged == bus.done == [{"config": [], "audit": [], "usage": ["r1", "r2"]}]


def test_a_rollback_or_a_read_announces_nothing(db: Database, bus) -> None:
    def fail(s: Session) -> None:
        s.add(WorkspaceRow(name="w2"))
        s.flush()
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        db.run_sync(fail)
    db.read_sync(lambda s: s.get(WorkspaceRow, "w2"))
    db.run_sync(lambda s: None)
    assert bus.staged == bus.done == []


def test_unknown_topic_is_refused(db: Database) -> None:
    with Session(db.engine) as s, pytest.raises(ValueError, match="unknown fleet topic"):
        topics.attach(s, "gossip", ["x"])


def test_payloads_split_ids_under_the_limit_and_parse_back() -> None:
    ids = [f"req-{i:06d}-" + "x" * 100 for i in range(500)]
    out = payloads("usage", "abc", ids)
    assert len(out) > 1 and all(len(p.encode()) < MAX_PAYLOAD + 200 < 8000 for p in out)
    notices = [parse(p) for p in out]
    assert [i for n in notices if n for i in n.ids] == ids
    assert parse(payloads("config", "abc", [])[0]) == Notice("config", "abc")
    assert parse("not json") is None
    assert parse(json.dumps({"t": "future-topic", "o": "x"})) is None


def test_own_notices_skip_subscribers_that_do_not_want_them() -> None:
    bus = LocalBus()
    got: list[tuple[str, Notice]] = []
    bus.subscribe("config", lambda n: got.append(("all", n)))
    bus.subscribe("config", lambda n: got.append(("others", n)), own=False)
    bus.deliver(Notice("config", bus.origin))
    bus.deliver(Notice("config", "someone-else"))
    bus.resync()
    assert [who for who, _ in got] == ["all", "all", "others", "all", "others"]
