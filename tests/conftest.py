"""Fixtures shared by every test package.

``db_url`` is parametrised over the two databases the control plane supports:

* ``sqlite`` — a fresh file under the test's ``tmp_path``;
* ``postgres`` — the local PostgreSQL (127.0.0.1:5432, trust auth, user ``postgres``). One
  database ``tollgate_test_<hex>`` is created per test session through the ``test`` database and
  dropped (``WITH (FORCE)``) at the end; every test gets an empty ``public`` schema. When the
  server is unreachable the postgres variant is skipped (a failure under CI), never silently
  turned into sqlite.

Tests that only need SQLite can override it locally with ``@pytest.mark.parametrize("db_url",
[...], indirect=True)`` or by requesting ``sqlite_url``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.ci import unavailable
from tests.fakes import strict

# Property tests: no example database written into the work tree (runs stay reproducible from
# the printed seed), and no per-example deadline (the machine is shared; speed is set by each
# test's max_examples). Fixtures that a property test shares across its examples (one control
# plane for all of them) are deliberate, hence the function-scoped-fixture check is off.
settings.register_profile(
    "tollgate",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("tollgate")

PG_ADMIN_URL = os.environ.get("TOLLGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def strict_fakes_saw_no_violations() -> Iterator[None]:
    """Fails a test during which a strict fake recorded a protocol violation it did not take
    (:mod:`tests.fakes.strict`). Autouse, so it is set up before and torn down after the fixtures
    that start fakes: it sees what they recorded up to their own teardown."""
    with strict.no_new_violations():
        yield


def _pg_url_for(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test session; yields its URL."""
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:  # pragma: no cover - depends on the machine
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")  # fails under CI
    name = f"tollgate_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url_for(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset_pg_schema(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        # Terminate stragglers from an earlier test that forgot to dispose its engine; an idle
        # pooled connection would otherwise keep DROP SCHEMA waiting on its locks.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tollgate.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for an empty database; run once per supported backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tollgate.db'}"
    url: str = request.getfixturevalue("pg_database")
    _reset_pg_schema(url)
    return url
