"""The TUI against a fake client, at 80x24: every view and every key binding.

This module is long because it walks every view and every key binding of one App at one terminal
size, against one fake client."""

from __future__ import annotations

import functools
import html
from pathlib import Path

import grpc
from rich.text import Text
from textual.widgets import Input, Sparkline

from gwapi.v1 import telemetry_pb2
from gwclient.errors import ClientError
from tests.tui.conftest import make_app, on_view, settle
from tests.tui.console_data import console_fake, log_event
from tui.app import TollgateApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.request_detail import RequestDetailScreen
from tui.screenshot import export_svg
from tui.widgets.logs import LogsView
from tui.widgets.table_view import TableView
from tui.widgets.views import KeysView, ProvidersView, SessionsView

SIZE = (80, 24)


def screen_text(app: TollgateApp) -> str:
    """What the terminal shows (the SVG export, unescaped)."""
    svg = app.export_screenshot()
    return html.unescape(svg).replace("\xa0", " ")


def plain(cell: object) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def cells_of(view: TableView) -> dict[str, list[str]]:
    return {row.key: [plain(cell) for cell in row.cells] for row in view.shown}


def has_bodies(screen: RequestDetailScreen) -> bool:
    return screen.bodies is not None


def keys_of(view: TableView) -> list[str]:
    return [row.key for row in view.shown]


async def test_overview_shows_workspaces_spend_and_last_hour() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        view = app.current_view
        await settle(pilot, lambda: view.loaded)
        assert view.VIEW_ID == "overview"
        assert keys_of(view) == ["platform", "research", "sandbox"]
        cells = cells_of(view)
        bar = cells["research"][5]
        assert "95%" in bar and "$9.50/$10.00 day" in bar  # the budget closest to its limit
        assert "no budget" in cells["sandbox"][5]
        assert cells["platform"][6] == "120"  # REQ 1h
        assert cells["research"][3] == "10.0%"  # no stats frame yet: the last hour's error rate
        assert cells["platform"][1] == "-"  # REQ/s waits for the stream
        assert "160 req" in view.summary and "$3.30" in view.summary


async def test_number_keys_switch_views() -> None:
    client = console_fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        expected = {
            "2": ("keys", ["key_b", "key_a", "key_c"]),
            "3": ("providers", ["anthropic", "bedrock", "sim"]),
            "4": ("sessions", ["sess-alpha", "sess-beta"]),
            "5": ("logs", ["req_0001", "req_0002", "req_0003"]),
            "1": ("overview", ["platform", "research", "sandbox"]),
        }
        for key, (view_id, rows) in expected.items():
            await pilot.press(key)
            view = app.current_view
            assert view.VIEW_ID == view_id
            await settle(pilot, lambda v=view, r=rows: keys_of(v) == r)  # type: ignore[misc]
            assert app.focused is view.table


async def test_colon_jumps_to_a_view_and_reports_unknown_names() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon")
        assert app.query_one("#cmdline", Input).has_focus
        await pilot.press(*"keys", "enter")
        assert app.current_view.VIEW_ID == "keys"
        assert not app.query_one("#cmdline", Input).display
        await pilot.press("colon", *"prov", "enter")
        assert app.current_view.VIEW_ID == "providers"
        await pilot.press("colon", *"nope", "enter")
        await pilot.pause()
        assert app.current_view.VIEW_ID == "providers"
        assert "no view named 'nope'" in app.status_bar.message
        await pilot.press("colon", "l", "escape")  # esc abandons the command line
        assert app.current_view.VIEW_ID == "providers"
        assert not app.query_one("#cmdline", Input).display


async def test_slash_filters_the_current_table_and_esc_clears() -> None:
    app = make_app()
    async with on_view(app, "2", KeysView, 3, SIZE) as (pilot, view):
        await pilot.press("slash", *"plat")
        assert keys_of(view) == ["key_a", "key_c"]
        await pilot.press("enter")  # keeps the filter, back to the table
        assert app.focused is view.table
        assert keys_of(view) == ["key_a", "key_c"]
        assert "/plat" in view.title_text()
        await pilot.press("escape")
        assert len(view.shown) == 3
        await pilot.press("slash", *"research", "escape")  # esc in the prompt clears too
        assert len(view.shown) == 3


