"""Messages workers post to the UI (data never reaches a widget any other way)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import RenderableType
from rich.text import Text
from textual.message import Message

from gwapi.v1 import admin_pb2, telemetry_pb2
from tui.format import plain


@dataclass(frozen=True)
class Row:
    """One table row: ``cells`` as shown, ``sort`` one comparable value per column.

    Build rows with :meth:`of`: a ``str`` cell becomes literal text there (DataTable would parse
    it as markup), so whatever a client put in a model name is shown, never interpreted.
    """

    key: str
    cells: tuple[RenderableType, ...]
    sort: tuple[Any, ...]
    search: str = field(default="", compare=False)

    @classmethod
    def of(
        cls, key: str, cells: tuple[RenderableType, ...], sort: tuple[Any, ...], extra: str = ""
    ) -> Row:
        """A row whose ``str`` cells are literal text and whose filter text is every cell's
        plain text (plus ``extra``)."""
        shown = tuple(plain(cell) if isinstance(cell, str) else cell for cell in cells)
        words = [cell.plain if isinstance(cell, Text) else str(cell) for cell in shown]
        return cls(key, shown, sort, " ".join([*words, extra]).lower())

    def matches(self, needle: str) -> bool:
        if not needle:
            return True
        return needle.lower() in self.search


class RowsLoaded(Message):
    """A poll finished: the view's rows and a one-line summary for its title."""

    def __init__(self, rows: list[Row], summary: str = "") -> None:
        super().__init__()
        self.rows = rows
        self.summary = summary


class LogArrived(Message):
    """One request record from the live tail."""

    def __init__(self, event: telemetry_pb2.UsageEvent) -> None:
        super().__init__()
        self.event = event


class AuditArrived(Message):
    """One admin change from the live audit tail."""

    def __init__(self, event: admin_pb2.AuditEvent) -> None:
        super().__init__()
        self.event = event


class StatsArrived(Message):
    """One live-stats frame (``StreamStats``) for the view that asked for its grouping."""

    def __init__(self, frame: telemetry_pb2.StatsFrame) -> None:
        super().__init__()
        self.frame = frame


class StatusUpdate(Message):
    """A line for the status bar; ``source`` lets a later success clear its own error."""

    def __init__(self, text: str, *, error: bool = False, source: str = "") -> None:
        super().__init__()
        self.text = text
        self.error = error
        self.source = source


class DisableRequested(Message):
    """The Developers view asks the app to disable a developer (after confirmation, unless
    read-only); ``already``: the developer is disabled (nothing to do)."""

    def __init__(self, developer_id: str, email: str, *, already: bool = False) -> None:
        super().__init__()
        self.developer_id = developer_id
        self.email = email
        self.already = already


class RevokeRequested(Message):
    """The Keys view asks the app to revoke a key (after confirmation, unless read-only)."""

    def __init__(self, key_id: str, name: str) -> None:
        super().__init__()
        self.key_id = key_id
        self.name = name
