"""Upstream providers: kind, API root URL, and where the data plane finds the credential.

No option or field here holds a provider secret: ``api_key_env`` and the ``*_env`` options name
environment variables that the *data plane* reads; options that look like they carry a secret are
refused. (A secret may be stored encrypted instead, apart from these settings: see
:mod:`controlplane.secrets`.)

Options are strict per kind (:data:`KNOWN_OPTIONS`): a misspelt option would otherwise be ignored
by the data plane and surface as an outage, so an unknown name is refused with the list of known
ones. The values are checked here with the same reading the data plane gives them
(``dataplane/providers/*.py``):

* ``anthropic`` — ``auth`` = ``key`` (default: the provider key from ``api_key_env``) or
  ``passthrough`` (the client's own ``Authorization``, a Claude subscription's OAuth token, goes
  upstream; the virtual key travels in ``x-tollgate-key``), exclusive with ``api_key_env``.
* ``bedrock`` — ``region`` (required, an AWS region); credentials, at most one way:
  ``bearer_token_env`` | ``access_key_env`` + ``secret_key_env`` [+ ``session_token_env``] |
  ``profile`` | none (botocore's standard chain); ``inference_profile``; ``model_map``;
  ``ping_interval_s``. ``base_url`` is the endpoint root, like ``ANTHROPIC_BEDROCK_BASE_URL``.
* ``vertex`` — ``project`` (required, a GCP project id); ``region`` (stored explicitly, default
  ``global``); ``credentials_file`` (an absolute path on the data plane); ``model_map``.
  ``base_url`` ends in ``/v1``, like ``ANTHROPIC_VERTEX_BASE_URL``.
* ``simulator`` — ``latency_ms``, ``chunk_delay_ms`` (integers).
* ``timeout_connect_s`` / ``timeout_read_s`` for the HTTP kinds: positive numbers of seconds.

The option names are the fields of the kind's typed settings message in the proto
(:mod:`gwapi.vocab`); the values are checked as text, the form they are stored in. The rules of
the four kinds that relate a provider's URL, credential and options to each other stay here, side
by side; each option's own value check is :mod:`controlplane.domain.provider_options`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from controlplane.domain.errors import InvalidArgument, shown
from controlplane.domain.provider_options import (
    ENV_NAME_RE,
    MAX_MODEL_MAP_CHARS,
    VALIDATORS,
    a_kind,
)
from gwapi import vocab

KINDS = vocab.choices(vocab.KIND)
DEFAULT_BASE_URLS = {"anthropic": "https://api.anthropic.com"}
EXAMPLE_BASE_URLS = {
    "anthropic": "https://api.anthropic.com",
    "simulator": "http://127.0.0.1:8099",
    "bedrock": "https://bedrock-runtime.us-east-1.amazonaws.com",
    "vertex": "https://us-east5-aiplatform.googleapis.com/v1",
}
OPTION_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
# Option names that would hold a credential. "*_env" / "*_file" point at one, which is fine.
_SECRET_OPTION_RE = re.compile(r"(secret|password|passwd|token|api_?key|access_key|credential)")
_SECRET_VALUE_PREFIXES = ("sk-ant-", "AKIA", "ASIA", "-----BEGIN")
MAX_OPTIONS = 50
MAX_BASE_URL_CHARS = 2048
MAX_OPTION_CHARS = 1000
VERTEX_DEFAULT_REGION = "global"
BEDROCK_CREDENTIAL_OPTIONS = (
    "profile",
    "access_key_env",
    "secret_key_env",
    "session_token_env",
    "bearer_token_env",
)
# A kind's options are its typed settings message's fields (gwapi.v1 AnthropicOptions…), in
# field-number order: the proto is the one list.
KNOWN_OPTIONS: dict[str, tuple[str, ...]] = {kind: vocab.option_names(kind) for kind in KINDS}
REQUIRED_OPTIONS: dict[str, dict[str, str]] = {
    "bedrock": {"region": "an AWS region such as us-east-1"},
    "vertex": {"project": "the Google Cloud project id, such as my-project-123"},
}


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """A provider's validated, normalised settings: what is stored."""

    base_url: str
    api_key_env: str
    options: dict[str, str]


def validate_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidArgument(
            f"unknown provider kind {shown(kind)}: use one of {', '.join(KINDS)}"
            if kind
            else f"provider kind is required: one of {', '.join(KINDS)}"
        )
    return kind


