"""SVG snapshots (pytest-textual-snapshot) of the main views at 80x24 over the fake client's fixed data.

Deterministic by construction: the fake data has fixed ids and timestamps, the app runs on a
fixed clock, local time is UTC, and every snapshot waits (``pilot.pause`` only) until the view
shows its rows. Update after an intended UI change with
``pytest tests/tui/test_snapshots.py --snapshot-update``, look at the report, and bump
``snapshots-textual-version.txt`` if Textual's major version changed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import textual
from textual.pilot import Pilot

from tests.ci import unavailable
from tests.tui.conftest import settle
from tests.tui.console_data import console_fake
from tui.app import TollgateApp
from tui.screens.audit_detail import AuditDetailScreen
from tui.screens.developer_detail import DeveloperDetailScreen
from tui.screens.help import HelpScreen
from tui.screens.request_detail import RequestDetailScreen

SIZE = (80, 24)
FIXED_NOW = 1_700_000_600.0  # a few minutes after the fake data's timestamps
VERSION_FILE = (
    Path(__file__).parent / "snapshots-textual-version.txt"
)  # not under __snapshots__: syrupy would call it unused
SNAPSHOT_MAJOR = VERSION_FILE.read_text(encoding="utf-8").strip().split(".")[0]
INSTALLED_MAJOR = textual.__version__.split(".")[0]


@pytest.fixture(autouse=True)
def snapshot_textual_version() -> None:
    """Another Textual major draws differently: skip (regenerate), but under CI, which installs
    the pinned toolchain, fail."""
    if INSTALLED_MAJOR != SNAPSHOT_MAJOR:
        unavailable(
            f"snapshots were made with Textual {SNAPSHOT_MAJOR}.x, Textual {textual.__version__}"
            " is installed: regenerate with --snapshot-update"
        )


SnapCompare = Callable[..., bool]
RunBefore = Callable[[Pilot[None]], Awaitable[None]]


@pytest.fixture(autouse=True)
def utc_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The log view's time column is local time: make it the same on every machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def snapshot_app() -> TollgateApp:
    # A long poll interval: one fetch per view switch, no refresh racing the screenshot.
    return TollgateApp(console_fake(initial_logs=4), poll_interval=3600, clock=lambda: FIXED_NOW)


def show(view_id: str, *keys: str) -> RunBefore:
    """Switch to ``view_id``, wait until it shows its rows, then press ``keys``."""

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, TollgateApp)
        app.action_view(view_id)
        view = app.current_view
        await settle(pilot, lambda: view.loaded and bool(view.shown))
        if keys:
            await pilot.press(*keys)
        await pilot.pause()

    return run_before


def test_overview(snap_compare: SnapCompare) -> None:
    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=show("overview"))


def test_keys(snap_compare: SnapCompare) -> None:
    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=show("keys"))


def test_providers(snap_compare: SnapCompare) -> None:
    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=show("providers"))


def test_sessions(snap_compare: SnapCompare) -> None:
    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=show("sessions"))


def test_logs(snap_compare: SnapCompare) -> None:
    app = snapshot_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await show("logs")(pilot)
        await settle(pilot, lambda: len(app.current_view.shown) == 4)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare: SnapCompare) -> None:
    app = snapshot_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await show("overview", "question_mark")(pilot)
        await settle(pilot, lambda: isinstance(app.screen, HelpScreen))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_log_detail(snap_compare: SnapCompare) -> None:
    app = snapshot_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await show("logs")(pilot)
        await settle(pilot, lambda: len(app.current_view.shown) == 4)
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, RequestDetailScreen))
        # The logged headers/bodies load in a worker: wait for them (here: none were kept).
        await settle(pilot, lambda: getattr(app.screen, "bodies", None) is not None)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_audit(snap_compare: SnapCompare) -> None:
    app = snapshot_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await show("audit")(pilot)
        await settle(pilot, lambda: len(app.current_view.shown) == 3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_audit_detail(snap_compare: SnapCompare) -> None:
    app = snapshot_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await show("audit")(pilot)
        await settle(pilot, lambda: len(app.current_view.shown) == 3)
        await pilot.press("up", "up", "enter")  # the workspace.update
        await settle(pilot, lambda: isinstance(app.screen, AuditDetailScreen))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_developers(snap_compare: SnapCompare) -> None:
    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=show("developers"))


def test_developer_detail(snap_compare: SnapCompare) -> None:
    app = snapshot_app()

    async def run_before(pilot: Pilot[Any]) -> None:
        await show("developers", "enter")(pilot)
        await settle(pilot, lambda: isinstance(app.screen, DeveloperDetailScreen))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