async def test_question_mark_shows_help_and_esc_returns() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("2")  # view keys do nothing under the help
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        assert app.current_view.VIEW_ID == "overview"


async def test_keys_sort_by_column() -> None:
    app = make_app()
    async with on_view(app, "2", KeysView, 3, SIZE) as (pilot, view):
        await pilot.press("s")  # NAME ascending
        assert keys_of(view) == ["key_a", "key_b", "key_c"]
        await pilot.press("S")  # reversed
        assert keys_of(view) == ["key_c", "key_b", "key_a"]
        view.sort_by(6)  # CREATED (what a header click does)
        assert keys_of(view) == ["key_a", "key_c", "key_b"]
        assert "sort CREATED▲" in view.title_text()


async def test_revoke_asks_and_calls_revoke_key_on_yes() -> None:
    client = console_fake()
    app = make_app(client)
    async with on_view(app, "2", KeysView, 3, SIZE) as (pilot, view):
        assert view.current_row().key == "key_b"  # type: ignore[union-attr]
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        assert "ci-bot (key_b)" in app.screen.question
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)
        assert client.revoked == []
        await pilot.press("r", "y")
        await settle(pilot, lambda: client.revoked == ["key_b"])
        await settle(pilot, lambda: cells_of(view)["key_b"][3] == "revoked")
        assert "revoked key_b" in app.status_bar.message


async def test_readonly_refuses_revoke() -> None:
    client = console_fake()
    app = make_app(client, readonly=True)
    async with on_view(app, "2", KeysView, 3, SIZE) as (pilot, _view):
        await pilot.press("r")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert "read-only" in app.status_bar.message
        assert client.revoked == []


async def test_providers_show_settings_and_breakers() -> None:
    app = make_app()
    async with on_view(app, "3", ProvidersView, 3, SIZE) as (_pilot, view):
        cells = cells_of(view)
        assert cells["anthropic"][1:3] == ["anthropic", "closed"]
        assert "$ANTHROPIC_API_KEY" in cells["anthropic"][6]
        assert cells["bedrock"][2].startswith("open")
        assert cells["sim"][2].startswith("half_open")
        assert cells["bedrock"][6] == "region=us-east-1"
        assert "2/2 data planes connected" in view.summary and "v42" in view.summary


def stats_row(group: str, **fields: object) -> telemetry_pb2.StatsRow:
    return telemetry_pb2.StatsRow(group=group, **fields)  # type: ignore[arg-type]


async def test_overview_live_stats_frames_update_rows_and_sparkline() -> None:
    client = console_fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        view = app.current_view
        await settle(pilot, lambda: view.loaded and "workspace" in client.stats_calls)
        client.push_stats(
            "workspace",
            stats_row(
                "research",
                requests_per_s=2.5,
                error_rate=0.2,
                latency_p50_ms=850,
                requests_per_second=[0] * 57 + [1, 4, 2],
            ),
        )
        await settle(pilot, lambda: cells_of(view)["research"][1] == "2.5")
        cells = cells_of(view)
        assert cells["research"][2] == "850ms" and cells["research"][3] == "20.0%"
        assert cells["research"][4].endswith("▂█▄")  # the last seconds, scaled to the busiest
        assert cells["platform"][1:4] == ["-", "-", "-"]  # no traffic in the window
        assert "2.5 req/s" in view.summary
        spark = app.query_one(Sparkline)
        assert list(spark.data or [])[-3:] == [1, 4, 2]

        client.push_stats("workspace", stats_row("platform", requests_per_s=7.0))
        await settle(pilot, lambda: cells_of(view)["platform"][1] == "7.0")
        assert cells_of(view)["research"][1] == "-"  # each frame replaces the last
        assert "2.5 req/s" not in screen_text(app) and "7.0" in screen_text(app)


