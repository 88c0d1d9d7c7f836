"""Provider options one at a time: each option's value, checked as the data plane reads it.

:data:`VALIDATORS` maps every option name of every kind to the check of its value (an
environment variable's name, a region of the kind's cloud, seconds, a ``model_map``…), which
returns the value as stored. The rules that relate options to each other, to the kind and to
the provider's URL and credential are :mod:`controlplane.domain.providers`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import PurePosixPath

from controlplane.domain.errors import InvalidArgument, shown
from controlplane.domain.names import unique_keys
from gwapi import vocab

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
AUTH_MODES = vocab.choices(vocab.AUTH)
INFERENCE_PROFILES = vocab.choices(vocab.INFERENCE_PROFILE)
MODEL_MAP_MAX_ENTRIES = 100
MODEL_ID_MAX_CHARS = 256
MAX_MODEL_MAP_CHARS = 60_000
MAX_SECONDS = 86_400.0
MAX_SIMULATOR_MS = 600_000

# us-east-1, eu-west-3, ap-northeast-1, us-gov-west-1, cn-northwest-1, us-isob-east-1.
AWS_REGION_RE = re.compile(r"^[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-[1-9][0-9]?$")
# global, us-east5, europe-west1, northamerica-northeast1.
GCP_REGION_RE = re.compile(r"^(?:global|[a-z]+-[a-z]+[1-9][0-9]?)$")
# 6-30 characters: lowercase letters, digits, hyphens; starts with a letter, no trailing hyphen.
# Legacy domain-scoped projects ("example.com:my-project") are accepted too.
GCP_PROJECT_RE = re.compile(r"^(?:[a-z0-9][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
AWS_PROFILE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,127}$")
_DECIMAL_RE = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")
_INTEGER_RE = re.compile(r"^\d+$")


def a_kind(kind: str) -> str:
    """``"an anthropic"``, ``"a bedrock"``: the kind with its article, for messages."""
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def _env_name(key: str, value: str, kind: str) -> str:
    if not ENV_NAME_RE.fullmatch(value):
        raise InvalidArgument(
            f"option {key!r} must be the NAME of an environment variable the data plane reads "
            "the credential from (e.g. AWS_SECRET_ACCESS_KEY), never the credential itself"
        )
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[str, str, str], str]:
    def check(key: str, value: str, kind: str) -> str:
        if value not in choices:
            raise InvalidArgument(
                f"invalid {key} {shown(value)} for {a_kind(kind)} provider: use one of {', '.join(choices)}"
            )
        return value

    return check


def _region(key: str, value: str, kind: str) -> str:
    if kind == "bedrock" and not AWS_REGION_RE.fullmatch(value):
        raise InvalidArgument(
            f"invalid region {shown(value)} for a bedrock provider: use an AWS region such as "
            "us-east-1, eu-west-3 or ap-northeast-1"
        )
    if kind == "vertex" and not GCP_REGION_RE.fullmatch(value):
        raise InvalidArgument(
            f"invalid region {shown(value)} for a vertex provider: use a Google Cloud region such as "
            "us-east5 or europe-west1, or global"
        )
    return value


def _project(key: str, value: str, kind: str) -> str:
    if not GCP_PROJECT_RE.fullmatch(value):
        raise InvalidArgument(
            f"invalid project {shown(value)}: a Google Cloud project id has 6-30 lowercase letters, "
            "digits or hyphens, starts with a letter and does not end with a hyphen "
            "(e.g. my-project-123)"
        )
    return value


def _profile(key: str, value: str, kind: str) -> str:
    if not AWS_PROFILE_RE.fullmatch(value):
        raise InvalidArgument(
            "option 'profile' must be the name of an AWS profile in the data plane's shared "
            "config (letters, digits, '_', '.', '-', '+', '@'; e.g. bedrock-prod)"
        )
    return value


def _credentials_file(key: str, value: str, kind: str) -> str:
    if value.startswith("{"):
        raise InvalidArgument(
            "option 'credentials_file' is the PATH of a service-account JSON file on the data "
            "plane, not its content"
        )
    if (
        any(ord(ch) < 32 or ord(ch) == 127 for ch in value)
        or not PurePosixPath(value).is_absolute()
    ):
        raise InvalidArgument(
            "option 'credentials_file' must be an absolute path on the data plane "
            "(e.g. /etc/tollgate/vertex-sa.json): the data plane reads it, relative to nothing"
        )
    return value


def _seconds(key: str, value: str, kind: str) -> str:
    number = float(value) if _DECIMAL_RE.fullmatch(value) else math.nan
    if not (0 < number <= MAX_SECONDS):
        raise InvalidArgument(
            f"option {key!r} must be a positive number of seconds (e.g. 10 or 2.5, at most "
            f"{int(MAX_SECONDS)}), got {value[:40]!r}"
        )
    return value


def _milliseconds(key: str, value: str, kind: str) -> str:
    if not _INTEGER_RE.fullmatch(value) or int(value) > MAX_SIMULATOR_MS:
        raise InvalidArgument(
            f"option {key!r} must be a whole number of milliseconds from 0 to "
            f"{MAX_SIMULATOR_MS}, got {value[:40]!r}"
        )
    return str(int(value))


_no_duplicates = unique_keys(lambda key: f"model_map lists {key} twice")


def _model_map(key: str, value: str, kind: str) -> str:
    """A JSON object of model id → model id; returned compact, keys sorted."""
    shape = '{"claude-sonnet-4-5": "<provider model id>", ...}'
    try:
        obj = json.loads(value, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(
            f"option 'model_map' is not valid JSON ({exc.msg}): use {shape}"
        ) from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"option 'model_map' must be a JSON object: {shape}")
    if len(obj) > MODEL_MAP_MAX_ENTRIES:
        raise InvalidArgument(f"model_map has {len(obj)} entries, at most {MODEL_MAP_MAX_ENTRIES}")
    for src, dst in obj.items():
        for what, text in (("model name", src), ("target", dst)):
            if not isinstance(text, str) or not text.strip():
                raise InvalidArgument(
                    f"model_map entry {shown(src)}: the {what} must be a non-empty string ({shape})"
                )
            if len(text) > MODEL_ID_MAX_CHARS or any(ch.isspace() or ord(ch) < 32 for ch in text):
                raise InvalidArgument(
                    f"model_map entry {src[:60]!r}: the {what} must be a model id of at most "
                    f"{MODEL_ID_MAX_CHARS} characters, without spaces or control characters"
                )
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


VALIDATORS: dict[str, Callable[[str, str, str], str]] = {
    "auth": _choice(AUTH_MODES),
    "inference_profile": _choice(INFERENCE_PROFILES),
    "region": _region,
    "project": _project,
    "profile": _profile,
    "access_key_env": _env_name,
    "secret_key_env": _env_name,
    "session_token_env": _env_name,
    "bearer_token_env": _env_name,
    "credentials_file": _credentials_file,
    "model_map": _model_map,
    "timeout_connect_s": _seconds,
    "timeout_read_s": _seconds,
    "ping_interval_s": _seconds,
    "latency_ms": _milliseconds,
    "chunk_delay_ms": _milliseconds,
}
