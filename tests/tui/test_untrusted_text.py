"""Strings from clients (model, session id, metadata, user agent, path) and admins (key names)
are drawn as literal text: never parsed as markup, terminal controls shown escaped.

Before: a usage event whose model was ``x[/]`` raised MarkupError in the DataTable's render and
took the console down for every operator watching the Logs view; ``[@click=app.quit]…`` became a
link that quit the console; an ``ESC`` reached the operator's terminal.
"""

from __future__ import annotations

from gwapi.v1 import telemetry_pb2
from tests.tui.conftest import find_on_screen, make_app, on_view, screen_lines, settle
from tests.tui.console_data import audit_event, console_fake, log_event
from tui.screens.audit_detail import AuditDetailScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.request_detail import RequestDetailScreen
from tui.widgets.audit import AuditView
from tui.widgets.logs import LogsView
from tui.widgets.views import KeysView

WIDE = (200, 30)  # every column of the Logs view on screen
CLICK = "[@click=app.quit]quit[/]"
ANSI = "\x1b[2J\x1b]0;pwned\x07"


def assert_no_raw_controls(lines: list[str]) -> None:
    for line in lines:
        assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in line), repr(line)


async def test_markup_in_a_model_name_leaves_the_logs_view_working() -> None:
    client = console_fake(initial_logs=1)
    app = make_app(client)
    async with on_view(app, "5", LogsView, 1, WIDE) as (pilot, view):
        client.push_log(log_event(2, model_served="x[/]"))
        client.push_log(log_event(3, model_served="[bold]loud", key_name="[red]k"))
        client.push_log(log_event(4))  # later rows keep arriving
        await settle(pilot, lambda: len(view.shown) == 4)
        await pilot.pause()
        assert app.is_running
        for literal in ("x[/]", "[bold]loud", "[red]k", "req_0004"):
            assert find_on_screen(app, literal), literal


async def test_click_markup_is_shown_literally_and_clicking_it_does_nothing() -> None:
    client = console_fake(initial_logs=0)
    client.push_log(log_event(1, model_served=CLICK))
    app = make_app(client)
    async with on_view(app, "5", LogsView, 1, WIDE) as (pilot, _view):
        await pilot.pause()
        where = find_on_screen(app, CLICK)
        assert where is not None, "\n".join(screen_lines(app))
        for dx in (0, len("[@click=app.quit]"), len(CLICK) - 1):
            await pilot.click(offset=(where.x + dx, where.y))
            await pilot.pause()
        assert app.is_running and app.return_code is None
        assert find_on_screen(app, CLICK) is not None


async def test_control_characters_are_shown_escaped_in_rows_and_detail() -> None:
    client = console_fake(initial_logs=0)
    event = log_event(
        1,
        model_served="m" + ANSI,
        session_id="s\rforged",
        user_agent="ua\x9b31m[/]",
        path="/v1/messages\u202etxt.exe",
        error_type="api_error",
        error_message="bad [/] \x1b[31mred",
    )
    event.metadata.update({"team": "x[/]\x1b[5m", "[b]k": "v"})
    client.push_log(event)
    client.usage["session"].append(telemetry_pb2.UsageRow(group="sess" + ANSI + "[/]", requests=1))
    app = make_app(client)
    async with on_view(app, "5", LogsView, 1, WIDE) as (pilot, _view):
        await pilot.pause()
        assert find_on_screen(app, "m\\x1b[2J\\x1b]0;pwned\\x07")
        assert_no_raw_controls(screen_lines(app))

        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, RequestDetailScreen))
        await settle(pilot, lambda: getattr(app.screen, "bodies", None) is not None)
        await pilot.pause()
        for literal in (
            "s\\rforged",
            "ua\\x9b31m[/]",
            "/v1/messages\\u202etxt.exe",
            "bad [/] \\x1b[31mred",
            "x[/]\\x1b[5m",
            "meta [b]k",
        ):
            assert find_on_screen(app, literal), literal
        assert_no_raw_controls(screen_lines(app))
        await pilot.press("escape")

        await pilot.press("4")  # Sessions: the session id is the group
        sessions = app.current_view
        await settle(pilot, lambda: len(sessions.shown) == 3)
        await pilot.pause()
        assert find_on_screen(app, "sess\\x1b[2J\\x1b]0;pwned\\x07[/]")
        assert_no_raw_controls(screen_lines(app))


async def test_key_names_with_markup_in_keys_view_and_revoke_prompt() -> None:
    client = console_fake()
    client.keys[0].name = "[@click=app.quit]ci[/]"
    app = make_app(client)
    async with on_view(app, "2", KeysView, 3, WIDE) as (pilot, view):
        await pilot.pause()
        assert find_on_screen(app, "[@click=app.quit]ci[/]")
        view.table.move_cursor(row=next(i for i, r in enumerate(view.shown) if r.key == "key_b"))
        await pilot.press("r")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause()
        assert find_on_screen(app, "Revoke key [@click=app.quit]ci[/] (key_b)?")
        await pilot.press("n")
        assert app.is_running


async def test_audit_rows_and_diff_show_admin_strings_literally() -> None:
    client = console_fake()
    client.initial_audit = [
        audit_event(
            1,
            actor_name="[@click=app.quit]lead[/]",
            method="UpdateKey",
            action="key.update",
            resource_kind="key",
            resource="key_1",
            before_json='{"name": "old[/]", "metadata": {"x[/]\\u001b": 1}}',
            after_json='{"name": "new[/]", "metadata": {"x[/]\\u001b": 2}}',
        )
    ]
    app = make_app(client)
    async with on_view(app, "6", AuditView, 1, WIDE) as (pilot, _view):
        await pilot.pause()
        assert find_on_screen(app, "[@click=app.quit]lead[/] (admin)")
        assert find_on_screen(app, "metadata.x[/]\\x1b, name")
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, AuditDetailScreen))
        await pilot.pause()
        assert find_on_screen(app, '- name: "old[/]"')
        assert find_on_screen(app, "+ metadata.x[/]\\x1b: 2")
        assert_no_raw_controls(screen_lines(app))
        assert app.is_running
