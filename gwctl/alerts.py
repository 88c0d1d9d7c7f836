"""``gwctl alerts`` (also ``gwctl logs alerts``) — budget alerts, newest first.

An alert is recorded once when a key's, a developer's or a workspace's spend reaches 50, 80 or
100 % of a budget in its current period. The table shows when, whose budget, the threshold, the
spend when it was recorded and the delivery to the workspace's webhook: its status (``pending``,
``retrying: <reason>``, ``delivered``, ``failed: …``, ``refused: …``; ``-`` without a webhook)
with the format (``slack``) when not the generic one, the attempts made and when the last one
ended (or, while retrying, when the next is due). ``-o json`` prints one array of alerts with
every field (``webhook_attempts``, ``webhook_last_attempt_ms``, ``webhook_next_attempt_ms``,
``webhook_format``) and derived ``budget_text``, ``spent_usd``, ``period_start``, ``time``,
``webhook_last_attempt`` and ``webhook_next_attempt`` fields.
"""

from __future__ import annotations

import argparse

from gwapi.v1 import common_pb2, telemetry_pb2
from gwclient.client import GatewayClient
from gwctl import output as out
from gwctl import parse
from gwctl.cli import Subparsers, add_since, is_json, leaf

HEADERS = (
    "TIME", "WORKSPACE", "SCOPE", "WHO", "THRESHOLD", "BUDGET", "SPENT", "PERIOD", "WEBHOOK",
    "TRIES", "LAST TRY",
)  # fmt: skip


def register(subparsers: Subparsers) -> None:
    add_parser(leaf(subparsers, "alerts", "budget alerts (50/80/100 %% of a budget reached)"))


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", default="", help="only this workspace and its keys")
    add_since(p, "e.g. 24h, 7d (default: all)")
    p.add_argument(
        "-n", "--limit", type=parse.parse_count, default=0, metavar="N", help="at most N (100)"
    )
    p.set_defaults(handler=run)


def alert_dict(alert: telemetry_pb2.BudgetAlert) -> out.JSON:
    lifetime = alert.budget.period == common_pb2.PERIOD_LIFETIME
    return {
        **out.message_dict(alert),
        "time": out.format_time(alert.time_ms),
        "budget_text": out.format_budget(alert.budget),
        "spent_usd": out.format_usd(alert.spent_micros),
        "period_start": None if lifetime else out.format_time(alert.period_start_ms),
        "webhook_last_attempt": _time_or_none(alert.webhook_last_attempt_ms),
        "webhook_next_attempt": _time_or_none(alert.webhook_next_attempt_ms),
    }


def _time_or_none(ms: int) -> str | None:
    return out.format_time(ms) if ms else None


def webhook_cells(alert: telemetry_pb2.BudgetAlert) -> list[object]:
    """WEBHOOK, TRIES, LAST TRY."""
    if not alert.webhook_status:
        return ["-", "-", "-"]
    status = alert.webhook_status
    if alert.webhook_format and alert.webhook_format != "generic":
        status += f" ({alert.webhook_format})"
    last = out.format_time(alert.webhook_last_attempt_ms)
    if alert.webhook_next_attempt_ms:
        last += f", next {out.format_time(alert.webhook_next_attempt_ms)}"
    return [status, alert.webhook_attempts, last]


def cells(alert: telemetry_pb2.BudgetAlert) -> list[object]:
    who = alert.id if alert.scope == "workspace" else f"{alert.name or '-'} ({alert.id})"
    period = (
        "lifetime"
        if alert.budget.period == common_pb2.PERIOD_LIFETIME
        else f"since {out.format_time(alert.period_start_ms)}"
    )
    return [
        out.format_time(alert.time_ms),
        alert.workspace or "-",
        alert.scope,
        who,
        f"{alert.threshold_percent} %",
        out.format_budget(alert.budget),
        out.format_cents(alert.spent_micros),
        period,
        *webhook_cells(alert),
    ]


async def run(client: GatewayClient, args: argparse.Namespace) -> int:
    since_ms = out.now_ms() - args.since * 1000 if args.since else 0
    alerts = await client.list_alerts(workspace=args.workspace, since_ms=since_ms, limit=args.limit)
    if is_json(args):
        out.print_json([alert_dict(a) for a in alerts])
    elif not alerts:
        out.info(
            "no budget alerts" + (f" for workspace {args.workspace}" if args.workspace else "")
        )
    else:
        out.print_table(HEADERS, (cells(a) for a in alerts), right=(4, 6, 9))
    return 0
