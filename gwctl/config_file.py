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
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gwapi import vocab
from gwapi.v1 import common_pb2
from gwctl import parse

SECTIONS = ("version", "providers", "routes", "workspaces", "keys")
PROVIDER_KINDS = vocab.choices(vocab.KIND)
ROUTE_MODES = vocab.choices(vocab.MODE)
REDIS_FAILURE_MODES = vocab.choices(vocab.REDIS_FAILURE)
ALERT_FORMATS = ("generic", "slack")

_LIMIT_FIELDS = ("budgets", "rpm", "rph", "tpm", "max_parallel")
_WORKSPACE_FIELDS = (
    "name",
    "description",
    "timezone",
    "redis_failure",
    "alert_webhook",
    "alert_format",
    "limits",
    "allowed_providers",
    "allowed_routes",
    "allowed_models",
    "sso_groups",
    "sso_priority",
    "member_limits",
    "member_provider",
    "member_route",
    "managed_settings_file",
)
_PROVIDER_FIELDS = ("name", "kind", "base_url", "api_key_env", "options")
_ROUTE_FIELDS = (
    "name",
    "mode",
    "targets",
    "retries",
    "retry_on",
    "timeout_connect",
    "timeout_first_byte",
    "timeout_idle",
    "cache_ttl",
    "cache_sampled",
    "breaker_failures",
    "breaker_cooldown",
)
_TARGET_FIELDS = ("provider", "weight", "model")
_KEY_FIELDS = ("workspace", "name", "provider", "route", "models", "limits")


