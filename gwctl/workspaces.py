"""``gwctl workspaces create|list|show|update|delete``.

A workspace is the team-level scope: its budgets and rate limits apply on top of each key's, and
its access controls (``--allow-provider``, ``--allow-route``, ``--allow-model``; none = everything)
bound what its keys may target. ``update`` sends a FieldMask naming only the flags that were given,
so unspecified settings keep their values on the server; an ``--allow-*`` flag replaces that whole
list, ``--clear-allowed-*`` empties it. ``show`` lists the keys a narrowing left outside. The
sign-in settings (``--sso-group``, ``--member-*``, ``--managed-settings-file``) are described in
:mod:`gwctl.workspace_signin`; ``show --show-managed-settings`` prints the managed settings' JSON.
"""

from __future__ import annotations

import argparse

from gwapi import vocab
from gwapi.v1 import common_pb2
from gwclient.client import GatewayClient
from gwclient.errors import ClientError
from gwcommon.allowlists import target_denial, uncovered_patterns
from gwctl import output as out
from gwctl import workspace_signin as signin
from gwctl.cli import Subparsers, UsageError, add_yes, confirm, group, is_json, leaf, read_list
from gwctl.limit_flags import add_limit_flags, limits_from_args


def register(subparsers: Subparsers) -> None:
    sub = group(
        subparsers, "workspaces", "manage workspaces (team budgets and limits)", aliases=["ws"]
    )

    p = leaf(sub, "create", "create a workspace")
    p.add_argument("name")
    _add_settings(p, update=False)
    p.set_defaults(handler=create)

    p = leaf(sub, "list", "list workspaces", aliases=["ls"])
    p.set_defaults(handler=list_)

    p = leaf(sub, "show", "show one workspace", aliases=["get"])
    p.add_argument("name")
    p.add_argument(
        "--show-managed-settings",
        action="store_true",
        help="also print the Claude Code managed settings (JSON) served to its developers",
    )
    p.set_defaults(handler=show)

    p = leaf(sub, "update", "change a workspace's settings (only the flags given)")
    p.add_argument("name")
    _add_settings(p, update=True)
    p.set_defaults(handler=update)

    p = leaf(sub, "delete", "delete a workspace", aliases=["rm"])
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="also delete the workspace's keys")
    add_yes(p)
    p.set_defaults(handler=delete)


def _add_settings(p: argparse.ArgumentParser, *, update: bool) -> None:
    add_limit_flags(p, update=update)
    p.add_argument(
        "--timezone",
        metavar="TZ",
        help="IANA zone for calendar budget periods, e.g. Europe/Berlin (default UTC)"
        + ("; '' for UTC" if update else ""),
    )
    p.add_argument(
        "--redis-failure",
        choices=vocab.choices(vocab.REDIS_FAILURE),
        help="when data planes cannot reach Redis: closed refuses budgeted requests (default), "
        "open serves them without shared limits",
    )
    p.add_argument(
        "--alert-webhook",
        metavar="URL",
        help="http(s) URL POSTed a JSON alert when a budget passes 50/80/100 %%"
        + ("; '' removes it" if update else ""),
    )
    p.add_argument(
        "--alert-format",
        choices=["generic", "slack"],
        help="the webhook's body: generic (Tollgate's JSON document; default) or slack "
        "(a Slack incoming-webhook message with one readable line)",
    )
    p.add_argument(
        "--min-client-version",
        metavar="VERSION",
        help="refuse Claude Code older than this (dotted numbers, e.g. 2.1.0)"
        + ("; '' allows any" if update else ""),
    )
    p.add_argument(
        "--log-bodies",
        choices=vocab.choices(vocab.LOG_BODIES),
        help="request logging: none (default), metadata (redacted headers, sizes) or full "
        "(also request and response bodies)",
    )
    p.add_argument(
        "--log-body-max-bytes",
        type=int,
        metavar="N",
        help="cap per logged body with --log-bodies full (default 262144)",
    )
    p.add_argument(
        "--log-retention-days",
        type=int,
        metavar="D",
        help="purge logged headers and bodies after D days (default 30)",
    )
    p.add_argument("--description", metavar="TEXT")
    for flag, what, example in _ACCESS_FLAGS:
        p.add_argument(
            f"--allow-{flag}",
            dest=f"allowed_{flag}s",
            action="append",
            metavar=what.upper().replace(" ", "_"),
            help=f"keys may only use these {what}s, repeatable (e.g. {example}); none = any"
            + (f"; replaces the list (--clear-allowed-{flag}s empties it)" if update else ""),
        )
        if update:
            p.add_argument(
                f"--clear-allowed-{flag}s",
                action="store_true",
                help=f"empty the allowed {what}s (any {what} again)",
            )
    signin.add_flags(p, update=update)


