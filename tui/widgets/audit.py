"""The Audit view: every admin change, live. The app's audit worker follows ``TailAudit`` and
posts each event here; like the Logs view it follows the newest row until the user moves up
(``end`` follows again). ``enter`` shows the selected change's before/after diff.
"""

from __future__ import annotations

from textual.widgets import DataTable

from gwapi.v1 import admin_pb2
from gwclient import audit_diff
from gwclient.api import ConsoleAPI
from tui import format as fmt
from tui.messages import AuditArrived, Row, RowsLoaded
from tui.screens.audit import AuditDetailScreen
from tui.widgets.logs import LogTable
from tui.widgets.table_view import TableView

MAX_EVENTS = 2000
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


class AuditView(TableView):
    VIEW_ID = "audit"
    TITLE = "Audit"
    COLUMNS = ("TIME", "ACTION", "RESOURCE", "WORKSPACE", "ACTOR", "FROM", "CHANGED")
    SORTABLE = False
    HELP = "admin changes, live · follows until you move up · end follows again · enter diff"

    def __init__(self) -> None:
        super().__init__()
        self.events: dict[str, admin_pb2.AuditEvent] = {}
        self.loaded = True
        self.unavailable = ""  # why the log cannot be shown (no permission, older server)

    def make_table(self) -> DataTable[object]:
        return LogTable(cursor_type="row", zebra_stripes=True)

    @property
    def log_table(self) -> LogTable:
        return self.query_one(LogTable)

    async def fetch(self, client: ConsoleAPI) -> RowsLoaded:  # the audit worker feeds this view
        raise NotImplementedError

    def on_audit_arrived(self, message: AuditArrived) -> None:
        message.stop()
        row = audit_row(message.event)
        if row.key in self.events:  # a reconnected tail replays its last events
            return
        self.events[row.key] = message.event
        self.rows.append(row)
        if len(self.rows) > MAX_EVENTS:
            dropped = self.rows.pop(0)
            self.events.pop(dropped.key, None)
            if self.shown and self.shown[0].key == dropped.key:
                self.shown.pop(0)
                self.table.remove_row(dropped.key)
        if row.matches(self.filter_text):
            table = self.log_table
            table.add_row(*row.cells, key=row.key)
            self.shown.append(row)
            if table.following:
                table.move_cursor(row=table.row_count - 1, animate=False)
        self._update_title()

    def set_unavailable(self, reason: str) -> None:
        self.unavailable = reason
        self._update_title()

    def render_rows(self) -> None:
        super().render_rows()
        table = self.log_table
        if table.following and table.row_count:
            table.move_cursor(row=table.row_count - 1, animate=False)

    def selected_event(self) -> admin_pb2.AuditEvent | None:
        row = self.current_row()
        return self.events.get(row.key) if row else None

    def title_text(self) -> str:
        if self.unavailable:
            return f"{self.TITLE} · {self.unavailable}"
        state = "following" if self.log_table.following else "paused (end: follow)"
        return f"{super().title_text()} · {state}"

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._update_title()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        selected = self.selected_event()
        if selected is not None:
            self.app.push_screen(AuditDetailScreen(selected))
