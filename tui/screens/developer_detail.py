"""One developer in full: identity (as the identity provider sent it), the limits that apply and
whose they are, every budget's current period, and the last seven UTC days' activity next to
the metered cost, with the reason when the two costs disagree."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from gwapi.v1 import common_pb2, telemetry_pb2
from gwcommon.activity import cost_disagreement
from tui import format as fmt
from tui.screens.detail import DetailScreen


def format_limits(limits: common_pb2.Limits) -> str:
    parts = [f"{fmt.usd(b.amount_micros)}/{fmt.PERIODS.get(b.period, '?')}" for b in limits.budgets]
    for name, label in (("rpm", "rpm"), ("rph", "rph"), ("tpm", "tpm"), ("max_parallel", "par")):
        value = getattr(limits, name)
        if value:
            parts.append(f"{label} {value}")
    return ", ".join(parts) or "none"


def _per(cost: int, count: int, per: int = 1) -> str:
    return fmt.usd((cost * per + count // 2) // count) if count > 0 else "—"


def detail_fields(
    d: common_pb2.Developer, usage: telemetry_pb2.UsageRow | None
) -> list[tuple[str, Text]]:
    """(label, value) lines; values from the IdP are literal text."""
    source = "own" if d.has_limits else "workspace member limits"
    lines: list[tuple[str, Text]] = [
        ("id", Text(d.id)),
        ("email", fmt.plain(d.email or "-")),
        ("name", fmt.plain(d.name or "-")),
        ("workspace", fmt.plain(d.workspace or "-")),
        ("state", Text("disabled", "red") if d.disabled_at_ms else Text("active", "green")),
        ("groups", fmt.plain(", ".join(d.groups) or "-")),
        ("subject", fmt.plain(d.subject or "-")),
        ("limits", Text(f"{format_limits(d.effective_limits)} ({source})")),
    ]
    for status in d.budget_status:
        lines.append(
            (
                f"spend/{fmt.PERIODS.get(status.budget.period, '?')}",
                fmt.spend_bar(status, width=20),
            )
        )
    lines += [
        ("sessions", Text(str(d.active_sessions))),
        ("last sign-in", Text(fmt.stamp(d.last_sign_in_ms))),
        ("first sign-in", Text(fmt.stamp(d.created_at_ms))),
    ]
    if d.disabled_at_ms:
        lines.append(("disabled", Text(fmt.stamp(d.disabled_at_ms), "red")))
    u = usage or telemetry_pb2.UsageRow()
    lines += [
        ("7 d requests", Text(f"{u.requests} ({u.errors} errors)")),
        ("7 d metered", Text(fmt.usd(u.cost_micros))),
        (
            "7 d Claude Code",
            Text(fmt.usd(u.client_cost_micros) if u.client_cost_micros else "nothing reported"),
        ),
        ("lines +/-", Text(f"+{u.lines_added:,} / -{u.lines_removed:,}")),
        ("commits, PRs", Text(f"{u.commits}, {u.pull_requests}")),
        ("edits acc/rej", Text(f"{u.edits_accepted} / {u.edits_rejected}")),
        ("$ / 100 lines", Text(_per(u.cost_micros, u.lines_added, 100))),
        ("$ / PR", Text(_per(u.cost_micros, u.pull_requests))),
    ]
    note = cost_disagreement(u.cost_micros, u.client_cost_micros)
    if note is not None:
        lines.append(("! cost", Text(note, style="yellow")))
    return lines


class DeveloperDetailScreen(DetailScreen):
    def __init__(
        self, developer: common_pb2.Developer, usage: telemetry_pb2.UsageRow | None
    ) -> None:
        super().__init__()
        self.developer = developer
        self.usage = usage

    def compose(self) -> ComposeResult:
        title = Text("Developer ", style="bold")
        title.append_text(fmt.plain(self.developer.email or self.developer.id, "bold"))
        title.append(" · esc back", style="bold")
        yield Static(title, classes="view-title")
        grid = fmt.field_grid(detail_fields(self.developer, self.usage))
        with VerticalScroll(id="detail-body"):
            yield Static(Group(grid), id="developer-detail")
