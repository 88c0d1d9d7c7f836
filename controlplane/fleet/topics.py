"""Topics of the fleet bus, and the session hooks that announce writes by table.

Contract:

* :data:`TABLE_TOPICS` maps a table to its topic: configuration that data planes see →
  ``config``; ``audit_event`` → ``audit``; the usage ledger and logged bodies → ``usage``;
  ``admin_token`` → ``tokens``. A table not listed announces nothing (sign-in grants, activity,
  alerts: no other replica needs to react). A new table that data planes see belongs in
  :data:`CONFIG_TABLES`.
* :func:`install` registers, once per process, SQLAlchemy ``Session`` event hooks: every
  INSERT/UPDATE/DELETE a session executes (ORM flush or a Core statement through
  ``Session.execute``) records its table's topic on the session; in ``before_commit`` the
  session's bus (:func:`bind`) stages one announcement per topic *inside the transaction*
  (PostgreSQL: ``pg_notify``, delivered only if and when the commit succeeds); ``after_commit``
  lets an in-process bus deliver; a rollback forgets everything.
* :func:`attach` adds ids to a topic's announcement (ingest names the usage rows it stored, so
  other replicas can read exactly those).
* Writes outside a ``Session`` (``engine.begin()``, raw DBAPI) are not announced.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import ORMExecuteState, Session

CONFIG = "config"
AUDIT = "audit"
USAGE = "usage"
TOKENS = "tokens"
TOPICS = (CONFIG, AUDIT, USAGE, TOKENS)

CONFIG_TABLES = (
    "workspace",
    "virtual_key",
    "provider",
    "route",
    "price",
    "sso_config",
    "signing_key",
    "developer",
    "telemetry_destination",
)
TABLE_TOPICS: dict[str, str] = {
    **dict.fromkeys(CONFIG_TABLES, CONFIG),
    "audit_event": AUDIT,
    "usage_event": USAGE,
    "request_log_body": USAGE,
    "admin_token": TOKENS,
}

_TOPICS = "tollgate_fleet_topics"  # Session.info: topic -> ids attached (list)
_STAGED = "tollgate_fleet_staged"  # Session.info: what before_commit staged, for after_commit


class Announcer(Protocol):
    """What a bus does with a session's topics (called on the session's thread)."""

    def stage(self, session: Session, topics: dict[str, list[str]]) -> None:
        """Inside the transaction, before the commit."""

    def committed(self, topics: dict[str, list[str]]) -> None:
        """After a successful commit (in-process delivery)."""


_buses: dict[int, Announcer] = {}  # id(engine) -> announcer
_installed = False
_lock = threading.Lock()


def bind(engine: Engine, announcer: Announcer | None) -> None:
    """Announce writes made through ``engine``'s sessions on ``announcer`` (None: stop)."""
    install()
    if announcer is None:
        _buses.pop(id(engine), None)
    else:
        _buses[id(engine)] = announcer


def _announcer(session: Session) -> Announcer | None:
    bind_ = session.get_bind()
    engine = getattr(bind_, "engine", bind_)
    return _buses.get(id(engine))


def _note(session: Session, table: str | None) -> None:
    topic = TABLE_TOPICS.get(table or "")
    if topic is not None:
        session.info.setdefault(_TOPICS, {}).setdefault(topic, [])


def attach(session: Session, topic: str, ids: Iterable[str]) -> None:
    """Name the rows of ``topic`` this transaction wrote (announced with the topic)."""
    if topic not in TOPICS:
        raise ValueError(f"unknown fleet topic {topic!r}")
    session.info.setdefault(_TOPICS, {}).setdefault(topic, []).extend(ids)


def _on_execute(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        _note(state.session, getattr(table, "name", None))


def _after_flush(session: Session, _ctx: Any) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        _note(session, getattr(type(obj), "__tablename__", None))


def _before_commit(session: Session) -> None:
    if session.new or session.dirty or session.deleted:
        session.flush()  # commit would flush after this hook: note those tables first
    topics = session.info.pop(_TOPICS, None)
    if not topics:
        return
    announcer = _announcer(session)
    if announcer is None:
        return
    announcer.stage(session, topics)
    session.info[_STAGED] = (announcer, topics)


def _after_commit(session: Session) -> None:
    staged = session.info.pop(_STAGED, None)
    if staged is not None:
        announcer, topics = staged
        announcer.committed(topics)


def _after_rollback(session: Session, *_: Any) -> None:
    session.info.pop(_TOPICS, None)
    session.info.pop(_STAGED, None)


def install() -> None:
    """Register the Session hooks (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        event.listen(Session, "do_orm_execute", _on_execute)
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "before_commit", _before_commit)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_soft_rollback", _after_rollback)
        _installed = True
