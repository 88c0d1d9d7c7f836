"""Overview, Keys, Providers and Sessions: what each polls and how its rows look."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Sparkline, Static

from gwapi.v1 import common_pb2, telemetry_pb2
from gwclient.api import ConsoleAPI
from gwclient.budgets import main_budget
from tui import format as fmt
from tui.messages import RevokeRequested, Row, RowsLoaded, StatsArrived
from tui.widgets.table_view import TableView

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


class OverviewView(TableView):
    """Workspaces: spend against the budget closest to its limit, live traffic from the
    ``StreamStats`` stream (req/s, p50 latency, error % and a sparkline over the last minute),
    and the last hour's totals from the poll (the only traffic shown without the stream)."""

    VIEW_ID = "overview"
    TITLE = "Overview"
    STATS_GROUP = "workspace"
    DEFAULT_CSS = "#overview-spark { height: 1; margin: 0 1; }"
    COLUMNS = (
        "WORKSPACE", "REQ/s", "P50", "ERR%", "LAST 20s", "SPEND / BUDGET", "REQ 1h", "COST 1h",
    )  # fmt: skip
    HELP = (
        "workspaces · spend vs budget · live req/s, p50 latency, error % and req/s sparkline"
        " (last 60 s) · requests and cost over the last hour"
    )

    def __init__(self) -> None:
        super().__init__()
        self.stats: telemetry_pb2.StatsFrame | None = None
        self._workspaces: list[common_pb2.Workspace] = []
        self._usage: list[telemetry_pb2.UsageRow] = []

    def compose(self) -> ComposeResult:
        yield Static(self.TITLE, classes="view-title")
        yield Sparkline([], summary_function=max, id="overview-spark")
        yield self.make_table()

    async def fetch(self, client: ConsoleAPI) -> RowsLoaded:
        workspaces = await client.list_workspaces()
        usage = await client.query_usage(group_by="workspace", since_ms=self.now_ms() - HOUR_MS)
        self._workspaces, self._usage = list(workspaces), list(usage)
        return self.build()

    def on_stats_arrived(self, message: StatsArrived) -> None:
        message.stop()
        self.stats = message.frame
        totals = [0] * max((len(r.requests_per_second) for r in message.frame.rows), default=0)
        for row in message.frame.rows:
            for i, n in enumerate(row.requests_per_second):
                totals[i] += n
        self.query_one(Sparkline).data = totals
        if self.loaded:
            built = self.build()
            self.rows, self.summary = built.rows, built.summary
            self.render_rows()

    def build(self) -> RowsLoaded:
        by_name = {row.group: row for row in self._usage}
        live = {row.group: row for row in self.stats.rows} if self.stats else {}
        rows = []
        for ws in self._workspaces:
            status = main_budget(list(ws.budget_status))
            u = by_name.get(ws.name)
            requests, errors, cost = (u.requests, u.errors, u.cost_micros) if u else (0, 0, 0)
            s = live.get(ws.name)
            if self.stats is None:  # no stream: the last hour's error rate
                err_cell, err_sort = _error_text(errors, requests), _ratio(errors, requests)
            else:
                rate = s.error_rate if s else 0.0
                err_cell, err_sort = _rate_text(rate, bool(s and s.requests_per_s)), rate
            rows.append(
                Row.of(
                    ws.name,
                    (
                        ws.name,
                        Text(_per_s(s.requests_per_s) if s else "-", justify="right"),
                        Text(f"{s.latency_p50_ms}ms" if s else "-", justify="right"),
                        err_cell,
                        Text(
                            spark(list(s.requests_per_second)[-SPARK_WIDTH:]) if s else "",
                            style="cyan",
                        ),
                        fmt.spend_bar(status),
                        Text(str(requests), justify="right"),
                        Text(fmt.usd(cost), justify="right"),
                    ),
                    (
                        ws.name,
                        s.requests_per_s if s else 0.0,
                        s.latency_p50_ms if s else 0,
                        err_sort,
                        sum(s.requests_per_second[-SPARK_WIDTH:]) if s else 0,
                        fmt.spend_ratio(status),
                        requests,
                        cost,
                    ),
                )
            )
        total_req = sum(row.requests for row in self._usage)
        total_err = sum(row.errors for row in self._usage)
        total_cost = sum(row.cost_micros for row in self._usage)
        summary = (
            f"last hour: {total_req} req · {fmt.usd(total_cost)}"
            f" · err {fmt.percent(total_err, total_req)}"
        )
        if self.stats is not None:
            summary = f"{_per_s(sum(r.requests_per_s for r in self.stats.rows))} req/s · " + summary
        return RowsLoaded(rows, summary)


