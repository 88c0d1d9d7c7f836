"""How ``gwctl providers list|show`` displays a provider: base URL, credentials, settings,
breakers; readable text. Credentials show by variable or file name, a key stored on the control
plane as stored: never a secret's value.
"""

from __future__ import annotations

import argparse
import json

from gwapi.v1 import common_pb2, discovery_pb2
from gwctl import output as out
from gwctl import secrets
from gwctl.cli import is_json
from gwctl.provider_flags import HTTP_KINDS, OPTION_FLAGS


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


def _credential_source(provider: common_pb2.Provider) -> tuple[str, str]:
    """Which credentials the data plane uses upstream, as (source, variable / file / profile
    NAME): the one decision both renderings below share."""
    o = provider.options
    if provider.kind == "anthropic":
        if o.get("auth") == "passthrough":
            return "passthrough", ""
        if provider.has_secret:
            return "stored", ""
        return ("env", provider.api_key_env) if provider.api_key_env else ("none", "")
    if provider.kind == "bedrock":
        if provider.has_secret:
            return "stored", ""
        if o.get("bearer_token_env"):
            return "bedrock-key", o["bearer_token_env"]
        if o.get("access_key_env"):
            return "access-keys", o["access_key_env"]
        if o.get("profile"):
            return "profile", o["profile"]
        return "aws-chain", ""
    if provider.kind == "vertex":
        if o.get("credentials_file"):
            return "service-account", o["credentials_file"]
        return "adc", ""
    return "none", ""


def credentials_text(provider: common_pb2.Provider) -> str:
    """How the data plane authenticates upstream, by variable or file NAME (never a secret)."""
    o = provider.options
    source, name = _credential_source(provider)
    match source:
        case "passthrough":
            return "passthrough: the client's own Claude login (virtual key in x-tollgate-key)"
        case "stored":
            return secrets.stored_text(provider)
        case "env":
            return f"API key from ${name}"
        case "bedrock-key":
            return f"Bedrock API key from ${name}"
        case "access-keys":
            text = f"access keys from ${name} / ${o.get('secret_key_env', '?')}"
            if o.get("session_token_env"):
                text += f" (session token ${o['session_token_env']})"
            return text
        case "profile":
            return f"AWS profile {name}"
        case "aws-chain":
            return "standard AWS credential chain (env, shared config, role)"
        case "service-account":
            return f"service account {name}"
        case "adc":
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
    shown = {"model_map", *(name for _, name, _ in OPTION_FLAGS.values())}
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
    if provider.kind in HTTP_KINDS:
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
    """:func:`credentials_text` in a table cell's few characters."""
    source, name = _credential_source(provider)
    match source:
        case "passthrough":
            return "passthrough"
        case "stored":
            return secrets.stored_summary(provider)
        case "env" | "bedrock-key":
            return f"${name}"
        case "access-keys":
            return f"${name}+${provider.options.get('secret_key_env', '?')}"
        case "profile":
            return f"profile {name}"
        case "aws-chain":
            return "aws chain"
        case "service-account":
            return name
        case "adc":
            return "adc"
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
