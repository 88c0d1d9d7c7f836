"""``gwctl keys create|list|show|update|revoke|delete`` — virtual keys.

The secret (``gw-…``) exists on the client exactly once: in the CreateKey response. ``create``
prints it (table: with a warning that it will not be shown again; json: as ``key``); every other
command shows only the public id and the prefix.
"""

from __future__ import annotations

import argparse

from gwapi.v1 import admin_pb2, common_pb2
from gwclient.client import GatewayClient
from gwctl import output as out
from gwctl import parse
from gwctl.cli import Subparsers, UsageError, add_yes, confirm, group, is_json, leaf, read_target
from gwctl.limit_flags import add_limit_flags, limits_from_args


def register(subparsers: Subparsers) -> None:
    sub = group(subparsers, "keys", "manage virtual keys", aliases=["key"])

    p = leaf(sub, "create", "create a virtual key (its secret is shown once)")
    p.add_argument("--workspace", "-w", required=True)
    p.add_argument("--name", required=True)
    _add_settings(p, update=False)
    p.set_defaults(handler=create)

    p = leaf(sub, "list", "list keys (prefix only, never the secret)", aliases=["ls"])
    p.add_argument("--workspace", "-w", default="")
    p.add_argument("--all", action="store_true", help="include revoked keys")
    p.set_defaults(handler=list_)

    p = leaf(sub, "show", "show one key", aliases=["get"])
    p.add_argument("id")
    p.set_defaults(handler=show)

    p = leaf(sub, "update", "change a key's settings (only the flags given)")
    p.add_argument("id")
    p.add_argument("--name")
    _add_settings(p, update=True)
    p.set_defaults(handler=update)

    p = leaf(sub, "revoke", "revoke a key: refused by every data plane within a second")
    p.add_argument("id")
    add_yes(p)
    p.set_defaults(handler=revoke)

    p = leaf(sub, "delete", "delete a key and forget it", aliases=["rm"])
    p.add_argument("id")
    add_yes(p)
    p.set_defaults(handler=delete)


def _add_settings(p: argparse.ArgumentParser, *, update: bool) -> None:
    add_limit_flags(p, update=update)
    target = p.add_mutually_exclusive_group(required=not update)
    target.add_argument("--provider", help="send every request to this provider")
    target.add_argument("--route", help="send requests through this route")
    p.add_argument(
        "--models",
        type=parse.parse_list,
        metavar="GLOBS",
        help="comma-separated model allow-list, e.g. 'claude-sonnet-*,claude-haiku-*'"
        + ("; '' allows every model" if update else ""),
    )
    if update:
        p.add_argument(
            "--expires", metavar="DURATION|never", help=f"{parse.DURATION_HELP} from now, or never"
        )
    else:
        p.add_argument(
            "--expires", type=parse.parse_duration, metavar="DURATION", help=parse.DURATION_HELP
        )


def target_of(key: common_pb2.VirtualKey) -> str:
    if key.route:
        return f"route:{key.route}"
    return f"provider:{key.provider}" if key.provider else "-"


def emit(key: common_pb2.VirtualKey, args: argparse.Namespace) -> None:
    if is_json(args):
        out.print_json(out.key_dict(key))
        return
    out.print_fields(_fields(key))


def _fields(key: common_pb2.VirtualKey) -> list[tuple[str, object]]:
    limits = key.limits
    return [
        ("id", key.id),
        ("name", key.name),
        ("workspace", key.workspace),
        ("prefix", f"{key.prefix}…"),
        ("status", out.key_status(key)),
        ("target", target_of(key)),
        ("models", ", ".join(key.models) or "all"),
        ("budgets", out.format_budgets(limits)),
        ("rpm", out.format_limit(limits.rpm)),
        ("rph", out.format_limit(limits.rph)),
        ("tpm", out.format_limit(limits.tpm)),
        ("max parallel", out.format_limit(limits.max_parallel)),
        *out.spend_fields(key.budget_status),
        ("expires", out.format_time(key.expires_at_ms) if key.expires_at_ms else "never"),
        ("revoked", out.format_time(key.revoked_at_ms)),
        ("created", out.format_time(key.created_at_ms)),
    ]


async def create(client: GatewayClient, args: argparse.Namespace) -> int:
    limits, _ = limits_from_args(args)
    request = admin_pb2.CreateKeyRequest(
        workspace=args.workspace,
        name=args.name,
        limits=limits,
        provider=args.provider or "",
        route=args.route or "",
        models=args.models or [],
        ttl_seconds=args.expires or 0,
    )
    response = await client.create_key(request)
    if is_json(args):
        out.print_json({**out.key_dict(response.key), "key": response.secret})
        return 0
    out.print_fields([*_fields(response.key), ("key", response.secret)])
    out.info(
        "\nwarning: this is the only time the key is shown: store it now "
        "(it cannot be recovered, only revoked and replaced)."
    )
    return 0


LIST_HEADERS = ("ID", "NAME", "WORKSPACE", "PREFIX", "STATUS", "TARGET", "BUDGETS", "EXPIRES")


def list_row(k: common_pb2.VirtualKey, now: int) -> list[object]:
    return [
        k.id,
        k.name,
        k.workspace,
        f"{k.prefix}…",
        out.key_status(k, now),
        target_of(k),
        out.format_budgets(k.limits),
        out.format_time(k.expires_at_ms) if k.expires_at_ms else "never",
    ]


async def list_(client: GatewayClient, args: argparse.Namespace) -> int:
    keys = await client.list_keys(args.workspace, include_revoked=args.all)
    now = out.now_ms()  # one "now" for every key's status, in JSON and table alike
    out.print_list(
        is_json(args),
        keys,
        lambda k: out.key_dict(k, now),
        LIST_HEADERS,
        lambda k: list_row(k, now),
    )
    return 0


async def show(client: GatewayClient, args: argparse.Namespace) -> int:
    emit(await client.get_key(args.id), args)
    return 0


async def update(client: GatewayClient, args: argparse.Namespace) -> int:
    limits, paths = limits_from_args(args)
    key = common_pb2.VirtualKey(id=args.id, limits=limits)
    if args.name is not None:
        key.name = args.name
        paths.append("name")
    read_target(key, paths, "", args.provider, args.route)
    if args.models is not None:
        key.models.extend(args.models)
        paths.append("models")
    if args.expires is not None:
        if args.expires.strip().lower() == "never":
            key.expires_at_ms = 0
        else:
            try:
                seconds = parse.parse_duration(args.expires)
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"--expires: {exc}") from None
            key.expires_at_ms = out.now_ms() + seconds * 1000
        paths.append("expires_at_ms")
    if not paths:
        raise UsageError("nothing to update: give at least one setting flag (see --help)")
    emit(await client.update_key(key, paths), args)
    return 0


async def revoke(client: GatewayClient, args: argparse.Namespace) -> int:
    confirm(f"revoke key {args.id}", args.yes)
    key = await client.revoke_key(args.id)
    if is_json(args):
        out.print_json(out.key_dict(key))
    else:
        print(f"revoked key {key.id} ({key.name}, workspace {key.workspace})")
    return 0


async def delete(client: GatewayClient, args: argparse.Namespace) -> int:
    confirm(f"delete key {args.id}", args.yes)
    await client.delete_key(args.id)
    out.print_gone(is_json(args), "deleted", "key", args.id)
    return 0
