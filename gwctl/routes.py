"""``gwctl routes create|list|show|update|delete`` — fallback / load-balancing over providers.

``--targets p1,p2`` lists providers in priority order (fallback) or as a pool (loadbalance);
``--weights 3,1`` pairs with them one-to-one (default weight 1 each).
"""

from __future__ import annotations

import argparse

from gwapi.v1 import common_pb2
from gwctl import output as out
from gwctl import parse
from gwctl.cli import Subparsers, UsageError, confirm, group, is_json, leaf
from tui.client import GatewayClient

MODES = ("fallback", "loadbalance")


def register(subparsers: Subparsers) -> None:
    sub = group(subparsers, "routes", "manage routes over providers", aliases=["route"])

    p = leaf(sub, "create", "create a route")
    p.add_argument("name")
    p.add_argument("--mode", required=True, choices=MODES)
    p.add_argument("--targets", required=True, type=parse.parse_list, metavar="P1,P2")
    _add_settings(p)
    p.set_defaults(handler=create)

    p = leaf(sub, "list", "list routes", aliases=["ls"])
    p.set_defaults(handler=list_)

    p = leaf(sub, "show", "show one route", aliases=["get"])
    p.add_argument("name")
    p.set_defaults(handler=show)

    p = leaf(sub, "update", "change a route (only the flags given)")
    p.add_argument("name")
    p.add_argument("--mode", choices=MODES)
    p.add_argument("--targets", type=parse.parse_list, metavar="P1,P2")
    _add_settings(p)
    p.set_defaults(handler=update)

    p = leaf(sub, "delete", "delete a route", aliases=["rm"])
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=delete)


def _add_settings(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights", type=parse.parse_weights, metavar="W1,W2", help="one weight per target"
    )
    p.add_argument(
        "--retries", type=parse.parse_count, metavar="N", help="extra attempts per request"
    )


def _targets(targets: list[str], weights: list[int] | None) -> list[common_pb2.RouteTarget]:
    if not targets:
        raise UsageError("--targets needs at least one provider name")
    if weights is not None and len(weights) != len(targets):
        raise UsageError(
            f"--weights has {len(weights)} value(s) for {len(targets)} target(s): give one each"
        )
    return [
        common_pb2.RouteTarget(provider=name, weight=weights[i] if weights else 1)
        for i, name in enumerate(targets)
    ]


def _describe_targets(route: common_pb2.Route) -> str:
    if route.mode == "loadbalance":
        return ", ".join(f"{t.provider}×{t.weight}" for t in route.targets)
    return " → ".join(t.provider for t in route.targets)


def emit(route: common_pb2.Route, args: argparse.Namespace) -> None:
    if is_json(args):
        out.print_json(out.message_dict(route))
        return
    out.print_fields(
        [
            ("name", route.name),
            ("mode", route.mode),
            ("targets", _describe_targets(route)),
            ("retries", route.retries),
            ("created", out.format_time(route.created_at_ms)),
            ("updated", out.format_time(route.updated_at_ms)),
        ]
    )


async def create(client: GatewayClient, args: argparse.Namespace) -> int:
    route = common_pb2.Route(
        name=args.name,
        mode=args.mode,
        targets=_targets(args.targets, args.weights),
        retries=args.retries or 0,
    )
    emit(await client.create_route(route), args)
    return 0


async def list_(client: GatewayClient, args: argparse.Namespace) -> int:
    routes = await client.list_routes()
    if is_json(args):
        out.print_json([out.message_dict(r) for r in routes])
        return 0
    out.print_table(
        ["NAME", "MODE", "TARGETS", "RETRIES"],
        ([r.name, r.mode, _describe_targets(r), r.retries] for r in routes),
        right=(3,),
    )
    return 0


async def show(client: GatewayClient, args: argparse.Namespace) -> int:
    emit(await client.get_route(args.name), args)
    return 0


async def update(client: GatewayClient, args: argparse.Namespace) -> int:
    route = common_pb2.Route(name=args.name)
    paths: list[str] = []
    if args.mode is not None:
        route.mode = args.mode
        paths.append("mode")
    if args.targets is not None:
        route.targets.extend(_targets(args.targets, args.weights))
        paths.append("targets")
    elif args.weights is not None:
        raise UsageError("--weights needs --targets (the weights pair with the targets)")
    if args.retries is not None:
        route.retries = args.retries
        paths.append("retries")
    if not paths:
        raise UsageError("nothing to update: give --mode, --targets or --retries")
    emit(await client.update_route(route, paths), args)
    return 0


async def delete(client: GatewayClient, args: argparse.Namespace) -> int:
    confirm(f"delete route {args.name!r}", args.yes)
    await client.delete_route(args.name)
    if is_json(args):
        out.print_json({"deleted": args.name})
    else:
        print(f"deleted route {args.name}")
    return 0
