"""``gwctl report monthly --month YYYY-MM [--workspace W]`` — the chargeback report.

One row per workspace and key or signed-in developer that had requests in the month, with spend,
tokens by kind (input, output, cache write, cache read), requests, errors, web searches, cache
hits and what they saved; a subtotal per workspace and a grand total. The rows come from one
server-side aggregation (``QueryUsage`` with ``group_by=member``: ``GROUP BY workspace, key,
developer`` over the ledger), and subtotals and the total are sums of those integers, so every
figure matches the ledger to the micro-dollar.

The month is the **UTC** calendar month ``[YYYY-MM-01T00:00Z, next month)`` by request time,
whatever a workspace's time zone (its monthly budgets follow that zone instead). A workspace is
the one the requests were made in: a developer who moved appears under both. Usage reaches the
ledger when data planes deliver it (late after an outage), so run it once the month is over and
``gwctl dataplanes list`` shows no backlog.

``-o json``: ``{"month", "time_zone", "start", "end", "start_ms", "end_ms", "rows",
"subtotals", "total"}``; ``-o csv``: the rows, each workspace's subtotal and the total
(``row_type`` ``member`` | ``workspace_subtotal`` | ``total``), see :mod:`gwctl.export`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence

from gwapi.v1 import telemetry_pb2
from gwclient.client import GatewayClient
from gwctl import export, parse
from gwctl import output as out
from gwctl.cli import Subparsers, group, is_csv, is_json, leaf

UNATTRIBUTED = "(no key or developer)"
# The report's columns: the usage counters, money last (cost saved, then cost), as in its CSV.
_MONEY = ("cost_saved_micros", "cost_micros")
_COUNTS = tuple(name for name in out.USAGE_COUNTERS if name not in _MONEY)
_SUMMED = (*_COUNTS, *_MONEY)


def register(subparsers: Subparsers) -> None:
    sub = group(subparsers, "report", "chargeback reports from the usage ledger")
    p = leaf(
        sub,
        "monthly",
        "one UTC month: spend, tokens, requests and cache savings per workspace and key or "
        "developer, with subtotals per workspace and a total",
    )
    p.add_argument(
        "--month", type=parse.parse_month, required=True, metavar="YYYY-MM", help="e.g. 2026-11"
    )
    p.add_argument("--workspace", "-w", default="", help="only this workspace")
    p.set_defaults(handler=run, csv_output=True)


def summed(rows: Iterable[telemetry_pb2.UsageRow]) -> telemetry_pb2.UsageRow:
    """The rows' counters added up (integers: exact)."""
    total = telemetry_pb2.UsageRow()
    for row in rows:
        for name in _SUMMED:
            setattr(total, name, getattr(total, name) + getattr(row, name))
    return total


def member_kind(row: telemetry_pb2.UsageRow) -> str:
    if row.key_id:
        return "key"
    return "developer" if row.developer_id else "none"


def member_name(row: telemetry_pb2.UsageRow) -> str:
    if row.key_id:
        return row.key_name
    return row.developer_email


def subtotals(rows: Sequence[telemetry_pb2.UsageRow]) -> dict[str, telemetry_pb2.UsageRow]:
    """Workspace → its rows summed, in the rows' (workspace) order."""
    by_workspace: dict[str, list[telemetry_pb2.UsageRow]] = {}
    for row in rows:
        by_workspace.setdefault(row.workspace, []).append(row)
    return {ws: summed(members) for ws, members in by_workspace.items()}


def _figures_dict(f: telemetry_pb2.UsageRow) -> out.JSON:
    doc: out.JSON = {name: getattr(f, name) for name in _SUMMED}
    doc["cost_usd"] = out.format_usd(f.cost_micros)
    doc["cost_saved_usd"] = out.format_usd(f.cost_saved_micros)
    return doc


def row_dict(row: telemetry_pb2.UsageRow) -> out.JSON:
    return {
        "workspace": row.workspace,
        "member_kind": member_kind(row),
        "member_id": row.group,
        "member_name": member_name(row),
        **_figures_dict(row),
        "first_request": out.format_time(row.first_ms) if row.first_ms else None,
        "last_request": out.format_time(row.last_ms) if row.last_ms else None,
    }


