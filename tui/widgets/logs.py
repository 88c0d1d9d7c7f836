"""The live log view: rows arrive one by one from the tail worker; it follows the newest row
until the user scrolls or moves up, and follows again after ``end`` (or scrolling to the bottom).
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual import events
from textual.widgets import DataTable

from gwapi.v1 import telemetry_pb2
from gwclient.api import ConsoleAPI
from tui import format as fmt
from tui.messages import LogArrived, Row, RowsLoaded
from tui.screens.detail import RequestDetailScreen
from tui.widgets.table_view import TableView

MAX_EVENTS = 2000


class LogTable(DataTable[object]):
    """A DataTable that knows whether the user left the bottom."""

    following = True

    def action_cursor_up(self) -> None:
        super().action_cursor_up()
        self.following = False

    def action_page_up(self) -> None:
        super().action_page_up()
        self.following = False

    def action_scroll_top(self) -> None:
        super().action_scroll_top()
        self.following = False

    def action_cursor_down(self) -> None:
        super().action_cursor_down()
        self.following = self.cursor_row >= self.row_count - 1

    def action_page_down(self) -> None:
        super().action_page_down()
        self.following = self.cursor_row >= self.row_count - 1

    def action_scroll_bottom(self) -> None:
        super().action_scroll_bottom()
        self.following = True

    def action_scroll_end(self) -> None:
        self.move_cursor(row=max(self.row_count - 1, 0), animate=False)
        self.following = True

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.following = False

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        if self.scroll_y >= self.max_scroll_y - 1:
            self.following = True


def who(event: telemetry_pb2.UsageEvent) -> RenderableType:
    """The key's name, or a signed-in developer's email (from the IdP: literal text)."""
    if event.developer_id or event.developer_email:
        return fmt.plain(event.developer_email or event.developer_id)
    return event.key_name or event.key_id or "-"


def event_row(event: telemetry_pb2.UsageEvent, key: str) -> Row:
    usage = event.usage
    model = event.model_served or event.model_requested or "-"
    cells = (
        fmt.clock(event.time_ms),
        Text(str(event.status), style=fmt.status_style(event.status)),
        event.workspace or "-",
        who(event),
        model,
        event.provider or "-",
        Text(
            f"{fmt.tokens(usage.input_tokens)}/{fmt.tokens(usage.output_tokens)}", justify="right"
        ),
        Text(fmt.usd(usage.cost_micros), justify="right"),
        Text(f"{event.latency_ms}ms", justify="right"),
        event.request_id,
    )
    extra = " ".join(
        [event.error_type, event.error_message, event.session_id, event.model_requested]
    )
    return Row.of(key, cells, (), extra)


class LogsView(TableView):
    VIEW_ID = "logs"
    TITLE = "Logs"
    COLUMNS = (
        "TIME",
        "ST",
        "WORKSPACE",
        "KEY",
        "MODEL",
        "PROVIDER",
        "IN/OUT",
        "COST",
        "LAT",
        "REQUEST",
    )
    SORTABLE = False
    HELP = (
        "live tail · follows until you move up · end follows again · enter detail · KEY is the"
        " signed-in developer's email for their requests"
    )

    def __init__(self) -> None:
        super().__init__()
        self.events: dict[str, telemetry_pb2.UsageEvent] = {}
        self._counter = 0
        self.loaded = True

    def make_table(self) -> DataTable[object]:
        return LogTable(cursor_type="row", zebra_stripes=True)

    @property
    def log_table(self) -> LogTable:
        return self.query_one(LogTable)

    async def fetch(self, client: ConsoleAPI) -> RowsLoaded:  # the tail worker feeds this view
        raise NotImplementedError

    def on_log_arrived(self, message: LogArrived) -> None:
        message.stop()
        event = message.event
        key = event.request_id
        if not key:
            self._counter += 1
            key = f"#{self._counter}"
        if key in self.events:  # a reconnected tail replays its last records
            return
        self.events[key] = event
        row = event_row(event, key)
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

    def render_rows(self) -> None:
        super().render_rows()
        table = self.log_table
        if table.following and table.row_count:
            table.move_cursor(row=table.row_count - 1, animate=False)

    def selected_event(self) -> telemetry_pb2.UsageEvent | None:
        row = self.current_row()
        return self.events.get(row.key) if row else None

    def title_text(self) -> str:
        state = "following" if self.log_table.following else "paused (end: follow)"
        return f"{super().title_text()} · {state}"

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._update_title()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        selected = self.selected_event()
        if selected is not None:
            client = getattr(self.app, "client", None)
            fetch = getattr(client, "get_log", None)
            self.app.push_screen(RequestDetailScreen(selected, fetch))
