"""A titled DataTable view with a text filter and column sorting: the shape of every view.

Subclasses set ``VIEW_ID``, ``TITLE``, ``COLUMNS`` and implement :meth:`fetch`, which the app's
poll worker awaits (never on the UI's critical path) and whose result arrives as
:class:`~tui.messages.RowsLoaded`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from gwclient.api import ConsoleAPI
from tui.format import plain
from tui.messages import Row, RowsLoaded


class TableView(Vertical):
    VIEW_ID: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""
    COLUMNS: ClassVar[tuple[str, ...]] = ()
    SORTABLE: ClassVar[bool] = True
    HELP: ClassVar[str] = ""

    BINDINGS = [
        Binding("s", "sort_next", "sort", show=False),
        Binding("S", "sort_reverse", "reverse sort", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id=self.VIEW_ID, classes="view")
        self.rows: list[Row] = []
        self.shown: list[Row] = []
        self.filter_text = ""
        self.summary = ""
        self.sort_column: int | None = None
        self.sort_reverse = False
        self.loaded = False
        self.clock: Callable[[], float] = time.time  # the app's clock (set on mount)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def compose(self) -> ComposeResult:
        yield Static(self.TITLE, classes="view-title")
        yield self.make_table()

    def make_table(self) -> DataTable[object]:
        return DataTable(cursor_type="row", zebra_stripes=True)

    @property
    def table(self) -> DataTable[object]:
        return self.query_one(DataTable)

    def on_mount(self) -> None:
        for index, name in enumerate(self.COLUMNS):
            self.table.add_column(name, key=str(index))
        self._update_title()

    async def fetch(self, client: ConsoleAPI) -> RowsLoaded:
        raise NotImplementedError

    # ---- data --------------------------------------------------------------------------

    def on_rows_loaded(self, message: RowsLoaded) -> None:
        message.stop()
        self.rows = message.rows
        self.summary = message.summary
        self.loaded = True
        self.render_rows()

    def set_filter(self, text: str) -> None:
        if text != self.filter_text:
            self.filter_text = text
            self.render_rows()

    def current_row(self) -> Row | None:
        table = self.table
        if not self.shown or table.cursor_row < 0 or table.cursor_row >= len(self.shown):
            return None
        return self.shown[table.cursor_row]

    def render_rows(self) -> None:
        rows = [row for row in self.rows if row.matches(self.filter_text)]
        if self.sort_column is not None:
            column = self.sort_column
            rows.sort(key=lambda row: row.sort[column], reverse=self.sort_reverse)
        if rows != self.shown or not self.loaded:
            table = self.table
            selected = self.current_row()
            old_index = table.cursor_row
            table.clear()
            for row in rows:
                table.add_row(*row.cells, key=row.key)
            self.shown = rows
            index = next(
                (i for i, row in enumerate(rows) if selected and row.key == selected.key),
                min(max(old_index, 0), max(len(rows) - 1, 0)),
            )
            if rows:
                table.move_cursor(row=index, animate=False)
        self._update_title()

    # ---- sorting -----------------------------------------------------------------------

    def sort_by(self, column: int) -> None:
        if not self.SORTABLE or not 0 <= column < len(self.COLUMNS):
            return
        if self.sort_column == column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False
        self.render_rows()

    def action_sort_next(self) -> None:
        if not self.SORTABLE:
            return
        column = 0 if self.sort_column is None else (self.sort_column + 1) % len(self.COLUMNS)
        self.sort_column, self.sort_reverse = column, False
        self.render_rows()

    def action_sort_reverse(self) -> None:
        if self.SORTABLE and self.sort_column is not None:
            self.sort_reverse = not self.sort_reverse
            self.render_rows()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(event.column_index)

    # ---- title -------------------------------------------------------------------------

    def title_text(self) -> str:
        parts = [self.TITLE]
        if not self.loaded:
            parts.append("loading…")
        else:
            count = f"{len(self.shown)}" if not self.filter_text else f"{len(self.shown)}/"
            parts.append(count + (f"{len(self.rows)}" if self.filter_text else ""))
        if self.filter_text:
            parts.append(f"/{self.filter_text}")
        if self.sort_column is not None:
            arrow = "▼" if self.sort_reverse else "▲"
            parts.append(f"sort {self.COLUMNS[self.sort_column]}{arrow}")
        if self.summary:
            parts.append(self.summary)
        return " · ".join(parts)

    def _update_title(self) -> None:
        self.query_one(".view-title", Static).update(plain(self.title_text()))