def known_options(kind: str) -> tuple[str, ...]:
    return KNOWN_OPTIONS.get(kind, ())


def validate_provider(
    kind: str, base_url: str, api_key_env: str, options: Mapping[str, str]
) -> ProviderSettings:
    """Every rule for one provider, including those that relate its fields to each other."""
    validate_kind(kind)
    url = normalize_base_url(base_url, kind)
    env = validate_api_key_env(api_key_env)
    opts = validate_options(options, kind)
    if env and kind != "anthropic":
        raise InvalidArgument(_API_KEY_ENV_ELSEWHERE[kind])
    if env and opts.get("auth") == "passthrough":
        raise InvalidArgument(
            "auth=passthrough forwards the client's own Authorization (a Claude subscription "
            "login) upstream, so the provider has no key: leave api_key_env empty, or use "
            "auth=key with api_key_env"
        )
    return ProviderSettings(base_url=url, api_key_env=env, options=opts)


_API_KEY_ENV_ELSEWHERE = {
    "simulator": "the simulator needs no credential: leave api_key_env empty",
    "bedrock": (
        "api_key_env does not apply to a bedrock provider: name its credential with the "
        "options bearer_token_env (a Bedrock API key), access_key_env + secret_key_env, or "
        "profile, or give none to use the data plane's standard AWS credential chain"
    ),
    "vertex": (
        "api_key_env does not apply to a vertex provider: give the option credentials_file "
        "(a service-account JSON file on the data plane), or none to use Application Default "
        "Credentials"
    ),
}


# -- base URL -----------------------------------------------------------------------------------