SPARK_WIDTH = 20
_BARS = "▁▂▃▄▅▆▇█"


def spark(values: list[int]) -> str:
    """A one-line sparkline of per-second counts (blank for a quiet second)."""
    top = max(values, default=0)
    if not top:
        return " " * len(values)
    return "".join(
        " " if not v else _BARS[min(len(_BARS) - 1, (v * len(_BARS) - 1) // top)] for v in values
    )


def _per_s(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _rate_text(rate: float, any_traffic: bool) -> Text:
    if not any_traffic:
        return Text("-", justify="right")
    style = "red" if rate >= 0.05 else "yellow" if rate else ""
    return Text(f"{rate * 100:.1f}%", style=style, justify="right")


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

    async def fetch(self, client: ConsoleAPI) -> RowsLoaded:
        keys = await client.list_keys(include_revoked=True)
        now = self.now_ms()
        rows = []
        for key in keys:
            state = key_state(key, now)
            status = main_budget(list(key.budget_status))
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
    """Providers with their settings, the breaker state data planes report for them, and live
    latency and errors from the ``StreamStats`` stream (last 60 s)."""

    VIEW_ID = "providers"
    TITLE = "Providers"
    STATS_GROUP = "provider"
    COLUMNS = ("NAME", "KIND", "BREAKER", "P50", "P95", "ERR%", "SETTINGS")
    HELP = "providers · breaker state as reported by each data plane · live p50/p95, error %"

    def __init__(self) -> None:
        super().__init__()
        self.stats: telemetry_pb2.StatsFrame | None = None
        self._providers: list[common_pb2.Provider] = []
        self._states: dict[str, list[str]] = {}
        self._connected = 0
        self._summary = ""

    async def fetch(self, client: ConsoleAPI) -> RowsLoaded:
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
        summary = f"{connected}/{len(planes.dataplanes)} data planes connected"
        if planes.current_version:
            summary += f" · snapshot {planes.current_version}"
        self._providers, self._states, self._connected = list(providers), states, connected
        self._summary = summary
        return self.build()

    def on_stats_arrived(self, message: StatsArrived) -> None:
        message.stop()
        self.stats = message.frame
        if self.loaded:
            self.rows = self.build().rows
            self.render_rows()

    def build(self) -> RowsLoaded:
        live = {row.group: row for row in self.stats.rows} if self.stats else {}
        rows = []
        for provider in self._providers:
            breaker = _breaker_text(self._states.get(provider.name, []), self._connected)
            settings = settings_summary(provider)
            s = live.get(provider.name)
            rows.append(
                Row.of(
                    provider.name,
                    (
                        provider.name,
                        provider.kind,
                        breaker,
                        Text(f"{s.latency_p50_ms}ms" if s else "-", justify="right"),
                        Text(f"{s.latency_p95_ms}ms" if s else "-", justify="right"),
                        _rate_text(s.error_rate, True) if s else Text("-", justify="right"),
                        settings,
                    ),
                    (
                        provider.name,
                        provider.kind,
                        breaker.plain,
                        s.latency_p50_ms if s else -1,
                        s.latency_p95_ms if s else -1,
                        s.error_rate if s else -1.0,
                        settings,
                    ),
                )
            )
        return RowsLoaded(rows, self._summary)


def settings_summary(provider: common_pb2.Provider) -> str:
    parts = []
    if provider.base_url:
        parts.append(provider.base_url)
    if provider.has_secret:  # stored on the control plane; never the key itself
        parts.append("key stored")
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
    return fmt.plain(worst + suffix, style=style)


class SessionsView(TableView):
    """Claude Code sessions over the last 24 hours."""

    VIEW_ID = "sessions"
    TITLE = "Sessions"
    COLUMNS = ("SESSION", "REQ", "ERR", "IN", "OUT", "CACHE R", "COST")
    HELP = "sessions (x-claude-code-session-id) over the last 24 hours"

    async def fetch(self, client: ConsoleAPI) -> RowsLoaded:
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
