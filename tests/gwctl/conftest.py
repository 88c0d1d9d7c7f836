"""Fixtures of the gwctl end-to-end tests: one real control plane per module (in a background
thread, on a temporary SQLite database) and gwctl pointed at it.

A module changes the control plane's settings by overriding ``control_plane_settings``, or runs
one per test on every database backend by overriding ``control_plane`` with
``control_plane_per_backend``; it opts in with ``pytestmark = pytest.mark.usefixtures("gwctl_env")``.
A module of unit tests instead runs gwctl against ``fake_cp``, an in-process fake control plane.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.admin_client import FakeAdminClient
from tests.gwctl import cli
from tests.gwctl.cli_data import cli_fake, use_fake
from tests.gwctl.threaded_cp import threaded_control_plane


@pytest.fixture(scope="module")
def control_plane_settings() -> dict[str, Any]:
    """Settings of the module's control plane beyond :func:`tests.gwctl.cli.settings`."""
    return {}


@pytest.fixture(scope="module")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory, control_plane_settings: dict[str, Any]
) -> Iterator[str]:
    """The module's control plane (its address), on a fresh SQLite database."""
    db = tmp_path_factory.mktemp("cp") / "tollgate.db"
    with threaded_control_plane(cli.settings(f"sqlite:///{db}", **control_plane_settings)) as addr:
        yield addr


@pytest.fixture
def control_plane_per_backend(db_url: str, control_plane_settings: dict[str, Any]) -> Iterator[str]:
    """A control plane for one test, on each supported database (``db_url``)."""
    with threaded_control_plane(cli.settings(db_url, **control_plane_settings)) as address:
        yield address


@pytest.fixture
def gwctl_env(control_plane: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """gwctl (``cli.gw``) talks to the module's control plane as the admin."""
    cli.point_gwctl_at(monkeypatch, control_plane)


@pytest.fixture
def fake_cp(monkeypatch: pytest.MonkeyPatch) -> FakeAdminClient:
    """A fresh fake control plane with the tests' data (:func:`tests.gwctl.cli_data.cli_fake`),
    which gwctl's client talks to instead of a real one."""
    return use_fake(monkeypatch, cli_fake())
