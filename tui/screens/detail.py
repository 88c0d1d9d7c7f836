"""What every detail screen (a request, an audit event, a developer) shares: esc or q goes back,
and its scrolling body (``#detail-body``) has the focus, so arrows and page keys scroll it."""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen


class DetailScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("q", "app.pop_screen", "back", show=False),
    ]

    def on_mount(self) -> None:
        # Textual calls every class's on_mount along the MRO: a subclass adds its own steps.
        self.query_one("#detail-body", VerticalScroll).focus()
