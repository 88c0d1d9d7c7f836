"""One admin change in full: who, from where, which RPC, and the before/after diff."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from gwapi.v1 import admin_pb2
from gwclient import audit_diff
from gwcommon.terminal import escape_controls
from tui import format as fmt
from tui.screens.detail import DetailScreen


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


class AuditDetailScreen(DetailScreen):
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
        fields = fmt.field_grid(
            (fmt.plain(name), fmt.plain(value)) for name, value in detail_fields(self.event)
        )
        with VerticalScroll(id="detail-body"):
            yield Static(Group(fields, Text(""), diff_text(self.event)), id="detail")