def document(
    rows: Sequence[telemetry_pb2.UsageRow], month: str, start_ms: int, end_ms: int
) -> out.JSON:
    return {
        "month": month,
        "time_zone": "UTC",
        "start": out.format_time(start_ms),
        "end": out.format_time(end_ms),
        "start_ms": start_ms,
        "end_ms": end_ms,
        "rows": [row_dict(r) for r in rows],
        "subtotals": [{"workspace": ws, **_figures_dict(t)} for ws, t in subtotals(rows).items()],
        "total": _figures_dict(summed(rows)),
    }


CSV_HEADERS = (
    "row_type", "month", "period_start", "period_end", "workspace", "member_kind", "member_id",
    "member_name", "requests", "errors", "input_tokens", "output_tokens",
    "cache_creation_input_tokens", "cache_read_input_tokens", "web_search_requests",
    "web_fetch_requests", "cache_hits", "cost_saved_usd", "cost_saved_micros", "cost_usd",
    "cost_micros",
)  # fmt: skip


def csv_records(
    rows: Sequence[telemetry_pb2.UsageRow], month: str, start_ms: int, end_ms: int
) -> list[list[export.Cell]]:
    def record(
        row_type: str, who: list[export.Cell], f: telemetry_pb2.UsageRow
    ) -> list[export.Cell]:
        return [
            row_type,
            month,
            export.time_cell(start_ms),
            export.time_cell(end_ms),
            *who,
            *(getattr(f, name) for name in _COUNTS),
            export.usd_cell(f.cost_saved_micros),
            f.cost_saved_micros,
            export.usd_cell(f.cost_micros),
            f.cost_micros,
        ]

    records: list[list[export.Cell]] = []
    by_workspace = subtotals(rows)
    for i, row in enumerate(rows):
        who: list[export.Cell] = [row.workspace, member_kind(row), row.group, member_name(row)]
        records.append(record("member", who, row))
        if i + 1 == len(rows) or rows[i + 1].workspace != row.workspace:
            sub = by_workspace[row.workspace]
            records.append(record("workspace_subtotal", [row.workspace, "", "", ""], sub))
    records.append(record("total", ["", "", "", ""], summed(rows)))
    return records


HEADERS = (
    "WORKSPACE", "KIND", "MEMBER", *out.USAGE_COUNT_HEADERS, "CACHE HITS", "SAVED USD", "COST USD",
)  # fmt: skip


def _cells(workspace: str, kind: str, who: str, f: telemetry_pb2.UsageRow) -> list[object]:
    return [
        workspace,
        kind,
        who,
        *out.usage_count_cells(f),
        format(f.cache_hits, ","),
        out.format_usd(f.cost_saved_micros),
        out.format_usd(f.cost_micros),
    ]


def render(rows: Sequence[telemetry_pb2.UsageRow], month: str) -> str:
    """The table: each workspace's rows then its subtotal, the total last, and a note."""
    body: list[list[object]] = []
    by_workspace = subtotals(rows)
    for i, row in enumerate(rows):
        name = member_name(row)
        if row.key_id:
            who = f"{row.key_id} ({name})" if name else row.key_id
        else:
            who = name or row.group or UNATTRIBUTED
        body.append(_cells(row.workspace or "-", member_kind(row), who, row))
        if i + 1 == len(rows) or rows[i + 1].workspace != row.workspace:
            body.append(_cells(row.workspace or "-", "", "SUBTOTAL", by_workspace[row.workspace]))
    body.append(_cells("TOTAL", "", "", summed(rows)))
    table = out.render_table(HEADERS, body, right=range(3, 13))
    return f"{table}\n\n{month}, UTC calendar month by request time; cost and savings in USD."


async def run(client: GatewayClient, args: argparse.Namespace) -> int:
    start_ms, end_ms = args.month
    month = out.format_time(start_ms)[:7]
    rows = await client.query_usage(
        workspace=args.workspace, group_by="member", since_ms=start_ms, until_ms=end_ms
    )
    if is_csv(args):
        export.print_csv(CSV_HEADERS, csv_records(rows, month, start_ms, end_ms))
    elif is_json(args):
        out.print_json(document(rows, month, start_ms, end_ms))
    else:
        if not rows:
            out.info(
                f"no usage in {month} (UTC)"
                + (f" for workspace {args.workspace}" if args.workspace else "")
            )
        print(render(rows, month))
    return 0
