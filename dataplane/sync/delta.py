"""Applying ``Discovery.DeltaWatch`` responses to the immutable snapshot, without re-indexing.

A :class:`DeltaState` is what a delta stream has delivered: the raw resources by kind and name
(each a ``gwapi.v1.Resource`` with its version) and the indexed :class:`Snapshot` built from
them. :func:`apply` returns a new state; the old one is never modified, so requests holding the
old snapshot keep a consistent view while the holder swaps in the new one.

Copy-on-write: only the kinds a response touches get new dicts (a copy of the old one, then the
changed entries converted with the same functions ``Snapshot.from_proto`` uses); untouched
kinds share the previous state's dicts and objects. The small kinds (providers with their
secrets, routes, prices, signing keys, telemetry destinations) are rebuilt whole when touched.
References are checked for the changed keys and developers, and for every key and developer
only when a workspace, provider or route disappears. Any inconsistency raises
:class:`SnapshotError` (the response is NACKed, the previous state keeps serving). A full-state
response (``full_state``), and the first response on an empty state, build everything with
``Snapshot.from_proto``.

The disk form (:func:`to_cache`) drops secrets, signing keys and collector header values;
:func:`initial_versions` lists only what a data plane may claim to hold (never those).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from dataplane.config.members import SsoInfo
from dataplane.config.snapshot import (
    Snapshot,
    SnapshotError,
    _signing_keys,
    check_developer_refs,
    check_key_refs,
    developer_from_pb,
    key_from_pb,
    provider_from_pb,
    route_from_pb,
    spend_entry,
    workspace_from_pb,
)
from dataplane.metering.pricing import PriceTable
from dataplane.telemetry.destinations import destinations_from_proto
from dataplane.telemetry.destinations import strip_secrets as strip_destination_secrets
from gwapi.v1 import discovery_pb2
from gwcommon.resource_kinds import KINDS, SECRET_KINDS

# kind -> name -> the serialised ``Resource`` (bytes: a parsed message per resource would keep
# its whole response's arena alive, several KiB a key; bytes are ~200 B). Parsed when needed.
Raw = Mapping[str, Mapping[str, bytes]]


def _parse(blob: bytes) -> discovery_pb2.Resource:
    return discovery_pb2.Resource.FromString(blob)


@dataclass(frozen=True, slots=True)
class DeltaState:
    system_version: str
    spend_version: str
    built_at_ms: int
    raw: Raw
    snapshot: Snapshot


def _split(ref: str) -> tuple[str, str]:
    kind, sep, name = ref.partition("/")
    if not sep or kind not in KINDS:
        raise SnapshotError(f"removed resource {ref!r} is not kind/name")
    return kind, name


def apply(state: DeltaState | None, response: discovery_pb2.DeltaWatchResponse) -> DeltaState:
    """The state after ``response``. Raises :class:`SnapshotError`; ``state`` is untouched."""
    if not response.system_version:
        raise SnapshotError("delta response has no system version")
    base: dict[str, Mapping[str, bytes]]
    base = {k: {} for k in KINDS} if state is None or response.full_state else dict(state.raw)
    touched: dict[str, dict[str, bytes]] = {}
    removed: dict[str, dict[str, bytes]] = {}

    def edit(kind: str) -> dict[str, bytes]:
        if kind not in touched:
            touched[kind] = dict(base[kind])
            base[kind] = touched[kind]
        return touched[kind]

    for ref in response.removed_resources:
        kind, name = _split(ref)
        old = edit(kind).pop(name, None)
        if old is not None:
            removed.setdefault(kind, {})[name] = old
    changed: dict[str, list[discovery_pb2.Resource]] = {}
    for res in response.resources:
        if res.kind not in KINDS or res.WhichOneof("body") != res.kind:
            raise SnapshotError(f"resource {res.kind}/{res.name} has no {res.kind!r} body")
        entries = edit(res.kind)
        old = entries.get(res.name)
        if old is not None:
            removed.setdefault(res.kind, {})[res.name] = old
        entries[res.name] = res.SerializeToString()
        changed.setdefault(res.kind, []).append(res)
    raw = MappingProxyType(base)
    meta = (response.system_version, response.spend_version, response.built_at_ms)
    if state is None or response.full_state:
        return DeltaState(*meta, raw, Snapshot.from_proto(assemble(raw, *meta)))
    snap = _patch(state.snapshot, raw, set(touched), changed, removed, response)
    return DeltaState(*meta, raw, snap)


def assemble(
    raw: Raw, system_version: str, spend_version: str = "", built_at_ms: int = 0
) -> discovery_pb2.Snapshot:
    """The state of the world as one ``Snapshot`` message (version = the system version)."""

    def bodies(kind: str) -> list:  # type: ignore[type-arg]
        return [getattr(_parse(b), kind) for _, b in sorted(raw[kind].items())]

    snap = discovery_pb2.Snapshot(version=system_version, built_at_ms=built_at_ms)
    snap.workspaces.extend(bodies("workspace"))
    snap.keys.extend(bodies("key"))
    snap.providers.extend(bodies("provider"))
    snap.routes.extend(bodies("route"))
    snap.prices.extend(bodies("price"))
    snap.spend.extend(bodies("spend"))
    snap.secrets.extend(bodies("secret"))
    if "sso" in raw["sso"]:
        snap.sso.CopyFrom(_parse(raw["sso"]["sso"]).sso)
    snap.developers.extend(bodies("developer"))
    snap.signing_keys.extend(bodies("signing_key"))
    snap.telemetry_destinations.extend(bodies("telemetry_destination"))
    return snap


def _patch(
    old: Snapshot,
    raw: Raw,
    touched: set[str],
    changed: dict[str, list[discovery_pb2.Resource]],
    removed: dict[str, dict[str, bytes]],
    response: discovery_pb2.DeltaWatchResponse,
) -> Snapshot:
    fields: dict[str, object] = {
        "version": response.system_version,
        "built_at_ms": response.built_at_ms,
    }
    workspaces = old.workspaces
    if "workspace" in touched:
        ws = dict(old.workspaces)
        for name in removed.get("workspace", {}):
            ws.pop(name, None)
        for res in changed.get("workspace", ()):
            ws[res.name] = workspace_from_pb(res.workspace)
        workspaces = fields["workspaces"] = MappingProxyType(ws)
    providers = old.providers
    if touched & {"provider", "secret"}:
        secrets = {n: _parse(b).secret.api_key for n, b in raw["secret"].items()}
        if any(n not in raw["provider"] for n in secrets):
            raise SnapshotError("secret for unknown provider")
        providers = fields["providers"] = MappingProxyType(
            {
                n: provider_from_pb(_parse(b).provider, secrets.get(n, ""))
                for n, b in raw["provider"].items()
            }
        )
    routes = old.routes
    if touched & {"route", "provider"}:
        routes = fields["routes"] = MappingProxyType(
            {n: route_from_pb(_parse(b).route, providers) for n, b in raw["route"].items()}
        )
    if "price" in touched:
        try:
            fields["prices"] = PriceTable.from_proto(
                [_parse(b).price for _, b in sorted(raw["price"].items())]
            )
        except ValueError as exc:
            raise SnapshotError(f"bad price table: {exc}") from exc
    structural = (
        any(n not in raw["workspace"] for n in removed.get("workspace", {}))
        or set(providers) != set(old.providers)
        or set(routes) != set(old.routes)
    )
    if "key" in touched:
        keys = dict(old.keys_by_hash)
        for blob in removed.get("key", {}).values():
            keys.pop(_parse(blob).key.secret_sha256, None)
        for res in changed.get("key", ()):
            if res.key.secret_sha256 in keys and keys[res.key.secret_sha256].id != res.name:
                raise SnapshotError(f"key {res.name}: duplicate secret hash")
            keys[res.key.secret_sha256] = key_from_pb(res.key, workspaces, providers, routes)
        fields["keys_by_hash"] = MappingProxyType(keys)
    if "developer" in touched:
        devs = dict(old.developers)
        for name in removed.get("developer", {}):
            devs.pop(name, None)
        for res in changed.get("developer", ()):
            devs[res.name] = developer_from_pb(res.developer, workspaces, providers, routes)
        fields["developers"] = MappingProxyType(devs)
    if structural:
        _check_all(raw, workspaces, providers, routes)
    if "signing_key" in touched:
        fields["signing_keys"] = _signing_keys(
            _parse(b).signing_key for b in raw["signing_key"].values()
        )
    if "telemetry_destination" in touched:
        fields["telemetry_destinations"] = destinations_from_proto(
            [
                _parse(b).telemetry_destination
                for _, b in sorted(raw["telemetry_destination"].items())
            ]
        )
    if "sso" in touched:
        held = raw["sso"].get("sso")
        sso = _parse(held).sso if held is not None else None
        fields["sso"] = SsoInfo(sso.enabled, sso.issuer) if sso is not None else SsoInfo()
    if "spend" in touched:
        fields["spend"] = _patch_spend(old, changed.get("spend", ()), removed.get("spend", {}))
    return dataclasses.replace(old, **fields)  # type: ignore[arg-type]


def _check_all(raw: Raw, workspaces: Mapping, providers: Mapping, routes: Mapping) -> None:  # type: ignore[type-arg]
    for blob in raw["key"].values():
        k = _parse(blob).key
        check_key_refs(
            k.id, k.workspace, k.provider, k.route, k.revoked, workspaces, providers, routes
        )
    for blob in raw["developer"].values():
        d = _parse(blob).developer
        check_developer_refs(
            d.id, d.workspace, d.provider, d.route, d.disabled, workspaces, providers, routes
        )


def _patch_spend(
    old: Snapshot,
    changed: Iterable[discovery_pb2.Resource],
    removed: Mapping[str, bytes],
) -> Mapping:  # type: ignore[type-arg]
    spend = dict(old.spend)
    for blob in removed.values():
        key, _ = spend_entry(_parse(blob).spend)
        spend.pop(key, None)
    for res in changed:
        key, value = spend_entry(res.spend)
        spend[key] = value
    return MappingProxyType(spend)


def initial_versions(state: DeltaState | None) -> dict[str, str]:
    """What to claim on (re)connect: every resource held, except secrets, signing keys and
    destinations with headers (their values may be missing: loaded from disk)."""
    if state is None:
        return {}
    out: dict[str, str] = {}
    for kind, entries in state.raw.items():
        if kind in SECRET_KINDS:
            continue
        for name, blob in entries.items():
            res = _parse(blob)
            if kind == "telemetry_destination" and res.telemetry_destination.headers:
                continue
            out[f"{kind}/{name}"] = res.version
    return out


def to_cache(state: DeltaState) -> discovery_pb2.ResourceCache:
    """The disk form: no secrets, signing keys or collector header values."""
    cache = discovery_pb2.ResourceCache(
        system_version=state.system_version,
        spend_version=state.spend_version,
        built_at_ms=state.built_at_ms,
    )
    for kind, entries in state.raw.items():
        if kind in SECRET_KINDS:
            continue
        for blob in entries.values():
            cache.resources.add().MergeFromString(blob)
    stripped = discovery_pb2.Snapshot()
    for res in cache.resources:
        if res.kind == "telemetry_destination":
            stripped.telemetry_destinations.append(res.telemetry_destination)
    if stripped.telemetry_destinations:
        strip_destination_secrets(stripped)
        by_name = {d.name: d for d in stripped.telemetry_destinations}
        for res in cache.resources:
            if res.kind == "telemetry_destination":
                res.telemetry_destination.CopyFrom(by_name[res.name])
    return cache


def from_cache(cache: discovery_pb2.ResourceCache) -> DeltaState:
    response = discovery_pb2.DeltaWatchResponse(
        system_version=cache.system_version,
        spend_version=cache.spend_version,
        built_at_ms=cache.built_at_ms,
        resources=cache.resources,
        full_state=True,
    )
    return apply(None, response)
