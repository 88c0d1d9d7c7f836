"""``gwctl routes create|list|show|update|delete`` — fallback / load-balancing over providers.

``--targets p1,p2`` lists providers in priority order (fallback) or as a pool (loadbalance);
``--weights 3,1`` pairs with them one-to-one (default weight 1 each); ``--target-model
p2=claude-sonnet-4-5@20250929`` (repeatable) sends that model id to one target instead of the
client's (so a fallback from Anthropic to Vertex or Bedrock asks for the right model).

Times are seconds on the command line (``--timeout-first-byte 30``, ``2.5``, ``500ms``, ``5m``) and
milliseconds in the API; ``0`` means the data plane's default.

``update`` sends only the settings its flags name (a FieldMask). ``--weights`` or
``--target-model`` without ``--targets`` change the route's current targets: gwctl reads the
route, edits its targets and sends them back (``--target-model p=`` removes an override).
"""

from __future__ import annotations

import argparse

from gwapi import vocab
from gwapi.v1 import common_pb2
from gwclient.client import GatewayClient
from gwcommon import breaker_defaults
from gwctl import output as out
from gwctl import parse
from gwctl.cli import Subparsers, UsageError, add_yes, confirm, group, is_json, leaf

MODES = vocab.choices(vocab.MODE)
DEFAULT_RETRY_ON = "429,500,502,503,504,529"

# argparse dest -> (flag, Route field) of the plain scalar settings
_SCALARS: dict[str, tuple[str, str]] = {
    "retries": ("--retries", "retries"),
    "timeout_connect": ("--timeout-connect", "timeout_connect_ms"),
    "timeout_first_byte": ("--timeout-first-byte", "timeout_first_byte_ms"),
    "timeout_idle": ("--timeout-idle", "timeout_idle_ms"),
    "cache_ttl": ("--cache-ttl", "cache_ttl_s"),
    "cache_sampled": ("--cache-sampled", "cache_sampled"),
    "breaker_failures": ("--breaker-failures", "breaker_failures"),
    "breaker_cooldown": ("--breaker-cooldown", "breaker_cooldown_s"),
}


def register(subparsers: Subparsers) -> None:
    sub = group(subparsers, "routes", "manage routes over providers", aliases=["route"])

    p = leaf(sub, "create", "create a route")
    p.add_argument("name")
    p.add_argument("--mode", required=True, choices=MODES)
    p.add_argument(
        "--targets",
        required=True,
        type=parse.parse_list,
        metavar="P1,P2",
        help="providers in fallback order (or the loadbalance pool)",
    )
    add_settings(p, update=False)
    p.set_defaults(handler=create)

    p = leaf(sub, "list", "list routes", aliases=["ls"])
    p.set_defaults(handler=list_)

    p = leaf(sub, "show", "show one route", aliases=["get"])
    p.add_argument("name")
    p.set_defaults(handler=show)

    p = leaf(sub, "update", "change a route (only the flags given)")
    p.add_argument("name")
    p.add_argument("--mode", choices=MODES)
    p.add_argument(
        "--targets", type=parse.parse_list, metavar="P1,P2", help="replaces every target"
    )
    add_settings(p, update=True)
    p.set_defaults(handler=update)

    p = leaf(sub, "delete", "delete a route", aliases=["rm"])
    p.add_argument("name")
    add_yes(p)
    p.set_defaults(handler=delete)