# Access-control lists: (flag stem, what, example); flags --allow-X / --clear-allowed-Xs set the
# field allowed_Xs.
_ACCESS_FLAGS = (
    ("provider", "provider", "anthropic"),
    ("route", "route", "main"),
    ("model", "model pattern", "'claude-sonnet-*'"),
)


# Workspace settings set from same-named flags; a flag given becomes a field and a mask path.
_SETTINGS = (
    "timezone",
    "redis_failure",
    "alert_webhook",
    "alert_format",
    "min_client_version",
    "log_bodies",
    "log_body_max_bytes",
    "log_retention_days",
    "description",
)


def _from_args(args: argparse.Namespace) -> tuple[common_pb2.Workspace, list[str]]:
    limits, paths = limits_from_args(args)
    ws = common_pb2.Workspace(name=args.name, limits=limits)
    for field in _SETTINGS:
        value = getattr(args, field)
        if value is not None:
            setattr(ws, field, value)
            paths.append(field)
    for flag, _, _ in _ACCESS_FLAGS:
        field = f"allowed_{flag}s"
        values = getattr(args, field)
        clear = getattr(args, f"clear_allowed_{flag}s", False)
        if values and not clear and not all(v.strip() for v in values):
            raise UsageError(
                f"--allow-{flag} '' names nothing; use --clear-allowed-{flag}s to allow any {flag}"
            )
        read_list(ws, paths, field, values, clear, f"allow-{flag}", f"clear-allowed-{flag}s")
    signin.apply_args(args, ws, paths)
    return ws, paths


def emit(
    ws: common_pb2.Workspace, args: argparse.Namespace, outside: list[str] | None = None
) -> None:
    """Print a workspace; ``outside`` (show only): the keys its access controls refuse."""
    if is_json(args):
        doc = out.workspace_dict(ws)
        if outside is not None:
            doc["keys_outside_access"] = outside
        out.print_json(doc)
        return
    limits = ws.limits
    out.print_fields(
        [
            ("name", ws.name),
            ("description", ws.description or "-"),
            ("budgets", out.format_budgets(limits)),
            ("rpm", out.format_limit(limits.rpm)),
            ("rph", out.format_limit(limits.rph)),
            ("tpm", out.format_limit(limits.tpm)),
            ("max parallel", out.format_limit(limits.max_parallel)),
            ("timezone", ws.timezone or "UTC"),
            ("redis failure", ws.redis_failure or "closed"),
            ("alert webhook", ws.alert_webhook or "-"),
            ("alert format", ws.alert_format or "generic"),
            ("min client version", ws.min_client_version or "-"),
            ("log bodies", ws.log_bodies or "none"),
            ("log body max bytes", ws.log_body_max_bytes),
            ("log retention days", ws.log_retention_days),
            ("allowed providers", ", ".join(ws.allowed_providers) or "any"),
            ("allowed routes", ", ".join(ws.allowed_routes) or "any"),
            ("allowed models", ", ".join(ws.allowed_models) or "any"),
            *(
                [("keys outside access", "; ".join(outside) or "-")]
                if outside is not None and _restricted(ws)
                else []
            ),
            *signin.fields(ws),
            *out.spend_fields(ws.budget_status),
            ("created", out.format_time(ws.created_at_ms)),
            ("updated", out.format_time(ws.updated_at_ms)),
        ]
    )


