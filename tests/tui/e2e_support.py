"""For the console's end-to-end tests: a real control plane (loopback, in a thread) on SQLite."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from controlplane import settings as settings_mod
from tests.gwctl.threaded_cp import threaded_control_plane


@contextlib.contextmanager
def sqlite_control_plane(
    tmp_path_factory: pytest.TempPathFactory, admin_token: str, dataplane_token: str
) -> Iterator[str]:
    """Yields the address of a control plane on a fresh SQLite database with these tokens, its
    shutdown grace short (0.5 s); stops it on exit."""
    db = tmp_path_factory.mktemp("cp") / "tollgate.db"
    settings = settings_mod.Settings(
        listen="127.0.0.1:0",
        db_url=f"sqlite:///{db}",
        admin_token=admin_token,
        dataplane_token=dataplane_token,
        shutdown_grace_s=0.5,
    )
    with threaded_control_plane(settings) as address:
        yield address
