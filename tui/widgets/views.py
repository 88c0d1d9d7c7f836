"""Overview, Keys, Providers and Sessions: what each polls and how its rows look."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding

from gwapi.v1 import common_pb2
from tui import format as fmt
from tui.api import GatewayLike
from tui.messages import RevokeRequested, Row, RowsLoaded
from tui.widgets.table_view import TableView

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


class OverviewView(TableView):
    """Workspaces: spend against the budget closest to its limit, and the last hour's traffic."""

    VIEW_ID = "overview"
    TITLE = "Overview"
    COLUMNS = ("WORKSPACE", "SPEND / BUDGET", "REQ 1h", "COST 1h", "ERR%")
    HELP = "workspaces · spend vs budget · requests, cost and errors over the last hour"

    async def fetch(self, client: GatewayLike) -> RowsLoaded:
        workspaces = await client.list_workspaces()
        usage = await client.query_usage(group_by="workspace", since_ms=self.now_ms() - HOUR_MS)
        by_name = {row.group: row for row in usage}
        rows = []
        for ws in workspaces:
            status = fmt.main_budget(list(ws.budget_status))
            u = by_name.get(ws.name)
            requests, errors, cost = (u.requests, u.errors, u.cost_micros) if u else (0, 0, 0)
            rows.append(
                Row.of(
                    ws.name,
                    (
                        ws.name,
                        fmt.spend_bar(status),
                        Text(str(requests), justify="right"),
                        Text(fmt.usd(cost), justify="right"),
                        _error_text(errors, requests),
                    ),
                    (ws.name, fmt.spend_ratio(status), requests, cost, _ratio(errors, requests)),
                )
            )
        total_req = sum(row.requests for row in usage)
        total_err = sum(row.errors for row in usage)
        total_cost = sum(row.cost_micros for row in usage)
        summary = (
            f"last hour: {total_req} req · {fmt.usd(total_cost)}"
            f" · err {fmt.percent(total_err, total_req)}"
        )
        return RowsLoaded(rows, summary)


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _error_text(errors: int, requests: int) -> Text:
    ratio = _ratio(errors, requests)
    style = "red" if ratio >= 0.05 else "yellow" if errors else ""
    return Text(fmt.percent(errors, requests), style=style, justify="right")


def key_state(key: common_pb2.VirtualKey, at_ms: int) -> str:
    if key.revoked_at_ms:
        return "revoked"
    if key.expires_at_ms and key.expires_at_ms <= at_ms:
        return "expired"
    return "active"


