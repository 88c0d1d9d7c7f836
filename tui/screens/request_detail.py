"""One request's full record: every field of the usage event and its attempt log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from gwapi.v1 import telemetry_pb2
from gwcommon.terminal import escape_controls
from tui import format as fmt
from tui.screens.detail import DetailScreen


def detail_fields(event: telemetry_pb2.UsageEvent) -> list[tuple[str, str]]:
    usage = event.usage
    fields = [
        ("request id", event.request_id),
        ("time (UTC)", fmt.stamp(event.time_ms)),
        ("status", str(event.status)),
        ("error", f"{event.error_type}: {event.error_message}" if event.error_type else ""),
        ("workspace", event.workspace),
        ("key", f"{event.key_name} ({event.key_id})" if event.key_name else event.key_id),
        (
            "developer",
            f"{event.developer_email} ({event.developer_id})" if event.developer_id else "",
        ),
        ("session", event.session_id),
        ("model requested", event.model_requested),
        ("model served", event.model_served),
        ("provider", event.provider),
        ("attempts", str(event.attempts)),
        ("latency", f"{event.latency_ms} ms"),
        ("ttfb", f"{event.ttfb_ms} ms" if event.ttfb_ms else ""),
        ("stream", "yes" if event.stream else "no"),
        (
            "tokens in/out",
            f"{usage.input_tokens} / {usage.output_tokens}",
        ),
        (
            "cache write/read",
            f"{usage.cache_creation_input_tokens} / {usage.cache_read_input_tokens}",
        ),
        (
            "cost",
            fmt.usd(usage.cost_micros) + (f" (as {usage.priced_as})" if usage.priced_as else ""),
        ),
        ("cache", event.cache_status),
        ("cost saved", fmt.usd(event.cost_saved_micros) if event.cost_saved_micros else ""),
        ("path", event.path),
        ("user agent", event.user_agent),
        ("client version", event.client_version),
        ("data plane", event.dataplane_id),
        ("upstream request", event.upstream_request_id),
        ("client disconnected", "yes" if event.client_disconnected else ""),
    ]
    fields.extend((f"meta {k}", v) for k, v in sorted(event.metadata.items()))
    return [(name, value) for name, value in fields if value]


def attempt_lines(event: telemetry_pb2.UsageEvent) -> Text:
    """One line per upstream attempt (a line, not a table: it reads at 80 columns)."""
    text = Text("attempt log\n", style="bold")
    for index, attempt in enumerate(event.attempt_log, 1):
        text.append(f"{index}. {escape_controls(attempt.provider)}")
        if attempt.model:
            text.append(f" {escape_controls(attempt.model)}", style="dim")
        text.append(" → ")
        text.append(str(attempt.status), style=fmt.status_style(attempt.status))
        text.append(f" {escape_controls(attempt.outcome)}", style="bold")
        if attempt.error_type:
            text.append(f" {escape_controls(attempt.error_type)}", style="red")
        text.append(f"  +{attempt.start_offset_ms}ms, took {attempt.duration_ms}ms\n")
    return text


BODY_PREVIEW = 6000  # characters of each body shown; `gwctl logs show` prints them whole


def body_text(event: telemetry_pb2.UsageEvent) -> Text:
    """Logged headers and bodies (present only when the workspace's policy keeps them)."""
    text = Text("\n")
    if event.request_headers:
        text.append("request headers\n", style="bold")
        for name, value in sorted(event.request_headers.items()):
            text.append(f"  {escape_controls(name)}: {escape_controls(value)}\n")
    for title, body in (
        ("request body", event.request_body),
        ("response body", event.response_body),
    ):
        if not body:
            continue
        text.append(f"{title}\n", style="bold")
        try:
            shown = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode()
        except orjson.JSONDecodeError:
            shown = body.decode("utf-8", "replace")
        if len(shown) > BODY_PREVIEW:
            shown = shown[:BODY_PREVIEW] + f"\n… ({len(shown) - BODY_PREVIEW} more characters)"
        text.append(escape_controls(shown, keep_newlines=True) + "\n")
    if event.bodies_truncated:
        text.append("(bodies were cut at the workspace's size cap)\n", style="dim")
    return text


class RequestDetailScreen(DetailScreen):
    def __init__(
        self,
        event: telemetry_pb2.UsageEvent,
        fetch: Callable[[str], Awaitable[telemetry_pb2.UsageEvent]] | None = None,
    ) -> None:
        """``fetch`` (the client's get_log) loads the logged headers and bodies in a worker."""
        super().__init__()
        self.event = event
        self.fetch = fetch
        self.bodies: Text | None = None

    def compose(self) -> ComposeResult:
        yield Static(
            fmt.plain(f"Request {self.event.request_id} · esc back", style="bold"),
            classes="view-title",
        )
        fields = fmt.field_grid(
            (fmt.plain(name), fmt.plain(value)) for name, value in detail_fields(self.event)
        )
        parts: list[Table | Text] = [fields, Text("")]
        if self.event.attempt_log:
            parts.append(attempt_lines(self.event))
        else:
            parts.append(Text("no attempt log recorded", style="dim"))
        with VerticalScroll(id="detail-body"):
            yield Static(Group(*parts), id="detail")
            yield Static(Text(""), id="bodies")

    def on_mount(self) -> None:  # Textual calls DetailScreen.on_mount (the focus) too
        if self.fetch is not None:
            self.load_bodies()

    @work(exclusive=True)
    async def load_bodies(self) -> None:
        assert self.fetch is not None
        try:
            full = await self.fetch(self.event.request_id)
        except Exception:  # not logged (the workspace keeps no bodies) or unreachable
            self.bodies = Text("\nno headers or bodies logged for this request", style="dim")
        else:
            has_bodies = full.request_headers or full.request_body or full.response_body
            self.bodies = (
                body_text(full)
                if has_bodies
                else Text("\nno headers or bodies logged for this request", style="dim")
            )
        self.query_one("#bodies", Static).update(self.bodies)
