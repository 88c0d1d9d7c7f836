"""``gwctl controlplane serve|migrate|rebuild-ledger …`` and ``gwctl dataplane serve …``.

Everything after the command is handed unchanged to ``controlplane.server.main`` /
``controlplane.migrate_cli.main`` / ``controlplane.ledger_cli.main`` / ``dataplane.cli.main``
(``--help`` included, so the server documents its own flags). The server packages are imported inside the functions: plain gwctl commands must not pay for (or
depend on) SQLModel, Hypercorn and the rest.
"""

from __future__ import annotations

import argparse
import importlib

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
    return _run("controlplane.server", argv)


def migrate_controlplane(args: argparse.Namespace, argv: list[str]) -> int:
    return _run("controlplane.migrate_cli", argv)


def rebuild_ledger(args: argparse.Namespace, argv: list[str]) -> int:
    return _run("controlplane.ledger_cli", argv)


def serve_dataplane(args: argparse.Namespace, argv: list[str]) -> int:
    return _run("dataplane.cli", argv)


def _run(module: str, argv: list[str]) -> int:
    # Imported lazily (see module docstring) and by name, so type-checking gwctl does not pull
    # the servers in either.
    server_main = importlib.import_module(module).main
    try:
        code = server_main(argv)
    except SystemExit as exc:  # the server's argparse: --help (0) or a usage error (2)
        code = exc.code
    if code is None:
        return 0
    return code if isinstance(code, int) else 1
