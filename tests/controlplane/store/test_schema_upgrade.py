"""Upgrading real databases, on SQLite and PostgreSQL: nothing lost, and the control plane's
start-up decisions (initialise, adopt, refuse behind head, --migrate, serve ahead when
compatible, refuse when not).

Extra revisions a newer release might ship live in ``extra_revisions/`` (test only).
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from controlplane.secrets import MasterKey
from controlplane.server import running
from controlplane.store.db import Database, make_engine
from controlplane.store.models.admin import AuditRow
from controlplane.store.models.config import ProviderRow, VirtualKeyRow
from controlplane.store.models.usage import UsageEventRow
from controlplane.store.schema import Migrator, SchemaError
from gwapi.v1 import admin_pb2 as apb
from tests.controlplane.conftest import Clients, make_settings
from tests.controlplane.store import schema_data
from tests.controlplane.store.schema_data import BREAKING, COMPATIBLE, FAILING, PACKAGE_HEAD

KEY = base64.b64encode(b"M" * 32).decode()
MASTER = MasterKey(base64.b64decode(KEY))


def _revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return Migrator(engine).status().current
    finally:
        engine.dispose()


def test_baseline_with_data_upgrades_to_head_losing_nothing(db_url: str) -> None:
    """Rows in every table at the baseline, then at each later revision (tables and columns it
    added included), upgraded step by step to head: every value is still there."""
    engine = make_engine(db_url)
    try:
        schema_data.at_revision(engine, "0001")
        written: dict[str, list[dict[str, object]]] = {}
        chain = Migrator(engine).chain()
        for step, revision in enumerate(chain):
            if step:
                before, after = Migrator(engine).upgrade(revision)
                assert (before.current, after.current) == (chain[step - 1], revision)
            with engine.begin() as conn:
                for table, rows in schema_data.fill_every_table(conn, MASTER, 3 * step).items():
                    written.setdefault(table, []).extend(rows)
        assert Migrator(engine).status().state == "current"
        with engine.connect() as conn:
            schema_data.read_back(conn, written)
        # The code at head reads and writes the upgraded rows.
        with Session(engine) as s:
            for i, row in enumerate(written["provider"]):
                stored = s.get(ProviderRow, row["name"])
                assert stored is not None
                assert MASTER.decrypt(stored.name, stored.secret_ciphertext) == f"sk-secret-{i}"
            secret = written["virtual_key"][1]["secret_sha256"]
            key = s.exec(select(VirtualKeyRow).where(VirtualKeyRow.secret_sha256 == secret)).one()
            assert key[0].workspace == written["workspace"][1]["name"]
            total = s.exec(select(func.sum(UsageEventRow.cost_micros))).one()[0]
            assert total == sum(r["cost_micros"] for r in written["usage_event"])
            s.add(AuditRow(time_ms=1, action="test.after-upgrade"))  # ids keep counting
            s.commit()
            audit_rows = s.exec(select(func.count()).select_from(AuditRow)).one()[0]
            assert audit_rows == len(written["audit_event"]) + 1
    finally:
        engine.dispose()


def _legacy_database_with_a_key(url: str) -> str:
    """A database as a control plane from before migrations left it: returns the key's secret."""
    engine = make_engine(url)
    secret = "tg-legacy-secret-0123456789"
    try:
        schema_data.pre_migrations(engine)
        with engine.begin() as conn:
            schema_data.insert(conn, "workspace", name="team-a", description="Team A")
            schema_data.insert(
                conn,
                "provider",
                name="anthropic",
                kind="anthropic",
                secret_ciphertext=MASTER.encrypt("anthropic", "sk-ant-legacy"),
                secret_rotated_at_ms=1,
            )
            schema_data.insert(
                conn,
                "virtual_key",
                id="key_legacy",
                secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
                prefix="tg-legacy",
                name="alice",
                workspace="team-a",
                provider="anthropic",
            )
    finally:
        engine.dispose()
    return secret


async def test_a_database_from_before_migrations_is_adopted_then_migrated(db_url: str) -> None:
    _legacy_database_with_a_key(db_url)
    settings = make_settings(db_url, master_key=KEY)
    # Recognised as the baseline; behind head, so refused with what to run, and left as it was.
    with pytest.raises(
        SchemaError, match=r"predates schema migrations and matches the baseline 0001, behind"
    ) as info:
        async with running(settings):
            pass
    assert "Run `gwctl controlplane migrate --db <this URL>` first" in str(info.value)
    assert _revision(db_url) is None
    # --migrate upgrades it and serves what was there.
    async with running(make_settings(db_url, master_key=KEY, migrate=True)) as cp:
        import grpc.aio

        async with grpc.aio.insecure_channel(cp.address) as channel:
            admin = Clients(channel, "test-admin-token-0123456789").admin
            keys = await admin.ListKeys(apb.ListKeysRequest(workspace="team-a"))
            assert [k.name for k in keys.keys] == ["alice"]
            provider = await admin.GetProvider(apb.GetProviderRequest(name="anthropic"))
            assert provider.has_secret
        snap = cp.state.cache.current
        assert snap is not None
        assert [(s.provider, s.api_key) for s in snap.secrets] == [("anthropic", "sk-ant-legacy")]
    assert _revision(db_url) == Migrator(make_engine("sqlite://")).head