def normalize_base_url(url: str, kind: str) -> str:
    """Validate the API root and return it without a trailing slash.

    Empty means the kind's default (Anthropic's public API) or, for kinds without one, that the
    data plane derives the URL from the options (Bedrock and Vertex: from the region). The URL
    must be ``http(s)://host[:port][/path]`` with no credentials, query or fragment, and follows
    the SDK conventions so that one value works everywhere:

    * anthropic, simulator — like ``ANTHROPIC_BASE_URL``: the root the ``/v1/...`` paths are
      appended to, so it must not end in ``/v1``;
    * bedrock — like ``ANTHROPIC_BEDROCK_BASE_URL``: the endpoint root that ``/model/{id}/...``
      is appended to (no ``/v1``, no ``/model``);
    * vertex — like ``ANTHROPIC_VERTEX_BASE_URL``: it MUST end in ``/v1`` (``/projects/...`` is
      appended to it).
    """
    url = url.strip()
    if not url:
        return DEFAULT_BASE_URLS.get(kind, "")
    example = EXAMPLE_BASE_URLS.get(kind, EXAMPLE_BASE_URLS["anthropic"])
    if len(url) > MAX_BASE_URL_CHARS:
        raise InvalidArgument(f"base_url is too long (at most {MAX_BASE_URL_CHARS} characters)")
    # The data plane puts this URL on the wire: a space, NUL or other invisible character in it
    # is never what was meant (and PostgreSQL cannot even store a NUL).
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise InvalidArgument(
            "base_url must not contain spaces or control characters: use an http(s) URL such "
            f"as {example}"
        )
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise InvalidArgument(
            f"invalid base_url {shown(url)}: not a URL; use an http(s) URL such as {example}"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(
            f"invalid base_url {shown(url)}: use an http(s) URL such as {example}"
        )
    if "@" in parts.netloc:  # also "https://@host": an empty user is still userinfo
        raise InvalidArgument("base_url must not contain credentials; use api_key_env")
    if parts.query or parts.fragment:
        raise InvalidArgument(f"invalid base_url {shown(url)}: no query string or fragment")
    try:
        _ = parts.port
    except ValueError as exc:
        raise InvalidArgument(f"invalid base_url {shown(url)}: bad port") from exc
    url = url.rstrip("/")
    root = f"{parts.scheme}://{parts.netloc}"
    segments = [s.lower() for s in parts.path.strip("/").split("/") if s]
    ends_v1 = bool(segments) and segments[-1] == "v1"
    if kind == "vertex":
        if "projects" in segments:
            prefix = "/".join(parts.path.strip("/").split("/")[: segments.index("projects")])
            suggestion = f"{root}/{prefix}" if prefix else f"{root}/v1"
            if not suggestion.lower().endswith("/v1"):
                suggestion += "/v1"
            raise InvalidArgument(
                f"invalid base_url {shown(url)}: a Vertex AI base_url is the API root ending in /v1, "
                f"like ANTHROPIC_VERTEX_BASE_URL, without /projects/… (e.g. {suggestion})"
            )
        if not ends_v1:
            raise InvalidArgument(
                f"invalid base_url {shown(url)}: a Vertex AI base_url ends in /v1, like "
                f"ANTHROPIC_VERTEX_BASE_URL (e.g. {url}/v1)"
            )
        return url
    if kind == "bedrock" and "model" in segments:
        prefix = "/".join(parts.path.strip("/").split("/")[: segments.index("model")])
        suggestion = f"{root}/{prefix}" if prefix else root
        raise InvalidArgument(
            f"invalid base_url {shown(url)}: a Bedrock base_url is the endpoint root, like "
            f"ANTHROPIC_BEDROCK_BASE_URL, without /model/… (e.g. {suggestion})"
        )
    if ends_v1:
        what = "the endpoint root" if kind == "bedrock" else "the API root"
        raise InvalidArgument(
            f"invalid base_url {shown(url)}: give {what} without /v1 (e.g. {url[:-3] or example})"
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


# -- options ------------------------------------------------------------------------------------


def validate_options(options: Mapping[str, str], kind: str) -> dict[str, str]:
    """Kind-specific settings: known names only, each value in the form the data plane reads.

    Returns them normalised (``model_map`` re-serialised compactly with sorted keys; Vertex's
    ``region`` filled in with its default).
    """
    validate_kind(kind)
    if len(options) > MAX_OPTIONS:
        raise InvalidArgument(f"too many options ({len(options)}, at most {MAX_OPTIONS})")
    known = known_options(kind)
    out: dict[str, str] = {}
    for key in sorted(options):
        value = options[key]
        if not OPTION_KEY_RE.fullmatch(key):
            raise InvalidArgument(
                f"invalid option name {shown(key)}: lowercase letters, digits, '.', '_' or '-'"
            )
        if _SECRET_OPTION_RE.search(key) and not key.endswith(("_env", "_file")):
            raise InvalidArgument(
                f"option {key!r} looks like a secret; store secrets in the data plane's "
                f"environment and reference them with api_key_env or '{key}_env'"
            )
        if value.strip().startswith(_SECRET_VALUE_PREFIXES):
            raise InvalidArgument(
                f"option {key!r} looks like it holds a credential; reference an environment "
                "variable instead"
            )
        if key not in known:
            raise InvalidArgument(_unknown_option(key, kind))
        value = value.strip()
        if not value:
            raise InvalidArgument(
                f"option {key!r} is empty: give a value, or leave the option out for its default"
            )
        limit = MAX_MODEL_MAP_CHARS if key == "model_map" else MAX_OPTION_CHARS
        if len(value) > limit:
            raise InvalidArgument(f"option {key!r} is too long (at most {limit} characters)")
        out[key] = VALIDATORS[key](key, value, kind)
    for key, what in REQUIRED_OPTIONS.get(kind, {}).items():
        if key not in out:
            raise InvalidArgument(f"{a_kind(kind)} provider needs the option {key!r}: {what}")
    if kind == "vertex":
        out.setdefault("region", VERTEX_DEFAULT_REGION)
    if kind == "bedrock":
        _check_bedrock_credentials(out)
    return dict(sorted(out.items()))


def _unknown_option(key: str, kind: str) -> str:
    known = known_options(kind)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"unknown option {key!r} for {a_kind(kind)} provider{hint}: "
        f"the known options are {', '.join(known)}"
    )


def _check_bedrock_credentials(opts: Mapping[str, str]) -> None:
    pair = ("access_key_env" in opts, "secret_key_env" in opts)
    if any(pair) and not all(pair):
        raise InvalidArgument(
            "access_key_env and secret_key_env go together: name both variables "
            "(e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    if "session_token_env" in opts and not all(pair):
        raise InvalidArgument("session_token_env needs access_key_env and secret_key_env")
    ways = [
        name
        for name, present in (
            ("bearer_token_env", "bearer_token_env" in opts),
            ("access_key_env/secret_key_env", all(pair)),
            ("profile", "profile" in opts),
        )
        if present
    ]
    if len(ways) > 1:
        raise InvalidArgument(
            f"a bedrock provider authenticates one way, but {' and '.join(ways)} are both set: "
            "keep one of bearer_token_env (a Bedrock API key), access_key_env + secret_key_env "
            "[+ session_token_env], or profile (or none, for the standard AWS credential chain)"
        )
