"""The plumbing every gwctl command module shares.

* ``common_options()`` — a parent parser giving each leaf command ``-o``, ``--control-plane`` and
  ``--token`` *after* the subcommand too. Their defaults are SUPPRESS so a leaf never overwrites
  what the top-level parser already set.
* Command modules expose ``register(subparsers)`` and attach either ``handler`` (an
  ``async (client, args) -> int`` run against the control plane) or ``run`` (a plain
  ``(args, extra_argv) -> int``, for serve/up/down) via ``set_defaults``.
* ``UsageError`` → exit 2; ``ClientError`` (a refusal) → exit 1. ``main`` maps them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from gwclient.channel import DEFAULT_TARGET
from gwclient.client import GatewayClient
from gwcommon.secret_files import read_secret_file
from gwctl import parse

Handler = Callable[[GatewayClient, argparse.Namespace], Awaitable[int]]
Subparsers = Any  # argparse's _SubParsersAction is private; its type adds nothing here


class UsageError(Exception):
    """The command line is wrong or incomplete; exit code 2."""


class CommandError(Exception):
    """The command could not do its job (not a server refusal); exit code 1."""


class _TokenOnCommandLine(argparse.Action):
    """``--token VALUE``: accepted, and remembered so that ``main`` warns about it."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        namespace.token_on_command_line = True


TOKEN_FLAG_WARNING = (
    "warning: --token puts the admin token on the command line, where every local user sees it "
    "(`ps`) and your shell history keeps it; set TOLLGATE_ADMIN_TOKEN or use --token-file PATH"
)


def resolve_token(args: argparse.Namespace) -> None:
    """Settle ``args.token``: ``--token`` (with a warning on stderr), else the ``--token-file``
    (or TOLLGATE_ADMIN_TOKEN_FILE), else TOLLGATE_ADMIN_TOKEN. ``UsageError`` for a bad file."""
    if getattr(args, "token_on_command_line", False):
        print(TOKEN_FLAG_WARNING, file=sys.stderr)
        return
    path = getattr(args, "token_file", "")
    if path:
        try:
            args.token = read_secret_file(path, "admin token")
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def common_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    add_global_options(parent, suppress=True)
    return parent


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The connection and output options; real defaults only on the top-level parser."""

    def default(value: str) -> str:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "-o",
        "--output",
        choices=["table", "json", "csv"],
        default=default("table"),
        help="output format (default: table; csv: gwctl usage and gwctl report only)",
    )
    parser.add_argument(
        "--control-plane",
        metavar="HOST:PORT",
        default=default(os.environ.get("TOLLGATE_CONTROL_PLANE") or DEFAULT_TARGET),
        help=f"control plane gRPC address (env TOLLGATE_CONTROL_PLANE, default {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        action=_TokenOnCommandLine,
        default=default(os.environ.get("TOLLGATE_ADMIN_TOKEN", "")),
        help="admin token (env TOLLGATE_ADMIN_TOKEN); on the command line it shows in `ps` "
        "and shell history, so prefer the env or --token-file",
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        default=default(os.environ.get("TOLLGATE_ADMIN_TOKEN_FILE", "")),
        help="file (mode 0600) holding the admin token, used instead of TOLLGATE_ADMIN_TOKEN "
        "(env TOLLGATE_ADMIN_TOKEN_FILE)",
    )
    parser.add_argument(
        "--tls-ca",
        metavar="PEM",
        default=default(os.environ.get("TOLLGATE_TLS_CA", "")),
        help="connect over TLS, trusting this CA certificate (env TOLLGATE_TLS_CA)",
    )


def leaf(
    subparsers: Subparsers, name: str, help_text: str, **kwargs: Any
) -> argparse.ArgumentParser:
    """A leaf command parser that also accepts the global options after its name."""
    return subparsers.add_parser(  # type: ignore[no-any-return]
        name, help=help_text, description=help_text, parents=[common_options()], **kwargs
    )


def group(subparsers: Subparsers, name: str, help_text: str, **kwargs: Any) -> Subparsers:
    parser = subparsers.add_parser(name, help=help_text, description=help_text, **kwargs)
    return parser.add_subparsers(dest="action", metavar="ACTION", required=True)


def is_json(args: argparse.Namespace) -> bool:
    return getattr(args, "output", "table") == "json"


# Commands that write CSV set ``csv_output=True`` as a parser default; the others refuse it.
CSV_COMMANDS = "gwctl usage and gwctl report monthly"


def is_csv(args: argparse.Namespace) -> bool:
    return getattr(args, "output", "table") == "csv"


def check_output_format(args: argparse.Namespace) -> None:
    """``UsageError`` for ``-o csv`` on a command that has no CSV form."""
    if is_csv(args) and not getattr(args, "csv_output", False):
        command = " ".join(
            str(part)
            for part in (getattr(args, "command", ""), getattr(args, "action", ""))
            if part
        )
        raise UsageError(
            f"-o csv is not available for gwctl {command or 'this command'}: only {CSV_COMMANDS} "
            "write CSV; use -o json (or the default table) here"
        )


def add_since(
    parser: argparse.ArgumentParser, help_text: str, default_s: int | None = None
) -> None:
    """``--since DURATION`` (``24h``, ``7d``…, parsed to seconds): how far back a command looks."""
    parser.add_argument(
        "--since", type=parse.parse_duration, default=default_s, metavar="DURATION", help=help_text
    )


def read_list(
    message: Any,
    paths: list[str],
    field: str,
    values: list[str] | None,
    clear: bool,
    flag: str,
    clear_flag: str = "",
) -> None:
    """A list setting on update: ``--X`` (repeatable) replaces the list, ``--clear-Xs`` (or
    ``clear_flag``) empties it, both at once contradict; either names ``field`` in the mask."""
    if values and clear:
        raise UsageError(f"--{flag} and --{clear_flag or f'clear-{flag}s'} contradict each other")
    if values:
        getattr(message, field).extend(values)
    if values or clear:
        paths.append(field)


def read_target(
    message: Any,
    paths: list[str],
    prefix: str,
    provider: str | None,
    route: str | None,
    clear: bool = False,
) -> None:
    """Set ``{prefix}provider`` or ``{prefix}route`` from the flag given (``clear``: neither).
    A message targets at most one of them, so naming one clears the other: both go into the
    update mask."""
    fields = [f"{prefix}provider", f"{prefix}route"]
    if provider is not None:
        setattr(message, fields[0], provider)
    elif route is not None:
        setattr(message, fields[1], route)
    elif not clear:
        return
    paths += fields


def add_yes(p: argparse.ArgumentParser, help: str = "do not ask for confirmation") -> None:
    """The ``--yes`` of a destructive verb: what :func:`confirm` is then given."""
    p.add_argument("--yes", action="store_true", help=help)


def confirm(prompt: str, yes: bool, flag_hint: str = "--yes") -> None:
    """Proceed when ``yes``; otherwise ask on a terminal; never guess when stdin is not a TTY."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"{prompt}: refusing without confirmation (stdin is not a terminal); pass {flag_hint}"
        )
    sys.stderr.write(f"{prompt}? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("aborted")
