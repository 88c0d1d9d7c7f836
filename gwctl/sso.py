"""``gwctl sso set|show|delete|rotate-signing-key`` — sign-in with Claude Code (OIDC).

The company's identity provider is configured once, on the control plane; every data plane then
serves the sign-in endpoints at its ``--public-url``. Contract:

* ``set`` changes only the settings whose flags are given (an ``update_mask`` naming them); the
  first ``set`` must carry ``--issuer``, ``--client-id`` and ``--client-secret-stdin`` (checked
  here first, so the refusal names the flags). A repeatable flag (``--email-domain``,
  ``--scope``) replaces its whole list; ``--clear-…`` empties it. Lifetimes take durations
  (``1h``, ``7d``) or ``default``.
* The client secret is never a flag value (shell history, ``ps``): ``--client-secret-stdin``
  reads one line from stdin (a no-echo prompt on a terminal). It is never printed, and the
  control plane never returns it: ``show`` and ``-o json`` say only whether one is stored.
* ``show`` says "sign-in is off" when nothing is configured, and otherwise what to register at
  the identity provider: the redirect URI (``<data plane --public-url>/oauth/callback``, exact
  with ``--public-url``) and the scopes the gateway asks for.
* ``delete`` and ``rotate-signing-key`` take ``--yes``: deleting signs everyone out (refresh
  tokens revoked, access tokens stop verifying); rotating keeps tokens signed with the previous
  key valid until they expire.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from gwapi.v1 import admin_pb2
from gwclient.client import GatewayClient
from gwctl import output as out
from gwctl import parse
from gwctl.cli import (
    CommandError,
    Subparsers,
    UsageError,
    add_yes,
    confirm,
    group,
    is_json,
    leaf,
    read_list,
    read_target,
)
from gwctl.secrets import read_secret_line

# What the control plane always asks for (controlplane.domain.sso.DEFAULT_SCOPES).
DEFAULT_SCOPES = ("openid", "profile", "email", "offline_access")
CALLBACK_PATH = "/oauth/callback"
DEFAULT_TTLS = {
    "access_token_ttl_s": 3600,
    "refresh_idle_ttl_s": 7 * 86_400,
    "session_max_ttl_s": 30 * 86_400,
}
# flag stem, SsoConfig field, what it is
_TTL_FLAGS = (
    ("access-token-ttl", "access_token_ttl_s", "lifetime of an access token (default 1h)"),
    (
        "refresh-idle-ttl",
        "refresh_idle_ttl_s",
        "a refresh token unused this long expires (default 7d)",
    ),
    ("session-max", "session_max_ttl_s", "sign in again after this long at most (default 30d)"),
)


def parse_ttl(text: str) -> int:
    """A duration (``1h``, ``7d``) in whole seconds, or ``default`` (0: the server's default)."""
    if text.strip().lower() == "default":
        return 0
    return parse.parse_duration(text)


def register(subparsers: Subparsers) -> None:
    sub = group(
        subparsers,
        "sso",
        "sign-in with Claude Code: the company's OIDC identity provider",
    )

    p = leaf(
        sub,
        "set",
        "configure sign-in (only the flags given change; the first set needs --issuer, "
        "--client-id and --client-secret-stdin)",
    )
    p.add_argument("--issuer", metavar="URL", help="OIDC issuer, e.g. https://login.example.com")
    p.add_argument("--client-id", metavar="ID", help="the client id the IdP issued the gateway")
    p.add_argument(
        "--client-secret-stdin",
        action="store_true",
        help="read the client secret from stdin (one line; prompted without echo on a "
        "terminal); stored encrypted on the control plane, never shown",
    )
    p.add_argument(
        "--groups-claim",
        metavar="CLAIM",
        help="ID-token claim holding the groups (default groups)",
    )
    p.add_argument(
        "--email-domain",
        action="append",
        metavar="DOMAIN",
        help="only emails of this domain may sign in, repeatable; replaces the list",
    )
    p.add_argument(
        "--clear-email-domains", action="store_true", help="allow any email domain again"
    )
    p.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help=f"an extra scope to ask for besides {' '.join(DEFAULT_SCOPES)}, repeatable; "
        "replaces the list",
    )
    p.add_argument("--clear-scopes", action="store_true", help="ask for the default scopes only")
    for flag, field, what in _TTL_FLAGS:
        p.add_argument(
            f"--{flag}",
            dest=field,
            type=parse_ttl,
            metavar="DURATION",
            help=f"{what}: {parse.DURATION_HELP}, or default",
        )
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--default-provider",
        metavar="NAME",
        help="where developers' requests go when their workspace sets no member target",
    )
    target.add_argument("--default-route", metavar="NAME", help="the same, as a route")
    target.add_argument(
        "--clear-default-target",
        action="store_true",
        help="no default target (workspaces must set --member-provider/--member-route)",
    )
    p.add_argument(
        "--public-url",
        metavar="URL",
        help="a data plane's --public-url, to print the exact redirect URI to register",
    )
    p.set_defaults(handler=set_)

    p = leaf(sub, "show", "the sign-in configuration (never the client secret)", aliases=["get"])
    p.add_argument(
        "--public-url",
        metavar="URL",
        help="a data plane's --public-url, to print the exact redirect URI to register",
    )
    p.set_defaults(handler=show)

    p = leaf(
        sub,
        "delete",
        "turn sign-in off: every developer is signed out (developers and their spend are kept)",
        aliases=["rm"],
    )
    add_yes(p)
    p.set_defaults(handler=delete)

    p = leaf(
        sub,
        "rotate-signing-key",
        "a new access-token signing key (tokens signed with the previous one stay valid until "
        "they expire)",
    )
    add_yes(p)
    p.set_defaults(handler=rotate)


