"""Helpers for the Textual tests: an app over the fake client, and waiting without sleeping."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from rich.cells import cell_len
from textual.app import App
from textual.geometry import Offset
from textual.pilot import Pilot

from tests.fakes.admin_client import FakeAdminClient
from tests.tui.console_data import console_fake
from tui.app import TollgateApp
from tui.widgets.table_view import TableView

V = TypeVar("V", bound=TableView)


def make_app(client: FakeAdminClient | None = None, *, readonly: bool = False) -> TollgateApp:
    return TollgateApp(client or console_fake(), readonly=readonly)


async def settle(pilot: Pilot[None], until: Callable[[], bool], tries: int = 100) -> None:
    """Let messages and workers run (pilot.pause only) until ``until()`` holds."""
    for _ in range(tries):
        if until():
            return
        await pilot.pause()
    raise AssertionError("the UI did not reach the expected state")


@contextlib.asynccontextmanager
async def on_view(
    app: TollgateApp, key: str, view_type: type[V], rows: int, size: tuple[int, int]
) -> AsyncIterator[tuple[Pilot[None], V]]:
    """``app`` running at ``size`` and switched to its view ``key`` ("1"-"7", a ``view_type``),
    once that view shows ``rows`` rows: the pilot and the view."""
    async with app.run_test(size=size) as pilot:
        await pilot.press(key)
        view = app.current_view
        assert isinstance(view, view_type)
        await settle(pilot, lambda: len(view.shown) == rows)
        yield pilot, view


def screen_lines(app: App[None]) -> list[str]:
    """The terminal's current lines, as the compositor draws them."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def find_on_screen(app: App[None], needle: str) -> Offset | None:
    """Where ``needle`` starts on the screen (in cells), or None when it is not shown."""
    for y, line in enumerate(screen_lines(app)):
        index = line.find(needle)
        if index >= 0:
            return Offset(cell_len(line[:index]), y)
    return None