async def test_providers_live_latency_and_errors() -> None:
    client = console_fake()
    app = make_app(client)
    async with on_view(app, "3", ProvidersView, 3, SIZE) as (pilot, view):
        client.push_stats(
            "provider",
            stats_row("anthropic", latency_p50_ms=420, latency_p95_ms=1900, error_rate=0.01),
        )
        await settle(pilot, lambda: cells_of(view)["anthropic"][3] == "420ms")
        cells = cells_of(view)
        assert cells["anthropic"][4:6] == ["1900ms", "1.0%"]
        assert cells["bedrock"][3:6] == ["-", "-", "-"]
        assert cells["bedrock"][2].startswith("open")  # the poll's breaker state is kept


async def test_without_stream_stats_the_poll_goes_on_and_the_status_bar_says_so() -> None:
    client = console_fake()
    client.stats_error = ClientError(grpc.StatusCode.UNIMPLEMENTED, "does not implement")
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        view = app.current_view
        await settle(pilot, lambda: "live stats unavailable" in app.status_bar.message)
        assert not app.status_bar.error
        await settle(pilot, lambda: view.loaded)
        assert cells_of(view)["research"][3] == "10.0%"  # the polled last-hour numbers
        assert client.stats_calls.count("workspace") == 1  # not retried


async def test_stream_stats_outage_is_reported_and_retried() -> None:
    client = console_fake()
    client.stats_error = ClientError(grpc.StatusCode.UNAVAILABLE, "cannot reach it")
    app = TollgateApp(client, poll_interval=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: "live stats: cannot reach it" in app.status_bar.message)
        assert app.status_bar.error
        client.stats_error = None
        await settle(pilot, lambda: client.stats_calls.count("workspace") >= 2)
        client.push_stats("workspace", stats_row("platform", requests_per_s=1.0))
        client.push_stats("provider")  # each stream clears its own error with its first frame
        view = app.current_view
        await settle(pilot, lambda: view.loaded and cells_of(view)["platform"][1] == "1.0")
        await settle(pilot, lambda: not app.status_bar.error)


async def test_sessions_show_requests_tokens_cost() -> None:
    app = make_app()
    async with on_view(app, "4", SessionsView, 2, SIZE) as (_pilot, view):
        alpha = cells_of(view)["sess-alpha"]
        assert alpha == ["sess-alpha", "12", "0", "50k", "4.0k", "120k", "$1.25"]


async def test_logs_follow_new_records_until_scrolled_up() -> None:
    client = console_fake()
    app = make_app(client)
    async with on_view(app, "5", LogsView, 3, SIZE) as (pilot, view):
        table = view.log_table
        assert table.cursor_row == 2 and table.following
        for n in range(4, 40):  # more than a screen
            client.push_log(log_event(n))
        await settle(pilot, lambda: len(view.shown) == 39)
        assert table.cursor_row == 38  # followed to the newest
        await pilot.press("up")
        assert not table.following and "paused" in view.title_text()
        client.push_log(log_event(40))
        await settle(pilot, lambda: len(view.shown) == 40)
        assert table.cursor_row == 37  # stayed where the user went
        await pilot.press("end")
        assert table.following and table.cursor_row == 39
        client.push_log(log_event(41))
        await settle(pilot, lambda: len(view.shown) == 41)
        assert table.cursor_row == 40
        assert client.tail_calls == 1


async def test_logs_filter_applies_to_new_records() -> None:
    client = console_fake()
    app = make_app(client)
    async with on_view(app, "5", LogsView, 3, SIZE) as (pilot, view):
        await pilot.press("slash", *"overloaded", "enter")
        assert view.shown == []
        client.push_log(log_event(4, status=529, error_type="overloaded_error"))
        client.push_log(log_event(5))
        await settle(pilot, lambda: len(view.rows) == 5)
        assert keys_of(view) == ["req_0004"]
        await pilot.press("escape")
        assert len(view.shown) == 5


