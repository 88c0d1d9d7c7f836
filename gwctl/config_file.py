"""The declarative gateway file ``gwctl apply -f gateway.yaml`` reads: parse, check, normalise.

The file has four optional lists, each item named (``keys`` by workspace + name)::

    version: 1                       # optional; the only version so far
    providers:  [{name, kind, base_url, api_key_env, options}]
    routes:     [{name, mode, targets, retries, retry_on, timeout_connect, timeout_first_byte,
                  timeout_idle, cache_ttl, cache_sampled, breaker_failures, breaker_cooldown}]
    workspaces: [{name, description, timezone, redis_failure, alert_webhook, alert_format, limits,
                  allowed_providers, allowed_routes, allowed_models, sso_groups, sso_priority,
                  member_limits, member_provider | member_route, managed_settings_file}]
    keys:       [{workspace, name, provider | route, models, limits}]

``limits`` is ``{budgets, rpm, rph, tpm, max_parallel}``, budgets in the CLI's grammar
(``["50/day", "1000/month"]``). A workspace's ``allowed_*`` lists (provider names, route names,
model globs such as ``claude-sonnet-*``) bound what its keys may use; left out or ``[]`` = any.
Sign-in with Claude Code: ``sso_groups`` (IdP group names, ``"*"`` = anyone who signs in) and
``sso_priority`` (lower wins; left out = the default, 100) map developers to the workspace,
``member_limits`` (a ``limits`` mapping) apply to each of its developers, ``member_provider`` or
``member_route`` is where their requests go, and ``managed_settings_file`` (a path relative to
the YAML file) is the Claude Code managed settings JSON served to them. The file's JSON is read,
checked and put in the control plane's canonical form (:func:`canonical_settings`), so the plan
compares checksums and shows a change only when the policy itself changed.
Route times are seconds (``30``, ``2.5``, ``"500ms"``, ``"5m"``);
a target is a provider name or ``{provider, weight, model}``. Provider options are strings
(numbers are accepted and written as typed); ``model_map`` may be a mapping.

Everything a field can hold is described by the file: a field left out means its default (no
limit, no override, the kind's base URL…), so removing a line from the file removes the setting.
A *section* left out entirely is not managed at all (see ``gwctl apply``).

:func:`load` returns a :class:`GatewayConfig` of protobuf messages (budgets sorted by period,
weights defaulted to 1…). What the control plane fills in (a kind's base URL, Vertex's region,
options in their canonical text) is not repeated here: ``gwctl apply`` asks the control plane
for the stored form of each provider, route and workspace (``Admin.Validate``) before comparing
them with what it has, so only real differences show. Every problem is reported with its path
(``routes[1].targts: unknown field; did you mean targets?``), all at once.

This module reads the file (YAML, :func:`load`); the result is :mod:`gwctl.config_model`, the
sections are read by :mod:`gwctl.config_sections` on top of the typed field readers of
:mod:`gwctl.config_fields`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gwctl.config_model import ConfigError, GatewayConfig
from gwctl.config_sections import Reader

# libyaml's parser when PyYAML was built with it (a 20,000-key file parses in about a second
# instead of half a minute); the constructors, and so the safety, are SafeLoader's either way.
_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeBase):  # type: ignore[valid-type,misc]
    """A safe loader that refuses a mapping key given twice (YAML would keep the last)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load(path: str) -> GatewayConfig:
    """Read and check ``path`` (``-`` = stdin); raises :class:`ConfigError`. Files the config
    names (``managed_settings_file``) are relative to its directory (stdin: the current one)."""
    import sys

    source = "<stdin>" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(source, ["not UTF-8 text"]) from None
    base_dir = Path.cwd() if path == "-" else Path(path).resolve().parent
    return loads(text, source, base_dir)


def loads(text: str, source: str = "<config>", base_dir: Path | None = None) -> GatewayConfig:
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"invalid YAML: {where}{problem}"]) from None
    return from_document(doc, source, base_dir)


def from_document(
    doc: Any, source: str = "<config>", base_dir: Path | None = None
) -> GatewayConfig:
    reader = Reader(base_dir or Path.cwd())
    config = reader.document(doc)
    if reader.problems:
        raise ConfigError(source, reader.problems)
    return config
