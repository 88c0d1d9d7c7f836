"""``gwctl logs tail [-f]`` — one line per request, oldest first; ``gwctl logs alerts`` — budget
alerts (see :mod:`gwctl.alerts`).

Table mode prints a header and one aligned line per request (time, status, workspace, key, model,
provider, tokens in/out/cache write/cache read, cost, latency, ttfb, short session id, request id,
error type). ``-o json`` prints one JSON array without ``-f`` and JSON lines with it (a stream has
no end to close an array at). Ctrl-C ends a follow quietly.
"""

from __future__ import annotations

import argparse
import sys

from gwapi.v1 import telemetry_pb2
from gwctl import alerts, parse
from gwctl import output as out
from gwctl.cli import Subparsers, group, is_json, leaf
from tui.client import GatewayClient

HEADERS = (
    "TIME", "STATUS", "WORKSPACE", "KEY", "MODEL", "PROVIDER", "IN", "OUT", "CACHE W", "CACHE R",
    "COST USD", "LATENCY", "TTFB", "SESSION", "REQUEST", "ERROR",
)  # fmt: skip
_RIGHT = (1, 6, 7, 8, 9, 10, 11, 12)
# Follow mode cannot measure the widest cell in advance: these widths fit typical values.
_WIDTHS = (20, 6, 12, 14, 26, 10, 8, 7, 8, 9, 10, 8, 7, 8, 12, 0)


def register(subparsers: Subparsers) -> None:
    sub = group(subparsers, "logs", "request logs", aliases=["log"])
    p = leaf(sub, "tail", "the most recent requests; -f to keep following")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new requests")
    p.add_argument("--workspace", "-w", default="")
    p.add_argument("--key", default="", metavar="ID")
    p.add_argument(
        "-n", "--lines", type=parse.parse_count, default=20, metavar="N", help="default 20"
    )
    p.set_defaults(handler=tail)
    alerts.add_parser(leaf(sub, "alerts", "budget alerts, newest first (same as gwctl alerts)"))


def event_dict(event: telemetry_pb2.UsageEvent) -> out.JSON:
    return out.with_cost(event, event.usage.cost_micros)


def cells(event: telemetry_pb2.UsageEvent) -> list[str]:
    usage = event.usage
    return [
        out.format_time(event.time_ms),
        str(event.status),
        event.workspace or "-",
        event.key_name or event.key_id or "-",
        event.model_served or event.model_requested or "-",
        event.provider or "-",
        out.format_tokens(usage.input_tokens),
        out.format_tokens(usage.output_tokens),
        out.format_tokens(usage.cache_creation_input_tokens),
        out.format_tokens(usage.cache_read_input_tokens),
        out.format_usd(usage.cost_micros),
        f"{event.latency_ms}ms",
        f"{event.ttfb_ms}ms" if event.ttfb_ms else "-",
        event.session_id[:8] or "-",
        event.request_id,
        event.error_type,
    ]


def format_line(values: list[str] | tuple[str, ...]) -> str:
    """One fixed-width line (follow mode): wide values push the rest right rather than truncate."""
    parts = []
    for i, value in enumerate(values):
        width = _WIDTHS[i]
        parts.append(value.rjust(width) if i in _RIGHT else value.ljust(width))
    return "  ".join(parts).rstrip()


async def tail(client: GatewayClient, args: argparse.Namespace) -> int:
    events = client.tail_logs(
        follow=args.follow, limit=args.lines, workspace=args.workspace, key_id=args.key
    )
    if not args.follow:
        collected = [e async for e in events]
        if is_json(args):
            out.print_json([event_dict(e) for e in collected])
        else:
            out.print_table(HEADERS, (cells(e) for e in collected), right=_RIGHT)
        return 0
    if not is_json(args):
        print(format_line(HEADERS), flush=True)
    async for event in events:
        if is_json(args):
            out.print_json_line(event_dict(event))
        else:
            sys.stdout.write(format_line(cells(event)) + "\n")
            sys.stdout.flush()
    return 0
