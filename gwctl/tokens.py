"""``gwctl tokens create|list|revoke`` and ``gwctl whoami`` — admin-API tokens and roles.

Roles: ``admin`` (everything), ``workspace-admin`` (keys, key limits, some settings and the
usage/logs/alerts/audit of its ``--workspace``s), ``viewer`` (read-only; optionally limited to
``--workspace``s; what ``gwctl tui --readonly`` needs). The secret (``tga-…``) exists on the
client exactly once: in the create response; ``list`` shows only the public id and the prefix.
Only admin tokens can create, list or revoke tokens; ``whoami`` works with any token.
"""

from __future__ import annotations

import argparse

from gwapi.v1 import admin_pb2
from gwclient.client import GatewayClient
from gwctl import output as out
from gwctl import parse
from gwctl.cli import Subparsers, add_yes, confirm, group, is_json, leaf

ROLES = ("admin", "workspace-admin", "viewer")
HEADERS = ("ID", "NAME", "ROLE", "WORKSPACES", "PREFIX", "STATUS", "EXPIRES", "LAST USED")


def register(subparsers: Subparsers) -> None:
    sub = group(subparsers, "tokens", "admin-API tokens and their roles", aliases=["token"])

    p = leaf(sub, "create", "create an admin-API token (its secret is shown once)")
    p.add_argument("--role", required=True, choices=ROLES, help="what the token may do")
    p.add_argument(
        "--workspace",
        "-w",
        action="append",
        default=[],
        metavar="W",
        help="repeatable: the workspaces a workspace-admin manages (required) or a viewer may"
        " read (default: all); not for admin",
    )
    p.add_argument(
        "--expires",
        type=parse.parse_duration,
        metavar="DURATION",
        help=f"{parse.DURATION_HELP} from now (default: never)",
    )
    p.add_argument("--name", default="", help="who or what will use it (default: the role)")
    p.set_defaults(handler=create)

    p = leaf(sub, "list", "list tokens (prefix only, never the secret)", aliases=["ls"])
    p.add_argument("--all", action="store_true", help="include revoked tokens")
    p.set_defaults(handler=list_)

    p = leaf(sub, "revoke", "revoke a token: refused by this control plane at once")
    p.add_argument("id", help="the token's id (tok_…)")
    add_yes(p)
    p.set_defaults(handler=revoke)

    p = leaf(subparsers, "whoami", "the identity and role of the token in use")
    p.set_defaults(handler=whoami)


def status(token: admin_pb2.AdminToken, at_ms: int | None = None) -> str:
    """``revoked`` beats ``expired`` beats ``active``."""
    if token.revoked_at_ms:
        return "revoked"
    now = out.now_ms() if at_ms is None else at_ms
    if token.expires_at_ms and token.expires_at_ms <= now:
        return "expired"
    return "active"


def scope_text(token: admin_pb2.AdminToken) -> str:
    if token.workspaces:
        return ", ".join(token.workspaces)
    return "all" if token.role in ("admin", "viewer") else "-"


def token_dict(token: admin_pb2.AdminToken) -> out.JSON:
    return {**out.message_dict(token), "status": status(token)}


def _fields(token: admin_pb2.AdminToken) -> list[tuple[str, object]]:
    fields: list[tuple[str, object]] = [
        ("id", token.id),
        ("name", token.name),
        ("role", token.role),
        ("workspaces", scope_text(token)),
    ]
    if token.prefix:  # the bootstrap token has no row, hence no prefix or dates
        fields += [
            ("prefix", f"{token.prefix}…"),
            ("status", status(token)),
            ("expires", out.format_time(token.expires_at_ms) if token.expires_at_ms else "never"),
            ("created", out.format_time(token.created_at_ms)),
            ("created by", token.created_by or "-"),
            ("last used", out.format_time(token.last_used_at_ms)),
            ("revoked", out.format_time(token.revoked_at_ms)),
        ]
    return fields


async def create(client: GatewayClient, args: argparse.Namespace) -> int:
    response = await client.create_token(
        args.name or args.role, args.role, args.workspace, args.expires or 0
    )
    if is_json(args):
        out.print_json({**token_dict(response.token), "secret": response.secret})
        return 0
    out.print_fields([*_fields(response.token), ("secret", response.secret)])
    out.info(
        "\nwarning: this is the only time the token is shown: store it now "
        "(it cannot be recovered, only revoked and replaced). Use it as TOLLGATE_ADMIN_TOKEN "
        "or in a file (mode 0600) given to --token-file."
    )
    return 0


async def list_(client: GatewayClient, args: argparse.Namespace) -> int:
    tokens = await client.list_tokens(include_revoked=args.all)
    if is_json(args):
        out.print_json([token_dict(t) for t in tokens])
        return 0
    if not tokens:
        out.info("no tokens" + ("" if args.all else " (revoked ones are hidden: --all)"))
        return 0
    out.print_table(
        HEADERS,
        (
            [
                t.id,
                t.name,
                t.role,
                scope_text(t),
                f"{t.prefix}…",
                status(t),
                out.format_time(t.expires_at_ms) if t.expires_at_ms else "never",
                out.format_time(t.last_used_at_ms),
            ]
            for t in tokens
        ),
    )
    return 0


async def revoke(client: GatewayClient, args: argparse.Namespace) -> int:
    confirm(f"revoke token {args.id}", args.yes)
    token = await client.revoke_token(args.id)
    if is_json(args):
        out.print_json(token_dict(token))
    else:
        print(f"revoked token {token.id} ({token.name}, {token.role})")
    return 0


async def whoami(client: GatewayClient, args: argparse.Namespace) -> int:
    me = await client.whoami()
    if is_json(args):
        out.print_json(token_dict(me))
    else:
        out.print_fields(_fields(me))
    return 0
