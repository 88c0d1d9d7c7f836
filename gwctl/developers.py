"""``gwctl developers list|show|update|disable|enable`` — people signed in with Claude Code.

A developer is one identity at the company's identity provider, attributed in one workspace (its
``--sso-group`` mapping). Every command takes the developer's id (``dev_…``) or email address.

* ``list`` shows who signed in, when, their status, spend against the budget closest to its
  limit (the budgets that apply: the developer's own, else the workspace's member budgets) and
  how many sign-in sessions are still usable; ``--include-disabled`` adds offboarded people.
* ``show`` adds the groups of the last sign-in, the IdP subject, the limits that apply (and
  whether they are the developer's own or the workspace's member limits) and every budget's
  current period.
* ``update`` sets the developer's own limits, replacing the workspace's member limits for this
  person (only the flags given change; a first override starts from the member limits);
  ``--clear-limits`` drops the override.
* ``disable --yes`` (offboarding): refresh answers ``invalid_grant``, live tokens are refused on
  every data plane within a second, every session ends. ``enable`` lets the person sign in again
  (old tokens stay dead).
"""

from __future__ import annotations

import argparse

from gwapi.v1 import common_pb2
from gwclient.budgets import main_budget
from gwclient.client import GatewayClient
from gwcommon.terminal import escape_controls
from gwctl import output as out
from gwctl import workspace_signin
from gwctl.cli import Subparsers, UsageError, add_yes, confirm, group, is_json, leaf
from gwctl.limit_flags import add_limit_flags, limits_from_args
from gwctl.parse import PERIOD_NAMES


def register(subparsers: Subparsers) -> None:
    sub = group(
        subparsers,
        "developers",
        "people signed in with Claude Code: spend, limits, offboarding",
        aliases=["developer", "devs"],
    )

    p = leaf(
        sub, "list", "who signed in, when, and their spend against their budget", aliases=["ls"]
    )
    p.add_argument("--workspace", "-w", default="")
    p.add_argument(
        "--include-disabled", "--all", action="store_true", help="include disabled developers"
    )
    p.set_defaults(handler=list_)

    p = leaf(sub, "show", "one developer: identity, groups, limits, budgets", aliases=["get"])
    p.add_argument("developer", metavar="ID_OR_EMAIL")
    p.set_defaults(handler=show)

    p = leaf(
        sub,
        "update",
        "set a developer's own limits (replacing the workspace's member limits for them)",
    )
    p.add_argument("developer", metavar="ID_OR_EMAIL")
    add_limit_flags(p, update=True)
    p.add_argument(
        "--clear-limits",
        action="store_true",
        help="drop the developer's own limits: the workspace's member limits apply again",
    )
    p.set_defaults(handler=update)

    p = leaf(
        sub,
        "disable",
        "offboard: refused on every data plane within a second, every session ended",
    )
    p.add_argument("developer", metavar="ID_OR_EMAIL")
    add_yes(p)
    p.set_defaults(handler=disable)

    p = leaf(sub, "enable", "let a disabled developer sign in again")
    p.add_argument("developer", metavar="ID_OR_EMAIL")
    p.set_defaults(handler=enable)


def status(dev: common_pb2.Developer) -> str:
    return "disabled" if dev.disabled_at_ms else "active"


def spend_text(statuses: list[common_pb2.BudgetStatus]) -> str:
    """``$12.35 of $50.00/day (24.7 %)`` for the budget closest to its limit; ``- (no budget)``."""
    st = main_budget(statuses)
    if st is None:
        return "- (no budget)"
    period = PERIOD_NAMES.get(st.budget.period, "lifetime")
    of = out.format_dollars(st.budget.amount_micros) + (
        " lifetime" if period == "lifetime" else f"/{period}"
    )
    percent = out.format_percent(st.spent_micros, st.budget.amount_micros)
    return f"{out.format_cents(st.spent_micros)} of {of} ({percent})"


