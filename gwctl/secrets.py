"""Provider secrets stored on the control plane: ``--api-key-stdin`` and ``gwctl providers rotate``.

A secret is never a flag value (flags end up in shell history and ``ps``): it is read from
stdin — one line, or a no-echo prompt on a terminal. The control plane stores it encrypted under
its master key and hands it only to data planes, over the authenticated snapshot stream; the
Admin API never returns it, only ``has_secret`` and when it was last rotated.

``gwctl providers rotate NAME --api-key-stdin [--yes]`` stores a new key (the data planes use it
for the next request); ``--remove-secret --yes`` deletes it (the provider falls back to its
``--api-key-env``).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TextIO

from gwapi.v1 import common_pb2
from gwclient.client import GatewayClient
from gwctl import output as out
from gwctl.cli import Subparsers, UsageError, add_yes, confirm, is_json, leaf

API_KEY_STDIN_HELP = (
    "read the provider's API key (bedrock: ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]) "
    "from stdin (one line; prompted without echo on a terminal) and store it encrypted on the "
    "control plane; never pass a key as a flag"
)


def read_api_key(stream: TextIO | None = None) -> str:
    """One line from ``stream`` (default stdin) without its line ending; a no-echo prompt when
    stdin is a terminal. ``UsageError`` when nothing was given."""
    return read_secret_line(
        stream,
        "API key",
        "--api-key-stdin read an empty line: pipe the key in, e.g. "
        '`printf %s "$KEY" | gwctl providers … --api-key-stdin`',
    )


def read_secret_line(stream: TextIO | None, what: str, empty: str) -> str:
    """One line from ``stream`` (None = stdin), stripped; a no-echo prompt naming ``what`` when
    stdin is a terminal. ``UsageError(empty)`` when nothing was given. Never echoes the value."""
    stream = sys.stdin if stream is None else stream
    if stream is sys.stdin and stream.isatty():
        value = getpass.getpass(f"{what} (not echoed): ")
    else:
        value = stream.readline()
    value = value.rstrip("\r\n").strip()
    if not value:
        raise UsageError(empty)
    return value


def stored_text(provider: common_pb2.Provider) -> str:
    """``API key stored on the control plane (rotated 2026-…)`` for a provider holding one."""
    what = "AWS access key pair" if provider.kind == "bedrock" else "API key"
    rotated = out.format_time(provider.secret_rotated_at_ms)
    return f"{what} stored on the control plane (rotated {rotated})"


def stored_summary(provider: common_pb2.Provider) -> str:
    return f"stored ({out.format_time(provider.secret_rotated_at_ms)[:10]})"


def register(sub: Subparsers) -> None:
    """Add ``rotate`` to the ``providers`` group."""
    p = leaf(
        sub,
        "rotate",
        "store a new API key for a provider (encrypted on the control plane; data planes use "
        "it for the next request), or remove the stored one",
    )
    p.add_argument("name")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--api-key-stdin", action="store_true", help=API_KEY_STDIN_HELP)
    how.add_argument(
        "--remove-secret",
        action="store_true",
        help="delete the stored key (the provider falls back to its --api-key-env)",
    )
    add_yes(p)
    p.set_defaults(handler=rotate)


async def rotate(client: GatewayClient, args: argparse.Namespace) -> int:
    if args.remove_secret:
        confirm(f"remove the stored API key of provider {args.name!r}", args.yes)
        provider = await client.rotate_provider_secret(args.name, "")
    else:
        api_key = read_api_key()
        # The key came from stdin, so the confirmation can only come from --yes or a terminal.
        confirm(f"replace the API key of provider {args.name!r}", args.yes)
        provider = await client.rotate_provider_secret(args.name, api_key)
    if is_json(args):
        out.print_json(out.message_dict(provider))
    elif provider.has_secret:
        print(
            f"provider {provider.name}: new API key stored (rotated "
            f"{out.format_time(provider.secret_rotated_at_ms)}); data planes use it for the next "
            "request"
        )
    else:
        env = f"${provider.api_key_env}" if provider.api_key_env else "no key"
        print(f"provider {provider.name}: stored API key removed; it now uses {env}")
    return 0