async def test_enter_opens_request_detail_with_attempt_log() -> None:
    client = console_fake(initial_logs=0)
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        view = app.query_one(LogsView)
        attempts = [
            telemetry_pb2.Attempt(
                provider="anthropic", status=529, outcome="fell_back", error_type="overloaded_error"
            ),
            telemetry_pb2.Attempt(
                provider="bedrock", model="anthropic.claude", status=200, outcome="served"
            ),
        ]
        client.push_log(log_event(7, provider="bedrock", attempts=2, attempt_log=attempts))
        await settle(pilot, lambda: len(view.shown) == 1)
        await pilot.press("enter")
        assert isinstance(app.screen, RequestDetailScreen)
        assert app.screen.event.request_id == "req_0007"
        await pilot.pause()
        top = screen_text(app)
        assert "req_0007" in top and "bedrock" in top
        await pilot.press("end")  # the attempt log is below the fold at 80x24
        await pilot.pause()
        bottom = screen_text(app)
        for shown in ("attempt log", "fell_back", "overloaded_error", "served"):
            assert shown in bottom
        await pilot.press("escape")
        assert not isinstance(app.screen, RequestDetailScreen)
        assert app.current_view.VIEW_ID == "logs"


async def test_control_plane_errors_show_in_the_status_bar() -> None:
    client = console_fake()
    client.fail = ClientError(
        grpc.StatusCode.UNAVAILABLE, "cannot reach the control plane at fake: is it running?"
    )
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, lambda: "cannot reach" in app.status_bar.message)
        assert app.status_bar.error
        client.fail = None
        await pilot.press("2")  # a view switch polls at once
        view = app.current_view
        await settle(pilot, lambda: len(view.shown) == 3)
        await settle(pilot, lambda: app.status_bar.message == "")


async def test_q_quits() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0
    assert not app.is_running


async def test_colon_q_quits() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon", "q", "enter")
        await pilot.pause()
    assert not app.is_running


async def test_clicking_a_header_sorts_and_again_reverses() -> None:
    app = make_app()
    async with on_view(app, "2", KeysView, 3, SIZE) as (pilot, view):
        id_x = len("old-laptop") + 2 + 1  # past the NAME column and its padding
        await pilot.click("#keys DataTable", offset=(id_x, 0))
        await settle(pilot, lambda: keys_of(view) == ["key_a", "key_b", "key_c"])
        await pilot.click("#keys DataTable", offset=(id_x, 0))
        await settle(pilot, lambda: keys_of(view) == ["key_c", "key_b", "key_a"])
        assert "sort ID▼" in view.title_text()


async def test_logs_pageup_pauses_following() -> None:
    client = console_fake()
    app = make_app(client)
    async with on_view(app, "5", LogsView, 3, SIZE) as (pilot, view):
        await pilot.press("pageup")
        assert not view.log_table.following
        client.push_log(log_event(9))
        await settle(pilot, lambda: len(view.shown) == 4)
        assert view.log_table.cursor_row == 0


async def test_svg_export_of_a_view(tmp_path: Path) -> None:
    svg = await export_svg(console_fake(), "overview", tmp_path / "overview.svg")
    assert (tmp_path / "overview.svg").read_text() == svg
    text = html.unescape(svg).replace("\xa0", " ")
    assert "research" in text and "Overview" in text


async def test_request_detail_loads_logged_headers_and_bodies() -> None:
    client = console_fake(initial_logs=2)
    client.bodies["req_0002"] = (
        b'{"model":"claude-opus-4-8","messages":[]}',
        b"event: message_stop\n",
    )
    app = make_app(client)
    async with on_view(app, "5", LogsView, 2, SIZE) as (pilot, view):
        for request_id, expected in (
            ("req_0002", '"model": "claude-opus-4-8"'),
            ("req_0001", "no headers or bodies"),
        ):
            view.log_table.move_cursor(row=[r.key for r in view.shown].index(request_id))
            await pilot.press("enter")
            screen = app.screen
            assert isinstance(screen, RequestDetailScreen)
            await settle(pilot, functools.partial(has_bodies, screen))
            assert expected in screen.bodies.plain  # type: ignore[union-attr]
            if request_id == "req_0002":
                assert "x-api-key: [redacted]" in screen.bodies.plain  # type: ignore[union-attr]
            await pilot.press("escape")
