"""``gwctl tui``: a k9s-style console over the control plane.

Seven views (Overview, Keys, Providers, Sessions, Logs, Audit, Developers) in a ContentSwitcher;
``1``-``7`` or ``:name`` switch views, ``/`` filters the current table, ``?`` helps, ``esc`` goes back, ``q``
quits. Background workers talk to the control plane and *post messages* to the views: the
poll worker refreshes the current view every ``poll_interval`` seconds (at once after a view
switch), the tail worker follows the live log stream and reconnects after a failure (the audit
worker does the same for ``TailAudit``, giving up when the token may not read it), and one
stats worker per view with a ``STATS_GROUP`` (Overview, Providers) follows ``StreamStats``
(a frame a second). A control plane without StreamStats leaves those views on the poll alone,
with a note in the status bar. Every control-plane error lands in the status bar; none
reaches the screen as a traceback.

This module is long (~400 lines) because a Textual ``App`` is one class (its bindings, workers and
message handlers are its methods); the views and widgets it switches between live in their own
modules.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar

import grpc
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import ContentSwitcher, Input

from gwclient.api import ConsoleAPI
from gwclient.client import GatewayClient
from gwclient.errors import ClientError
from gwcommon.terminal import escape_controls
from tui.messages import (
    AuditArrived,
    DisableRequested,
    LogArrived,
    RevokeRequested,
    StatsArrived,
    StatusUpdate,
)
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.widgets.audit import AuditView
from tui.widgets.chrome import VIEWS, StatusBar, ViewTabs
from tui.widgets.developers import DevelopersView
from tui.widgets.logs import LogsView
from tui.widgets.table_view import TableView
from tui.widgets.views import KeysView, OverviewView, ProvidersView, SessionsView

ALIASES = {
    "overview": "overview", "o": "overview", "ov": "overview", "ws": "overview",
    "workspaces": "overview", "keys": "keys", "key": "keys", "k": "keys",
    "providers": "providers", "provider": "providers", "p": "providers", "dp": "providers",
    "sessions": "sessions", "session": "sessions", "s": "sessions",
    "logs": "logs", "log": "logs", "l": "logs",
    "audit": "audit", "a": "audit", "changes": "audit",
    "developers": "developers", "developer": "developers", "devs": "developers",
    "dev": "developers", "d": "developers",
}  # fmt: skip
TAIL_LIMIT = 200
STATS_WINDOW_S = 60


def describe(exc: BaseException) -> str:
    """One line for the status bar: a ClientError's own message, else the exception's name."""
    if isinstance(exc, ClientError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class TollgateApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Tollgate"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(str(n), f"view('{view_id}')", title, show=False)
            for n, (view_id, title) in enumerate(VIEWS, 1)
        ),
        Binding("colon", "command_line", "jump"),
        Binding("slash", "filter", "filter"),
        Binding("question_mark", "help", "help"),
        Binding("escape", "go_back", "back"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(
        self,
        client: ConsoleAPI | None = None,
        *,
        target: str = "",
        token: str = "",
        tls_ca: str = "",
        readonly: bool = False,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self._client = client
        self._owns_client = client is None
        self._token = token
        self._tls_ca = tls_ca
        self.target = client.target if client is not None else target
        self.readonly = readonly
        self.poll_interval = poll_interval
        self.clock = clock  # "now" for what the views show (tests and screenshots fix it)
        self._wake = asyncio.Event()
        self.revoked: list[str] = []
        self.disabled: list[str] = []

    @property
    def client(self) -> ConsoleAPI:
        assert self._client is not None, "the client is made on mount"
        return self._client

    # ---- layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield ViewTabs(id="tabs")
        with ContentSwitcher(initial="overview", id="views"):
            yield OverviewView()
            yield KeysView()
            yield ProvidersView()
            yield SessionsView()
            yield LogsView()
            yield AuditView()
            yield DevelopersView()
        yield Input(
            id="cmdline",
            placeholder=":overview :keys :providers :sessions :logs :audit :developers :q",
        )
        yield Input(id="filter", placeholder="/ filter rows (enter keeps, esc clears)")
        yield StatusBar(self.target, self.readonly)

    def on_mount(self) -> None:
        if self._client is None:  # made here: a grpc.aio channel belongs to this event loop
            self._client = GatewayClient(self.target, self._token, tls_ca=self._tls_ca)
        for view in self.query(TableView):
            view.clock = self.clock
        self.query_one(ViewTabs).show("overview")
        self.current_view.table.focus()
        self.poll()
        self.tail()
        self.tail_audit()
        for view in self.query(TableView):
            group_by = getattr(view, "STATS_GROUP", "")
            if group_by:
                self.run_worker(
                    self.follow_stats(view, group_by),
                    group=f"stats-{group_by}",
                    exclusive=True,
                    exit_on_error=False,
                )

    async def on_unmount(self) -> None:
        if self._owns_client and isinstance(self._client, GatewayClient):
            await self._client.close()

    @property
    def current_view(self) -> TableView:
        switcher = self.query_one("#views", ContentSwitcher)
        return self.query_one(f"#{switcher.current}", TableView)

    @property
    def status_bar(self) -> StatusBar:
        return self.query_one(StatusBar)

    # ---- workers -----------------------------------------------------------------------

    @work(exclusive=True, group="poll", exit_on_error=False)
    async def poll(self) -> None:
        """Refresh the current view now, then every ``poll_interval`` s or on a view switch."""
        while True:
            self._wake.clear()
            view = self.current_view
            if not isinstance(view, (LogsView, AuditView)):  # streamed, not polled
                try:
                    loaded = await view.fetch(self.client)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a refusal, an outage or a bug: the status bar says
                    self.post_message(StatusUpdate(describe(exc), error=True, source="poll"))
                else:
                    view.post_message(loaded)
                    self.post_message(StatusUpdate("", source="poll"))
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass

    @work(exclusive=True, group="tail", exit_on_error=False)
    async def tail(self) -> None:
        """Follow the live log; after an error or the stream's end, reconnect a second later."""
        logs = self.query_one(LogsView)
        while True:
            try:
                async for event in self.client.tail_logs(follow=True, limit=TAIL_LIMIT):
                    logs.post_message(LogArrived(event))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.post_message(StatusUpdate(f"log tail: {describe(exc)}", error=True))
            await asyncio.sleep(self.poll_interval)

    @work(exclusive=True, group="audit", exit_on_error=False)
    async def tail_audit(self) -> None:
        """Follow the audit log; reconnect a second after a failure. A token that may not read
        it (or a control plane without it) leaves a note in the Audit view, not a red bar."""
        view = self.query_one(AuditView)
        while True:
            try:
                async for event in self.client.tail_audit(follow=True, limit=TAIL_LIMIT):
                    view.post_message(AuditArrived(event))
                    self.post_message(StatusUpdate("", source="audit"))
            except asyncio.CancelledError:
                raise
            except ClientError as exc:
                if exc.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNIMPLEMENTED):
                    view.set_unavailable(f"unavailable: {exc.message}")
                    return
                self.post_message(
                    StatusUpdate(f"audit tail: {exc.message}", error=True, source="audit")
                )
            except Exception as exc:
                self.post_message(
                    StatusUpdate(f"audit tail: {describe(exc)}", error=True, source="audit")
                )
            await asyncio.sleep(self.poll_interval)

    async def follow_stats(self, view: TableView, group_by: str) -> None:
        """Feed ``view`` live stats frames; reconnect a second after a failure, give up (the
        poll still runs) when the control plane does not implement StreamStats."""
        source = f"stats-{group_by}"
        while True:
            try:
                async for frame in self.client.stream_stats(group_by, STATS_WINDOW_S):
                    view.post_message(StatsArrived(frame))
                    self.post_message(StatusUpdate("", source=source))
            except asyncio.CancelledError:
                raise
            except ClientError as exc:
                if exc.code == grpc.StatusCode.UNIMPLEMENTED:
                    note = "live stats unavailable (older control plane): polling only"
                    self.post_message(StatusUpdate(note, source=source))
                    return
                self.post_message(
                    StatusUpdate(f"live stats: {exc.message}", error=True, source=source)
                )
            except Exception as exc:
                self.post_message(
                    StatusUpdate(f"live stats: {describe(exc)}", error=True, source=source)
                )
            await asyncio.sleep(self.poll_interval)

    async def _act(
        self, call: Awaitable[object], attempt: str, success: str, done: list[str], done_id: str
    ) -> None:
        """One admin action (in an ``actions`` worker): a refusal shows as ``attempt: why``; a
        success is remembered in ``done`` (the views mark it), shown, and wakes the poller."""
        try:
            await call
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.post_message(StatusUpdate(f"{attempt}: {describe(exc)}", error=True))
            return
        done.append(done_id)
        self.post_message(StatusUpdate(success))
        self._wake.set()

    @work(group="actions", exit_on_error=False)
    async def revoke(self, key_id: str) -> None:
        call = self.client.revoke_key(key_id)
        await self._act(call, f"revoke {key_id}", f"revoked {key_id}", self.revoked, key_id)

    @work(group="actions", exit_on_error=False)
    async def disable_developer(self, developer_id: str, label: str) -> None:
        call = self.client.disable_developer(developer_id)
        success = f"disabled {label}: refused everywhere within a second"
        await self._act(call, f"disable {label}", success, self.disabled, developer_id)

    # ---- messages ----------------------------------------------------------------------

    def on_status_update(self, message: StatusUpdate) -> None:
        if not self.query(StatusBar):  # a worker's last word while the app shuts down
            return
        if not message.text:
            self.status_bar.clear_error(message.source)
        else:
            self.status_bar.set_message(message.text, error=message.error, source=message.source)

    def on_revoke_requested(self, message: RevokeRequested) -> None:
        if self.readonly:
            self.bell()
            self.post_message(StatusUpdate("read-only: revoking is disabled", error=True))
            return
        label = f"{message.name} ({message.key_id})" if message.name else message.key_id

        def answered(yes: bool | None) -> None:
            if yes:
                self.revoke(message.key_id)
            else:
                self.post_message(StatusUpdate(f"kept {message.key_id}"))

        self.push_screen(ConfirmScreen(f"Revoke key {label}? It stops working at once."), answered)

    def on_disable_requested(self, message: DisableRequested) -> None:
        label = escape_controls(message.email or message.developer_id)  # from the IdP
        if self.readonly:
            self.bell()
            self.post_message(StatusUpdate("read-only: disabling developers is off", error=True))
            return
        if message.already:
            self.post_message(StatusUpdate(f"{label} is already disabled"))
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.disable_developer(message.developer_id, label)
            else:
                self.post_message(StatusUpdate(f"kept {label}"))

        self.push_screen(
            ConfirmScreen(
                f"Disable developer {label} ({message.developer_id})? Their sign-in stops "
                "working on every data plane within a second."
            ),
            answered,
        )

    # ---- actions -----------------------------------------------------------------------

    def action_view(self, view_id: str) -> None:
        if len(self.screen_stack) > 1:
            return
        self._hide_inputs()
        self.query_one("#views", ContentSwitcher).current = view_id
        self.query_one(ViewTabs).show(view_id)
        self.current_view.table.focus()
        self._wake.set()

    def action_command_line(self) -> None:
        self._hide_inputs()
        self._open_input("#cmdline", "")

    def action_filter(self) -> None:
        self._hide_inputs()
        self._open_input("#filter", self.current_view.filter_text)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.current_view.HELP))

    def action_go_back(self) -> None:
        cmdline = self.query_one("#cmdline", Input)
        filter_input = self.query_one("#filter", Input)
        if cmdline.display:
            self._hide_inputs()
        elif filter_input.display:
            self._hide_inputs()
            self.current_view.set_filter("")
        elif self.current_view.filter_text:
            self.current_view.set_filter("")
        self.current_view.table.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.current_view.set_filter(event.value.strip())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        self._hide_inputs()
        self.current_view.table.focus()
        if event.input.id == "cmdline":
            self.run_command(value)

    def run_command(self, command: str) -> None:
        name = command.lstrip(":").strip().lower()
        if not name:
            return
        if name in ("q", "quit", "q!"):
            self.exit()
            return
        view_id = ALIASES.get(name) or next(
            (view_id for view_id, _ in VIEWS if view_id.startswith(name)), None
        )
        if view_id is None:
            self.bell()
            self.post_message(StatusUpdate(f"no view named {name!r}", error=True))
            return
        self.action_view(view_id)

    def _open_input(self, selector: str, value: str) -> None:
        box = self.query_one(selector, Input)
        box.value = value
        box.display = True
        box.focus()

    def _hide_inputs(self) -> None:
        for box in self.query(Input):
            box.display = False


def run_tui(target: str, token: str, *, readonly: bool = False, tls_ca: str = "") -> int:
    """Run the TUI in this terminal until the user quits; the exit code for gwctl."""
    TollgateApp(target=target, token=token, tls_ca=tls_ca, readonly=readonly).run()
    return 0
