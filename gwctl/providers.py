"""``gwctl providers create|list|show|update|delete`` — upstream LLM providers.

``--api-key-env``, ``--access-key-env`` and the other ``*-env`` flags name environment variables
that the *data plane* reads its credential from. An anthropic provider's API key, or a bedrock
provider's AWS access-key pair, may instead be stored on the control plane, encrypted
(``create --api-key-stdin``, ``rotate``: see :mod:`gwctl.secrets`); it is never a flag value and
never shown.

Each kind's settings have their own flags (``--region``, ``--project``, ``--model-map``…); they
are stored as the provider's string options (``region``, ``project``, ``model_map`` as a JSON
object…), which the control plane validates per kind. ``--option KEY=VALUE`` sets any other.

``update`` changes only what its flags name: each option is sent as its own update-mask path
(``options.region``), so the others stay as they are; ``--option KEY=`` removes one. Choosing a
Bedrock credential (``--profile`` | ``--access-key-env``… | ``--bearer-token-env``) clears the
other ways, and ``--auth passthrough`` clears ``--api-key-env``, as one would expect. A provider
with a stored key changes its ``--base-url`` only with the key again (``--api-key-stdin``) or
``--keep-secret``: the control plane refuses otherwise, so an edit cannot send the key elsewhere.

This module is the commands; the per-kind flags and the update request are
:mod:`gwctl.provider_flags`, the display is :mod:`gwctl.provider_display`.
"""

from __future__ import annotations

import argparse

from gwapi.v1 import common_pb2, discovery_pb2
from gwclient.client import GatewayClient
from gwclient.errors import ClientError
from gwctl import output as out
from gwctl import secrets
from gwctl.cli import CommandError, Subparsers, UsageError, add_yes, confirm, group, is_json, leaf
from gwctl.provider_display import (
    base_url_text,
    breakers_by_provider,
    breakers_text,
    credentials_summary,
    emit,
    settings_summary,
)
from gwctl.provider_flags import (
    KINDS,
    add_settings,
    options_from_args,
    update_request,
)


def register(subparsers: Subparsers) -> None:
    sub = group(subparsers, "providers", "manage upstream providers", aliases=["provider"])

    p = leaf(sub, "create", "add a provider")
    p.add_argument("name")
    p.add_argument("--kind", required=True, choices=KINDS)
    add_settings(p, update=False)
    p.add_argument("--api-key-stdin", action="store_true", help=secrets.API_KEY_STDIN_HELP)
    p.set_defaults(handler=create)

    p = leaf(sub, "list", "list providers", aliases=["ls"])
    p.set_defaults(handler=list_)

    p = leaf(sub, "show", "show one provider", aliases=["get"])
    p.add_argument("name")
    p.set_defaults(handler=show)

    p = leaf(
        sub, "update", "change a provider (only the settings given; the others stay as they are)"
    )
    p.add_argument("name")
    add_settings(p, update=True)
    p.add_argument(
        "--api-key-stdin",
        action="store_true",
        help=secrets.API_KEY_STDIN_HELP + "; needed (or --keep-secret) to change the --base-url "
        "of a provider with a stored key",
    )
    p.add_argument(
        "--keep-secret",
        action="store_true",
        help="change the --base-url of a provider with a stored key and send that key to the "
        "new host",
    )
    p.set_defaults(handler=update)

    secrets.register(sub)

    p = leaf(sub, "delete", "delete a provider", aliases=["rm"])
    p.add_argument("name")
    add_yes(p)
    p.set_defaults(handler=delete)


async def create(client: GatewayClient, args: argparse.Namespace) -> int:
    options = options_from_args(args, args.kind)
    empty = sorted(k for k, v in options.items() if not v)
    if empty:
        raise UsageError(f"--option {empty[0]}= has no value")
    provider = common_pb2.Provider(
        name=args.name,
        kind=args.kind,
        base_url=args.base_url or "",
        api_key_env=args.api_key_env or "",
        options=options,
    )
    # Every rule is the control plane's (CreateProvider refuses with its reason). With a key to
    # read from stdin it is asked first (Admin.Validate), so a refusal does not cost the
    # operator a secret pasted for nothing.
    if args.api_key_stdin:
        (checked,) = await client.validate([provider])
        if checked.error:
            raise CommandError(checked.error)
        emit(await client.create_provider(provider, api_key=secrets.read_api_key()), args)
    else:
        emit(await client.create_provider(provider), args)
    return 0


async def update(client: GatewayClient, args: argparse.Namespace) -> int:
    provider, paths = update_request(args)
    if not paths:
        if args.api_key_stdin:
            raise UsageError(
                f"to replace only the stored key, use `gwctl providers rotate {args.name} "
                "--api-key-stdin`"
            )
        raise UsageError("nothing to update: give at least one setting flag (see --help)")
    if args.api_key_stdin and args.keep_secret:
        raise UsageError(
            "--api-key-stdin replaces the stored key; --keep-secret keeps it: pick one"
        )
    api_key = secrets.read_api_key() if args.api_key_stdin else ""
    emit(
        await client.update_provider(
            provider, paths, api_key=api_key, keep_secret=args.keep_secret
        ),
        args,
    )
    return 0


async def _dataplanes(client: GatewayClient) -> list[discovery_pb2.DataPlaneStatus] | None:
    """The data planes, or None when the control plane will not say (breakers unknown)."""
    try:
        return list((await client.list_dataplanes()).dataplanes)
    except ClientError:
        return None


async def list_(client: GatewayClient, args: argparse.Namespace) -> int:
    providers = await client.list_providers()
    dataplanes = await _dataplanes(client)
    breakers = breakers_by_provider(dataplanes or [])
    connected = sum(1 for dp in dataplanes or [] if dp.connected)
    if is_json(args):
        docs = []
        for p in providers:
            doc = out.message_dict(p)
            doc["breakers"] = breakers.get(p.name, {}) if dataplanes is not None else None
            docs.append(doc)
        out.print_json(docs)
        return 0
    out.print_table(
        ["NAME", "KIND", "BASE URL", "CREDENTIALS", "SETTINGS", "BREAKERS"],
        (
            [
                p.name,
                p.kind,
                base_url_text(p).removesuffix(" (default)"),
                credentials_summary(p),
                settings_summary(p),
                breakers_text(breakers.get(p.name, {}), connected)
                if dataplanes is not None
                else "?",
            ]
            for p in providers
        ),
    )
    return 0


async def show(client: GatewayClient, args: argparse.Namespace) -> int:
    emit(await client.get_provider(args.name), args)
    return 0


async def delete(client: GatewayClient, args: argparse.Namespace) -> int:
    confirm(f"delete provider {args.name!r}", args.yes)
    await client.delete_provider(args.name)
    out.print_gone(is_json(args), "deleted", "provider", args.name)
    return 0
