"""Upstream providers: kind, API root URL, and where the data plane finds the credential.

The control plane never stores a provider secret. ``api_key_env`` names an environment variable
that the *data plane* reads; options that look like they carry a secret are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from controlplane.domain.errors import InvalidArgument

KINDS = ("anthropic", "simulator", "bedrock", "vertex")
DEFAULT_BASE_URLS = {"anthropic": "https://api.anthropic.com"}
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
OPTION_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
# Option names that would hold a credential. "*_env" / "*_file" point at one, which is fine.
_SECRET_OPTION_RE = re.compile(r"(secret|password|passwd|token|api_?key|access_key|credential)")
_SECRET_VALUE_PREFIXES = ("sk-ant-", "AKIA", "ASIA", "-----BEGIN")
MAX_OPTIONS = 50


def validate_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidArgument(
            f"unknown provider kind {kind!r}: use one of {', '.join(KINDS)}"
            if kind
            else f"provider kind is required: one of {', '.join(KINDS)}"
        )
    return kind


def normalize_base_url(url: str, kind: str) -> str:
    """Validate the API root and return it without a trailing slash.

    Empty means the kind's default (Anthropic's public API) or, for kinds without one, that the
    data plane derives the URL from the options (e.g. a Bedrock region). The URL must be
    ``http(s)://host[:port][/path]`` with no credentials, query or fragment, and must not end in
    ``/v1``: like ``ANTHROPIC_BASE_URL`` it is the root the ``/v1/...`` paths are appended to.
    """
    url = url.strip()
    if not url:
        return DEFAULT_BASE_URLS.get(kind, "")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(
            f"invalid base_url {url!r}: use an http(s) URL such as https://api.anthropic.com"
        )
    if parts.username or parts.password:
        raise InvalidArgument("base_url must not contain credentials; use api_key_env")
    if parts.query or parts.fragment:
        raise InvalidArgument(f"invalid base_url {url!r}: no query string or fragment")
    try:
        _ = parts.port
    except ValueError as exc:
        raise InvalidArgument(f"invalid base_url {url!r}: bad port") from exc
    url = url.rstrip("/")
    if url.lower().endswith("/v1"):
        raise InvalidArgument(
            f"invalid base_url {url!r}: give the API root without /v1 "
            f"(e.g. {url[:-3] or 'https://api.anthropic.com'})"
        )
    return url


def validate_api_key_env(name: str) -> str:
    """Empty (no key, e.g. the simulator or AWS's credential chain) or an env var name."""
    if name and not ENV_NAME_RE.fullmatch(name):
        raise InvalidArgument(
            "api_key_env must be the NAME of an environment variable the data plane reads the "
            "key from (e.g. ANTHROPIC_API_KEY), never the key itself"
        )
    return name


def validate_options(options: Mapping[str, str]) -> dict[str, str]:
    """Kind-specific settings; plain strings, never secrets."""
    if len(options) > MAX_OPTIONS:
        raise InvalidArgument(f"too many options ({len(options)}, at most {MAX_OPTIONS})")
    out: dict[str, str] = {}
    for key in sorted(options):
        value = options[key]
        if not OPTION_KEY_RE.fullmatch(key):
            raise InvalidArgument(
                f"invalid option name {key!r}: lowercase letters, digits, '.', '_' or '-'"
            )
        if _SECRET_OPTION_RE.search(key) and not key.endswith(("_env", "_file")):
            raise InvalidArgument(
                f"option {key!r} looks like a secret; store secrets in the data plane's "
                f"environment and reference them with api_key_env or '{key}_env'"
            )
        if value.startswith(_SECRET_VALUE_PREFIXES):
            raise InvalidArgument(
                f"option {key!r} looks like it holds a credential; reference an environment "
                "variable instead"
            )
        if len(value) > 1000:
            raise InvalidArgument(f"option {key!r} is too long (at most 1000 characters)")
        out[key] = value
    return out
