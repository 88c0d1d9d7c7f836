"""``gwctl audit`` — the audit log: every admin change, who made it, from where, and what changed.

Without ``--follow``: newest first (ListAudit), filtered by ``--workspace``, ``--since``,
``--kind`` and ``--limit``. With ``--follow``: the last ``--limit`` changes oldest first, then each
new one as it is committed (TailAudit; ``--kind`` and ``--since`` apply here too), until Ctrl-C.

The table shows time, actor (token name and role), where the call came from, the action, the
object, its workspace and, for updates, the fields that changed. ``-o json`` prints whole events
with ``before`` and ``after`` as objects (JSON lines when following). A token scoped to some
workspaces sees only their changes; providers and routes are global and shown to unscoped tokens.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

from gwapi.v1 import admin_pb2
from gwclient import audit_diff
from gwclient.client import GatewayClient
from gwcommon.audit_kinds import RESOURCE_KINDS as KINDS
from gwctl import output as out
from gwctl import parse
from gwctl.cli import Subparsers, UsageError, add_since, is_json, leaf

HEADERS = ("TIME", "ACTOR", "FROM", "ACTION", "RESOURCE", "WORKSPACE", "CHANGED")
# Follow mode cannot measure the widest cell in advance: these widths fit typical values.
_WIDTHS = (20, 28, 22, 18, 20, 12, 0)


def register(subparsers: Subparsers) -> None:
    p = leaf(
        subparsers, "audit", "audit log of admin changes (who, what, before/after, from where)"
    )
    p.add_argument("--workspace", "-w", default="", help="only changes in this workspace")
    add_since(p, "e.g. 1h, 7d (default: all)")
    p.add_argument("--kind", choices=KINDS, default="", help="only this kind of object")
    p.add_argument(
        "-n",
        "--limit",
        type=parse.parse_count,
        default=0,
        metavar="N",
        help="at most N events (default 100; 20 before following)",
    )
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new changes as they happen"
    )
    p.set_defaults(handler=run)


def event_dict(event: admin_pb2.AuditEvent) -> out.JSON:
    doc = out.message_dict(event)
    doc.pop("before_json", None)
    doc.pop("after_json", None)
    return {
        **doc,
        "time": out.format_time(event.time_ms),
        "before": audit_diff.parse(event.before_json) if event.before_json else None,
        "after": audit_diff.parse(event.after_json) if event.after_json else None,
    }


def cells(event: admin_pb2.AuditEvent) -> list[str]:
    return [
        out.format_time(event.time_ms),
        audit_diff.actor_text(event),
        audit_diff.peer_text(event.peer),
        event.action,
        event.resource or "-",
        event.workspace or "-",
        audit_diff.summary(event),
    ]


def format_line(values: list[str]) -> str:
    """One fixed-width line (follow mode)."""
    return out.fixed_width_line(values, _WIDTHS)


async def run(client: GatewayClient, args: argparse.Namespace) -> int:
    since_ms = out.now_ms() - args.since * 1000 if args.since else 0
    if args.follow:
        return await follow(client, args, since_ms)
    events = await client.list_audit(
        workspace=args.workspace, since_ms=since_ms, limit=args.limit, resource_kind=args.kind
    )
    if is_json(args):
        out.print_json([event_dict(e) for e in events])
    elif not events:
        out.info("no admin changes" + (f" in workspace {args.workspace}" if args.workspace else ""))
    else:
        out.print_table(HEADERS, (cells(e) for e in events))
    return 0


async def follow(client: GatewayClient, args: argparse.Namespace, since_ms: int) -> int:
    if args.limit > 1000:
        raise UsageError("--limit is at most 1000 when following")

    async def matching() -> AsyncIterator[admin_pb2.AuditEvent]:
        source = client.tail_audit(follow=True, limit=args.limit or 20, workspace=args.workspace)
        async for event in source:
            if (not args.kind or event.resource_kind == args.kind) and event.time_ms >= since_ms:
                yield event

    await out.print_follow(
        matching(),
        is_json(args),
        format_line(list(HEADERS)),
        lambda event: format_line(cells(event)),
        event_dict,
    )
    return 0
