"""Bedrock model ids: which Bedrock id serves an Anthropic model id (see ``bedrock.py``'s rule).

:func:`bedrock_model_id` applies, first match wins: the provider's explicit ``model_map``; Bedrock
ids and ARNs as given; 404 for non-Claude ids; else ``<profile>.anthropic.<id>`` (``-v1:0`` for
dated ids; aliases dated first; AWS's irregular names from :data:`IRREGULAR`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from types import MappingProxyType

import orjson

from dataplane.config.snapshot import ProviderConfig
from dataplane.errors import NotFound

PROFILES = ("us", "eu", "apac", "jp", "global", "none")
# Dateless aliases of models whose Bedrock id is dated (Anthropic's documented aliases).
ALIASES: Mapping[str, str] = {
    "claude-opus-4-5": "claude-opus-4-5-20251101",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-opus-4-1": "claude-opus-4-1-20250805",
    "claude-opus-4-0": "claude-opus-4-20250514",
    "claude-opus-4": "claude-opus-4-20250514",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "claude-sonnet-4": "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet-20250219",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
}
# Anthropic id -> Bedrock base id where AWS departs from the rule.
IRREGULAR: Mapping[str, str] = {
    "claude-opus-4-6": "anthropic.claude-opus-4-6-v1",
    "claude-3-5-sonnet-20241022": "anthropic.claude-3-5-sonnet-20241022-v2:0",
}
_DATED = re.compile(r"-\d{8}$")
_BEDROCK_ID = re.compile(r"^(?:[a-z]{2,6}(?:-[a-z]+)?\.)?anthropic\.")
_GEO_PREFIX = re.compile(r"^[a-z]{2,6}(?:-[a-z]+)?\.(?=anthropic\.)")


def default_profile(region: str) -> str:
    """The inference-profile geography for ``region`` (rule in the module docstring)."""
    if region.startswith("us-gov-"):
        return "none"
    if region.startswith(("us-", "ca-")):
        return "us"
    if region.startswith("eu-"):
        return "eu"
    if region in ("ap-northeast-1", "ap-northeast-3"):
        return "jp"
    return "apac" if region.startswith("ap-") else "global"


def model_map(config: ProviderConfig) -> dict[str, str]:
    """The explicit ``model_map`` option. Raises ValueError when it is not a JSON string map."""
    return dict(_rules(config)[0])


@functools.lru_cache(maxsize=256)
def _rules(config: ProviderConfig) -> tuple[Mapping[str, str], str]:
    """(explicit model map, inference profile) of a provider, parsed once per configuration."""
    profile = config.option("inference_profile") or default_profile(config.option("region"))
    raw = config.option("model_map", "")
    if not raw:
        return MappingProxyType({}), profile
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"model_map is not JSON: {exc}") from None
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise ValueError("model_map must be a JSON object of strings")
    return MappingProxyType(obj), profile


def bedrock_model_id(model: str, config: ProviderConfig) -> str:
    """The Bedrock model id (or ARN) serving Anthropic ``model``; GatewayError 404 if none."""
    explicit, profile = _rules(config)
    if model in explicit:
        return explicit[model]
    if model.startswith("arn:") or _BEDROCK_ID.match(model):
        return model
    if not model.startswith("claude-"):
        served = ", ".join(f"{k} → {v}" for k, v in sorted(explicit.items())) or "none"
        raise NotFound(
            404,
            f"Model '{model}' is not served by Bedrock provider '{config.name}'. It serves any "
            f"Claude model id (claude-…, mapped to {profile}.anthropic.<id>[-v1:0]), Bedrock "
            f"model ids and ARNs, and these mapped names: {served}.",
        )
    model = ALIASES.get(model, model)
    base = IRREGULAR.get(model) or (
        f"anthropic.{model}-v1:0" if _DATED.search(model) else f"anthropic.{model}"
    )
    return base if profile == "none" else f"{profile}.{base}"


def foundation_model_id(model_id: str) -> str:
    """``us.anthropic.x`` → ``anthropic.x`` (CountTokens wants the foundation model)."""
    return _GEO_PREFIX.sub("", model_id, count=1)


_ARN_ACCOUNT = re.compile(r"^(arn:[^:]*:[^:]*:[^:]*:)\d{12}(:)")


def shown_model_id(model_id: str) -> str:
    """``model_id`` as a client may see it: an ARN's account id replaced by ``…``."""
    return _ARN_ACCOUNT.sub(r"\1…\2", model_id, count=1)
