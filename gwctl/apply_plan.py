"""The plan of ``gwctl apply`` (pure): what the file changes against what the control plane has.

:func:`plan` compares a normalised :class:`~gwctl.config_model.GatewayConfig` with a
:class:`State` and orders the changes (the rules are in :mod:`gwctl.apply`);
:func:`render_plan` prints it like ``terraform plan``. Nothing here talks to the control plane.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gwapi.v1 import common_pb2
from gwctl.apply_views import (
    created_fields,
    diff,
    key_view,
    key_view_spec,
    provider_view,
    route_view,
    workspace_view,
)
from gwctl.cli import CommandError
from gwctl.config_model import GatewayConfig, KeySpec

KINDS = ("provider", "route", "workspace", "key")  # dependency order
SECTION_OF = {"provider": "providers", "route": "routes", "workspace": "workspaces", "key": "keys"}
ACTION_WORDS = {"+": "create", "~": "update", "-": "delete"}
# Route view field -> Route message field, for the update mask.
_ROUTE_PATHS = {
    "mode": "mode",
    "targets": "targets",
    "retries": "retries",
    "retry_on": "retry_on",
    "timeout_connect": "timeout_connect_ms",
    "timeout_first_byte": "timeout_first_byte_ms",
    "timeout_idle": "timeout_idle_ms",
    "cache_ttl": "cache_ttl_s",
    "cache_sampled": "cache_sampled",
    "breaker_failures": "breaker_failures",
    "breaker_cooldown": "breaker_cooldown_s",
}


@dataclass
class State:
    """What the control plane has (active keys only)."""

    providers: list[common_pb2.Provider] = field(default_factory=list)
    routes: list[common_pb2.Route] = field(default_factory=list)
    workspaces: list[common_pb2.Workspace] = field(default_factory=list)
    keys: list[common_pb2.VirtualKey] = field(default_factory=list)


@dataclass
class Change:
    action: str  # "+", "~" or "-"
    kind: str  # provider | route | workspace | key
    name: str  # "ws/name" for keys
    fields: list[tuple[str, str, str]] = field(default_factory=list)  # (field, before, after)
    message: Any = None  # the pb message to create or update
    paths: list[str] = field(default_factory=list)  # update mask
    key_id: str = ""  # keys: the id to update or delete

    @property
    def title(self) -> str:
        suffix = f" ({self.key_id})" if self.kind == "key" and self.key_id else ""
        return f"{self.action} {self.kind} {self.name}{suffix}"

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "action": ACTION_WORDS[self.action],
            "kind": self.kind,
            "name": self.name,
        }
        if self.key_id:
            doc["id"] = self.key_id
        if self.action == "~":
            doc["changes"] = {f: {"before": b, "after": a} for f, b, a in self.fields}
        elif self.action == "+":
            doc["settings"] = {f: a for f, _, a in self.fields}
        return doc


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)  # would be deleted with --prune
    keys_managed: bool = False  # the file has a keys section

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)


def plan(config: GatewayConfig, state: State, *, prune: bool = False) -> Plan:
    """The changes that make ``state`` match ``config`` (deletes only when ``prune``).

    Raises :class:`CommandError` for what no change can fix (a provider's kind, ambiguous keys).
    """
    check_references(config)
    result = Plan(keys_managed="keys" in config.sections)
    if "providers" in config.sections:
        _plan_named(result, "provider", config.providers, state.providers, provider_view, prune)
    if "routes" in config.sections:
        _plan_named(result, "route", config.routes, state.routes, route_view, prune)
    if "workspaces" in config.sections:
        _plan_named(result, "workspace", config.workspaces, state.workspaces, workspace_view, prune)
    if "keys" in config.sections:
        _plan_keys(result, config.keys, state.keys, prune)
    order = {k: i for i, k in enumerate(KINDS)}
    creates = [c for c in result.changes if c.action != "-"]
    deletes = [c for c in result.changes if c.action == "-"]
    creates.sort(key=lambda c: order[c.kind])  # stable: file order within a kind
    deletes.sort(key=lambda c: -order[c.kind])
    result.changes = creates + deletes
    return result


def check_references(config: GatewayConfig) -> None:
    """Within the sections the file has, every name an item refers to must be in the file too
    (otherwise --prune would delete it, or the control plane would refuse it half-way)."""
    problems: list[str] = []

    def check(section: str, names: set[str], ref: str, where: str, what: str) -> None:
        if ref and section in config.sections and ref not in names:
            problems.append(f"{where}: {what} {ref!r} is not in the file's {section}")

    providers = {p.name for p in config.providers}
    routes = {r.name for r in config.routes}
    workspaces = {w.name for w in config.workspaces}
    for r in config.routes:
        for t in r.targets:
            check("providers", providers, t.provider, f"route {r.name}", "target provider")
    for w in config.workspaces:
        for p in w.allowed_providers:
            check("providers", providers, p, f"workspace {w.name}", "allowed provider")
        for r_name in w.allowed_routes:
            check("routes", routes, r_name, f"workspace {w.name}", "allowed route")
        check("providers", providers, w.member_provider, f"workspace {w.name}", "member provider")
        check("routes", routes, w.member_route, f"workspace {w.name}", "member route")
    for k in config.keys:
        where = f"key {k.ident}"
        check("workspaces", workspaces, k.workspace, where, "workspace")
        check("routes", routes, k.route, where, "route")
        check("providers", providers, k.provider, where, "provider")
    if problems:
        raise CommandError(
            "the file refers to what it does not define:\n  " + "\n  ".join(problems)
        )


def _plan_named(
    result: Plan,
    kind: str,
    desired: list[Any],
    actual: list[Any],
    view: Callable[[Any], dict[str, str]],
    prune: bool,
) -> None:
    have = {m.name: m for m in actual}
    wanted = {m.name for m in desired}
    for msg in desired:
        current = have.get(msg.name)
        if current is None:
            result.changes.append(Change("+", kind, msg.name, created_fields(view(msg)), msg))
            continue
        fields = diff(view(current), view(msg))
        if not fields:
            continue
        if kind == "provider" and current.kind != msg.kind:
            raise CommandError(
                f"provider {msg.name!r} is {current.kind} on the control plane but {msg.kind} in "
                "the file: a provider's kind cannot change (give it a new name, or delete it)"
            )
        moved = [(old, new) for name, old, new in fields if name == "base_url"]
        if kind == "provider" and current.has_secret and moved:
            raise CommandError(
                f"provider {msg.name!r} has a key stored on the control plane and the file "
                f"changes its base URL ({moved[0][0]} → {moved[0][1]}): applying would send that "
                f"key to the new host. Move it yourself with `gwctl providers update {msg.name} "
                "--base-url URL --api-key-stdin` (re-entering the key) or `--keep-secret`, then "
                "apply again"
            )
        result.changes.append(Change("~", kind, msg.name, fields, msg, _paths(kind, fields)))
    for msg in actual:
        if msg.name not in wanted:
            if prune:
                result.changes.append(Change("-", kind, msg.name))
            else:
                result.unmanaged.append(f"{kind} {msg.name}")


def _paths(kind: str, fields: list[tuple[str, str, str]]) -> list[str]:
    paths: list[str] = []
    for name, _, _ in fields:
        if kind == "route":
            path = _ROUTE_PATHS[name]
        elif kind == "provider" and name.startswith("options."):
            path = "options"  # the whole map: atomic, and the server checks it as a whole
        elif kind == "key" and name == "target":
            paths += ["provider", "route"]
            continue
        elif kind == "workspace" and name == "member_target":
            paths += ["member_provider", "member_route"]
            continue
        elif kind == "workspace" and name == "managed_settings":
            path = "managed_settings_json"
        else:
            path = name
        if path not in paths:
            paths.append(path)
    return paths


def _plan_keys(
    result: Plan, desired: list[KeySpec], actual: list[common_pb2.VirtualKey], prune: bool
) -> None:
    by_ident: dict[str, list[common_pb2.VirtualKey]] = {}
    for k in actual:
        if not k.revoked_at_ms:
            by_ident.setdefault(f"{k.workspace}/{k.name}", []).append(k)
    wanted = {k.ident for k in desired}
    for spec in desired:
        matches = by_ident.get(spec.ident, [])
        if len(matches) > 1:
            raise CommandError(
                f"key {spec.ident}: {len(matches)} active keys have this name "
                f"({', '.join(k.id for k in matches)}); rename or revoke all but one"
            )
        if not matches:
            result.changes.append(
                Change("+", "key", spec.ident, created_fields(key_view_spec(spec)), spec)
            )
            continue
        current = matches[0]
        fields = diff(key_view(current), key_view_spec(spec))
        if fields:
            message = common_pb2.VirtualKey(
                id=current.id,
                provider=spec.provider,
                route=spec.route,
                models=list(spec.models),
                limits=spec.limits,
            )
            result.changes.append(
                Change("~", "key", spec.ident, fields, message, _paths("key", fields), current.id)
            )
    for ident, keys in sorted(by_ident.items()):
        if ident in wanted:
            continue
        for k in keys:
            if prune:
                result.changes.append(Change("-", "key", ident, key_id=k.id))
            else:
                result.unmanaged.append(f"key {ident} ({k.id})")


def render_plan(p: Plan, *, prune: bool) -> str:
    lines: list[str] = []
    for c in p.changes:
        lines.append(c.title)
        for name, before, after in c.fields:
            lines.append(
                f"    {name}: {after}" if c.action == "+" else f"    {name}: {before} → {after}"
            )
    if p.unmanaged and not prune:
        lines.append("")
        lines.append(f"Not in the file (kept; --prune deletes them): {', '.join(p.unmanaged)}")
    if not p.changes:
        lines.append("No changes.")
    else:
        lines.append("")
        lines.append(
            f"Plan: {p.count('+')} to create, {p.count('~')} to update, {p.count('-')} to delete."
        )
    return "\n".join(lines).lstrip("\n")