async def create(client: GatewayClient, args: argparse.Namespace) -> int:
    ws, _ = _from_args(args)
    try:
        created = await client.create_workspace(ws)
    except ClientError as exc:
        raise signin.explain_refusal(exc, args) from None
    emit(created, args)
    return 0


LIST_HEADERS = (
    "NAME", "BUDGETS", "RPM", "RPH", "TPM", "PARALLEL", "TIMEZONE", "SSO GROUPS", "DESCRIPTION",
)  # fmt: skip


def list_row(ws: common_pb2.Workspace) -> list[object]:
    return [
        ws.name,
        out.format_budgets(ws.limits),
        out.format_limit(ws.limits.rpm),
        out.format_limit(ws.limits.rph),
        out.format_limit(ws.limits.tpm),
        out.format_limit(ws.limits.max_parallel),
        ws.timezone or "UTC",
        ", ".join(ws.sso_groups) or "-",
        ws.description,
    ]


async def list_(client: GatewayClient, args: argparse.Namespace) -> int:
    workspaces = await client.list_workspaces()
    out.print_list(
        is_json(args), workspaces, out.workspace_dict, LIST_HEADERS, list_row, right=(2, 3, 4, 5)
    )
    return 0


async def show(client: GatewayClient, args: argparse.Namespace) -> int:
    ws = await client.get_workspace(args.name)
    emit(ws, args, await _keys_outside(client, ws))
    if args.show_managed_settings and not is_json(args):
        print("\nmanaged settings:")
        print(signin.pretty_settings(ws))
    return 0


def _restricted(ws: common_pb2.Workspace) -> bool:
    return bool(ws.allowed_providers or ws.allowed_routes or ws.allowed_models)


async def _keys_outside(client: GatewayClient, ws: common_pb2.Workspace) -> list[str]:
    """Active keys of ``ws`` that its access controls refuse (left there by a narrowing), as
    ``"key_… (why)"``; data planes answer their requests with 403 until they are updated."""
    if not _restricted(ws):
        return []
    keys = await client.list_keys(ws.name)
    routes = (
        {r.name: r for r in await client.list_routes()}
        if ws.allowed_providers and any(k.route for k in keys)
        else {}
    )
    found = []
    for key in keys:
        why = []
        if ws.allowed_providers or ws.allowed_routes:
            route = routes.get(key.route)
            reached = [t.provider for t in route.targets] if route is not None else []
            denial = target_denial(
                ws.allowed_providers, ws.allowed_routes, key.provider, key.route, reached
            )
            if denial is not None:
                why.append(
                    f"route {denial.via_route} reaches provider {denial.name}"
                    if denial.via_route
                    else f"{denial.kind} {denial.name}"
                )
        models = uncovered_patterns(list(key.models), list(ws.allowed_models))
        if models:
            why.append("models " + ", ".join(models))
        if why:
            found.append(f"{key.id} ({'; '.join(why)})")
    return found


async def update(client: GatewayClient, args: argparse.Namespace) -> int:
    ws, paths = _from_args(args)
    if not paths:
        raise UsageError(
            "nothing to update: give at least one of --budget, --clear-budgets, "
            "--rpm, --rph, --tpm, --max-parallel, --timezone, --redis-failure, "
            "--alert-webhook, --alert-format, --description, --allow-provider/route/model, "
            "--clear-allowed-providers/routes/models, --sso-group, --sso-priority, "
            "--member-budget, --member-rpm/rph/tpm/max-parallel, --member-provider/route, "
            "--managed-settings-file and their --clear-… forms"
        )
    try:
        updated = await client.update_workspace(ws, paths)
    except ClientError as exc:
        raise signin.explain_refusal(exc, args) from None
    emit(updated, args)
    return 0


async def delete(client: GatewayClient, args: argparse.Namespace) -> int:
    what = f"delete workspace {args.name!r}" + (" and all its keys" if args.force else "")
    confirm(what, args.yes)
    await client.delete_workspace(args.name, force=args.force)
    out.print_gone(is_json(args), "deleted", "workspace", args.name)
    return 0
