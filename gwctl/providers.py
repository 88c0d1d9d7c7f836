"""``gwctl providers create|list|show|update|delete`` — upstream LLM providers.

A provider never holds a secret: ``--api-key-env`` names the environment variable the *data
plane* reads its credential from.
"""

from __future__ import annotations

import argparse

from gwapi.v1 import common_pb2
from gwctl import output as out
from gwctl import parse
from gwctl.cli import Subparsers, UsageError, confirm, group, is_json, leaf
from tui.client import GatewayClient

KINDS = ("anthropic", "simulator", "bedrock", "vertex")


def register(subparsers: Subparsers) -> None:
    sub = group(subparsers, "providers", "manage upstream providers", aliases=["provider"])

    p = leaf(sub, "create", "add a provider")
    p.add_argument("name")
    p.add_argument("--kind", required=True, choices=KINDS)
    _add_settings(p)
    p.set_defaults(handler=create)

    p = leaf(sub, "list", "list providers", aliases=["ls"])
    p.set_defaults(handler=list_)

    p = leaf(sub, "show", "show one provider", aliases=["get"])
    p.add_argument("name")
    p.set_defaults(handler=show)

    p = leaf(sub, "update", "change a provider (only the flags given; --option replaces all)")
    p.add_argument("name")
    _add_settings(p)
    p.set_defaults(handler=update)

    p = leaf(sub, "delete", "delete a provider", aliases=["rm"])
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=delete)


def _add_settings(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", metavar="URL", help="API root without /v1")
    p.add_argument(
        "--api-key-env", metavar="VAR", help="env var the data plane reads the credential from"
    )
    p.add_argument(
        "--option",
        action="append",
        type=parse.parse_option,
        metavar="KEY=VALUE",
        help="kind-specific setting, repeatable (e.g. region=us-east-1)",
    )
    p.add_argument(
        "--latency-ms", type=parse.parse_count, metavar="N", help="simulator: answer delay"
    )


def _from_args(args: argparse.Namespace, kind: str | None) -> tuple[common_pb2.Provider, list[str]]:
    provider = common_pb2.Provider(name=args.name, kind=kind or "")
    paths: list[str] = []
    if args.base_url is not None:
        provider.base_url = args.base_url
        paths.append("base_url")
    if args.api_key_env is not None:
        provider.api_key_env = args.api_key_env
        paths.append("api_key_env")
    options = dict(args.option or [])
    if args.latency_ms is not None:
        if kind is not None and kind != "simulator":
            raise UsageError("--latency-ms only applies to --kind simulator")
        options["latency_ms"] = str(args.latency_ms)
    if args.option is not None or args.latency_ms is not None:
        provider.options.update(options)
        paths.append("options")
    return provider, paths


def emit(provider: common_pb2.Provider, args: argparse.Namespace) -> None:
    if is_json(args):
        out.print_json(out.message_dict(provider))
        return
    out.print_fields(
        [
            ("name", provider.name),
            ("kind", provider.kind),
            ("base url", provider.base_url or "(default)"),
            ("api key env", provider.api_key_env or "-"),
            ("options", _options(provider)),
            ("created", out.format_time(provider.created_at_ms)),
            ("updated", out.format_time(provider.updated_at_ms)),
        ]
    )


def _options(provider: common_pb2.Provider) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(provider.options.items())) or "-"


async def create(client: GatewayClient, args: argparse.Namespace) -> int:
    provider, _ = _from_args(args, args.kind)
    emit(await client.create_provider(provider), args)
    return 0


async def list_(client: GatewayClient, args: argparse.Namespace) -> int:
    providers = await client.list_providers()
    if is_json(args):
        out.print_json([out.message_dict(p) for p in providers])
        return 0
    out.print_table(
        ["NAME", "KIND", "BASE URL", "API KEY ENV", "OPTIONS"],
        ([p.name, p.kind, p.base_url or "-", p.api_key_env or "-", _options(p)] for p in providers),
    )
    return 0


async def show(client: GatewayClient, args: argparse.Namespace) -> int:
    emit(await client.get_provider(args.name), args)
    return 0


async def update(client: GatewayClient, args: argparse.Namespace) -> int:
    provider, paths = _from_args(args, None)
    if not paths:
        raise UsageError(
            "nothing to update: give --base-url, --api-key-env, --option or --latency-ms"
        )
    emit(await client.update_provider(provider, paths), args)
    return 0


async def delete(client: GatewayClient, args: argparse.Namespace) -> int:
    confirm(f"delete provider {args.name!r}", args.yes)
    await client.delete_provider(args.name)
    if is_json(args):
        out.print_json({"deleted": args.name})
    else:
        print(f"deleted provider {args.name}")
    return 0
