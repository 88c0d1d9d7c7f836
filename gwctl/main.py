"""gwctl: the command line of the Tollgate gateway (``gwctl.main:main``).

Exit codes: 0 ok; 1 the control plane refused or the command failed (``error: <message>`` on
stderr, never a traceback); 2 usage errors (argparse's own, bad values, missing confirmation);
130 interrupted. Tokens never appear in error messages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import grpc

from gwclient.client import GatewayClient
from gwclient.errors import ClientError
from gwcommon.terminal import escape_controls
from gwctl import (
    alerts,
    apply,
    audit,
    clients,
    completion,
    dataplanes,
    developers,
    devidp,
    doctor,
    keys,
    logs,
    providers,
    report,
    routes,
    serve,
    sessions,
    sso,
    telemetry,
    tokens,
    up,
    usage,
    workspaces,
)
from gwctl.cli import (
    CommandError,
    Subparsers,
    UsageError,
    add_global_options,
    check_output_format,
    leaf,
    resolve_token,
)
from gwctl.groups import GroupedHelpParser

_MODULES = (
    workspaces,
    keys,
    sso,
    developers,
    providers,
    routes,
    apply,
    usage,
    report,
    clients,
    sessions,
    logs,
    alerts,
    audit,
    tokens,
    telemetry,
    dataplanes,
    doctor,
    serve,
    up,
    devidp,
)


def build_parser() -> argparse.ArgumentParser:
    parser = GroupedHelpParser(
        prog="gwctl",
        description=(
            "Operate a Tollgate LLM gateway: workspaces, keys, sign-in (sso, developers), providers,"
            " routes, usage, alerts; or all of it from one file with gwctl apply."
        ),
        epilog="Quick start: gwctl up (then paste the export lines it prints).",
        # No abbreviated global flags: the top level scans the whole line, and a pass-through
        # command's own flag (`controlplane migrate --to REV`) would read as an ambiguous
        # `--token`/`--token-file`. The commands' own parsers keep argparse's default.
        allow_abbrev=False,
    )
    add_global_options(parser, suppress=False)
    # parser_class: the commands' own parsers list their actions the plain way.
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=argparse.ArgumentParser
    )
    for module in _MODULES:
        module.register(sub)
    _register_tui(sub)
    completion.register(sub, parser)  # last: it walks the finished tree when it runs
    return parser


def _register_tui(subparsers: Subparsers) -> None:
    p = leaf(
        subparsers,
        "tui",
        "live console (k9s-like): overview, keys, providers, sessions, logs, audit, developers;"
        " ? for keys",
    )
    p.add_argument(
        "--readonly",
        action="store_true",
        help="never change anything (no revoking keys, no disabling developers)",
    )
    p.set_defaults(run=_run_tui)


def _run_tui(args: argparse.Namespace, extra: list[str]) -> int:
    # Textual is imported only here: every other command starts without it.
    try:
        from tui.app import run_tui
    except ImportError as exc:
        raise CommandError(f"gwctl tui needs Textual ({exc})") from None
    tls_ca = getattr(args, "tls_ca", "")
    return run_tui(args.control_plane, args.token, readonly=args.readonly, tls_ca=tls_ca)


def _error(message: str) -> None:
    # Refusals quote names, models and ids as the server received them.
    sys.stderr.write(f"error: {escape_controls(message, keep_newlines=True)}\n")


async def _run_handler(args: argparse.Namespace) -> int:
    try:
        client = GatewayClient(args.control_plane, args.token, tls_ca=getattr(args, "tls_ca", ""))
    except ValueError as exc:  # an unreadable --tls-ca
        raise UsageError(str(exc)) from None
    async with client:
        code: int = await args.handler(client, args)
        return code


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return its exit code."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "passthrough", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        check_output_format(args)
        resolve_token(args)
        if hasattr(args, "run"):
            code: int = args.run(args, extra)
            return code
        return asyncio.run(_run_handler(args))
    except ClientError as exc:
        message = exc.message
        if exc.code == grpc.StatusCode.UNAUTHENTICATED and not getattr(args, "token", ""):
            message += (
                " (no admin token given: set TOLLGATE_ADMIN_TOKEN or pass --token-file PATH;"
                " `gwctl up` prints it)"
            )
        _error(message)
        return 1
    except CommandError as exc:
        _error(str(exc))
        return 1
    except UsageError as exc:
        _error(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `gwctl logs tail -f | head`: the reader left; exit quietly, and keep the interpreter's
        # final flush of stdout from raising again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout without a file descriptor (embedded, captured)
            pass
        return 0


if __name__ == "__main__":
    sys.exit(main())