class KeysView(TableView):
    """Virtual keys, revoked ones included; ``r`` revokes the selected key after confirmation."""

    VIEW_ID = "keys"
    TITLE = "Keys"
    COLUMNS = ("NAME", "ID", "WORKSPACE", "STATE", "SPEND / BUDGET", "TARGET", "CREATED")
    HELP = "virtual keys · s sort · r revoke (asks first; off with --readonly)"
    BINDINGS = [Binding("r", "revoke", "revoke", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[str, common_pb2.VirtualKey] = {}

    async def fetch(self, client: GatewayLike) -> RowsLoaded:
        keys = await client.list_keys(include_revoked=True)
        now = self.now_ms()
        rows = []
        for key in keys:
            state = key_state(key, now)
            status = fmt.main_budget(list(key.budget_status))
            spend = (
                f"{fmt.usd(status.spent_micros)}/{fmt.usd(status.budget.amount_micros)}"
                f" {fmt.PERIODS.get(status.budget.period, '?')}"
                if status
                else "-"
            )
            target = f"route:{key.route}" if key.route else key.provider or "-"
            style = {"revoked": "red", "expired": "yellow"}.get(state, "green")
            rows.append(
                Row.of(
                    key.id,
                    (
                        key.name or "-",
                        key.id,
                        key.workspace,
                        Text(state, style=style),
                        spend,
                        target,
                        fmt.stamp(key.created_at_ms)[:10],
                    ),
                    (
                        key.name,
                        key.id,
                        key.workspace,
                        state,
                        fmt.spend_ratio(status),
                        target,
                        key.created_at_ms,
                    ),
                )
            )
        self.keys = {key.id: key for key in keys}
        active = sum(1 for key in keys if key_state(key, now) == "active")
        return RowsLoaded(rows, f"{active} active")

    def action_revoke(self) -> None:
        row = self.current_row()
        if row is None:
            return
        key = self.keys.get(row.key)
        self.post_message(RevokeRequested(row.key, key.name if key else ""))


class ProvidersView(TableView):
    """Providers with their settings and the breaker state data planes report for them."""

    VIEW_ID = "providers"
    TITLE = "Providers"
    COLUMNS = ("NAME", "KIND", "BREAKER", "SETTINGS")
    HELP = "providers · breaker state as reported by each data plane"

    async def fetch(self, client: GatewayLike) -> RowsLoaded:
        providers = await client.list_providers()
        planes = await client.list_dataplanes()
        states: dict[str, list[str]] = {}
        connected = 0
        for plane in planes.dataplanes:
            connected += 1 if plane.connected else 0
            if not plane.connected:
                continue
            for name, state in plane.breakers.items():
                states.setdefault(name, []).append(state)
        rows = []
        for provider in providers:
            breaker = _breaker_text(states.get(provider.name, []), connected)
            settings = settings_summary(provider)
            rows.append(
                Row.of(
                    provider.name,
                    (provider.name, provider.kind, breaker, settings),
                    (provider.name, provider.kind, breaker.plain, settings),
                )
            )
        summary = f"{connected}/{len(planes.dataplanes)} data planes connected"
        if planes.current_version:
            summary += f" · snapshot {planes.current_version}"
        return RowsLoaded(rows, summary)


def settings_summary(provider: common_pb2.Provider) -> str:
    parts = []
    if provider.base_url:
        parts.append(provider.base_url)
    if provider.api_key_env:
        parts.append(f"key ${provider.api_key_env}")
    parts.extend(f"{k}={v}" for k, v in sorted(provider.options.items()))
    return ", ".join(parts) or "-"


def _breaker_text(states: list[str], connected: int) -> Text:
    if not states:
        return Text("closed" if connected else "-", style="green" if connected else "dim")
    worst = "open" if "open" in states else states[0]
    style = "red" if worst == "open" else "yellow"
    suffix = f" {len(states)}/{connected}" if connected > 1 else ""
    return Text(worst + suffix, style=style)


class SessionsView(TableView):
    """Claude Code sessions over the last 24 hours."""

    VIEW_ID = "sessions"
    TITLE = "Sessions"
    COLUMNS = ("SESSION", "REQ", "ERR", "IN", "OUT", "CACHE R", "COST")
    HELP = "sessions (x-claude-code-session-id) over the last 24 hours"

    async def fetch(self, client: GatewayLike) -> RowsLoaded:
        usage = await client.query_usage(group_by="session", since_ms=self.now_ms() - DAY_MS)
        rows = []
        for u in usage:
            name = u.group or "(none)"
            rows.append(
                Row.of(
                    name,
                    (
                        name,
                        Text(str(u.requests), justify="right"),
                        Text(str(u.errors), justify="right"),
                        Text(fmt.tokens(u.input_tokens), justify="right"),
                        Text(fmt.tokens(u.output_tokens), justify="right"),
                        Text(fmt.tokens(u.cache_read_input_tokens), justify="right"),
                        Text(fmt.usd(u.cost_micros), justify="right"),
                    ),
                    (
                        name,
                        u.requests,
                        u.errors,
                        u.input_tokens,
                        u.output_tokens,
                        u.cache_read_input_tokens,
                        u.cost_micros,
                    ),
                )
            )
        total = sum(u.cost_micros for u in usage)
        return RowsLoaded(rows, f"last 24 h · {fmt.usd(total)}")
