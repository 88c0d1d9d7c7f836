"""The Audit view: every admin change, live (a :class:`LiveView`). The app's audit worker
follows ``TailAudit`` and posts each event here. ``enter`` shows the selected change's
before/after diff.
"""

from __future__ import annotations

from gwapi.v1 import admin_pb2
from gwclient import audit_diff
from tui import format as fmt
from tui.messages import AuditArrived, Row
from tui.screens.audit_detail import AuditDetailScreen
from tui.widgets.live_view import LiveView

_ACTION_STYLES = {"create": "green", "delete": "red", "revoke": "red"}


def action_style(action: str) -> str:
    return _ACTION_STYLES.get(action.rpartition(".")[2], "yellow")


def audit_row(event: admin_pb2.AuditEvent) -> Row:
    # What changed first, who and from where after: the first columns are the ones 80 fit.
    cells = (
        fmt.clock(event.time_ms),
        fmt.plain(event.action, style=action_style(event.action)),
        event.resource or "-",
        event.workspace or "-",
        audit_diff.actor_text(event),
        audit_diff.peer_text(event.peer),
        audit_diff.summary(event),
    )
    return Row.of(f"audit-{event.id}", cells, (), f"{event.actor} {event.method}")


class AuditView(LiveView[admin_pb2.AuditEvent]):
    VIEW_ID = "audit"
    TITLE = "Audit"
    COLUMNS = ("TIME", "ACTION", "RESOURCE", "WORKSPACE", "ACTOR", "FROM", "CHANGED")
    HELP = "admin changes, live · follows until you move up · end follows again · enter diff"

    def __init__(self) -> None:
        super().__init__()
        self.unavailable = ""  # why the log cannot be shown (no permission, older server)

    def on_audit_arrived(self, message: AuditArrived) -> None:
        message.stop()
        self.add(audit_row(message.event), message.event)

    def set_unavailable(self, reason: str) -> None:
        self.unavailable = reason
        self._update_title()

    def title_text(self) -> str:
        if self.unavailable:
            return f"{self.TITLE} · {self.unavailable}"
        return super().title_text()

    def show_detail(self, event: admin_pb2.AuditEvent) -> None:
        self.app.push_screen(AuditDetailScreen(event))
