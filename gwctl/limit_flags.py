"""The limit flags of keys, workspaces and developers: ``--budget`` (repeatable, one per period),
``--rpm``, ``--rph``, ``--tpm``, ``--max-parallel`` and, on update, ``--clear-budgets``; read into
a ``Limits`` message and the ``limits.*`` update-mask paths the flags gave."""

from __future__ import annotations

import argparse

from gwapi.v1 import common_pb2
from gwctl import parse
from gwctl.cli import UsageError


def add_limit_flags(parser: argparse.ArgumentParser, *, update: bool = False) -> None:
    """--budget/--rpm/--rph/--tpm/--max-parallel; on update also --clear-budgets."""
    parser.add_argument(
        "--budget",
        action="append",
        type=parse.parse_budget,
        metavar="AMOUNT/PERIOD",
        help=f"a spending limit, repeatable (one per period): {parse.BUDGET_HELP}"
        + ("; replaces all budgets" if update else ""),
    )
    if update:
        parser.add_argument("--clear-budgets", action="store_true", help="remove every budget")
    for flag, what in (
        ("--rpm", "requests per minute"),
        ("--rph", "requests per hour"),
        ("--tpm", "tokens (input + output) per minute"),
        ("--max-parallel", "concurrent requests"),
    ):
        parser.add_argument(
            flag, type=parse.parse_count, metavar="N", help=f"{what} (0 = no limit)"
        )


_LIMIT_FIELDS = ("rpm", "rph", "tpm", "max_parallel")


def limits_from_args(args: argparse.Namespace) -> tuple[common_pb2.Limits, list[str]]:
    """The Limits the flags describe and the ``limits.*`` update-mask paths that were given."""
    limits = common_pb2.Limits()
    paths: list[str] = []
    if getattr(args, "clear_budgets", False) and args.budget:
        raise UsageError("--budget and --clear-budgets contradict each other")
    if args.budget:
        periods = [b.period for b in args.budget]
        if len(set(periods)) != len(periods):
            raise UsageError("give at most one --budget per period (day, week, month, lifetime)")
        limits.budgets.extend(args.budget)
    if args.budget or getattr(args, "clear_budgets", False):
        paths.append("limits.budgets")
    for field in _LIMIT_FIELDS:
        value = getattr(args, field)
        if value is not None:
            setattr(limits, field, value)
            paths.append(f"limits.{field}")
    return limits, paths
