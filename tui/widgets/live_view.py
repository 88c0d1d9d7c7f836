"""The shape of the live views (Logs, Audit): rows arrive one by one from a worker that follows a
server stream; the table follows the newest row until the user scrolls or moves up, and follows
again after ``end`` (or scrolling to the bottom). At most :data:`MAX_EVENTS` rows are kept, the
oldest dropped first; a reconnected stream's replayed events are recognised by key and skipped.
``enter`` opens the selected event's detail (:meth:`LiveView.show_detail`).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from textual import events
from textual.widgets import DataTable

from gwclient.api import ConsoleAPI
from tui.messages import Row, RowsLoaded
from tui.widgets.table_view import TableView

MAX_EVENTS = 2000
E = TypeVar("E")


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


class LiveView(TableView, Generic[E]):
    """A view fed event by event (:meth:`add`); subclasses build the row and the detail."""

    SORTABLE = False

    def __init__(self) -> None:
        super().__init__()
        self.events: dict[str, E] = {}
        self.loaded = True

    def make_table(self) -> DataTable[object]:
        return LogTable(cursor_type="row", zebra_stripes=True)

    @property
    def log_table(self) -> LogTable:
        return self.query_one(LogTable)

    async def fetch(self, client: ConsoleAPI) -> RowsLoaded:  # a worker feeds this view
        raise NotImplementedError

    def add(self, row: Row, event: E) -> None:
        """Append ``event`` shown as ``row`` (nothing if its key is already here)."""
        if row.key in self.events:  # a reconnected stream replays its last events
            return
        self.events[row.key] = event
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

    def selected_event(self) -> E | None:
        row = self.current_row()
        return self.events.get(row.key) if row else None

    def title_text(self) -> str:
        state = "following" if self.log_table.following else "paused (end: follow)"
        return f"{super().title_text()} · {state}"

    def show_detail(self, event: E) -> None:
        raise NotImplementedError

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._update_title()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        selected = self.selected_event()
        if selected is not None:
            self.show_detail(selected)
