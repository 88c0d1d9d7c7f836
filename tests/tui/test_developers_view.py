"""The Developers view (and the developer in the Logs view) against the fake client, at 80x24."""

from __future__ import annotations

from rich.text import Text

from gwapi.v1 import common_pb2
from tests.tui.conftest import make_app, settle
from tests.tui.console_data import console_fake, log_event
from tui.app import TollgateApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.developer_detail import DeveloperDetailScreen
from tui.screens.help import HelpScreen
from tui.screens.request_detail import RequestDetailScreen, detail_fields
from tui.widgets.developers import DevelopersView, window_start
from tui.widgets.logs import LogsView
from tui.widgets.table_view import TableView

SIZE = (80, 24)
ALICE, BOB, CAROL = "dev_00000000000000a1", "dev_00000000000000b2", "dev_00000000000000c3"


def plain(cell: object) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def cells_of(view: TableView) -> dict[str, list[str]]:
    return {row.key: [plain(cell) for cell in row.cells] for row in view.shown}


def keys_of(view: TableView) -> list[str]:
    return [row.key for row in view.shown]


async def open_developers(app: TollgateApp, pilot: object, key: str = "7") -> DevelopersView:
    await pilot.press(key)  # type: ignore[attr-defined]
    view = app.current_view
    assert isinstance(view, DevelopersView)
    await settle(pilot, lambda: len(view.shown) == 3)  # type: ignore[arg-type]
    return view


async def test_seven_shows_developers_spend_and_activity() -> None:
    client = console_fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_developers(app, pilot)
        assert app.focused is view.table
        assert keys_of(view) == [ALICE, BOB, CAROL]  # disabled ones too
        cells = cells_of(view)
        alice = cells[ALICE]
        assert alice[:3] == ["alice@example.com", "platform", "active"]
        assert "24%" in alice[3] and "$12.00/$50.00 day" in alice[3]
        assert alice[4:11] == ["$12.00", "$13.50 !", "+900/-120", "6", "3", "41/4", "$4.00"]
        assert alice[11] == "2023-11-14 22:21"  # last sign-in
        bob = cells[BOB]
        assert bob[3] == "no budget"
        assert bob[5] == "$0.40"  # 0.5 % off the metered cost: no marker
        assert bob[10] == "—"  # no pull request: no ratio
        carol = cells[CAROL]
        assert carol[2] == "disabled" and carol[4:6] == ["$0", "-"]
        assert "2 active" in view.summary and "$12.40 metered" in view.summary
        assert client.called("query_usage", group_by="developer")
        assert client.called("list_developers")


def test_the_window_is_seven_whole_utc_days() -> None:
    day = 86_400_000
    now = 1_700_000_600_000
    start = window_start(now)
    assert start % day == 0 and now - start < 7 * day and now - start >= 6 * day


async def test_colon_jumps_and_slash_filters() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon", *"developers", "enter")
        assert app.current_view.VIEW_ID == "developers"
        await pilot.press("1", "colon", *"devs", "enter")
        view = app.current_view
        assert view.VIEW_ID == "developers"
        await settle(pilot, lambda: len(view.shown) == 3)
        await pilot.press("slash", *"research")
        assert keys_of(view) == [BOB]
        await pilot.press("escape")
        await pilot.press("slash", *"platform-eng", "enter")  # groups are searched too
        assert keys_of(view) == [ALICE]
        await pilot.press("escape")
        assert len(view.shown) == 3


async def test_enter_opens_the_developers_detail_and_esc_returns() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        view = await open_developers(app, pilot)
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DeveloperDetailScreen)
        assert screen.developer.id == ALICE
        fields = {label: value.plain for label, value in screen_fields(screen)}
        assert fields["groups"] == "platform-eng"
        assert fields["limits"] == "$50.00/day, rpm 120 (workspace member limits)"
        assert fields["sessions"] == "2"
        assert fields["$ / PR"] == "$4.00" and fields["$ / 100 lines"] == "$1.33"
        assert "Claude Code reported $13.5000, the gateway metered $12.0000" in fields["! cost"]
        await pilot.press("escape")
        assert app.screen is not screen and app.current_view is view


def screen_fields(screen: DeveloperDetailScreen) -> list[tuple[str, Text]]:
    from tui.screens.developer_detail import detail_fields as developer_fields

    return developer_fields(screen.developer, screen.usage)


async def test_help_lists_the_developers_view() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_developers(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "disable" in app.screen.view_help and "$ per PR" in app.screen.view_help
        from tui.screens.help import GLOBAL_KEYS

        keys = dict(GLOBAL_KEYS)
        assert "Developers" in keys["1-7"] and ":devs" in keys[":"]
        assert "Developers: disable the selected one" in keys["d"]


async def test_d_asks_then_disables_and_the_row_follows() -> None:
    client = console_fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_developers(app, pilot)
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        assert "alice@example.com (dev_00000000000000a1)" in app.screen.question
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)
        assert client.disabled == [] and "kept alice@example.com" in app.status_bar.message
        await pilot.press("d", "y")
        await settle(pilot, lambda: client.disabled == [ALICE])
        await settle(pilot, lambda: cells_of(view)[ALICE][2] == "disabled")
        assert "disabled alice@example.com" in app.status_bar.message
        assert app.disabled == [ALICE]


async def test_d_on_a_disabled_developer_does_nothing() -> None:
    client = console_fake()
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_developers(app, pilot)
        await pilot.press("down", "down")
        assert view.current_row().key == CAROL  # type: ignore[union-attr]
        await pilot.press("d")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert "already disabled" in app.status_bar.message and client.disabled == []


async def test_readonly_refuses_d() -> None:
    client = console_fake()
    app = make_app(client, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await open_developers(app, pilot)
        await pilot.press("d")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert "read-only" in app.status_bar.message
        assert client.disabled == [] and not client.called("disable_developer")


async def test_refreshes_live() -> None:
    client = console_fake()
    app = TollgateApp(client, poll_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_developers(app, pilot)
        client.developers.append(
            common_pb2.Developer(id="dev_00000000000000d4", email="dan@example.com")
        )
        await settle(pilot, lambda: "dev_00000000000000d4" in keys_of(view), tries=400)


async def test_strings_from_the_idp_are_text_not_markup() -> None:
    client = console_fake()
    client.developers[1].email = "[bold red]bob[/]\x1b[2J@example.com"
    client.developers[1].name = "[@click=app.quit]Bob[/]"
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        view = await open_developers(app, pilot)
        assert cells_of(view)[BOB][0] == "[bold red]bob[/]\\x1b[2J@example.com"
        await pilot.press("down", "enter")
        assert isinstance(app.screen, DeveloperDetailScreen)
        await pilot.pause()
        assert app.is_running  # neither the markup nor the click action took effect


async def test_logs_name_the_developer_in_the_key_column() -> None:
    client = console_fake(initial_logs=2)
    client.initial_logs.append(
        log_event(
            3,
            key_id="",
            key_name="",
            developer_id=ALICE,
            developer_email="alice@example.com",
        )
    )
    app = make_app(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        view = app.current_view
        assert isinstance(view, LogsView)
        await settle(pilot, lambda: len(view.shown) == 3)
        cells = cells_of(view)
        assert cells["req_0003"][3] == "alice@example.com"
        assert cells["req_0001"][3] == "ci-bot"
        await pilot.press("enter")
        assert isinstance(app.screen, RequestDetailScreen)
        fields = dict(detail_fields(app.screen.event))
        assert fields["developer"] == f"alice@example.com ({ALICE})"
        assert "key" not in fields