def add_settings(p: argparse.ArgumentParser, *, update: bool) -> None:
    p.add_argument(
        "--weights",
        type=parse.parse_weights,
        metavar="W1,W2",
        help="loadbalance: one weight per target, e.g. 3,1 (default 1 each)",
    )
    p.add_argument(
        "--target-model",
        action="append",
        type=parse.parse_target_model,
        metavar="PROVIDER=MODEL",
        help="send this model id to that target, repeatable"
        + ("; PROVIDER= removes the override" if update else ""),
    )
    p.add_argument(
        "--retries", type=parse.parse_count, metavar="N", help="extra attempts per request (0-10)"
    )
    p.add_argument(
        "--retry-on",
        type=parse.parse_statuses,
        metavar="STATUSES",
        help=f"HTTP statuses that move on to a retry or the next target, e.g. {DEFAULT_RETRY_ON}",
    )
    for flag, what in (
        ("--timeout-connect", "to connect upstream"),
        ("--timeout-first-byte", "until the first byte of the answer"),
        ("--timeout-idle", "of silence in a streamed answer"),
    ):
        p.add_argument(
            flag,
            type=parse.parse_seconds_ms,
            metavar="S",
            help=f"seconds {what} (0 = default, at most 1h)",
        )
    p.add_argument(
        "--cache-ttl",
        type=parse.parse_whole_seconds,
        metavar="SECONDS",
        help="cache answers this long (0 = off, at most 7 days)",
    )
    p.add_argument(
        "--cache-sampled",
        action=argparse.BooleanOptionalAction if update else "store_true",
        default=None,
        help="also cache answers to requests with temperature > 0",
    )
    p.add_argument(
        "--breaker-failures",
        type=parse.parse_count,
        metavar="N",
        help="open a target's circuit after N consecutive failures (0 = default 5)",
    )
    p.add_argument(
        "--breaker-cooldown",
        type=parse.parse_whole_seconds,
        metavar="S",
        help="seconds a target stays skipped before one probe (0 = default 30)",
    )


def build_targets(
    providers: list[str],
    weights: list[int] | None,
    models: list[tuple[str, str]] | None,
    *,
    current: list[common_pb2.RouteTarget] | None = None,
) -> list[common_pb2.RouteTarget]:
    """Targets from ``--targets`` (or the route's ``current`` ones), ``--weights`` and
    ``--target-model``; a usage error names the mismatch."""
    if not providers:
        raise UsageError("--targets needs at least one provider name")
    if len(set(providers)) != len(providers):
        twice = next(p for p in providers if providers.count(p) > 1)
        raise UsageError(f"--targets lists {twice!r} twice: each provider appears once")
    if weights is not None and len(weights) != len(providers):
        raise UsageError(
            f"--weights has {len(weights)} value(s) for {len(providers)} target(s): give one each"
        )
    old = {t.provider: t for t in current or []}
    overrides: dict[str, str] = {}
    for provider, model in models or []:
        if provider not in providers:
            raise UsageError(
                f"--target-model {provider}=…: {provider!r} is not a target "
                f"(targets: {', '.join(providers)})"
            )
        if provider in overrides and overrides[provider] != model:
            raise UsageError(f"--target-model gives {provider!r} two models")
        overrides[provider] = model
    targets = []
    for i, name in enumerate(providers):
        before = old.get(name)
        weight = weights[i] if weights else (before.weight if before else 1)
        model = overrides.get(name, before.model if before else "")
        targets.append(common_pb2.RouteTarget(provider=name, weight=weight or 1, model=model))
    return targets


def _settings(args: argparse.Namespace, route: common_pb2.Route) -> list[str]:
    """Copy the scalar flags that were given onto ``route``; returns their update paths."""
    paths: list[str] = []
    for dest, (_, field) in _SCALARS.items():
        value = getattr(args, dest)
        if value is not None:
            setattr(route, field, value)
            paths.append(field)
    if args.retry_on is not None:
        route.retry_on.extend(args.retry_on)
        paths.append("retry_on")
    return paths


def describe_targets(route: common_pb2.Route) -> str:
    parts = []
    for t in route.targets:
        text = t.provider
        if route.mode == "loadbalance":
            text += f"×{t.weight or 1}"
        if t.model:
            text += f" ({t.model})"
        parts.append(text)
    return (", " if route.mode == "loadbalance" else " → ").join(parts)


def describe_timeouts(route: common_pb2.Route) -> str:
    return (
        f"connect {parse.format_seconds_ms(route.timeout_connect_ms)}, "
        f"first byte {parse.format_seconds_ms(route.timeout_first_byte_ms)}, "
        f"idle {parse.format_seconds_ms(route.timeout_idle_ms)}"
    )


