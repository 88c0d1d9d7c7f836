"""The Logs view: every request, live, as the tail worker receives it (a :class:`LiveView`);
``enter`` shows the selected request in full."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text

from gwapi.v1 import telemetry_pb2
from tui import format as fmt
from tui.messages import LogArrived, Row
from tui.screens.request_detail import RequestDetailScreen
from tui.widgets.live_view import LiveView


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


class LogsView(LiveView[telemetry_pb2.UsageEvent]):
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
    HELP = (
        "live tail · follows until you move up · end follows again · enter detail · KEY is the"
        " signed-in developer's email for their requests"
    )

    def __init__(self) -> None:
        super().__init__()
        self._counter = 0

    def on_log_arrived(self, message: LogArrived) -> None:
        message.stop()
        event = message.event
        key = event.request_id
        if not key:
            self._counter += 1
            key = f"#{self._counter}"
        if key not in self.events:
            self.add(event_row(event, key), event)

    def show_detail(self, event: telemetry_pb2.UsageEvent) -> None:
        client = getattr(self.app, "client", None)
        fetch = getattr(client, "get_log", None)
        self.app.push_screen(RequestDetailScreen(event, fetch))