class ConfigError(Exception):
    """The file cannot be used; ``problems`` lists every ``path: reason``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{shown}")


@dataclass(frozen=True)
class KeySpec:
    """A key as the file describes it (keys have no name-based identity on the server)."""

    workspace: str
    name: str
    provider: str = ""
    route: str = ""
    models: tuple[str, ...] = ()
    limits: common_pb2.Limits = field(default_factory=common_pb2.Limits)

    @property
    def ident(self) -> str:
        return f"{self.workspace}/{self.name}"


@dataclass
class GatewayConfig:
    """The desired state. ``sections`` are the lists the file has (even empty): only those are
    compared, and only those are pruned."""

    sections: set[str] = field(default_factory=set)
    providers: list[common_pb2.Provider] = field(default_factory=list)
    routes: list[common_pb2.Route] = field(default_factory=list)
    workspaces: list[common_pb2.Workspace] = field(default_factory=list)
    keys: list[KeySpec] = field(default_factory=list)


class _Invalid(Exception):
    """One problem at one path (collected by :class:`_Reader`)."""


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
    reader = _Reader(base_dir or Path.cwd())
    config = reader.document(doc)
    if reader.problems:
        raise ConfigError(source, reader.problems)
    return config


# -- reading ------------------------------------------------------------------------------------


def _unknown(path: str, key: object, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"expected one of {', '.join(allowed)}"
    return f"{path}.{key}: unknown field; {hint}" if path else f"{key}: unknown field; {hint}"


def _type_name(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    return {dict: "a mapping", list: "a list", str: "text", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def canonical_settings(text: str) -> str:
    """Managed settings in the control plane's stored form (``controlplane.domain.
    managed_settings``: one JSON object, keys sorted, no blanks, non-ASCII kept), so that the
    plan compares what the control plane will store. ``ValueError`` saying what is wrong."""
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    if not isinstance(doc, dict):
        raise ValueError(f"managed settings must be a JSON object, got {_type_name(doc)}")
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def settings_checksum(canonical: str) -> str:
    """SHA-256 hex of the canonical form, as the control plane computes it."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class _Reader:
    def __init__(self, base_dir: Path) -> None:
        self.problems: list[str] = []
        self.base_dir = base_dir

    def _try(self, fn: Callable[..., Any], *args: Any, default: Any = None, **kw: Any) -> Any:
        """``fn(*args, **kw)``, or ``default`` with the problem recorded."""
        try:
            return fn(*args, **kw)
        except _Invalid as exc:
            self.problems.append(str(exc))
            return default

    # scalars ----------------------------------------------------------------------------------

    @staticmethod
    def text(value: object, path: str, *, required: bool = False) -> str:
        if value is None:
            if required:
                raise _Invalid(f"{path}: required")
            return ""
        if not isinstance(value, str):
            raise _Invalid(f"{path}: expected text, got {_type_name(value)}")
        value = value.strip()
        if required and not value:
            raise _Invalid(f"{path}: must not be empty")
        return value

    @staticmethod
    def integer(value: object, path: str, low: int = 0, high: int = 2**31 - 1) -> int:
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"{path}: expected a whole number, got {_type_name(value)}")
        if not low <= value <= high:
            raise _Invalid(f"{path}: {value} is out of range ({low}..{high})")
        return value

    @staticmethod
    def boolean(value: object, path: str) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            raise _Invalid(f"{path}: expected true or false, got {_type_name(value)}")
        return value

    @staticmethod
    def choice(value: object, path: str, choices: tuple[str, ...], default: str) -> str:
        text = _Reader.text(value, path) or default
        if text not in choices:
            raise _Invalid(f"{path}: {text!r} is not one of {', '.join(choices)}")
        return text

    @staticmethod
    def seconds(value: object, path: str, *, whole: bool) -> int:
        """Seconds (number or text with a unit) → ms, or whole seconds when ``whole``."""
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise _Invalid(f"{path}: expected seconds, got {_type_name(value)}")
        text = str(value)
        try:
            return parse.parse_whole_seconds(text) if whole else parse.parse_seconds_ms(text)
        except argparse.ArgumentTypeError as exc:
            raise _Invalid(f"{path}: {exc}") from None

    def mapping(
        self, value: object, path: str, allowed: tuple[str, ...], *, what: str = "a mapping"
    ) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _Invalid(f"{path}: expected {what}, got {_type_name(value)}")
        for key in value:
            if key not in allowed:
                self.problems.append(_unknown(path, key, allowed))
        return {k: v for k, v in value.items() if k in allowed}

    @staticmethod
    def items(value: object, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise _Invalid(f"{path}: expected a list, got {_type_name(value)}")
        return value

    # sections ---------------------------------------------------------------------------------

    def document(self, doc: Any) -> GatewayConfig:
        config = GatewayConfig()
        if doc is None:
            self.problems.append("the file is empty: expected providers, routes, workspaces, keys")
            return config
        if not isinstance(doc, dict):
            self.problems.append(f"expected a mapping at the top, got {_type_name(doc)}")
            return config
        top = self.mapping(doc, "", SECTIONS)
        version = top.get("version", 1)
        if version != 1:
            self.problems.append(f"version: {version!r} is not supported (use 1)")
        readers: dict[str, Callable[[Any, str], Any]] = {
            "providers": self.provider,
            "routes": self.route,
            "workspaces": self.workspace,
            "keys": self.key,
        }
        for section, read in readers.items():
            if section not in top:
                continue
            config.sections.add(section)
            entries = self._try(self.items, top[section], section, default=[])
            out: list[Any] = getattr(config, section)
            for i, entry in enumerate(entries):
                item = self._try(read, entry, f"{section}[{i}]")
                if item is not None:
                    out.append(item)
            self._no_duplicates(section, out)
        return config

    def _no_duplicates(self, section: str, items: list[Any]) -> None:
        seen: set[str] = set()
        for item in items:
            ident = item.ident if isinstance(item, KeySpec) else item.name
            if ident in seen:
                self.problems.append(f"{section}: {ident!r} is listed twice")
            seen.add(ident)

    def limits(self, value: object, path: str) -> common_pb2.Limits:
        m = self.mapping(value, path, _LIMIT_FIELDS)
        limits = common_pb2.Limits()
        raw = m.get("budgets")
        budgets = [raw] if isinstance(raw, (str, int, float)) and not isinstance(raw, bool) else raw
        by_period: dict[int, common_pb2.Budget] = {}
        for i, b in enumerate(
            self._try(lambda: self.items(budgets, f"{path}.budgets"), default=[])
        ):
            where = f"{path}.budgets[{i}]"
            if isinstance(b, bool) or not isinstance(b, (str, int, float)):
                self.problems.append(f'{where}: expected a budget such as "50/day"')
                continue
            try:
                budget = parse.parse_budget(str(b))
            except argparse.ArgumentTypeError as exc:
                self.problems.append(f"{where}: {exc}")
                continue
            if budget.period in by_period:
                self.problems.append(
                    f"{where}: a second {parse.PERIOD_NAMES[budget.period]} budget"
                )
            by_period[budget.period] = budget
        limits.budgets.extend(by_period[p] for p in sorted(by_period))
        for name in _LIMIT_FIELDS[1:]:
            value = self._try(self.integer, m.get(name), f"{path}.{name}", default=0)
            setattr(limits, name, value)
        return limits

    def workspace(self, value: object, path: str) -> common_pb2.Workspace:
        m = self.mapping(value, path, _WORKSPACE_FIELDS, what="a workspace mapping")
        return common_pb2.Workspace(
            name=self.text(m.get("name"), f"{path}.name", required=True),
            description=self._try(
                self.text, m.get("description"), f"{path}.description", default=""
            ),
            timezone=self._try(self.text, m.get("timezone"), f"{path}.timezone", default=""),
            redis_failure=self._try(
                self.choice,
                m.get("redis_failure"),
                f"{path}.redis_failure",
                REDIS_FAILURE_MODES,
                "closed",
                default="closed",
            ),
            alert_webhook=self._try(
                self.text, m.get("alert_webhook"), f"{path}.alert_webhook", default=""
            ),
            alert_format=self._try(
                self.choice,
                m.get("alert_format"),
                f"{path}.alert_format",
                ALERT_FORMATS,
                "generic",
                default="generic",
            ),
            limits=self._try(lambda: self.limits(m.get("limits"), f"{path}.limits"))
            or common_pb2.Limits(),
            allowed_providers=self.text_list(m, "allowed_providers", path),
            allowed_routes=self.text_list(m, "allowed_routes", path),
            allowed_models=self.text_list(m, "allowed_models", path),
            **self.workspace_signin(m, path),
        )

    def workspace_signin(self, m: dict[str, Any], path: str) -> dict[str, Any]:
        """The sign-in fields of a workspace, as Workspace keyword arguments."""
        provider = self._try(
            self.text, m.get("member_provider"), f"{path}.member_provider", default=""
        )
        route = self._try(self.text, m.get("member_route"), f"{path}.member_route", default="")
        if provider and route:
            self.problems.append(f"{path}: give at most one of member_provider or member_route")
        return {
            "sso_groups": self.text_list(m, "sso_groups", path),
            "sso_priority": self._try(
                self.integer, m.get("sso_priority"), f"{path}.sso_priority", 0, 1_000_000, default=0
            ),
            "member_limits": self._try(
                lambda: self.limits(m.get("member_limits"), f"{path}.member_limits")
            )
            or common_pb2.Limits(),
            "member_provider": provider,
            "member_route": route,
            "managed_settings_json": self._try(
                self.managed_settings,
                m.get("managed_settings_file"),
                f"{path}.managed_settings_file",
                default="",
            ),
        }

    def managed_settings(self, value: object, path: str) -> str:
        """The canonical text of the JSON file ``value`` names (relative to the YAML file)."""
        name = self.text(value, path)
        if not name:
            return ""
        file = self.base_dir / name
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise _Invalid(f"{path}: cannot read {name}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise _Invalid(f"{path}: {name} is not UTF-8 text") from None
        try:
            return canonical_settings(text)
        except ValueError as exc:
            raise _Invalid(f"{path}: {name}: {exc}") from None

    def text_list(self, m: dict[str, Any], name: str, path: str) -> list[str]:
        """A list of non-empty texts, trimmed, duplicates dropped in order (as stored)."""
        values = self._try(lambda: self.items(m.get(name), f"{path}.{name}"), default=[])
        texts = [
            self._try(self.text, x, f"{path}.{name}[{i}]", required=True, default="")
            for i, x in enumerate(values)
        ]
        return list(dict.fromkeys(t for t in texts if t))

    def option_value(self, key: str, value: object, path: str) -> str:
        if key == "model_map" and isinstance(value, dict):
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise _Invalid(f"{path}: model_map maps model ids (text) to model ids (text)")
            return json.dumps(value, sort_keys=True, separators=(",", ":"))
        if key == "model_map" and isinstance(value, str):
            try:
                mapping = json.loads(value)
            except ValueError:
                raise _Invalid(
                    f"{path}: model_map is not valid JSON (or write it as a mapping)"
                ) from None
            return json.dumps(mapping, sort_keys=True, separators=(",", ":"))
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float, str)):
            text = str(value).strip()
            if not text:
                raise _Invalid(f"{path}: empty; leave the option out for its default")
            return text
        raise _Invalid(f"{path}: expected text or a number, got {_type_name(value)}")

    def provider(self, value: object, path: str) -> common_pb2.Provider:
        m = self.mapping(value, path, _PROVIDER_FIELDS, what="a provider mapping")
        name = self.text(m.get("name"), f"{path}.name", required=True)
        kind = self._try(self.choice, m.get("kind"), f"{path}.kind", PROVIDER_KINDS, "", default="")
        if not kind and m.get("kind") is None:
            self.problems.append(f"{path}.kind: required ({', '.join(PROVIDER_KINDS)})")
        options: dict[str, str] = {}
        raw = m.get("options")
        if raw is not None and not isinstance(raw, dict):
            self.problems.append(f"{path}.options: expected a mapping, got {_type_name(raw)}")
            raw = None
        for key, v in (raw or {}).items():
            if not isinstance(key, str):
                self.problems.append(f"{path}.options: option names are text, got {key!r}")
                continue
            text = self._try(self.option_value, key, v, f"{path}.options.{key}")
            if text is not None:
                options[key] = text
        base_url = self._try(lambda: self.text(m.get("base_url"), f"{path}.base_url"), default="")
        return common_pb2.Provider(
            name=name,
            kind=kind,
            base_url=base_url,
            api_key_env=self._try(
                self.text, m.get("api_key_env"), f"{path}.api_key_env", default=""
            ),
            options=options,
        )

    def target(self, value: object, path: str) -> common_pb2.RouteTarget:
        if isinstance(value, str):
            return common_pb2.RouteTarget(provider=self.text(value, path, required=True), weight=1)
        m = self.mapping(value, path, _TARGET_FIELDS, what="a provider name or a mapping")
        weight = self._try(self.integer, m.get("weight"), f"{path}.weight", default=0)
        return common_pb2.RouteTarget(
            provider=self.text(m.get("provider"), f"{path}.provider", required=True),
            weight=weight or 1,
            model=self._try(lambda: self.text(m.get("model"), f"{path}.model"), default=""),
        )

    def retry_on(self, value: object, path: str) -> list[int]:
        if value is None:
            return []
        if isinstance(value, str):
            try:
                return sorted(set(parse.parse_statuses(value)))
            except argparse.ArgumentTypeError as exc:
                raise _Invalid(f"{path}: {exc}") from None
        statuses = {
            self.integer(s, f"{path}[{i}]", 400, 599) for i, s in enumerate(self.items(value, path))
        }
        return sorted(statuses)

    def route(self, value: object, path: str) -> common_pb2.Route:
        m = self.mapping(value, path, _ROUTE_FIELDS, what="a route mapping")
        route = common_pb2.Route(
            name=self.text(m.get("name"), f"{path}.name", required=True),
            mode=self._try(
                self.choice,
                m.get("mode"),
                f"{path}.mode",
                ROUTE_MODES,
                "fallback",
                default="fallback",
            ),
        )
        if m.get("targets") is None:
            self.problems.append(f"{path}.targets: required (at least one provider)")
        for i, t in enumerate(
            self._try(lambda: self.items(m.get("targets"), f"{path}.targets"), default=[])
        ):
            target = self._try(self.target, t, f"{path}.targets[{i}]")
            if target is not None:
                route.targets.append(target)
        route.retry_on.extend(
            self._try(lambda: self.retry_on(m.get("retry_on"), f"{path}.retry_on"), default=[])
        )
        ints: Mapping[str, Callable[[], int]] = {
            "retries": lambda: self.integer(m.get("retries"), f"{path}.retries"),
            "timeout_connect_ms": lambda: self.seconds(
                m.get("timeout_connect"), f"{path}.timeout_connect", whole=False
            ),
            "timeout_first_byte_ms": lambda: self.seconds(
                m.get("timeout_first_byte"), f"{path}.timeout_first_byte", whole=False
            ),
            "timeout_idle_ms": lambda: self.seconds(
                m.get("timeout_idle"), f"{path}.timeout_idle", whole=False
            ),
            "cache_ttl_s": lambda: self.seconds(
                m.get("cache_ttl"), f"{path}.cache_ttl", whole=True
            ),
            "breaker_failures": lambda: self.integer(
                m.get("breaker_failures"), f"{path}.breaker_failures"
            ),
            "breaker_cooldown_s": lambda: self.seconds(
                m.get("breaker_cooldown"), f"{path}.breaker_cooldown", whole=True
            ),
        }
        for name, read in ints.items():
            setattr(route, name, self._try(read, default=0))
        route.cache_sampled = self._try(
            self.boolean, m.get("cache_sampled"), f"{path}.cache_sampled", default=False
        )
        return route

    def key(self, value: object, path: str) -> KeySpec:
        m = self.mapping(value, path, _KEY_FIELDS, what="a key mapping")
        provider = self._try(lambda: self.text(m.get("provider"), f"{path}.provider"), default="")
        route = self._try(lambda: self.text(m.get("route"), f"{path}.route"), default="")
        if bool(provider) == bool(route):
            self.problems.append(f"{path}: give exactly one of provider or route")
        models = [
            self._try(self.text, x, f"{path}.models[{i}]", required=True, default="")
            for i, x in enumerate(
                self._try(lambda: self.items(m.get("models"), f"{path}.models"), default=[])
            )
        ]
        return KeySpec(
            workspace=self.text(m.get("workspace"), f"{path}.workspace", required=True),
            name=self.text(m.get("name"), f"{path}.name", required=True),
            provider=provider,
            route=route,
            models=tuple(models),
            limits=self._try(lambda: self.limits(m.get("limits"), f"{path}.limits"))
            or common_pb2.Limits(),
        )
