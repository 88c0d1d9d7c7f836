"""``gwctl usage`` — tokens and dollars from the control plane's ledger.

Rows come grouped by ``--by`` (workspace, key, developer, model, provider, session, day or
``metadata.FIELD``); the table ends with a TOTAL line summed here from the rows. ``SEARCHES`` is
the number of server-side web searches (``web_search_requests``; their fees are in the cost, and
``-o json`` also has ``web_fetch_requests``). count_tokens calls count as requests at no cost.
``-o json``
prints ``{"group_by", "since_ms", "until_ms", "rows", "total"}`` with ``cost_usd`` and
``cost_saved_usd`` as exact 6-decimal strings computed from integer micro-dollars. ``-o csv``
writes the same rows and the TOTAL (``row_type`` ``group`` | ``total``) as RFC 4180 CSV
(:mod:`gwctl.export`), with the period in every record.

The period: ``--since`` and ``--until`` each take a duration before now (``7d``) or a UTC date or
time (``2026-11-01``); ``--month YYYY-MM`` is that UTC calendar month. ``--until`` is exclusive. Grouped ``--by key``, rows also name the key
(table: ``key_… (alice)``; json: ``name``), looked up in the key list (revoked keys included).
Grouped ``--by developer``, rows show Claude Code's own figures next to the metered ones (see
:mod:`gwctl.usage_developers`). ``--developer ID_OR_EMAIL`` keeps one developer's requests.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from gwapi.v1 import telemetry_pb2
from gwclient.client import GatewayClient
from gwclient.errors import ClientError
from gwctl import export, parse
from gwctl import output as out
from gwctl import usage_developers as by_developer
from gwctl.cli import Subparsers, UsageError, is_csv, is_json, leaf

GROUPS = ("workspace", "key", "developer", "model", "provider", "session", "day")
_COUNTERS = out.USAGE_COUNTERS


def parse_group(text: str) -> str:
    """One of GROUPS or ``metadata.<field>``; ``""`` (the default) is one total row."""
    if (
        text == ""
        or text in GROUPS
        or (text.startswith("metadata.") and len(text) > len("metadata."))
    ):
        return text
    raise argparse.ArgumentTypeError(
        f"invalid grouping {text!r}: expected one of {', '.join(GROUPS)} or metadata.FIELD"
    )


def register(subparsers: Subparsers) -> None:
    p = leaf(subparsers, "usage", "tokens and cost, grouped")
    p.add_argument("--workspace", "-w", default="")
    p.add_argument("--key", default="", metavar="ID")
    p.add_argument(
        "--developer",
        default="",
        metavar="ID_OR_EMAIL",
        help="only this signed-in developer's requests",
    )
    p.add_argument(
        "--by",
        type=parse_group,
        default="",
        metavar="GROUP",
        help=f"{', '.join(GROUPS)} or metadata.FIELD (default: one total); by developer also "
        "shows Claude Code's own cost (! = more than 5 %% off the metered cost), lines, commits, "
        "PRs, edit decisions, $ per 100 lines added and $ per PR",
    )
    add_period_flags(p)
    p.set_defaults(handler=run, csv_output=True)


def add_period_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--since",
        type=parse.parse_moment,
        metavar="WHEN",
        help="from this moment: a duration before now (24h, 7d) or a UTC date/time "
        "(2026-11-01, 2026-11-01T09:00Z) (default: all)",
    )
    p.add_argument(
        "--until",
        type=parse.parse_moment,
        metavar="WHEN",
        help="up to this moment, excluded; same forms as --since (default: now)",
    )
    p.add_argument(
        "--month",
        type=parse.parse_month,
        metavar="YYYY-MM",
        help="one UTC calendar month, e.g. 2026-11 (instead of --since/--until)",
    )


def period(args: argparse.Namespace) -> tuple[int, int]:
    """``[since_ms, until_ms)`` from --since/--until/--month; 0 = unbounded."""
    if args.month is not None:
        if args.since is not None or args.until is not None:
            raise UsageError("--month is a whole period: give it without --since/--until")
        since_ms, until_ms = args.month
        return since_ms, until_ms
    now = out.now_ms()
    since_ms = args.since.resolve(now) if args.since is not None else 0
    until_ms = args.until.resolve(now) if args.until is not None else 0
    if until_ms and since_ms and until_ms <= since_ms:
        raise UsageError(
            f"--until ({out.format_time(until_ms)}) must be after --since "
            f"({out.format_time(since_ms)})"
        )
    return since_ms, until_ms


def total_row(rows: Sequence[telemetry_pb2.UsageRow]) -> telemetry_pb2.UsageRow:
    total = telemetry_pb2.UsageRow(group="TOTAL")
    for row in rows:
        for field in _COUNTERS:
            setattr(total, field, getattr(total, field) + getattr(row, field))
    return total


def row_dict(row: telemetry_pb2.UsageRow, names: Mapping[str, str] | None = None) -> out.JSON:
    doc = out.with_cost(row, row.cost_micros)
    doc["cost_saved_usd"] = out.format_usd(row.cost_saved_micros)
    if names is not None:
        doc["name"] = names.get(row.group, "")
    return doc


def render(
    rows: Sequence[telemetry_pb2.UsageRow],
    group_by: str,
    names: Mapping[str, str] | None = None,
) -> str:
    """The usage table, TOTAL line included (also when there are no rows)."""

    def label(row: telemetry_pb2.UsageRow) -> str:
        name = (names or {}).get(row.group)
        return f"{row.group} ({name})" if name else row.group or "-"

    def cells(row: telemetry_pb2.UsageRow) -> list[object]:
        return [
            label(row),
            *out.usage_count_cells(row),
            out.format_usd(row.cost_micros),
        ]

    body = [cells(r) for r in rows] if group_by else []
    body.append(cells(total_row(rows)))
    return out.render_table(
        [(group_by or "scope").upper(), *out.USAGE_COUNT_HEADERS, "COST USD"],
        body,
        right=range(1, 9),
    )


async def run(client: GatewayClient, args: argparse.Namespace) -> int:
    since_ms, until_ms = period(args)
    developer_id = (await client.get_developer(args.developer)).id if args.developer else ""
    rows = await client.query_usage(
        workspace=args.workspace,
        key_id=args.key,
        group_by=args.by,
        since_ms=since_ms,
        until_ms=until_ms,
        developer_id=developer_id,
    )
    names = await key_names(client) if args.by == "key" else None
    if is_csv(args):
        headers, records = csv_table(rows, args.by, since_ms, until_ms, names)
        export.print_csv(headers, records)
        return 0
    if args.by == "developer":
        if is_json(args):
            out.print_json(
                {
                    "group_by": args.by,
                    "since_ms": since_ms,
                    "until_ms": until_ms,
                    "rows": [by_developer.row_dict(r) for r in rows],
                    "total": by_developer.total_dict(rows),
                }
            )
        else:
            print(by_developer.render(rows))
        return 0
    if is_json(args):
        out.print_json(
            {
                "group_by": args.by,
                "since_ms": since_ms,
                "until_ms": until_ms,
                "rows": [row_dict(r, names) for r in rows],
                "total": row_dict(total_row(rows)),
            }
        )
        return 0
    print(render(rows, args.by, names))
    return 0


CSV_HEADERS = (
    "row_type", "group_by", "group", "period_start", "period_end", "requests", "errors",
    "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
    "web_search_requests", "web_fetch_requests", "cache_hits", "cost_usd", "cost_micros",
    "cost_saved_usd", "cost_saved_micros", "first_request", "last_request",
)  # fmt: skip
# Per grouping, the columns that say more about the group (after the common ones).
CSV_EXTRAS = {
    "key": ("key_name",),
    "session": ("key_id", "developer_email"),
    "developer": (
        "developer_email", "workspace", "client_cost_usd", "client_cost_micros", "lines_added",
        "lines_removed", "commits", "pull_requests", "edits_accepted", "edits_rejected",
        "client_sessions",
    ),
}  # fmt: skip


def csv_table(
    rows: Sequence[telemetry_pb2.UsageRow],
    group_by: str,
    since_ms: int,
    until_ms: int,
    names: Mapping[str, str] | None = None,
) -> tuple[list[str], list[list[export.Cell]]]:
    """The header and the records of ``usage -o csv``: each group, then the total."""
    extras = CSV_EXTRAS.get(group_by, ())
    if group_by == "developer":
        summed, _ = by_developer.total(rows)
    else:
        summed = total_row(rows)
    summed.group = ""
    firsts = [r.first_ms for r in rows if r.first_ms]
    summed.first_ms, summed.last_ms = (
        min(firsts, default=0),
        max((r.last_ms for r in rows), default=0),
    )

    def record(row: telemetry_pb2.UsageRow, row_type: str) -> list[export.Cell]:
        cells: list[export.Cell] = [
            row_type,
            group_by,
            row.group,
            export.time_cell(since_ms),
            export.time_cell(until_ms),
            row.requests,
            row.errors,
            row.input_tokens,
            row.output_tokens,
            row.cache_creation_input_tokens,
            row.cache_read_input_tokens,
            row.web_search_requests,
            row.web_fetch_requests,
            row.cache_hits,
            export.usd_cell(row.cost_micros),
            row.cost_micros,
            export.usd_cell(row.cost_saved_micros),
            row.cost_saved_micros,
            export.time_cell(row.first_ms),
            export.time_cell(row.last_ms),
        ]
        for name in extras:
            if name == "key_name":
                cells.append((names or {}).get(row.group, "") if row_type == "group" else "")
            elif name == "client_cost_usd":
                cells.append(export.usd_cell(row.client_cost_micros))
            else:
                cells.append(getattr(row, name))
        return cells

    records = [record(r, "group") for r in rows] if group_by else []
    records.append(record(summed, "total"))
    return [*CSV_HEADERS, *extras], records


async def key_names(client: GatewayClient) -> dict[str, str]:
    """Key id → name, best effort (usage still prints when the list cannot be read)."""
    try:
        keys = await client.list_keys(include_revoked=True)
    except ClientError:
        return {}
    return {k.id: k.name for k in keys}