def test_a_legacy_database_that_is_not_the_baseline_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        schema_data.pre_migrations(engine)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE workspace DROP COLUMN alert_format"))
            conn.execute(text("DROP INDEX ix_usage_event_key_time_cost"))
        with pytest.raises(SchemaError) as info:
            Migrator(engine).prepare(migrate=True)
        message = str(info.value)
        assert "predates schema migrations" in message
        assert "table workspace: column alert_format is missing" in message
        assert "table usage_event: index ix_usage_event_key_time_cost is missing" in message
        assert "alembic_version" not in inspect(engine).get_table_names()  # nothing stamped
    finally:
        engine.dispose()


def test_serve_refuses_a_database_behind_head_and_says_what_to_run(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from controlplane.server import main

    engine = make_engine(sqlite_url)
    schema_data.at_revision(engine, "0001")
    engine.dispose()
    env_argv = ["--db", sqlite_url, "--listen", "127.0.0.1:0"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOLLGATE_ADMIN_TOKEN", "a" * 24)
        mp.setenv("TOLLGATE_DATAPLANE_TOKEN", "d" * 24)
        assert main(env_argv) == 1
    err = capsys.readouterr().err
    assert "the database schema is at revision 0001, behind this release's" in err
    assert "Run `gwctl controlplane migrate --db <this URL>` first, or start with --migrate" in err
    assert _revision(sqlite_url) == "0001"


async def test_a_newer_compatible_database_is_served(db_url: str) -> None:
    """A replica of the previous release starts against a database a newer one migrated."""
    engine = make_engine(db_url)
    try:
        schema_data.at_revision(engine, "head", (COMPATIBLE,))
        assert Migrator(engine, (COMPATIBLE,)).status().current == "x_expand"
    finally:
        engine.dispose()
    async with running(make_settings(db_url)) as cp:
        import grpc.aio

        async with grpc.aio.insecure_channel(cp.address) as channel:
            admin = Clients(channel, "test-admin-token-0123456789").admin
            from gwapi.v1 import common_pb2 as pb

            await admin.CreateWorkspace(  # its INSERT leaves the newer column to its default
                apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="team-b"))
            )
    engine = make_engine(db_url)
    try:
        status = Migrator(engine).status()
        assert (status.state, status.current, status.servable) == ("ahead", "x_expand", True)
        # ... and the newer release finds it at its head.
        assert Migrator(engine, (COMPATIBLE,)).status().state == "current"
    finally:
        engine.dispose()


def test_a_newer_breaking_database_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        schema_data.at_revision(engine, "head", (BREAKING,))
        with pytest.raises(
            SchemaError, match="revision\\(s\\) x_contract are not backward compatible"
        ):
            Migrator(engine).prepare(migrate=True)
        with pytest.raises(SchemaError, match="migrated by a newer release"):
            Migrator(engine).upgrade()
    finally:
        engine.dispose()


def test_an_empty_database_is_initialised_at_head_and_records_its_revisions(db_url: str) -> None:
    db = Database(db_url)
    try:
        status = db.prepare_schema(migrate=False)
        assert (status.state, status.current) == ("current", status.head)
        with db.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT revision, down_revision, backward_compatible FROM schema_revision")
            ).all()
        chain = Migrator(db.engine).chain()
        assert sorted(r[0] for r in rows) == chain
        assert {r[0]: r[1] for r in rows}["0001"] == ""
    finally:
        db.dispose()


def test_migrating_to_a_revision_then_onwards_and_never_back(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        migrator = Migrator(engine, (COMPATIBLE,))
        before, after = migrator.upgrade("0002")
        assert (before.state, after.current) == ("empty", "0002")
        assert migrator.upgrade("x_expand")[1].current == "x_expand"
        with pytest.raises(SchemaError, match="migrations only go forward"):
            migrator.upgrade("0002")
        with pytest.raises(SchemaError, match="unknown revision 'nope'"):
            migrator.upgrade("nope")
    finally:
        engine.dispose()


def test_a_failing_revision_changes_nothing(db_url: str) -> None:
    """A revision that fails halfway leaves no trace, on SQLite too (its DDL is transactional
    inside the migration lock), and the database stays at the revision before it."""
    engine = make_engine(db_url)
    try:
        schema_data.at_revision(engine, PACKAGE_HEAD)
        with pytest.raises(DBAPIError):
            Migrator(engine, (FAILING,)).upgrade()
        assert Migrator(engine).status().current == PACKAGE_HEAD
        assert "test_half_done" not in inspect(engine).get_table_names()
        assert "test_half" not in {c["name"] for c in inspect(engine).get_columns("workspace")}
        with engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM schema_revision")).scalar()
            assert count == len(Migrator(engine).chain())
    finally:
        engine.dispose()
