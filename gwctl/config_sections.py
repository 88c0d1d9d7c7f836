"""The sections of the gateway file (providers, routes, workspaces, keys) and their fields.

:class:`Reader` reads each item into the protobuf message the control plane takes, filling in
the file's own defaults; the format is described in :mod:`gwctl.config_file`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import Any

from gwapi import vocab
from gwapi.v1 import common_pb2
from gwctl import parse
from gwctl.config_fields import FieldReader, Invalid, type_name
from gwctl.config_model import GatewayConfig, KeySpec, canonical_settings

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


class Reader(FieldReader):
    """Reads the file's sections into protobuf messages (see :mod:`gwctl.config_file`)."""

    def document(self, doc: Any) -> GatewayConfig:
        config = GatewayConfig()
        if doc is None:
            self.problems.append("the file is empty: expected providers, routes, workspaces, keys")
            return config
        if not isinstance(doc, dict):
            self.problems.append(f"expected a mapping at the top, got {type_name(doc)}")
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
            raise Invalid(f"{path}: cannot read {name}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise Invalid(f"{path}: {name} is not UTF-8 text") from None
        try:
            return canonical_settings(text)
        except ValueError as exc:
            raise Invalid(f"{path}: {name}: {exc}") from None

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
                raise Invalid(f"{path}: model_map maps model ids (text) to model ids (text)")
            return json.dumps(value, sort_keys=True, separators=(",", ":"))
        if key == "model_map" and isinstance(value, str):
            try:
                mapping = json.loads(value)
            except ValueError:
                raise Invalid(
                    f"{path}: model_map is not valid JSON (or write it as a mapping)"
                ) from None
            return json.dumps(mapping, sort_keys=True, separators=(",", ":"))
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float, str)):
            text = str(value).strip()
            if not text:
                raise Invalid(f"{path}: empty; leave the option out for its default")
            return text
        raise Invalid(f"{path}: expected text or a number, got {type_name(value)}")

    def provider(self, value: object, path: str) -> common_pb2.Provider:
        m = self.mapping(value, path, _PROVIDER_FIELDS, what="a provider mapping")
        name = self.text(m.get("name"), f"{path}.name", required=True)
        kind = self._try(self.choice, m.get("kind"), f"{path}.kind", PROVIDER_KINDS, "", default="")
        if not kind and m.get("kind") is None:
            self.problems.append(f"{path}.kind: required ({', '.join(PROVIDER_KINDS)})")
        options: dict[str, str] = {}
        raw = m.get("options")
        if raw is not None and not isinstance(raw, dict):
            self.problems.append(f"{path}.options: expected a mapping, got {type_name(raw)}")
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
                raise Invalid(f"{path}: {exc}") from None
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
