"""The ``?`` screen: every key, and what the current view adds."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

GLOBAL_KEYS = (
    ("1-7", "Overview, Keys, Providers, Sessions, Logs, Audit, Developers"),
    (":", "jump: :overview :keys :providers :sessions :logs :audit :devs :q"),
    ("/", "filter the current table (enter keeps it, esc clears it)"),
    ("s / S", "sort by the next column / reverse (or click a header)"),
    ("r", "Keys: revoke the selected key (asks first; off with --readonly)"),
    ("d", "Developers: disable the selected one (asks; off with --readonly)"),
    ("enter", "Logs: request detail; Audit: before/after; Developers: detail"),
    ("end", "Logs, Audit: follow new records again"),
    ("esc", "back: close a prompt, clear the filter, leave a screen"),
    ("?", "this help"),
    ("q", "quit"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "close"),
        Binding("question_mark", "app.pop_screen", "close", show=False),
        Binding("q", "app.pop_screen", "close", show=False),
    ]

    def __init__(self, view_help: str = "") -> None:
        super().__init__()
        self.view_help = view_help

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for key, text in GLOBAL_KEYS:
            table.add_row(key, text)
        with Vertical(id="help-box"):
            yield Static("Tollgate TUI · keys", classes="view-title")
            yield Static(table)
            if self.view_help:
                yield Static(f"\nThis view: {self.view_help}", markup=False)
            yield Static("\nesc closes", classes="dim")
