"""``gwctl providers`` flags → provider options, per kind, and the update request they make.

Each kind's settings have their own flags (:data:`OPTION_FLAGS`: flag, option name, kinds);
:func:`add_settings` declares them, :func:`options_from_args` reads them into the provider's
string options, and :func:`update_request` builds the Provider message and update mask of
``providers update`` (the rules are in :mod:`gwctl.providers`).
"""

from __future__ import annotations

import argparse
import json
import re

from gwapi import vocab
from gwapi.v1 import common_pb2
from gwctl import parse
from gwctl.cli import UsageError

KINDS = vocab.choices(vocab.KIND)
AUTH_MODES = vocab.choices(vocab.AUTH)
INFERENCE_PROFILES = vocab.choices(vocab.INFERENCE_PROFILE)
HTTP_KINDS = ("anthropic", "bedrock", "vertex")

# argparse dest -> (flag, option name, kinds it applies to)
OPTION_FLAGS: dict[str, tuple[str, str, tuple[str, ...]]] = {
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
    "timeout_connect": ("--timeout-connect", "timeout_connect_s", HTTP_KINDS),
    "timeout_read": ("--timeout-read", "timeout_read_s", HTTP_KINDS),
    "latency_ms": ("--latency-ms", "latency_ms", ("simulator",)),
}
# The ways a Bedrock provider authenticates: choosing one on update clears the others.
_BEDROCK_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "--profile": ("profile",),
    "--access-key-env/--secret-key-env": ("access_key_env", "secret_key_env", "session_token_env"),
    "--bearer-token-env": ("bearer_token_env",),
}
_SECONDS = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")


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


def add_settings(p: argparse.ArgumentParser, *, update: bool) -> None:
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


def options_from_args(args: argparse.Namespace, kind: str | None) -> dict[str, str]:
    """The options the flags set; ``""`` means "remove" (update only)."""
    options: dict[str, str] = {}
    for key, value in args.option or []:
        if key in options:
            raise UsageError(f"--option {key} is given twice")
        options[key] = value
    for dest, (flag, name, kinds) in OPTION_FLAGS.items():
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


def credential_paths(options: dict[str, str]) -> set[str]:
    """On update, choosing one way to authenticate to Bedrock clears the other ways."""
    clear: set[str] = set()
    for names in _BEDROCK_CREDENTIALS.values():
        if any(options.get(n) for n in names):
            clear |= {n for other in _BEDROCK_CREDENTIALS.values() if other != names for n in other}
    return clear


def update_request(args: argparse.Namespace) -> tuple[common_pb2.Provider, list[str]]:
    """The Provider message and update-mask paths ``providers update`` sends."""
    provider = common_pb2.Provider(name=args.name)
    paths: list[str] = []
    if args.base_url is not None:
        provider.base_url = args.base_url
        paths.append("base_url")
    options = options_from_args(args, None)
    clear = credential_paths(options)
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
