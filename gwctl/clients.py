"""``gwctl clients`` — which Claude Code versions each workspace's requests come from.

One row per (workspace, version) with requests and when the version was last seen in the window;
requests from other clients (SDKs, curl: no ``claude-cli/…`` user-agent) show as version ``-``.
A workspace's ``min_client_version`` is shown next to its rows, and versions below it are marked.
"""

from __future__ import annotations

import argparse

from gwclient.client import GatewayClient
from gwctl import output as out
from gwctl.cli import Subparsers, add_since, is_json, leaf

DEFAULT_SINCE_S = 7 * 86_400


def register(subparsers: Subparsers) -> None:
    p = leaf(subparsers, "clients", "Claude Code versions in use per workspace")
    p.add_argument("--workspace", "-w", default="")
    add_since(p, "e.g. 24h, 30d (default 7d)", DEFAULT_SINCE_S)
    p.set_defaults(handler=run)


def _parts(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def below(version: str, minimum: str) -> bool:
    """Whether ``version`` is older than ``minimum`` (numeric, missing parts are 0)."""
    if not version or not minimum:
        return False
    a, b = _parts(version), _parts(minimum)
    if not a or not b:
        return False
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) < b + (0,) * (width - len(b))


async def run(client: GatewayClient, args: argparse.Namespace) -> int:
    since_ms = out.now_ms() - args.since * 1000 if args.since else 0
    if args.workspace:
        names = [args.workspace]
    else:
        rows = await client.query_usage(group_by="workspace", since_ms=since_ms)
        names = sorted(r.group for r in rows if r.group)
    minimums = {ws.name: ws.min_client_version for ws in await client.list_workspaces()}
    entries: list[dict[str, object]] = []
    for name in names:
        rows = await client.query_usage(
            workspace=name, group_by="client_version", since_ms=since_ms
        )
        minimum = minimums.get(name, "")
        for row in sorted(rows, key=lambda r: _parts(r.group), reverse=True):
            entries.append(
                {
                    "workspace": name,
                    "client_version": row.group,
                    "requests": row.requests,
                    "min_client_version": minimum,
                    "below_minimum": below(row.group, minimum),
                }
            )
    if is_json(args):
        out.print_json({"since_ms": since_ms, "clients": entries})
        return 0
    body = [
        [
            str(e["workspace"]),
            str(e["client_version"] or "-") + ("  (below minimum)" if e["below_minimum"] else ""),
            str(e["requests"]),
            str(e["min_client_version"] or "-"),
        ]
        for e in entries
    ]
    print(out.render_table(["WORKSPACE", "VERSION", "REQUESTS", "MINIMUM"], body, right=[2]))
    return 0