def read_client_secret(stream: TextIO | None = None) -> str:
    """One line from ``stream`` (default stdin) without its line ending; a no-echo prompt when
    stdin is a terminal. ``UsageError`` when nothing was given. Never echoes the value."""
    return read_secret_line(
        stream,
        "OIDC client secret",
        "--client-secret-stdin read an empty line: pipe the secret in, e.g. "
        '`printf %s "$OIDC_SECRET" | gwctl sso set … --client-secret-stdin`',
    )


def request_from_args(args: argparse.Namespace) -> tuple[admin_pb2.SsoConfig, list[str]]:
    """The SsoConfig the flags describe and the update-mask paths they name (not the secret)."""
    sso = admin_pb2.SsoConfig()
    paths: list[str] = []
    for flag, field in (("issuer", "issuer"), ("client_id", "client_id")):
        value = getattr(args, flag)
        if value is not None:
            setattr(sso, field, value)
            paths.append(field)
    if args.groups_claim is not None:
        sso.groups_claim = args.groups_claim
        paths.append("groups_claim")
    for values, clear, field, flag in (
        (args.email_domain, args.clear_email_domains, "allowed_email_domains", "email-domain"),
        (args.scope, args.clear_scopes, "scopes", "scope"),
    ):
        read_list(sso, paths, field, values, clear, flag)
    for _, field, _ in _TTL_FLAGS:
        value = getattr(args, field)
        if value is not None:
            setattr(sso, field, value)
            paths.append(field)
    read_target(
        sso, paths, "default_", args.default_provider, args.default_route, args.clear_default_target
    )
    return sso, paths


def redirect_uri(public_url: str | None) -> str:
    if public_url:
        return public_url.strip().rstrip("/") + CALLBACK_PATH
    return f"<data plane --public-url>{CALLBACK_PATH}"


def format_age(ms: int, now_ms: int) -> str:
    """``3d 4h``, ``2h 05m``, ``12m``, ``40s`` since ``ms``."""
    seconds = max(0, now_ms - ms) // 1000
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def format_ttl(seconds: int, field: str) -> str:
    if not seconds:
        return f"default ({format_seconds(DEFAULT_TTLS[field])})"
    return format_seconds(seconds)


def format_seconds(seconds: int) -> str:
    """``3600`` → ``1h``, ``90000`` → ``1d1h``: the shortest whole units."""
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def sso_dict(sso: admin_pb2.SsoConfig, public_url: str | None = None) -> out.JSON:
    """The configuration for ``-o json`` (there is no secret in it to leave out), plus the
    redirect URI and every scope asked for."""
    doc = out.message_dict(sso)
    if sso.configured:
        doc["redirect_uri"] = redirect_uri(public_url)
        doc["scopes_requested"] = [*DEFAULT_SCOPES, *sso.scopes]
    return doc


