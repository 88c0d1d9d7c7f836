"""``gwctl telemetry destinations add|list|remove`` — where Claude Code's own telemetry goes.

Data planes accept Claude Code's OTLP/HTTP telemetry (metrics, logs, traces) at
``/v1/{metrics,logs,traces}``, stamp each export with who sent it (``enduser.id``,
``tollgate.developer.*`` or ``tollgate.key.id``, ``tollgate.workspace``) and forward it, in the
background, to every destination that takes the signal: ``POST {url}/v1/{signal}``, protobuf,
with the destination's headers. With no destination, telemetry is accepted and discarded.

Header values are usually a collector's API key: they are stored encrypted on the control plane
(it needs a master key for that), sent to data planes only over their authenticated stream, and
never shown again (``list`` shows header names). ``--header-env NAME=VAR`` reads the value from
gwctl's environment, which keeps it out of the shell history and the process list.
"""

from __future__ import annotations

import argparse
import os
import re

from gwapi.v1 import admin_pb2
from gwclient.client import GatewayClient
from gwctl import output as out
from gwctl.cli import Subparsers, UsageError, add_yes, confirm, group, is_json, leaf

SIGNALS = ("metrics", "logs", "traces")
HEADERS = ("NAME", "URL", "SIGNALS", "HEADERS", "CREATED")
_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def register(subparsers: Subparsers) -> None:
    sub = group(subparsers, "telemetry", "Claude Code's own telemetry (OTLP) and where it goes")
    dest = sub.add_parser(
        "destinations",
        aliases=["destination", "dest"],
        help="collectors the data planes forward telemetry to",
        description="collectors the data planes forward Claude Code's OTLP telemetry to",
    )
    actions = dest.add_subparsers(dest="subaction", metavar="ACTION", required=True)

    p = leaf(actions, "add", "forward telemetry to an OTLP/HTTP collector")
    p.add_argument("name", help="a name for the destination (e.g. honeycomb)")
    p.add_argument(
        "--url",
        required=True,
        metavar="URL",
        help="the collector's OTLP/HTTP base URL; /v1/<signal> is appended (https, or http to "
        "a loopback collector)",
    )
    p.add_argument(
        "--header",
        action="append",
        type=parse_header,
        default=[],
        metavar="NAME=VALUE",
        help="a header sent with every export (e.g. the collector's API key), repeatable; "
        "stored encrypted, never shown again",
    )
    p.add_argument(
        "--header-env",
        action="append",
        type=parse_header_env,
        default=[],
        metavar="NAME=VAR",
        help="like --header, with the value read from gwctl's environment variable VAR",
    )
    p.add_argument(
        "--signals",
        type=parse_signals,
        default=[],
        metavar="LIST",
        help="which signals it takes, comma-separated: metrics,logs,traces (default: all)",
    )
    p.set_defaults(handler=add)

    p = leaf(actions, "list", "list destinations (header names only)", aliases=["ls"])
    p.set_defaults(handler=list_)

    p = leaf(actions, "remove", "stop forwarding to a destination", aliases=["rm", "delete"])
    p.add_argument("name")
    add_yes(p)
    p.set_defaults(handler=remove)


def parse_header(text: str) -> tuple[str, str]:
    """``"X-Api-Key=abc"`` (or curl's ``"X-Api-Key: abc"``) → ``("X-Api-Key", "abc")``.

    Errors never repeat the text: it may hold a secret."""
    cut = min((i for i in (text.find("="), text.find(":")) if i >= 0), default=-1)
    name, value = (text[:cut].strip(), text[cut + 1 :].strip()) if cut >= 0 else ("", "")
    if not name or not _NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            "invalid header: expected NAME=VALUE with an HTTP header name, e.g. "
            "x-api-key=… (the value is not repeated here)"
        )
    if not value:
        raise argparse.ArgumentTypeError(f"header {name!r} has no value")
    return name, value


def parse_header_env(text: str) -> tuple[str, str]:
    """``"x-api-key=OTLP_KEY"`` → ``("x-api-key", $OTLP_KEY)``."""
    name, _, var = text.partition("=")
    name, var = name.strip(), var.strip()
    if not name or not _NAME.fullmatch(name) or not var:
        raise argparse.ArgumentTypeError(
            f"invalid --header-env {text!r}: expected NAME=VARIABLE, e.g. x-api-key=OTLP_KEY"
        )
    value = os.environ.get(var, "")
    if not value:
        raise argparse.ArgumentTypeError(f"environment variable {var} is not set or empty")
    return name, value


def parse_signals(text: str) -> list[str]:
    signals = [s.strip().lower() for s in text.split(",") if s.strip()]
    unknown = [s for s in signals if s not in SIGNALS]
    if unknown or not signals:
        raise argparse.ArgumentTypeError(
            f"invalid signals {text!r}: a comma-separated subset of {','.join(SIGNALS)}"
        )
    return signals


def destination_dict(d: admin_pb2.TelemetryDestination) -> out.JSON:
    return out.message_dict(d)


async def add(client: GatewayClient, args: argparse.Namespace) -> int:
    headers: dict[str, str] = {}
    for name, value in [*args.header, *args.header_env]:
        if name.lower() in headers:
            raise UsageError(f"header {name!r} is given twice")
        headers[name.lower()] = value
    dest = admin_pb2.TelemetryDestination(name=args.name, url=args.url, signals=args.signals)
    created = await client.add_telemetry_destination(dest, headers)
    if is_json(args):
        out.print_json(destination_dict(created))
    else:
        out.print_fields(_fields(created))
    return 0


def _fields(d: admin_pb2.TelemetryDestination) -> list[tuple[str, object]]:
    return [
        ("name", d.name),
        ("url", d.url),
        ("signals", ",".join(d.signals) or ",".join(SIGNALS)),
        ("headers", ", ".join(d.header_names) or "-"),
        ("created", out.format_time(d.created_at_ms)),
    ]


async def list_(client: GatewayClient, args: argparse.Namespace) -> int:
    items = await client.list_telemetry_destinations()
    if is_json(args):
        out.print_json([destination_dict(d) for d in items])
        return 0
    if not items:
        out.info(
            "no telemetry destinations: data planes accept Claude Code's telemetry and discard "
            "it (add one with gwctl telemetry destinations add NAME --url URL)"
        )
        return 0
    out.print_table(
        HEADERS,
        (
            [
                d.name,
                d.url,
                ",".join(d.signals) or ",".join(SIGNALS),
                ", ".join(d.header_names) or "-",
                out.format_time(d.created_at_ms),
            ]
            for d in items
        ),
    )
    return 0


async def remove(client: GatewayClient, args: argparse.Namespace) -> int:
    confirm(f"stop forwarding telemetry to {args.name}", args.yes)
    await client.remove_telemetry_destination(args.name)
    out.print_gone(is_json(args), "removed", "telemetry destination", args.name)
    return 0
