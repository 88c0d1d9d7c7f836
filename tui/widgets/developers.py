"""The Developers view: people signed in with Claude Code, their spend against their budget, and
over the last seven UTC days what the gateway metered next to what their Claude Code reported
(lines, commits, pull requests, edit decisions, its own cost estimate).

Each poll lists every developer (disabled ones too) and ``QueryUsage`` grouped by developer
since UTC midnight six days ago (activity is summed per UTC day, so the window is whole days).
A usage row belongs to a developer by id (its group) or, failing that, by email. ``!`` after the
client's cost marks a disagreement with the metered cost of more than 5 % (and a cent), see
:func:`gwcommon.activity.cost_disagreement`; ``enter`` shows the sentence. ``d`` asks the app to
disable the selected developer (confirmed first; refused in read-only mode).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from gwapi.v1 import common_pb2, telemetry_pb2
from gwclient.api import ConsoleAPI
from gwclient.budgets import main_budget
from gwcommon.activity import cost_disagreement
from tui import format as fmt
from tui.messages import DisableRequested, Row, RowsLoaded
from tui.screens.developer_detail import DeveloperDetailScreen
from tui.widgets.table_view import TableView

DAY_MS = 86_400_000
WINDOW_DAYS = 7
NONE = "—"


@dataclass(frozen=True)
class DeveloperActivity:
    """One developer and their usage row over the window (None: nothing metered or reported)."""

    developer: common_pb2.Developer
    usage: telemetry_pb2.UsageRow | None


def window_start(now_ms: int) -> int:
    """UTC midnight ``WINDOW_DAYS - 1`` days before today: seven whole UTC days."""
    return now_ms - now_ms % DAY_MS - (WINDOW_DAYS - 1) * DAY_MS


def per_count(cost_micros: int, count: int, per: int = 1) -> int | None:
    """Metered micro-dollars per ``per`` units of ``count``; None when there is none."""
    if count <= 0:
        return None
    return (cost_micros * per + count // 2) // count


def ratio(micros: int | None) -> str:
    return NONE if micros is None else fmt.usd(micros)


def match_usage(
    developers: list[common_pb2.Developer], rows: list[telemetry_pb2.UsageRow]
) -> list[DeveloperActivity]:
    by_group = {row.group: row for row in rows if row.group}
    by_email: dict[str, telemetry_pb2.UsageRow] = {}
    for row in rows:
        if row.developer_email:
            by_email.setdefault(row.developer_email.lower(), row)
    return [
        DeveloperActivity(d, by_group.get(d.id) or by_email.get(d.email.lower()))
        for d in developers
    ]


def client_cost(usage: telemetry_pb2.UsageRow | None) -> Text:
    if usage is None or not usage.client_cost_micros:
        return Text("-", justify="right")
    if cost_disagreement(usage.cost_micros, usage.client_cost_micros) is None:
        return Text(fmt.usd(usage.client_cost_micros), justify="right")
    return Text(f"{fmt.usd(usage.client_cost_micros)} !", style="yellow", justify="right")


def state_text(developer: common_pb2.Developer) -> Text:
    if developer.disabled_at_ms:
        return Text("disabled", style="red")
    return Text("active", style="green")


def developer_row(item: DeveloperActivity) -> Row:
    d, u = item.developer, item.usage
    status = main_budget(list(d.budget_status))
    cost = u.cost_micros if u else 0
    added, removed = (u.lines_added, u.lines_removed) if u else (0, 0)
    prs = u.pull_requests if u else 0
    per_pr = per_count(cost, prs)
    state = "disabled" if d.disabled_at_ms else "active"
    cells = (
        fmt.plain(d.email or d.id),
        fmt.plain(d.workspace or "-"),
        state_text(d),
        fmt.spend_bar(status, width=5),
        Text(fmt.usd(cost), justify="right"),
        client_cost(u),
        Text(f"+{added:,}/-{removed:,}", justify="right"),
        Text(str(u.commits if u else 0), justify="right"),
        Text(str(prs), justify="right"),
        Text(f"{u.edits_accepted}/{u.edits_rejected}" if u else "0/0", justify="right"),
        Text(ratio(per_pr), justify="right"),
        fmt.stamp(d.last_sign_in_ms)[:16],
    )
    sort = (
        d.email,
        d.workspace,
        state,
        fmt.spend_ratio(status),
        cost,
        u.client_cost_micros if u else 0,
        added,
        u.commits if u else 0,
        prs,
        u.edits_accepted if u else 0,
        per_pr if per_pr is not None else -1,
        d.last_sign_in_ms,
    )
    return Row.of(d.id, cells, sort, extra=f"{d.name} {' '.join(d.groups)}")


class DevelopersView(TableView):
    VIEW_ID = "developers"
    TITLE = "Developers"
    COLUMNS = (
        "EMAIL", "WORKSPACE", "STATE", "SPEND / BUDGET", "COST 7d", "CLIENT 7d", "LINES +/-",
        "COMMITS", "PRS", "EDITS A/R", "$/PR", "LAST SIGN-IN",
    )  # fmt: skip
    HELP = (
        "people signed in with Claude Code · spend vs budget · last 7 UTC days: metered cost,"
        " Claude Code's own cost (! = more than 5 % off), lines, commits, PRs, edits accepted/"
        "rejected, $ per PR · enter detail · d disable (asks first; off with --readonly)"
    )
    BINDINGS = [Binding("d", "disable", "disable", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, DeveloperActivity] = {}

    async def fetch(self, client: ConsoleAPI) -> RowsLoaded:
        developers = await client.list_developers(include_disabled=True)
        usage = await client.query_usage(group_by="developer", since_ms=window_start(self.now_ms()))
        items = match_usage(list(developers), list(usage))
        self.items = {item.developer.id: item for item in items}
        active = sum(1 for d in developers if not d.disabled_at_ms)
        metered = sum(row.cost_micros for row in usage if row.group)
        reported = sum(row.client_cost_micros for row in usage)
        summary = f"{active} active · 7 d: {fmt.usd(metered)} metered"
        if reported:
            summary += f", {fmt.usd(reported)} self-reported"
        return RowsLoaded([developer_row(item) for item in items], summary)

    def selected(self) -> DeveloperActivity | None:
        row = self.current_row()
        return self.items.get(row.key) if row else None

    def action_disable(self) -> None:
        item = self.selected()
        if item is None:
            return
        d = item.developer
        self.post_message(DisableRequested(d.id, d.email, already=bool(d.disabled_at_ms)))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        item = self.selected()
        if item is not None:
            self.app.push_screen(DeveloperDetailScreen(item.developer, item.usage))