def developer_dict(dev: common_pb2.Developer) -> out.JSON:
    return {
        **out.message_dict(dev),
        **out.limits_extras(dev.effective_limits),
        "status": status(dev),
        "limits_source": "own" if dev.has_limits else "workspace member limits",
        "spend": [out.budget_status_dict(st) for st in dev.budget_status],
        "last_sign_in": out.format_time(dev.last_sign_in_ms) if dev.last_sign_in_ms else None,
    }


def fields(dev: common_pb2.Developer) -> list[tuple[str, object]]:
    source = "own" if dev.has_limits else "workspace member limits"
    return [
        ("id", dev.id),
        ("email", dev.email or "-"),
        ("name", dev.name or "-"),
        ("workspace", dev.workspace or "-"),
        ("status", status(dev)),
        ("groups", ", ".join(dev.groups) or "-"),
        ("subject", dev.subject or "-"),
        ("limits", f"{workspace_signin.format_limits(dev.effective_limits)} ({source})"),
        *out.spend_fields(dev.budget_status),
        ("active sessions", dev.active_sessions),
        ("last sign-in", out.format_time(dev.last_sign_in_ms)),
        ("first sign-in", out.format_time(dev.created_at_ms)),
        ("disabled", out.format_time(dev.disabled_at_ms)),
        ("updated", out.format_time(dev.updated_at_ms)),
    ]


def emit(dev: common_pb2.Developer, args: argparse.Namespace) -> None:
    if is_json(args):
        out.print_json(developer_dict(dev))
    else:
        out.print_fields(fields(dev))


LIST_HEADERS = (
    "EMAIL", "NAME", "WORKSPACE", "LAST SIGN-IN", "STATUS", "SPEND / BUDGET", "SESSIONS", "ID",
)  # fmt: skip


def list_row(d: common_pb2.Developer) -> list[object]:
    return [
        d.email or "-",
        d.name or "-",
        d.workspace or "-",
        out.format_time(d.last_sign_in_ms),
        status(d),
        spend_text(list(d.budget_status)),
        d.active_sessions,
        d.id,
    ]


async def list_(client: GatewayClient, args: argparse.Namespace) -> int:
    developers = await client.list_developers(
        args.workspace, include_disabled=args.include_disabled
    )
    out.print_list(is_json(args), developers, developer_dict, LIST_HEADERS, list_row, right=(6,))
    return 0


async def show(client: GatewayClient, args: argparse.Namespace) -> int:
    emit(await client.get_developer(args.developer), args)
    return 0


async def update(client: GatewayClient, args: argparse.Namespace) -> int:
    limits, paths = limits_from_args(args)
    if args.clear_limits and paths:
        raise UsageError(
            "--clear-limits drops the developer's own limits: give it alone, without "
            "--budget/--rpm/…"
        )
    if not paths and not args.clear_limits:
        raise UsageError(
            "nothing to update: give at least one of --budget, --clear-budgets, --rpm, --rph, "
            "--tpm, --max-parallel, or --clear-limits"
        )
    developer = common_pb2.Developer(id=args.developer, limits=limits)
    emit(
        await client.update_developer(developer, paths, clear_limits=args.clear_limits),
        args,
    )
    return 0


async def disable(client: GatewayClient, args: argparse.Namespace) -> int:
    confirm(
        f"disable developer {args.developer} (refused everywhere within a second, every "
        "session ended)",
        args.yes,
    )
    dev = await client.disable_developer(args.developer)
    return _changed(
        dev,
        args,
        "disabled developer {who} ({id}, workspace {workspace}): refused on every data plane "
        "within a second; `gwctl developers enable` undoes it",
    )


async def enable(client: GatewayClient, args: argparse.Namespace) -> int:
    dev = await client.enable_developer(args.developer)
    return _changed(
        dev,
        args,
        "enabled developer {who} ({id}): they may sign in again "
        "(tokens issued before the disable stay refused)",
    )


def _changed(dev: common_pb2.Developer, args: argparse.Namespace, line: str) -> int:
    """Print the changed developer: as JSON, or ``line`` with {who}, {id} and {workspace}."""
    if is_json(args):
        out.print_json(developer_dict(dev))
    else:
        who = escape_controls(dev.email or dev.id)  # from the identity provider
        print(line.format(who=who, id=dev.id, workspace=dev.workspace))
    return 0