def describe_cache(route: common_pb2.Route) -> str:
    if route.cache_ttl_s <= 0:
        return "off"
    sampled = "all requests" if route.cache_sampled else "deterministic requests only"
    return f"{route.cache_ttl_s}s ({sampled})"


def describe_breaker(route: common_pb2.Route) -> str:
    failures = route.breaker_failures or f"{breaker_defaults.FAILURES} (default)"
    cooldown = (
        f"{route.breaker_cooldown_s}s"
        if route.breaker_cooldown_s
        else f"{breaker_defaults.COOLDOWN_S}s (default)"
    )
    return f"after {failures} failures, skip for {cooldown}"


def emit(route: common_pb2.Route, args: argparse.Namespace) -> None:
    if is_json(args):
        out.print_json(out.message_dict(route))
        return
    out.print_fields(
        [
            ("name", route.name),
            ("mode", route.mode),
            ("targets", describe_targets(route)),
            ("retries", route.retries),
            ("retry on", ", ".join(str(s) for s in route.retry_on) or "default"),
            ("timeouts", describe_timeouts(route)),
            ("cache", describe_cache(route)),
            ("breaker", describe_breaker(route)),
            ("created", out.format_time(route.created_at_ms)),
            ("updated", out.format_time(route.updated_at_ms)),
        ]
    )


def create_request(args: argparse.Namespace) -> common_pb2.Route:
    """The Route ``routes create`` sends."""
    route = common_pb2.Route(
        name=args.name,
        mode=args.mode,
        targets=build_targets(args.targets, args.weights, args.target_model),
    )
    _settings(args, route)
    return route


async def create(client: GatewayClient, args: argparse.Namespace) -> int:
    emit(await client.create_route(create_request(args)), args)
    return 0


LIST_HEADERS = ("NAME", "MODE", "TARGETS", "RETRIES", "CACHE")


def list_row(r: common_pb2.Route) -> list[object]:
    cache = f"{r.cache_ttl_s}s" if r.cache_ttl_s else "off"
    return [r.name, r.mode, describe_targets(r), r.retries, cache]


async def list_(client: GatewayClient, args: argparse.Namespace) -> int:
    routes = await client.list_routes()
    out.print_list(is_json(args), routes, out.message_dict, LIST_HEADERS, list_row, right=(3,))
    return 0


async def show(client: GatewayClient, args: argparse.Namespace) -> int:
    emit(await client.get_route(args.name), args)
    return 0


def update_request(
    args: argparse.Namespace, current: common_pb2.Route | None = None
) -> tuple[common_pb2.Route, list[str]]:
    """The Route and update-mask paths ``routes update`` sends. ``current`` (the stored route)
    is needed only when ``--weights``/``--target-model`` come without ``--targets``."""
    route = common_pb2.Route(name=args.name)
    paths: list[str] = []
    if args.mode is not None:
        route.mode = args.mode
        paths.append("mode")
    if args.targets is not None:
        old = list(current.targets) if current is not None else None
        route.targets.extend(
            build_targets(args.targets, args.weights, args.target_model, current=old)
        )
        paths.append("targets")
    elif args.weights is not None or args.target_model:
        if current is None:
            raise UsageError("--weights/--target-model without --targets need the current route")
        providers = [t.provider for t in current.targets]
        route.targets.extend(
            build_targets(providers, args.weights, args.target_model, current=list(current.targets))
        )
        paths.append("targets")
    paths += _settings(args, route)
    if not paths:
        raise UsageError("nothing to update: give at least one setting flag (see --help)")
    return route, paths


def needs_current(args: argparse.Namespace) -> bool:
    return args.targets is None and (args.weights is not None or bool(args.target_model))


async def update(client: GatewayClient, args: argparse.Namespace) -> int:
    current = await client.get_route(args.name) if needs_current(args) else None
    route, paths = update_request(args, current)
    emit(await client.update_route(route, paths), args)
    return 0


async def delete(client: GatewayClient, args: argparse.Namespace) -> int:
    confirm(f"delete route {args.name!r}", args.yes)
    await client.delete_route(args.name)
    out.print_gone(is_json(args), "deleted", "route", args.name)
    return 0