def sso_fields(sso: admin_pb2.SsoConfig, public_url: str | None = None) -> list[tuple[str, str]]:
    now = out.now_ms()
    if sso.default_route:
        target = f"route:{sso.default_route}"
    elif sso.default_provider:
        target = f"provider:{sso.default_provider}"
    else:
        target = "- (the only provider, when there is exactly one)"
    key = (
        f"{sso.signing_key_id} (created {out.format_time(sso.signing_key_created_at_ms)}, "
        f"{format_age(sso.signing_key_created_at_ms, now)} ago)"
        if sso.signing_key_id
        else "-"
    )
    return [
        ("sign-in", "on"),
        ("issuer", sso.issuer),
        ("client id", sso.client_id),
        ("client secret", "stored (encrypted; never shown)" if sso.has_client_secret else "none"),
        ("redirect URI", f"{redirect_uri(public_url)}  (register it at the identity provider)"),
        ("scopes requested", " ".join([*DEFAULT_SCOPES, *sso.scopes])),
        ("groups claim", sso.groups_claim or "groups"),
        ("email domains", ", ".join(sso.allowed_email_domains) or "any"),
        ("access token ttl", format_ttl(sso.access_token_ttl_s, "access_token_ttl_s")),
        ("refresh idle ttl", format_ttl(sso.refresh_idle_ttl_s, "refresh_idle_ttl_s")),
        ("session max", format_ttl(sso.session_max_ttl_s, "session_max_ttl_s")),
        ("default target", target),
        ("signing key", key),
        ("updated", out.format_time(sso.updated_at_ms)),
    ]


OFF_TEXT = (
    "sign-in with Claude Code is off (not configured): configure it with\n"
    '  printf %s "$OIDC_SECRET" | gwctl sso set --issuer URL --client-id ID '
    "--client-secret-stdin"
)


def emit(sso: admin_pb2.SsoConfig, args: argparse.Namespace) -> None:
    public_url = getattr(args, "public_url", None)
    if is_json(args):
        out.print_json(sso_dict(sso, public_url))
    elif not sso.configured:
        print(OFF_TEXT)
    else:
        out.print_fields(sso_fields(sso, public_url))


async def set_(client: GatewayClient, args: argparse.Namespace) -> int:
    sso, paths = request_from_args(args)
    if not paths and not args.client_secret_stdin:
        raise UsageError(
            "nothing to set: give at least one of --issuer, --client-id, --client-secret-stdin, "
            "--groups-claim, --email-domain, --scope, --access-token-ttl, --refresh-idle-ttl, "
            "--session-max, --default-provider/--default-route (see --help)"
        )
    current = await client.get_sso()
    if not current.configured:
        missing = [
            flag
            for flag, given in (
                ("--issuer", args.issuer),
                ("--client-id", args.client_id),
                ("--client-secret-stdin", args.client_secret_stdin),
            )
            if not given
        ]
        if missing:
            raise UsageError(
                "sign-in is not configured yet: the first `gwctl sso set` needs --issuer, "
                f"--client-id and --client-secret-stdin (missing: {', '.join(missing)})"
            )
    secret = read_client_secret() if args.client_secret_stdin else ""
    if secret:
        paths.append("client_secret")
    emit(await client.set_sso(sso, secret, paths), args)
    return 0


async def show(client: GatewayClient, args: argparse.Namespace) -> int:
    emit(await client.get_sso(), args)
    return 0


async def delete(client: GatewayClient, args: argparse.Namespace) -> int:
    confirm(
        "turn sign-in off (every developer is signed out; developers and their spend are kept)",
        args.yes,
    )
    await client.delete_sso()
    if is_json(args):
        out.print_json({"deleted": "sso"})
    else:
        print("sign-in with Claude Code is off: every developer was signed out")
    return 0


async def rotate(client: GatewayClient, args: argparse.Namespace) -> int:
    confirm("rotate the access-token signing key", args.yes)
    before = await client.get_sso()
    if not before.configured:
        raise CommandError("sign-in with Claude Code is not configured: nothing to rotate")
    sso = await client.rotate_signing_key()
    if is_json(args):
        out.print_json(sso_dict(sso))
    else:
        print(
            f"new signing key {sso.signing_key_id} (was {before.signing_key_id or '-'}); tokens "
            "signed with the previous key stay valid until they expire"
        )
    return 0
