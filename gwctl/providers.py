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
"""

from __future__ import annotations

import argparse
import json
import re

from gwapi import vocab
from gwapi.v1 import common_pb2, discovery_pb2
from gwclient.client import GatewayClient
from gwclient.errors import ClientError
from gwctl import output as out
from gwctl import parse, secrets
from gwctl.cli import CommandError, Subparsers, UsageError, confirm, group, is_json, leaf

KINDS = vocab.choices(vocab.KIND)
AUTH_MODES = vocab.choices(vocab.AUTH)
INFERENCE_PROFILES = vocab.choices(vocab.INFERENCE_PROFILE)
_HTTP_KINDS = ("anthropic", "bedrock", "vertex")

# argparse dest -> (flag, option name, kinds it applies to)
_OPTION_FLAGS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "auth": ("--auth", "auth", ("anthropic",)),
    "region": ("--region", "region", ("bedrock", "vertex")),
    "profile": ("--profile", "profile", ("bedrock",)),
    "access_key_env": ("--access-key-env", "access_key_env", ("bedrock",)),
    "secret_key_env": ("--secret-key-env", "secret_key_env", ("bedrock",)),
    "session_token_env": ("--session-token-env", "session_token_env", ("bedrock",)),
    "bearer_token_env": ("--bearer-token-env", "bearer_token_env", ("bedrock",)),
    "inference_profile": ("--inference-profile", "inference_profile", ("bedrock",)),
    "project": ("--project", "project", ("vertex",)),
    "credentials_file": ("--credentials-file", "credentials_file", ("vertex",)),
    "timeout_connect": ("--timeout-connect", "timeout_connect_s", _HTTP_KINDS),
    "timeout_read": ("--timeout-read", "timeout_read_s", _HTTP_KINDS),
    "latency_ms": ("--latency-ms", "latency_ms", ("simulator",)),
}
# The ways a Bedrock provider authenticates: choosing one on update clears the others.
_BEDROCK_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "--profile": ("profile",),
    "--access-key-env/--secret-key-env": ("access_key_env", "secret_key_env", "session_token_env"),
    "--bearer-token-env": ("bearer_token_env",),
}
_SECONDS = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")


def register(subparsers: Subparsers) -> None:
    sub = group(subparsers, "providers", "manage upstream providers", aliases=["provider"])

    p = leaf(sub, "create", "add a provider")
    p.add_argument("name")
    p.add_argument("--kind", required=True, choices=KINDS)
    _add_settings(p, update=False)
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
    _add_settings(p, update=True)
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
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=delete)


def parse_seconds(text: str) -> str:
    """``"2.5"`` → ``"2.5"``: a positive number of seconds, kept as typed."""
    value = text.strip().removesuffix("s")
    if not _SECONDS.fullmatch(value) or float(value) <= 0:
        raise argparse.ArgumentTypeError(
            f"invalid seconds {text!r}: expected a positive number such as 10 or 2.5"
        )
    return value


def parse_model_mapping(text: str) -> tuple[str, str]:
    """``"claude-x=us.anthropic.x-v1:0"`` → ``("claude-x", "us.anthropic.x-v1:0")``."""
    src, sep, dst = text.partition("=")
    if not sep or not src.strip() or not dst.strip():
        raise argparse.ArgumentTypeError(
            f"invalid model mapping {text!r}: expected FROM=TO, e.g. "
            "claude-sonnet-4-5=us.anthropic.claude-sonnet-4-5-20250929-v1:0"
        )
    return src.strip(), dst.strip()


def model_map_json(pairs: list[tuple[str, str]]) -> str:
    """Repeated ``--model-map FROM=TO`` → the JSON object stored in option ``model_map``."""
    mapping: dict[str, str] = {}
    for src, dst in pairs:
        if src in mapping and mapping[src] != dst:
            raise UsageError(f"--model-map: {src!r} is mapped twice ({mapping[src]}, {dst})")
        mapping[src] = dst
    return json.dumps(mapping, sort_keys=True, separators=(",", ":"))


def _add_settings(p: argparse.ArgumentParser, *, update: bool) -> None:
    p.add_argument(
        "--base-url",
        metavar="URL",
        help="API root: anthropic without /v1; bedrock the endpoint root (like "
        "ANTHROPIC_BEDROCK_BASE_URL); vertex ending in /v1 (like ANTHROPIC_VERTEX_BASE_URL)"
        + ("; '' for the default" if update else ""),
    )
    p.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="anthropic: env var the data plane reads the API key from"
        + ("; '' for none" if update else ""),
    )
    p.add_argument(
        "--auth",
        choices=AUTH_MODES,
        help="anthropic: 'key' (the provider's key from --api-key-env) or 'passthrough' (the "
        "client's own Claude login goes upstream; the virtual key travels in x-tollgate-key)",
    )
    p.add_argument("--region", help="bedrock: AWS region (us-east-1); vertex: region or global")
    p.add_argument("--profile", metavar="NAME", help="bedrock: AWS profile on the data plane")
    p.add_argument("--access-key-env", metavar="VAR", help="bedrock: env var of the access key id")
    p.add_argument("--secret-key-env", metavar="VAR", help="bedrock: env var of the secret key")
    p.add_argument(
        "--session-token-env", metavar="VAR", help="bedrock: env var of the session token"
    )
    p.add_argument(
        "--bearer-token-env", metavar="VAR", help="bedrock: env var of a Bedrock API key"
    )
    p.add_argument(
        "--inference-profile",
        choices=INFERENCE_PROFILES,
        help="bedrock: cross-region inference profile prefix (default: from the region)",
    )
    p.add_argument("--project", help="vertex: Google Cloud project id")
    p.add_argument(
        "--credentials-file",
        metavar="PATH",
        help="vertex: service-account JSON on the data plane (default: ADC)",
    )
    p.add_argument(
        "--model-map",
        action="append",
        type=parse_model_mapping,
        metavar="FROM=TO",
        help="bedrock/vertex: serve model FROM as the provider's model TO, repeatable"
        + ("; replaces the whole map" if update else ""),
    )
    if update:
        p.add_argument("--clear-model-map", action="store_true", help="remove every mapping")
    p.add_argument(
        "--timeout-connect", type=parse_seconds, metavar="S", help="seconds to connect upstream"
    )
    p.add_argument(
        "--timeout-read",
        type=parse_seconds,
        metavar="S",
        help="seconds of upstream silence before giving up",
    )
    p.add_argument(
        "--latency-ms", type=parse.parse_count, metavar="N", help="simulator: answer delay"
    )
    p.add_argument(
        "--option",
        action="append",
        type=parse.parse_option,
        metavar="KEY=VALUE",
        help="any other kind-specific option, repeatable (e.g. ping_interval_s=5)"
        + ("; KEY= removes it" if update else ""),
    )


def _options_from_args(args: argparse.Namespace, kind: str | None) -> dict[str, str]:
    """The options the flags set; ``""`` means "remove" (update only)."""
    options: dict[str, str] = {}
    for key, value in args.option or []:
        if key in options:
            raise UsageError(f"--option {key} is given twice")
        options[key] = value
    for dest, (flag, name, kinds) in _OPTION_FLAGS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if kind is not None and kind not in kinds:
            raise UsageError(f"{flag} only applies to --kind {' or '.join(kinds)}")
        if name in options:
            raise UsageError(f"{flag} and --option {name}=… both set {name}")
        options[name] = str(value)
    clear = getattr(args, "clear_model_map", False)
    if args.model_map is not None or clear:
        if kind is not None and kind not in ("bedrock", "vertex"):
            raise UsageError("--model-map only applies to --kind bedrock or vertex")
        if args.model_map is not None and clear:
            raise UsageError("give --model-map or --clear-model-map, not both")
        if "model_map" in options:
            raise UsageError("--model-map and --option model_map=… both set model_map")
        options["model_map"] = model_map_json(args.model_map) if args.model_map else ""
    chosen = [
        flag for flag, names in _BEDROCK_CREDENTIALS.items() if any(options.get(n) for n in names)
    ]
    if len(chosen) > 1:
        raise UsageError(
            f"{' and '.join(chosen)} are exclusive: a Bedrock provider authenticates one way "
            "(or none of them, for the data plane's standard AWS credential chain)"
        )
    return options


def _credential_paths(options: dict[str, str]) -> set[str]:
    """On update, choosing one way to authenticate to Bedrock clears the other ways."""
    clear: set[str] = set()
    for names in _BEDROCK_CREDENTIALS.values():
        if any(options.get(n) for n in names):
            clear |= {n for other in _BEDROCK_CREDENTIALS.values() if other != names for n in other}
    return clear


async def create(client: GatewayClient, args: argparse.Namespace) -> int:
    options = _options_from_args(args, args.kind)
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


def update_request(args: argparse.Namespace) -> tuple[common_pb2.Provider, list[str]]:
    """The Provider message and update-mask paths ``providers update`` sends."""
    provider = common_pb2.Provider(name=args.name)
    paths: list[str] = []
    if args.base_url is not None:
        provider.base_url = args.base_url
        paths.append("base_url")
    options = _options_from_args(args, None)
    clear = _credential_paths(options)
    api_key_env = args.api_key_env
    if options.get("auth") == "passthrough" and api_key_env is None:
        api_key_env = ""  # passthrough means no provider key
    if api_key_env is not None:
        provider.api_key_env = api_key_env
        paths.append("api_key_env")
    for name in sorted(set(options) | clear):
        if options.get(name):
            provider.options[name] = options[name]
        paths.append(f"options.{name}")
    return provider, paths


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


# -- display ------------------------------------------------------------------------------------


def _opt(provider: common_pb2.Provider, name: str) -> str:
    return provider.options.get(name, "")


def default_base_url(provider: common_pb2.Provider) -> str:
    """Where the data plane sends requests when ``base_url`` is empty (issue 6's defaults)."""
    region = _opt(provider, "region")
    if provider.kind == "bedrock" and region:
        return f"https://bedrock-runtime.{region}.amazonaws.com"
    if provider.kind == "vertex":
        if region in ("", "global"):
            return "https://aiplatform.googleapis.com/v1"
        return f"https://{region}-aiplatform.googleapis.com/v1"
    return ""


def base_url_text(provider: common_pb2.Provider) -> str:
    if provider.base_url:
        return provider.base_url
    default = default_base_url(provider)
    return f"{default} (default)" if default else "-"


def credentials_text(provider: common_pb2.Provider) -> str:
    """How the data plane authenticates upstream, by variable or file NAME (never a secret)."""
    o = provider.options
    if provider.kind == "anthropic":
        if o.get("auth") == "passthrough":
            return "passthrough: the client's own Claude login (virtual key in x-tollgate-key)"
        if provider.has_secret:
            return secrets.stored_text(provider)
        return f"API key from ${provider.api_key_env}" if provider.api_key_env else "none"
    if provider.kind == "bedrock":
        if provider.has_secret:
            return secrets.stored_text(provider)
        if o.get("bearer_token_env"):
            return f"Bedrock API key from ${o['bearer_token_env']}"
        if o.get("access_key_env"):
            text = f"access keys from ${o['access_key_env']} / ${o.get('secret_key_env', '?')}"
            if o.get("session_token_env"):
                text += f" (session token ${o['session_token_env']})"
            return text
        if o.get("profile"):
            return f"AWS profile {o['profile']}"
        return "standard AWS credential chain (env, shared config, role)"
    if provider.kind == "vertex":
        if o.get("credentials_file"):
            return f"service account {o['credentials_file']}"
        return "application default credentials"
    return "none"


def model_map_entries(provider: common_pb2.Provider) -> dict[str, str]:
    try:
        mapping = json.loads(_opt(provider, "model_map") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in mapping.items()} if isinstance(mapping, dict) else {}


def settings_rows(provider: common_pb2.Provider) -> list[tuple[str, str]]:
    """The kind-specific settings, readable; the options they do not cover come last."""
    shown = {"model_map", *(name for _, name, _ in _OPTION_FLAGS.values())}
    rows: list[tuple[str, str]] = []
    o = provider.options
    if provider.kind == "anthropic":
        rows.append(("auth", o.get("auth", "key")))
    if provider.kind == "vertex":
        rows.append(("project", o.get("project", "-")))
    if provider.kind in ("bedrock", "vertex"):
        rows.append(("region", o.get("region", "-")))
    if provider.kind == "bedrock":
        profile = o.get("inference_profile") or "default for the region"
        rows.append(("inference profile", profile))
    if provider.kind in _HTTP_KINDS:
        rows.append(("credentials", credentials_text(provider)))
    if provider.kind in ("bedrock", "vertex"):
        mapping = model_map_entries(provider)
        listed = ", ".join(f"{k} → {v}" for k, v in sorted(mapping.items()))
        rows.append(
            (
                "model map",
                f"{len(mapping)} {'entry' if len(mapping) == 1 else 'entries'}: {listed}"
                if mapping
                else "none",
            )
        )
    timeouts = [
        f"{what} {o[name]}s"
        for what, name in (("connect", "timeout_connect_s"), ("read", "timeout_read_s"))
        if name in o
    ]
    if timeouts:
        rows.append(("timeouts", ", ".join(timeouts)))
    if "latency_ms" in o:
        rows.append(("latency", f"{o['latency_ms']} ms"))
    other = ", ".join(f"{k}={v}" for k, v in sorted(o.items()) if k not in shown)
    if other:
        rows.append(("other options", other))
    return rows


def settings_summary(provider: common_pb2.Provider) -> str:
    """One line for ``providers list``."""
    o = provider.options
    parts: list[str] = []
    if provider.kind == "anthropic" and o.get("auth"):
        parts.append(f"auth={o['auth']}")
    for name in ("project", "region", "profile", "inference_profile"):
        if o.get(name):
            parts.append(f"{name.replace('_', '-')}={o[name]}")
    if "model_map" in o:
        parts.append(f"model-map={len(model_map_entries(provider))}")
    if "latency_ms" in o:
        parts.append(f"latency={o['latency_ms']}ms")
    return " ".join(parts) or "-"


def credentials_summary(provider: common_pb2.Provider) -> str:
    o = provider.options
    if provider.kind == "anthropic":
        if o.get("auth") == "passthrough":
            return "passthrough"
        if provider.has_secret:
            return secrets.stored_summary(provider)
        return f"${provider.api_key_env}" if provider.api_key_env else "-"
    if provider.kind == "bedrock":
        if provider.has_secret:
            return secrets.stored_summary(provider)
        if o.get("bearer_token_env"):
            return f"${o['bearer_token_env']}"
        if o.get("access_key_env"):
            return f"${o['access_key_env']}+${o.get('secret_key_env', '?')}"
        return f"profile {o['profile']}" if o.get("profile") else "aws chain"
    if provider.kind == "vertex":
        return o.get("credentials_file") or "adc"
    return "-"


def emit(provider: common_pb2.Provider, args: argparse.Namespace) -> None:
    if is_json(args):
        out.print_json(out.message_dict(provider))
        return
    out.print_fields(
        [
            ("name", provider.name),
            ("kind", provider.kind),
            ("base url", base_url_text(provider)),
            *settings_rows(provider),
            ("created", out.format_time(provider.created_at_ms)),
            ("updated", out.format_time(provider.updated_at_ms)),
        ]
    )


def breakers_by_provider(
    dataplanes: list[discovery_pb2.DataPlaneStatus],
) -> dict[str, dict[str, str]]:
    """provider → {node → state} for the non-closed breakers of *connected* data planes."""
    found: dict[str, dict[str, str]] = {}
    for dp in dataplanes:
        if dp.connected:
            for provider, state in dp.breakers.items():
                found.setdefault(provider, {})[dp.node_id] = state
    return {p: dict(sorted(nodes.items())) for p, nodes in found.items()}


def breakers_text(nodes: dict[str, str], connected: int) -> str:
    """``open on dp-1a2b``, ``half_open on 2 of 3``, several states joined by ``; ``, or ``-``."""
    by_state: dict[str, list[str]] = {}
    for node, state in nodes.items():
        by_state.setdefault(state, []).append(node)
    parts = []
    for state in sorted(by_state, key=lambda s: (s != "open", s)):  # open first
        holders = by_state[state]
        where = holders[0] if len(holders) == 1 else f"{len(holders)} of {max(connected, 1)}"
        parts.append(f"{state} on {where}")
    return "; ".join(parts) or "-"


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
    if is_json(args):
        out.print_json({"deleted": args.name})
    else:
        print(f"deleted provider {args.name}")
    return 0
