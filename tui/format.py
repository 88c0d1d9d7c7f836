"""Compact text for narrow terminals (the TUI must not import gwctl's formatters).

Every string that came from a client, an upstream or an admin (model, session id, metadata, path,
user agent, names, error messages, audit JSON) reaches a widget through :func:`plain`: Textual
and Rich parse a bare ``str`` as console markup, so ``x[/]`` would raise in the middle of a
render (every operator's Logs view down) and ``[@click=app.quit]`` would become a live action.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

from rich.table import Table
from rich.text import Text

from gwapi.v1 import common_pb2
from gwcommon import money
from gwcommon.terminal import escape_controls

PERIODS = {
    common_pb2.PERIOD_DAY: "day",
    common_pb2.PERIOD_WEEK: "week",
    common_pb2.PERIOD_MONTH: "month",
    common_pb2.PERIOD_LIFETIME: "total",
}


def plain(value: str, style: str = "", *, keep_newlines: bool = False) -> Text:
    """``value`` as literal text (never markup), terminal controls shown escaped (``\\x1b``)."""
    return Text(escape_controls(value, keep_newlines=keep_newlines), style=style)


def field_grid(rows: Iterable[tuple[str | Text, Text]]) -> Table:
    """A detail screen's ``label  value`` lines, labels bold cyan; a value is ``Text`` (a ``str``
    would be markup), a ``str`` label is one of ours."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def now_ms() -> int:
    return int(time.time() * 1000)


def usd(micros: int) -> str:
    """``$12.34``; sub-cent amounts keep four decimals (``$0.0012``)."""
    return money.glance(micros)


def tokens(n: int) -> str:
    if n >= 10_000_000:
        return f"{n / 1_000_000:.0f}M"
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


def clock(ms: int) -> str:
    """Local ``HH:MM:SS`` (the log view's time column)."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S")


def stamp(ms: int) -> str:
    """UTC ``YYYY-MM-DD HH:MM:SS``; ``-`` for 0."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def spend_bar(status: common_pb2.BudgetStatus | None, width: int = 10) -> Text:
    """``███░░░░░░░  30% $3.00/$10 day`` coloured green / yellow (≥ 80 %) / red (≥ 100 %)."""
    if status is None:
        return Text("no budget", style="dim")
    amount = status.budget.amount_micros
    ratio = status.spent_micros / amount if amount else 0.0
    filled = min(width, round(ratio * width))
    style = "red" if ratio >= 1 else "yellow" if ratio >= 0.8 else "green"
    text = Text()
    text.append("█" * filled, style=style)
    text.append("░" * (width - filled), style="dim")
    period = PERIODS.get(status.budget.period, "?")
    text.append(f" {100 * ratio:3.0f}% {usd(status.spent_micros)}/{usd(amount)} {period}")
    return text


def spend_ratio(status: common_pb2.BudgetStatus | None) -> float:
    if status is None or not status.budget.amount_micros:
        return -1.0
    return status.spent_micros / status.budget.amount_micros


def status_style(code: int) -> str:
    if code >= 500 or code == 0:
        return "red"
    if code >= 400:
        return "yellow"
    return "green"
