"""Headless SVG screenshots of a view (for the README): ``export_svg(client, "logs", path)``.

Runs the app without a terminal, waits until the view has data (or ``wait_s`` passes), then
writes Textual's SVG export.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from gwclient.api import ConsoleAPI
from tui.app import TollgateApp


async def export_svg(
    client: ConsoleAPI,
    view_id: str,
    path: str | Path,
    *,
    size: tuple[int, int] = (80, 24),
    wait_s: float = 5.0,
    clock: Callable[[], float] = time.time,
    min_rows: int = 1,
) -> str:
    """Write the SVG of ``view_id`` to ``path`` and return it (``clock``: the app's "now";
    ``min_rows``: how many rows to wait for)."""
    app = TollgateApp(client, clock=clock)
    async with app.run_test(size=size, headless=True) as pilot:
        app.action_view(view_id)
        deadline = time.monotonic() + wait_s
        view = app.current_view
        while len(view.shown) < min_rows and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.pause()
        svg = app.export_screenshot(title=f"Tollgate · {view.TITLE}")
    await asyncio.to_thread(Path(path).write_text, svg, encoding="utf-8")
    return svg
