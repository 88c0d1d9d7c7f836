"""One admin change in full: who, from where, which RPC, and the before/after diff."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from gwapi.v1 import admin_pb2
from gwclient import audit_diff
from gwcommon.terminal import escape_controls
from tui import format as fmt


def detail_fields(event: admin_pb2.AuditEvent) -> list[tuple[str, str]]:
    actor = audit_diff.actor_text(event)
    if event.actor and event.actor_name:
        actor += f" · {event.actor}"
    fields = [
        ("time (UTC)", fmt.stamp(event.time_ms)),
        ("actor", actor),
        ("from", audit_diff.peer_text(event.peer)),
        ("call", event.method),
        ("action", event.action),
        ("object", f"{event.resource_kind} {event.resource}".strip()),
        ("workspace", event.workspace or "(global)"),
    ]
    return [(name, value) for name, value in fields if value]


def diff_text(event: admin_pb2.AuditEvent) -> Text:
    """``-`` lines (before) in red, ``+`` lines (after) in green; one per changed field."""
    lines = audit_diff.diff_lines(event)
    text = Text("changes\n", style="bold")
    if not lines:
        text.append("no field changed\n", style="dim")
    for marker, line in lines:
        text.append(
            f"{marker} {escape_controls(line)}\n", style="red" if marker == "-" else "green"
        )
    return text


class AuditDetailScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("q", "app.pop_screen", "back", show=False),
    ]

    def __init__(self, event: admin_pb2.AuditEvent) -> None:
        super().__init__()
        self.event = event

    def compose(self) -> ComposeResult:
        yield Static(
            fmt.plain(
                f"Audit event {self.event.id} · {self.event.action} · esc back", style="bold"
            ),
            classes="view-title",
        )
        fields = Table.grid(padding=(0, 2))
        fields.add_column(style="bold cyan", no_wrap=True)
        fields.add_column()
        for name, value in detail_fields(self.event):
            fields.add_row(fmt.plain(name), fmt.plain(value))  # a str here would be markup
        with VerticalScroll(id="detail-body"):
            yield Static(Group(fields, Text(""), diff_text(self.event)), id="detail")

    def on_mount(self) -> None:
        self.query_one("#detail-body", VerticalScroll).focus()  # arrows and page keys scroll
