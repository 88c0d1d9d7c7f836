"""The lines around the views: the view tabs on top, the status bar at the bottom."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from gwcommon.terminal import escape_controls

VIEWS = (
    ("overview", "Overview"),
    ("keys", "Keys"),
    ("providers", "Providers"),
    ("sessions", "Sessions"),
    ("logs", "Logs"),
    ("audit", "Audit"),
    ("developers", "Devs"),  # short in the tabs: seven fit 80 columns
)


class ViewTabs(Static):
    """``1 Overview  2 Keys …`` with the current view highlighted."""

    def show(self, current: str) -> None:
        text = Text()
        for number, (view_id, title) in enumerate(VIEWS, 1):
            style = "bold reverse" if view_id == current else ""
            text.append(f" {number} {title} ", style=style)
        text.append("  ? help", style="dim")  # ": jump" and "/ filter" are in help: 80 columns
        self.update(text)


class StatusBar(Static):
    """Where the control plane is, read-only mode, and the last error or notice."""

    def __init__(self, target: str, readonly: bool) -> None:
        super().__init__(id="status")
        self.target = target
        self.readonly = readonly
        self.message = ""
        self.error = False
        self.source = ""

    def on_mount(self) -> None:
        self._draw()

    def set_message(self, text: str, *, error: bool = False, source: str = "") -> None:
        self.message, self.error, self.source = text, error, source
        self._draw()

    def clear_error(self, source: str) -> None:
        """A success from ``source`` clears the error that ``source`` had reported."""
        if self.error and self.source == source:
            self.set_message("")

    def _draw(self) -> None:
        text = Text(f" {escape_controls(self.target)}", style="bold")
        if self.readonly:
            text.append(" [read-only]", style="yellow")
        if self.message:
            text.append("  ")
            # Error messages quote names and models as the server received them.
            text.append(escape_controls(self.message), style="bold red" if self.error else "cyan")
        self.update(text)
