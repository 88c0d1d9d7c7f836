"""``gwctl controlplane serve|migrate|rebuild-ledger …`` and ``gwctl dataplane serve …``.

Everything after the command is handed unchanged to ``controlplane.server.main`` /
``controlplane.migrate_cli.main`` / ``controlplane.ledger_cli.main`` / ``dataplane.process.cli.main``
(``--help`` included, so the server documents its own flags). Each entry point is imported
inside its function: plain gwctl commands must not pay for SQLModel, Hypercorn and the rest.
They are imported by name all the same, so import-linter sees them: this module is the only one
of gwctl that may reach the servers (a contract in pyproject.toml).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from gwctl.cli import Subparsers, group


def register(subparsers: Subparsers) -> None:
    sub = group(subparsers, "controlplane", "run the control plane", aliases=["cp"])
    add_serve(
        sub,
        "run the control plane server (see: gwctl controlplane serve --help)",
        serve_controlplane,
    )
    p = sub.add_parser(
        "migrate",
        help="upgrade the database schema (see: gwctl controlplane migrate --help)",
        add_help=False,
    )
    p.set_defaults(run=migrate_controlplane, passthrough=True)
    p = sub.add_parser(
        "rebuild-ledger",
        help="recompute spend totals and usage rollups from the raw usage events",
        add_help=False,
    )
    p.set_defaults(run=rebuild_ledger, passthrough=True)


def add_serve(sub: Subparsers, help_text: str, run: object) -> None:
    # add_help=False: "-h" must reach the server's own parser with the other pass-through flags.
    p = sub.add_parser("serve", help=help_text, add_help=False)
    p.set_defaults(run=run, passthrough=True)


def serve_controlplane(args: argparse.Namespace, argv: list[str]) -> int:
    from controlplane import server

    return _run(server.main, argv)


def migrate_controlplane(args: argparse.Namespace, argv: list[str]) -> int:
    from controlplane import migrate_cli

    return _run(migrate_cli.main, argv)


def rebuild_ledger(args: argparse.Namespace, argv: list[str]) -> int:
    from controlplane import ledger_cli

    return _run(ledger_cli.main, argv)


def serve_dataplane(args: argparse.Namespace, argv: list[str]) -> int:
    from dataplane.process import cli

    return _run(cli.main, argv)


def _run(server_main: Callable[[list[str]], object], argv: list[str]) -> int:
    try:
        code = server_main(argv)
    except SystemExit as exc:  # the server's argparse: --help (0) or a usage error (2)
        code = exc.code
    if code is None:
        return 0
    return code if isinstance(code, int) else 1
