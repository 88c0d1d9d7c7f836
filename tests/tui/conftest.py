"""Helpers for the Textual tests: an app over the fake client, and waiting without sleeping."""

from __future__ import annotations

from collections.abc import Callable

from rich.cells import cell_len
from textual.app import App
from textual.geometry import Offset
from textual.pilot import Pilot

from tests.fakes.admin_client import FakeAdminClient
from tests.tui.console_data import console_fake
from tui.app import TollgateApp


def make_app(client: FakeAdminClient | None = None, *, readonly: bool = False) -> TollgateApp:
    return TollgateApp(client or console_fake(), readonly=readonly)


async def settle(pilot: Pilot[None], until: Callable[[], bool], tries: int = 100) -> None:
    """Let messages and workers run (pilot.pause only) until ``until()`` holds."""
    for _ in range(tries):
        if until():
            return
        await pilot.pause()
    raise AssertionError("the UI did not reach the expected state")


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
