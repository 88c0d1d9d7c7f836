"""``gwctl apply -f gateway.yaml [--dry-run] [--prune] [--yes]`` — the whole gateway as one file.

The file (see :mod:`gwctl.config_file` and ``examples/gateway.yaml``) lists providers, routes,
workspaces and keys. ``apply`` reads what the control plane has, prints a plan like ``terraform
plan`` and, once confirmed (``--yes``, or ``y`` on a terminal), makes the control plane match::

    + route primary                      created
        targets: anthropic → bedrock (eu.anthropic.claude-sonnet-4-5-20250929-v1:0)
    ~ workspace platform                 updated, field by field
        limits.budgets: $50/day → $80/day
    - key platform/old-bot (key_…)       deleted: only with --prune

Rules:

* **Identity.** Providers, routes and workspaces by name; keys by workspace + name among the
  *active* keys (revoked ones are ignored; two active keys with one name are an error).
* **Order.** Creates and updates go providers → routes → workspaces → keys, so everything a
  change refers to exists first; deletes then go the other way (keys → workspaces → routes →
  providers), after the updates that stopped using what they delete.
* **Idempotent.** The file is normalised to the form the control plane stores (defaults filled
  in, budgets sorted…: the control plane itself says what it would store, or why it refuses,
  with ``Admin.Validate`` before anything is planned), so applying the same file twice plans
  nothing the second time: ``No changes.``
* **Declarative per field, managed per section.** A field missing from an item means its default
  (so deleting a line removes that setting). A section missing from the file (no ``keys:`` at
  all) is not looked at; ``keys: []`` manages keys and, with ``--prune``, deletes them all.
  Without ``--prune`` nothing is deleted; objects the file does not mention are listed as a note.
* **Sign-in.** A workspace's ``sso_groups``, ``sso_priority``, ``member_limits``,
  ``member_provider`` / ``member_route`` are compared like its other fields; its
  ``managed_settings_file`` by the checksum of the policy's canonical form (a reformatted file is
  no change).
* **Secrets.** ``apply`` never creates, rotates or shows a secret for an existing key: it only
  changes that key's limits, target (provider/route) and model allow-list. A key in the file that
  does not exist yet is created, and its secret (``gw-…``) is printed once, right after it is
  created — on stdout, as ``secret: gw-…`` (table output) or in ``created_keys[].key`` (``-o
  json``) — and can never be shown again. Key expiry is not part of the file (it is relative to
  creation): set it with ``gwctl keys update --expires``.
* ``--dry-run`` prints the plan and changes nothing. ``-f -`` reads the file from stdin.
* A provider's kind cannot change: the plan refuses (delete it, or give it a new name). Nor does
  ``apply`` move a provider that holds a stored key to another base URL (that would send the key
  to the new host): the plan refuses and says how to do it with ``gwctl providers update``.
* If a change is refused mid-way, what was done stays done and the error says how far it got;
  fix the file and apply again (the plan then shows only what is left).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from gwapi.v1 import admin_pb2, common_pb2
from gwclient.client import GatewayClient
from gwclient.errors import ClientError
from gwctl import output as out
from gwctl import parse
from gwctl.cli import CommandError, Subparsers, confirm, is_json, leaf
from gwctl.config_file import ConfigError, GatewayConfig, KeySpec, load, settings_checksum

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


def register(subparsers: Subparsers) -> None:
    p = leaf(
        subparsers,
        "apply",
        "make the gateway match a declarative file (prints a plan first)",
    )
    p.add_argument(
        "-f", "--file", required=True, metavar="FILE", help="gateway YAML file ('-' = stdin)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument(
        "--prune",
        action="store_true",
        help="also delete what the file does not mention (in the sections it has)",
    )
    p.add_argument("--yes", action="store_true", help="apply without asking for confirmation")
    p.set_defaults(handler=run)


# -- state and plan (pure) ----------------------------------------------------------------------


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


def _show(value: object) -> str:
    if value == "" or value is None:
        return '""'
    return str(value)


def _limits_view(limits: common_pb2.Limits, prefix: str = "limits") -> dict[str, str]:
    return {
        f"{prefix}.budgets": out.format_budgets(limits),
        f"{prefix}.rpm": out.format_limit(limits.rpm),
        f"{prefix}.rph": out.format_limit(limits.rph),
        f"{prefix}.tpm": out.format_limit(limits.tpm),
        f"{prefix}.max_parallel": out.format_limit(limits.max_parallel),
    }


def _settings_view(ws: common_pb2.Workspace) -> str:
    """``sha256 1a2b3c4d5e6f7a8b… (123 bytes)``: the file's policy is canonical already, so its
    checksum is the one the control plane will store."""
    if not ws.managed_settings_json:
        return "-"
    checksum = ws.managed_settings_checksum or settings_checksum(ws.managed_settings_json)
    return f"sha256 {checksum[:16]}… ({len(ws.managed_settings_json.encode('utf-8'))} bytes)"


def _member_target(ws: common_pb2.Workspace) -> str:
    if ws.member_route:
        return f"route:{ws.member_route}"
    return f"provider:{ws.member_provider}" if ws.member_provider else "default"


def workspace_view(ws: common_pb2.Workspace) -> dict[str, str]:
    return {
        "description": _show(ws.description),
        "timezone": ws.timezone or "UTC",
        "redis_failure": ws.redis_failure or "closed",
        "alert_webhook": _show(ws.alert_webhook),
        "alert_format": ws.alert_format or "generic",
        **_limits_view(ws.limits),
        "allowed_providers": ", ".join(ws.allowed_providers) or "any",
        "allowed_routes": ", ".join(ws.allowed_routes) or "any",
        "allowed_models": ", ".join(ws.allowed_models) or "any",
        "sso_groups": ", ".join(ws.sso_groups) or "-",
        "sso_priority": str(ws.sso_priority) if ws.sso_priority else "default",
        **_limits_view(ws.member_limits, "member_limits"),
        "member_target": _member_target(ws),
        "managed_settings": _settings_view(ws),
    }


def provider_view(p: common_pb2.Provider) -> dict[str, str]:
    view = {"kind": p.kind, "base_url": _show(p.base_url), "api_key_env": _show(p.api_key_env)}
    view.update({f"options.{k}": v for k, v in sorted(p.options.items())})
    return view


def _target_text(t: common_pb2.RouteTarget) -> str:
    text = t.provider
    if (t.weight or 1) != 1:
        text += f"×{t.weight}"
    return f"{text} ({t.model})" if t.model else text


def route_view(r: common_pb2.Route) -> dict[str, str]:
    joiner = ", " if r.mode == "loadbalance" else " → "
    return {
        "mode": r.mode or "fallback",
        "targets": joiner.join(_target_text(t) for t in r.targets) or '""',
        "retries": str(r.retries),
        "retry_on": ",".join(str(s) for s in sorted(r.retry_on)) or "default",
        "timeout_connect": parse.format_seconds_ms(r.timeout_connect_ms),
        "timeout_first_byte": parse.format_seconds_ms(r.timeout_first_byte_ms),
        "timeout_idle": parse.format_seconds_ms(r.timeout_idle_ms),
        "cache_ttl": f"{r.cache_ttl_s}s" if r.cache_ttl_s else "off",
        "cache_sampled": str(r.cache_sampled).lower(),
        "breaker_failures": str(r.breaker_failures) if r.breaker_failures else "default",
        "breaker_cooldown": f"{r.breaker_cooldown_s}s" if r.breaker_cooldown_s else "default",
    }


def _key_target(provider: str, route: str) -> str:
    return f"route:{route}" if route else f"provider:{provider}"


def key_view_spec(k: KeySpec) -> dict[str, str]:
    return {
        "target": _key_target(k.provider, k.route),
        "models": ", ".join(k.models) or "all",
        **_limits_view(k.limits),
    }


def key_view(k: common_pb2.VirtualKey) -> dict[str, str]:
    return {
        "target": _key_target(k.provider, k.route),
        "models": ", ".join(k.models) or "all",
        **_limits_view(k.limits),
    }


def _diff(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str, str]]:
    names = list(after) + [n for n in before if n not in after]
    return [
        (n, before.get(n, "(none)"), after.get(n, "(none)"))
        for n in names
        if before.get(n) != after.get(n)
    ]


_DEFAULTS = {'""', "default", "off", "false", "no limit", "-", "all", "any", "UTC", "closed", "0",
             "generic"}  # fmt: skip


def _created(view: dict[str, str]) -> list[tuple[str, str, str]]:
    """The settings worth showing for a new object: those not at their default."""
    return [(n, "", v) for n, v in view.items() if v not in _DEFAULTS or n in ("kind", "target")]


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
            result.changes.append(Change("+", kind, msg.name, _created(view(msg)), msg))
            continue
        fields = _diff(view(current), view(msg))
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
                Change("+", "key", spec.ident, _created(key_view_spec(spec)), spec)
            )
            continue
        current = matches[0]
        fields = _diff(key_view(current), key_view_spec(spec))
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


# -- execution ----------------------------------------------------------------------------------


async def stored_forms(client: GatewayClient, config: GatewayConfig) -> None:
    """Replace the file's providers, routes and workspaces by the form the control plane would
    store (its defaults filled in, options normalised), asking it (``Admin.Validate``, which
    writes nothing); raises :class:`CommandError` listing every object it would refuse, and
    why. The plan then compares like with like, and gwctl holds none of the control plane's
    rules or defaults."""
    if not (config.providers or config.routes or config.workspaces):
        return
    results = await client.validate(config.providers, config.routes, config.workspaces)
    refused = [f"{r.kind} {r.name}: {r.error}" for r in results if r.error]
    if refused:
        raise CommandError(
            "the control plane would refuse the file (nothing was changed):\n  "
            + "\n  ".join(refused)
        )
    stored = {(r.kind, r.name): getattr(r, r.kind) for r in results}
    config.providers = [stored["provider", p.name] for p in config.providers]
    config.routes = [stored["route", r.name] for r in config.routes]
    config.workspaces = [stored["workspace", w.name] for w in config.workspaces]


async def fetch_state(client: GatewayClient, config: GatewayConfig) -> State:
    state = State()
    if "providers" in config.sections:
        state.providers = await client.list_providers()
    if "routes" in config.sections:
        state.routes = await client.list_routes()
    if "workspaces" in config.sections:
        state.workspaces = await client.list_workspaces()
    if "keys" in config.sections:
        state.keys = await client.list_keys("", include_revoked=False)
    return state


@dataclass
class CreatedKey:
    workspace: str
    name: str
    id: str
    secret: str


# Key calls in flight at once. The control plane serves them in worker threads under one GIL, so
# more in flight adds no throughput, only latency per call: at 16 × 500 keys a loaded control
# plane took more than the client's 10 s deadline per call (a 20,000-key apply failed midway).
KEY_CONCURRENCY = 4
KEYS_PER_CALL = 500  # new keys of one workspace per CreateKeys call


def _batches(changes: list[Change]) -> list[list[Change]]:
    """Consecutive key changes (each key once) form one batch, run concurrently; every other
    change is a batch of its own, run in order (later changes may depend on it)."""
    batches: list[list[Change]] = []
    names: set[str] = set()
    for change in changes:
        last = batches[-1] if batches else None
        if (
            change.kind == "key"
            and last is not None
            and last[0].kind == "key"
            and change.name not in names
        ):
            last.append(change)
        else:
            batches.append([change])
            names = set()
        names.add(change.name)
    return batches


def _units(batch: list[Change]) -> list[list[Change]]:
    """A batch's calls: new keys grouped by workspace (``KEYS_PER_CALL`` per call), every
    other change alone."""
    units: list[list[Change]] = []
    by_workspace: dict[str, list[Change]] = {}
    for change in batch:
        if change.kind == "key" and change.action == "+":
            group = by_workspace.setdefault(change.message.workspace, [])
            if len(group) == KEYS_PER_CALL:
                units.append(group)
                group = by_workspace[change.message.workspace] = []
            group.append(change)
        else:
            units.append([change])
    return units + [g for g in by_workspace.values() if g]


async def execute(
    client: GatewayClient,
    p: Plan,
    *,
    on_done: Callable[[Change, CreatedKey | None], None] = lambda c, k: None,
    concurrency: int = KEY_CONCURRENCY,
) -> list[CreatedKey]:
    """Apply ``p.changes`` in order; ``on_done`` is told after each one, in the plan's order
    (with a new key's secret, which the caller must show at once). Key changes are pipelined,
    ``concurrency`` calls at a time, and new keys go ``KEYS_PER_CALL`` per ``CreateKeys`` call
    (one transaction each; a control plane without it gets one ``CreateKey`` per key): a bulk
    apply publishes a few snapshot changes, not one per key. Raises :class:`CommandError`
    naming the first change that was refused and how many were done (every change that
    succeeded is reported to ``on_done`` first, so no new key's secret is lost)."""
    created: list[CreatedKey] = []
    done = 0
    gate = asyncio.Semaphore(max(1, concurrency))
    batch_rpc = [True]  # False once the control plane answered UNIMPLEMENTED

    async def run(unit: list[Change]) -> list[CreatedKey | None]:
        async with gate:
            if len(unit) > 1 or (unit[0].kind == "key" and unit[0].action == "+" and batch_rpc[0]):
                try:
                    return await _create_keys(client, unit)
                except ClientError as exc:
                    if exc.code != grpc.StatusCode.UNIMPLEMENTED:
                        raise
                    batch_rpc[0] = False
                return [await _execute_one(client, c, p) for c in unit]
            return [await _execute_one(client, unit[0], p)]

    for batch in _batches(p.changes):
        units = _units(batch)
        results = await asyncio.gather(*(run(u) for u in units), return_exceptions=True)
        outcome: dict[int, CreatedKey | ClientError | None] = {}
        for unit, result in zip(units, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, ClientError):
                raise result
            for i, change in enumerate(unit):
                outcome[id(change)] = result if isinstance(result, ClientError) else result[i]
        failed: tuple[Change, ClientError] | None = None
        for change in batch:
            got = outcome[id(change)]
            if isinstance(got, ClientError):
                failed = failed or (change, got)
                continue
            done += 1
            if got is not None:
                created.append(got)
            on_done(change, got)
        if failed is not None:
            change, exc = failed
            raise CommandError(
                f"{ACTION_WORDS[change.action]} {change.kind} {change.name} was refused: "
                f"{exc.message} ({done} of {len(p.changes)} change(s) applied; "
                "fix the file and apply again)"
            )
    return created


async def _create_keys(client: GatewayClient, unit: list[Change]) -> list[CreatedKey | None]:
    specs: list[KeySpec] = [c.message for c in unit]
    response = await client.create_keys(
        specs[0].workspace,
        [
            admin_pb2.CreateKeyRequest(
                workspace=spec.workspace,
                name=spec.name,
                limits=spec.limits,
                provider=spec.provider,
                route=spec.route,
                models=list(spec.models),
            )
            for spec in specs
        ],
    )
    return [
        CreatedKey(spec.workspace, spec.name, r.key.id, r.secret)
        for spec, r in zip(specs, response.keys, strict=True)
    ]


async def _execute_one(client: GatewayClient, c: Change, p: Plan) -> CreatedKey | None:
    if c.kind == "provider":
        if c.action == "+":
            await client.create_provider(c.message)
        elif c.action == "~":
            await client.update_provider(c.message, c.paths)
        else:
            await client.delete_provider(c.name)
    elif c.kind == "route":
        if c.action == "+":
            await client.create_route(c.message)
        elif c.action == "~":
            await client.update_route(c.message, c.paths)
        else:
            await client.delete_route(c.name)
    elif c.kind == "workspace":
        if c.action == "+":
            await client.create_workspace(c.message)
        elif c.action == "~":
            await client.update_workspace(c.message, c.paths)
        else:
            # When the file manages keys, this plan has already deleted the workspace's active
            # keys; force also removes its revoked ones (which apply does not manage). When it
            # does not, a workspace that still has keys is refused, as with `workspaces delete`.
            await client.delete_workspace(c.name, force=p.keys_managed)
    elif c.action == "+":
        spec: KeySpec = c.message
        response = await client.create_key(
            admin_pb2.CreateKeyRequest(
                workspace=spec.workspace,
                name=spec.name,
                limits=spec.limits,
                provider=spec.provider,
                route=spec.route,
                models=list(spec.models),
            )
        )
        return CreatedKey(spec.workspace, spec.name, response.key.id, response.secret)
    elif c.action == "~":
        await client.update_key(c.message, c.paths)
    else:
        await client.delete_key(c.key_id)
    return None


async def run(client: GatewayClient, args: argparse.Namespace) -> int:
    try:
        config = load(args.file)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    check_references(config)  # before asking the control plane, which would name only the first
    await stored_forms(client, config)
    state = await fetch_state(client, config)
    the_plan = plan(config, state, prune=args.prune)
    as_json = is_json(args)
    doc: dict[str, Any] = {
        "changes": [c.as_dict() for c in the_plan.changes],
        "unmanaged": the_plan.unmanaged if not args.prune else [],
        "applied": False,
        "created_keys": [],
    }
    if not as_json:
        print(render_plan(the_plan, prune=args.prune))
    if not the_plan.changes or args.dry_run:
        if as_json:
            out.print_json(doc)
        elif the_plan.changes:
            out.info("\ndry run: nothing was changed.")
        return 0
    n = len(the_plan.changes)
    deletes = the_plan.count("-")
    confirm(
        f"apply {n} change(s)" + (f", {deletes} of them delete(s)" if deletes else ""),
        args.yes,
    )

    def done(change: Change, key: CreatedKey | None) -> None:
        if key is not None:
            doc["created_keys"].append(
                {"workspace": key.workspace, "name": key.name, "id": key.id, "key": key.secret}
            )
        if as_json:
            return
        verb = {"+": "created", "~": "updated", "-": "deleted"}[change.action]
        print(f"{verb} {change.kind} {change.name}" + (f" ({key.id})" if key else ""))
        if key is not None:
            print(f"    secret: {key.secret}")
            out.info(
                f"    warning: the only time key {key.workspace}/{key.name}'s secret is shown: "
                "store it now."
            )

    try:
        await execute(client, the_plan, on_done=done)
    except CommandError:
        if as_json:
            out.print_json(doc)  # keys created before the failure: their secrets, once
        raise
    doc["applied"] = True
    if as_json:
        out.print_json(doc)
    else:
        print(
            f"\nApplied: {the_plan.count('+')} created, {the_plan.count('~')} updated, "
            f"{the_plan.count('-')} deleted."
        )
    return 0
