"""Helpers for the Textual tests: an app over the fake client, and waiting without sleeping."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot

from tests.tui.fake_client import FakeClient
from tui.app import TollgateApp


def make_app(client: FakeClient | None = None, *, readonly: bool = False) -> TollgateApp:
    return TollgateApp(client or FakeClient(), readonly=readonly)


async def settle(pilot: Pilot[None], until: Callable[[], bool], tries: int = 100) -> None:
    """Let messages and workers run (pilot.pause only) until ``until()`` holds."""
    for _ in range(tries):
        if until():
            return
        await pilot.pause()
    raise AssertionError("the UI did not reach the expected state")
