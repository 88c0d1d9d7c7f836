"""The console's Audit view against the fake client, at 80x24: live admin changes, filter,
before/after detail, and a token that may not read the audit log."""

from __future__ import annotations

import grpc
from rich.text import Text

from gwclient.errors import ClientError
from tests.tui.conftest import make_app, on_view, settle
from tests.tui.console_data import audit_event, console_fake
from tests.tui.test_app import screen_text
from tui.screens.audit_detail import AuditDetailScreen
from tui.screens.help import HelpScreen
from tui.widgets.audit import AuditView

SIZE = (80, 24)


def cells(view: AuditView) -> dict[str, list[str]]:
    return {
        row.key: [c.plain if isinstance(c, Text) else str(c) for c in row.cells]
        for row in view.shown
    }


async def test_six_and_colon_audit_open_the_live_audit_log() -> None:
    client = console_fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        view = app.query_one(AuditView)
        assert app.current_view is view
        await settle(pilot, lambda: len(view.shown) == 3)
        update = cells(view)["audit-1"]
        assert update[1:] == [
            "workspace.update",
            "research",
            "research",
            "bootstrap admin token (admin)",
            "10.0.0.1:50123",
            "limits.rpm",
        ]
        assert cells(view)["audit-2"][1:4] == ["key.create", "key_2", "platform"]
        assert "1 Overview" in screen_text(app) and "6 Audit" in screen_text(app)
        await pilot.press("1")
        assert app.current_view.VIEW_ID == "overview"
        await pilot.press("colon", *"audit", "enter")
        assert app.current_view is view
        assert "Audit · 3 · following" in view.title_text()


async def test_new_changes_stream_in_and_replays_are_not_duplicated() -> None:
    client = console_fake()
    app = make_app(client)
    async with on_view(app, "6", AuditView, 3, SIZE) as (pilot, view):
        table = view.log_table
        client.push_audit(audit_event(4, actor_name="ci", actor_role="workspace-admin"))
        client.push_audit(audit_event(2))  # a reconnected tail replays what it sent
        client.push_audit(audit_event(5))
        await settle(pilot, lambda: len(view.shown) == 5)
        assert [row.key for row in view.shown][-2:] == ["audit-4", "audit-5"]
        assert cells(view)["audit-4"][4] == "ci (workspace-admin)"
        assert table.cursor_row == 4 and table.following  # followed to the newest
        await pilot.press("up")
        client.push_audit(audit_event(6))
        await settle(pilot, lambda: len(view.shown) == 6)
        assert table.cursor_row == 3 and "paused" in view.title_text()
        assert client.audit_calls == 1


async def test_filter_keeps_matching_changes_including_new_ones() -> None:
    client = console_fake()
    app = make_app(client)
    async with on_view(app, "6", AuditView, 3, SIZE) as (pilot, view):
        await pilot.press("slash", *"key.create", "enter")
        assert [row.key for row in view.shown] == ["audit-2"]
        client.push_audit(audit_event(4))  # another key.create
        client.push_audit(audit_event(5))  # a workspace.update
        await settle(pilot, lambda: len(view.rows) == 5)
        assert [row.key for row in view.shown] == ["audit-2", "audit-4"]
        assert "/key.create" in view.title_text()
        await pilot.press("escape")
        assert len(view.shown) == 5


async def test_enter_shows_before_and_after() -> None:
    client = console_fake()
    app = make_app(client)
    async with on_view(app, "6", AuditView, 3, SIZE) as (pilot, view):
        await pilot.press("up", "up", "enter")  # the workspace.update (event 1)
        assert isinstance(app.screen, AuditDetailScreen)
        assert app.screen.event.id == 1
        text = screen_text(app)
        assert "Audit event 1 · workspace.update" in text
        assert "- limits.rpm: 60" in text and "+ limits.rpm: 120" in text
        assert "UpdateWorkspace" in text and "10.0.0.1:50123" in text
        await pilot.press("escape")
        assert app.current_view is view and not isinstance(app.screen, AuditDetailScreen)


async def test_a_token_without_audit_access_gets_a_note_not_a_retry_loop() -> None:
    client = console_fake()
    client.audit_error = ClientError(
        grpc.StatusCode.PERMISSION_DENIED, "a viewer token may not read the audit log"
    )
    app = make_app(client)
    app.poll_interval = 0.01
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        view = app.query_one(AuditView)
        await settle(pilot, lambda: bool(view.unavailable))
        for _ in range(10):
            await pilot.pause()
        assert client.audit_calls == 1
        assert "may not read the audit log" in view.title_text()
        assert not app.status_bar.error  # the other views stay usable, no red bar


async def test_an_outage_is_reported_and_the_tail_reconnects() -> None:
    client = console_fake()
    client.audit_error = ClientError(grpc.StatusCode.UNAVAILABLE, "control plane unreachable")
    app = make_app(client)
    app.poll_interval = 0.01
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(AuditView)
        await settle(pilot, lambda: "audit tail" in app.status_bar.message)
        client.audit_error = None
        await settle(pilot, lambda: len(view.shown) == 3)
        assert client.audit_calls >= 2


async def test_help_lists_the_audit_view() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        assert "Overview, Keys, Providers, Sessions, Logs, Audit" in text
        assert "admin changes, live" in text  # the Audit view's own line
