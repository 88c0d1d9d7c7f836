"""The limit flags: a key's, workspace's or developer's own (``--budget``, repeatable, one per
period; ``--rpm``, ``--rph``, ``--tpm``, ``--max-parallel``; on update ``--clear-budgets``) and a
workspace's per-developer ones (the same as ``--member-…``). Each set is read into its ``Limits``
message and the update-mask paths (``limits.*``, ``member_limits.*``) of the flags given."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from gwapi.v1 import common_pb2
from gwctl import parse
from gwctl.cli import UsageError

_COUNTS = (
    ("rpm", "requests per minute"),
    ("rph", "requests per hour"),
    ("tpm", "tokens (input + output) per minute"),
    ("max_parallel", "concurrent requests"),
)


@dataclass(frozen=True)
class LimitFlags:
    """One set of limit flags: the flags' and dests' prefix (``""`` or ``"member-"`` and
    ``"member_"``), the budget flag's dest, the message field they fill, and how their help
    names the limit."""

    flag_prefix: str
    dest_prefix: str
    budget_dest: str
    field: str
    budget_help: str
    count_help: str


OWN = LimitFlags("", "", "budget", "limits", "a spending limit", "")
MEMBER = LimitFlags(
    "member-", "member_", "member_budgets", "member_limits", "each developer's spending limit",
    "each developer's ",
)  # fmt: skip


def add_budget_flag(parser: argparse.ArgumentParser, flags: LimitFlags, *, update: bool) -> None:
    budgets = f"{flags.dest_prefix.replace('_', ' ')}budgets"
    parser.add_argument(
        f"--{flags.flag_prefix}budget",
        dest=flags.budget_dest,
        action="append",
        type=parse.parse_budget,
        metavar="AMOUNT/PERIOD",
        help=f"{flags.budget_help}, repeatable (one per period): {parse.BUDGET_HELP}"
        + (f"; replaces all {budgets}" if update else ""),
    )


def add_clear_budgets_flag(parser: argparse.ArgumentParser, flags: LimitFlags) -> None:
    budget = f"{flags.dest_prefix.replace('_', ' ')}budget"
    parser.add_argument(
        f"--clear-{flags.flag_prefix}budgets", action="store_true", help=f"remove every {budget}"
    )


def add_count_flags(parser: argparse.ArgumentParser, flags: LimitFlags) -> None:
    for name, what in _COUNTS:
        parser.add_argument(
            f"--{flags.flag_prefix}{name.replace('_', '-')}",
            dest=flags.dest_prefix + name,
            type=parse.parse_count,
            metavar="N",
            help=f"{flags.count_help}{what} (0 = no limit)",
        )


def add_limit_flags(parser: argparse.ArgumentParser, *, update: bool = False) -> None:
    """--budget/--rpm/--rph/--tpm/--max-parallel; on update also --clear-budgets."""
    add_budget_flag(parser, OWN, update=update)
    if update:
        add_clear_budgets_flag(parser, OWN)
    add_count_flags(parser, OWN)


def read_limits(
    args: argparse.Namespace, flags: LimitFlags, limits: common_pb2.Limits, paths: list[str]
) -> None:
    """Set on ``limits`` what ``flags`` give and append their update-mask paths."""
    flag = f"--{flags.flag_prefix}budget"
    budgets = getattr(args, flags.budget_dest)
    clear = getattr(args, f"clear_{flags.dest_prefix}budgets", False)
    if budgets and clear:
        raise UsageError(f"{flag} and --clear-{flags.flag_prefix}budgets contradict each other")
    if budgets:
        periods = [b.period for b in budgets]
        if len(set(periods)) != len(periods):
            raise UsageError(f"give at most one {flag} per period (day, week, month, lifetime)")
        limits.budgets.extend(budgets)
    if budgets or clear:
        paths.append(f"{flags.field}.budgets")
    for name, _ in _COUNTS:
        value = getattr(args, flags.dest_prefix + name)
        if value is not None:
            setattr(limits, name, value)
            paths.append(f"{flags.field}.{name}")


def limits_from_args(args: argparse.Namespace) -> tuple[common_pb2.Limits, list[str]]:
    """The Limits the flags describe and the ``limits.*`` update-mask paths that were given."""
    limits = common_pb2.Limits()
    paths: list[str] = []
    read_limits(args, OWN, limits, paths)
    return limits, paths
