"""``gwctl usage`` — tokens and dollars from the control plane's ledger.

Rows come grouped by ``--by`` (workspace, key, developer, model, provider, session, day or
``metadata.FIELD``); the table ends with a TOTAL line summed here from the rows. ``SEARCHES`` is
the number of server-side web searches (``web_search_requests``; their fees are in the cost, and
``-o json`` also has ``web_fetch_requests``). count_tokens calls count as requests at no cost.
``-o json``
prints ``{"group_by", "since_ms", "rows", "total"}`` with ``cost_usd`` as an exact 6-decimal
string computed from integer micro-dollars. Grouped ``--by key``, rows also name the key
(table: ``key_… (alice)``; json: ``name``), looked up in the key list (revoked keys included).
Grouped ``--by developer``, rows show Claude Code's own figures next to the metered ones (see
:mod:`gwctl.usage_developers`). ``--developer ID_OR_EMAIL`` keeps one developer's requests.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from gwapi.v1 import telemetry_pb2
from gwctl import output as out
from gwctl import parse
from gwctl import usage_developers as by_developer
from gwctl.cli import Subparsers, is_json, leaf
from tui.client import ClientError, GatewayClient

GROUPS = ("workspace", "key", "developer", "model", "provider", "session", "day")
_COUNTERS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cost_micros",
    "web_search_requests",
    "web_fetch_requests",
)


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
    p.add_argument(
        "--since", type=parse.parse_duration, metavar="DURATION", help="e.g. 24h, 7d (default: all)"
    )
    p.set_defaults(handler=run)


def total_row(rows: Sequence[telemetry_pb2.UsageRow]) -> telemetry_pb2.UsageRow:
    total = telemetry_pb2.UsageRow(group="TOTAL")
    for row in rows:
        for field in _COUNTERS:
            setattr(total, field, getattr(total, field) + getattr(row, field))
    return total


def row_dict(row: telemetry_pb2.UsageRow, names: Mapping[str, str] | None = None) -> out.JSON:
    doc = out.with_cost(row, row.cost_micros)
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
            format(row.requests, ","),
            format(row.errors, ","),
            out.format_tokens(row.input_tokens),
            out.format_tokens(row.output_tokens),
            out.format_tokens(row.cache_creation_input_tokens),
            out.format_tokens(row.cache_read_input_tokens),
            format(row.web_search_requests, ","),
            out.format_usd(row.cost_micros),
        ]

    body = [cells(r) for r in rows] if group_by else []
    body.append(cells(total_row(rows)))
    return out.render_table(
        [
            (group_by or "scope").upper(),
            "REQUESTS",
            "ERRORS",
            "INPUT",
            "OUTPUT",
            "CACHE WRITE",
            "CACHE READ",
            "SEARCHES",
            "COST USD",
        ],
        body,
        right=range(1, 9),
    )


async def run(client: GatewayClient, args: argparse.Namespace) -> int:
    since_ms = out.now_ms() - args.since * 1000 if args.since else 0
    developer_id = (await client.get_developer(args.developer)).id if args.developer else ""
    rows = await client.query_usage(
        workspace=args.workspace,
        key_id=args.key,
        group_by=args.by,
        since_ms=since_ms,
        developer_id=developer_id,
    )
    if args.by == "developer":
        if is_json(args):
            out.print_json(
                {
                    "group_by": args.by,
                    "since_ms": since_ms,
                    "rows": [by_developer.row_dict(r) for r in rows],
                    "total": by_developer.total_dict(rows),
                }
            )
        else:
            print(by_developer.render(rows))
        return 0
    names = await key_names(client) if args.by == "key" else None
    if is_json(args):
        out.print_json(
            {
                "group_by": args.by,
                "since_ms": since_ms,
                "rows": [row_dict(r, names) for r in rows],
                "total": row_dict(total_row(rows)),
            }
        )
        return 0
    print(render(rows, args.by, names))
    return 0


async def key_names(client: GatewayClient) -> dict[str, str]:
    """Key id → name, best effort (usage still prints when the list cannot be read)."""
    try:
        keys = await client.list_keys(include_revoked=True)
    except ClientError:
        return {}
    return {k.id: k.name for k in keys}
