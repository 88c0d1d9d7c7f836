"""``gwctl sessions list|show`` — Claude Code sessions (``x-claude-code-session-id``) from the
ledger.

``list`` shows one row per session over ``--since`` (default 24h), most recently active first:
requests, tokens, cost, cache hit ratio = cache_read / (input + cache_read + cache_creation),
first/last seen, duration and who: the key, or the signed-in developer's email
(Telemetry.QueryUsage grouped by session). ``show ID`` lists
the session's requests in order with model, status, tokens, cost and latency (Telemetry.TailLogs
filtered by session, up to the server's 1000 most recent).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gwapi.v1 import telemetry_pb2
from gwclient.client import GatewayClient
from gwctl import output as out
from gwctl.cli import CommandError, Subparsers, add_since, group, is_json, leaf

DEFAULT_SINCE_S = 86_400
MAX_EVENTS = 1000


def register(subparsers: Subparsers) -> None:
    sub = group(subparsers, "sessions", "Claude Code sessions: cost, tokens, cache hits")

    p = leaf(sub, "list", "sessions with their requests, tokens, cost and duration", aliases=["ls"])
    p.add_argument("--workspace", "-w", default="")
    add_since(p, "e.g. 1h, 7d (default 24h)", DEFAULT_SINCE_S)
    p.set_defaults(handler=list_)

    p = leaf(sub, "show", "one session's requests in order", aliases=["get"])
    p.add_argument("session_id", metavar="ID")
    p.set_defaults(handler=show)


def cache_hit_ratio(input_tokens: int, cache_read: int, cache_creation: int) -> float:
    total = input_tokens + cache_read + cache_creation
    return cache_read / total if total else 0.0


def format_duration(ms: int) -> str:
    seconds = max(0, ms) // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def session_dict(row: telemetry_pb2.UsageRow) -> out.JSON:
    return {
        "session_id": row.group,
        "key_id": row.key_id,
        "developer_email": row.developer_email,
        "requests": row.requests,
        "errors": row.errors,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cache_creation_input_tokens": row.cache_creation_input_tokens,
        "cache_read_input_tokens": row.cache_read_input_tokens,
        "cost_usd": out.format_usd(row.cost_micros),
        "cache_hit_ratio": round(
            cache_hit_ratio(
                row.input_tokens, row.cache_read_input_tokens, row.cache_creation_input_tokens
            ),
            4,
        ),
        "first_seen": out.format_time(row.first_ms),
        "last_seen": out.format_time(row.last_ms),
        "duration_s": max(0, row.last_ms - row.first_ms) / 1000,
    }


async def list_(client: GatewayClient, args: argparse.Namespace) -> int:
    since_ms = out.now_ms() - args.since * 1000
    rows = await client.query_usage(workspace=args.workspace, group_by="session", since_ms=since_ms)
    sessions = sorted((r for r in rows if r.group), key=lambda r: (-r.last_ms, r.group))
    if is_json(args):
        out.print_json({"since_ms": since_ms, "sessions": [session_dict(r) for r in sessions]})
        return 0
    body = [
        [
            r.group,
            r.key_id or r.developer_email or "-",
            r.requests,
            out.format_tokens(
                r.input_tokens
                + r.output_tokens
                + r.cache_creation_input_tokens
                + r.cache_read_input_tokens
            ),
            out.format_usd(r.cost_micros),
            "{:.0%}".format(
                cache_hit_ratio(
                    r.input_tokens, r.cache_read_input_tokens, r.cache_creation_input_tokens
                )
            ),
            out.format_time(r.first_ms),
            out.format_time(r.last_ms),
            format_duration(r.last_ms - r.first_ms),
        ]
        for r in sessions
    ]
    headers = ["SESSION", "KEY/DEVELOPER", "REQUESTS", "TOKENS", "COST USD", "CACHE HIT"]
    headers += ["FIRST SEEN", "LAST SEEN", "DURATION"]
    print(out.render_table(headers, body, right=[2, 3, 4, 5, 8]))
    return 0


async def session_events(client: GatewayClient, session_id: str) -> list[telemetry_pb2.UsageEvent]:
    """The session's requests, oldest first (at most ``MAX_EVENTS``, the most recent)."""
    return [event async for event in client.tail_logs(limit=MAX_EVENTS, session_id=session_id)]


def request_row(ev: telemetry_pb2.UsageEvent) -> list[object]:
    u = ev.usage
    return [
        out.format_time(ev.time_ms),
        ev.request_id,
        ev.model_served or ev.model_requested or "-",
        ev.status,
        out.format_tokens(u.input_tokens),
        out.format_tokens(u.output_tokens),
        out.format_tokens(u.cache_read_input_tokens),
        out.format_tokens(u.cache_creation_input_tokens),
        out.format_usd(u.cost_micros),
        f"{ev.latency_ms:,} ms",
    ]


def _who(event: telemetry_pb2.UsageEvent) -> tuple[str, object]:
    if event.developer_id or event.developer_email:
        return ("developer", f"{event.developer_email or '-'} ({event.developer_id})")
    return ("key", f"{event.key_id} ({event.key_name})" if event.key_name else "-")


def summary(events: Sequence[telemetry_pb2.UsageEvent]) -> list[tuple[str, object]]:
    cost = sum(e.usage.cost_micros for e in events)
    inp = sum(e.usage.input_tokens for e in events)
    read = sum(e.usage.cache_read_input_tokens for e in events)
    created = sum(e.usage.cache_creation_input_tokens for e in events)
    first, last = events[0].time_ms, events[-1].time_ms
    return [
        ("session", events[0].session_id),
        ("workspace", events[0].workspace),
        _who(events[0]),
        ("requests", len(events)),
        ("cost", out.format_usd(cost)),
        ("cache hit", f"{cache_hit_ratio(inp, read, created):.0%}"),
        ("first seen", out.format_time(first)),
        ("last seen", out.format_time(last)),
        ("duration", format_duration(last - first)),
    ]


async def show(client: GatewayClient, args: argparse.Namespace) -> int:
    events = await session_events(client, args.session_id)
    if not events:
        raise CommandError(f"no requests recorded for session {args.session_id!r}")
    if is_json(args):
        out.print_json(
            {
                "session_id": args.session_id,
                "cost_usd": out.format_usd(sum(e.usage.cost_micros for e in events)),
                "requests": [out.with_cost(e, e.usage.cost_micros) for e in events],
            }
        )
        return 0
    out.print_fields(summary(events))
    print()
    headers = ["TIME", "REQUEST", "MODEL", "STATUS", "INPUT", "OUTPUT", "CACHE READ"]
    headers += ["CACHE WRITE", "COST USD", "LATENCY"]
    print(out.render_table(headers, [request_row(e) for e in events], right=range(3, 10)))
    return 0
