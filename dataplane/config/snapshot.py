"""The data plane's view of the world: an immutable snapshot, parsed and validated once.

The control plane sends a ``gwapi.v1.Snapshot`` proto (or resources, applied by
:mod:`dataplane.sync.delta` with the converters below). :meth:`Snapshot.from_proto` validates it and
turns it into the frozen value objects of :mod:`dataplane.config.resources` (exported here too), indexed
for the hot path (keys by secret hash, providers and routes by name). A snapshot that fails
validation raises :class:`SnapshotError` and is NACKed; the data plane keeps serving the last good
one. :class:`dataplane.policy.runtime.SnapshotHolder` compiles each snapshot into the runtime requests
pin.

Provider secrets stored on the control plane (``Snapshot.secrets``) are joined into their
:class:`ProviderConfig` (``api_key``, never in a ``repr``); ``has_secret`` says one is expected,
so a data plane that has not received it yet (started from its disk cache, which never holds
secrets) can say so instead of calling upstream without a key. The same goes for the keys that
verify signed-in developers' access tokens (``signing_keys``; ``signing_keys_missing``).
Developers (:class:`dataplane.config.members.Developer`, by id) carry their effective limits and target;
a workspace's Claude Code managed settings are rendered into their response once, here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from dataplane.config.members import (
    MIN_SIGNING_KEY_BYTES,
    Developer,
    ManagedSettings,
    SigningKey,
    SsoInfo,
)
from dataplane.config.resources import (
    PERIODS,
    Budget,
    Limits,
    Period,
    ProviderConfig,
    RouteConfig,
    RouteTarget,
    SnapshotError,
    VirtualKey,
    Workspace,
)
from dataplane.metering.pricing import PriceTable
from dataplane.telemetry.destinations import Destination, destinations_from_proto
from gwapi import vocab
from gwapi.v1 import common_pb2, discovery_pb2
from gwcommon import breaker_defaults
from gwcommon.allowlists import compile_models

__all__ = [
    "Budget",
    "Limits",
    "Period",
    "ProviderConfig",
    "RouteConfig",
    "RouteTarget",
    "Snapshot",
    "SnapshotError",
    "VirtualKey",
    "Workspace",
    "check_developer_refs",
    "check_key_refs",
    "developer_from_pb",
    "key_from_pb",
    "provider_from_pb",
    "route_from_pb",
    "spend_entry",
    "version_parts",
    "workspace_from_pb",
]


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: str
    built_at_ms: int
    workspaces: Mapping[str, Workspace]
    keys_by_hash: Mapping[str, VirtualKey]
    providers: Mapping[str, ProviderConfig]
    routes: Mapping[str, RouteConfig]
    prices: PriceTable
    # Seeds for the budget counters from the control plane's ledger: (scope "key"|"workspace"|
    # "developer", key id, workspace name or developer id, period) -> (period_start_ms, spent_micros)
    spend: Mapping[tuple[str, str, Period], tuple[int, int]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # Sign-in with Claude Code: developers by id, access-token keys by kid (secret: memory only,
    # never in the disk cache, so a data plane started from it has none until the stream
    # delivers them: ``signing_keys_missing``).
    sso: SsoInfo = field(default_factory=SsoInfo)
    developers: Mapping[str, Developer] = field(default_factory=lambda: MappingProxyType({}))
    signing_keys: Mapping[str, SigningKey] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def signing_keys_missing(self) -> bool:
        """Sign-in is on but no key to verify its tokens has arrived (yet)."""
        return self.sso.enabled and not self.signing_keys

    # Where Claude Code's OTLP telemetry is forwarded (dataplane.telemetry); header values are
    # secret, as provider secrets are.
    telemetry_destinations: tuple[Destination, ...] = ()

    @classmethod
    def from_proto(cls, msg: discovery_pb2.Snapshot) -> Snapshot:
        """Validate and index a snapshot. Raises SnapshotError on any inconsistency."""
        if not msg.version:
            raise SnapshotError("snapshot has no version")
        workspaces = {w.name: workspace_from_pb(w) for w in msg.workspaces}
        secrets: dict[str, str] = {}
        for secret in msg.secrets:
            if secret.provider in secrets:
                raise SnapshotError(f"two secrets for provider {secret.provider!r}")
            secrets[secret.provider] = secret.api_key
        providers = {p.name: provider_from_pb(p, secrets.pop(p.name, "")) for p in msg.providers}
        if secrets:
            raise SnapshotError(f"secret for unknown provider {sorted(secrets)[0]!r}")
        routes = {r.name: route_from_pb(r, providers) for r in msg.routes}
        keys: dict[str, VirtualKey] = {}
        for k in msg.keys:
            keys[k.secret_sha256] = key_from_pb(k, workspaces, providers, routes)
        try:
            prices = PriceTable.from_proto(msg.prices)
        except ValueError as exc:
            raise SnapshotError(f"bad price table: {exc}") from exc
        return cls(
            version=msg.version,
            built_at_ms=msg.built_at_ms,
            workspaces=MappingProxyType(workspaces),
            keys_by_hash=MappingProxyType(keys),
            providers=MappingProxyType(providers),
            routes=MappingProxyType(routes),
            prices=prices,
            spend=_spend_from_proto(msg.spend),
            sso=SsoInfo(msg.sso.enabled, msg.sso.issuer),
            developers=_developers(msg.developers, workspaces, providers, routes),
            signing_keys=_signing_keys(msg.signing_keys),
            telemetry_destinations=destinations_from_proto(msg.telemetry_destinations),
        )


def workspace_from_pb(w: common_pb2.Workspace) -> Workspace:
    return Workspace(
        w.name,
        Limits.from_proto(w.limits),
        w.timezone,
        _redis_failure(vocab.redis_failure(w)),
        w.min_client_version,
        _version_parts(w.min_client_version, f"workspace {w.name!r} min_client_version"),
        _log_bodies(vocab.log_bodies(w)),
        w.log_body_max_bytes if w.log_body_max_bytes > 0 else 256 * 1024,
        allowed_providers=tuple(w.allowed_providers),
        allowed_routes=tuple(w.allowed_routes),
        allowed_models=tuple(w.allowed_models),
        models_re=compile_models(w.allowed_models),
        managed_settings=_managed_settings(w),
    )


def provider_from_pb(p: common_pb2.Provider, api_key: str) -> ProviderConfig:
    return ProviderConfig(
        p.name,
        vocab.provider_kind(p),
        p.base_url.rstrip("/"),
        p.api_key_env,
        tuple(vocab.provider_options(p).items()),
        p.has_secret,
        api_key,
    )


def route_from_pb(r: common_pb2.Route, providers: Mapping[str, ProviderConfig]) -> RouteConfig:
    targets = tuple(RouteTarget(t.provider, t.weight or 1, t.model) for t in r.targets)
    if not targets:
        raise SnapshotError(f"route {r.name!r} has no targets")
    for t in targets:
        if t.provider not in providers:
            raise SnapshotError(f"route {r.name!r} targets unknown provider {t.provider!r}")
    if r.breaker_failures < 0 or r.breaker_cooldown_s < 0:
        raise SnapshotError(f"route {r.name!r} has a negative circuit-breaker setting")
    return RouteConfig(
        r.name,
        vocab.route_mode(r) or "fallback",
        targets,
        r.retries,
        tuple(r.retry_on),
        r.timeout_connect_ms,
        r.timeout_first_byte_ms,
        r.timeout_idle_ms,
        r.cache_ttl_s,
        r.cache_sampled,
        r.breaker_failures or breaker_defaults.FAILURES,
        r.breaker_cooldown_s or breaker_defaults.COOLDOWN_S,
    )


def key_from_pb(
    k: discovery_pb2.SnapshotKey,
    workspaces: Mapping[str, Workspace],
    providers: Mapping[str, ProviderConfig],
    routes: Mapping[str, RouteConfig],
) -> VirtualKey:
    if len(k.secret_sha256) != 64:
        raise SnapshotError(f"key {k.id} has a malformed hash")
    check_key_refs(k.id, k.workspace, k.provider, k.route, k.revoked, workspaces, providers, routes)
    return VirtualKey(
        k.id,
        k.name,
        sys.intern(k.workspace),
        Limits.shared(k.limits),
        sys.intern(k.provider),
        sys.intern(k.route),
        tuple(k.models),
        k.expires_at_ms,
        k.revoked,
    )


def check_key_refs(
    key_id: str,
    workspace: str,
    provider: str,
    route: str,
    revoked: bool,
    workspaces: Mapping[str, Workspace],
    providers: Mapping[str, ProviderConfig],
    routes: Mapping[str, RouteConfig],
) -> None:
    if workspace not in workspaces:
        raise SnapshotError(f"key {key_id} belongs to unknown workspace {workspace!r}")
    if not revoked:
        if provider and provider not in providers:
            raise SnapshotError(f"key {key_id} targets unknown provider {provider!r}")
        if route and route not in routes:
            raise SnapshotError(f"key {key_id} targets unknown route {route!r}")


def _managed_settings(w: common_pb2.Workspace) -> ManagedSettings | None:
    if not w.managed_settings_json:
        return None
    try:
        return ManagedSettings.build(w.name, w.managed_settings_json, w.managed_settings_checksum)
    except ValueError as exc:
        raise SnapshotError(f"workspace {w.name!r}: {exc}") from None


def _developers(
    entries: Iterable[discovery_pb2.SnapshotDeveloper],
    workspaces: Mapping[str, Workspace],
    providers: Mapping[str, ProviderConfig],
    routes: Mapping[str, RouteConfig],
) -> Mapping[str, Developer]:
    developers: dict[str, Developer] = {}
    for d in entries:
        if d.id in developers:
            raise SnapshotError(f"developer {d.id} appears twice")
        developers[d.id] = developer_from_pb(d, workspaces, providers, routes)
    return MappingProxyType(developers)


def developer_from_pb(
    d: discovery_pb2.SnapshotDeveloper,
    workspaces: Mapping[str, Workspace],
    providers: Mapping[str, ProviderConfig],
    routes: Mapping[str, RouteConfig],
) -> Developer:
    if not d.id:
        raise SnapshotError("developer without an id")
    if d.provider and d.route:
        raise SnapshotError(f"developer {d.id} has both a provider and a route")
    check_developer_refs(
        d.id, d.workspace, d.provider, d.route, d.disabled, workspaces, providers, routes
    )
    if d.tokens_not_before_ms < 0:
        raise SnapshotError(f"developer {d.id} has a negative tokens_not_before_ms")
    return Developer(
        d.id,
        d.workspace,
        d.email,
        d.name,
        Limits.shared(d.limits),
        sys.intern(d.provider),
        sys.intern(d.route),
        d.disabled,
        d.tokens_not_before_ms,
    )


def check_developer_refs(
    dev_id: str,
    workspace: str,
    provider: str,
    route: str,
    disabled: bool,
    workspaces: Mapping[str, Workspace],
    providers: Mapping[str, ProviderConfig],
    routes: Mapping[str, RouteConfig],
) -> None:
    if workspace not in workspaces:
        raise SnapshotError(f"developer {dev_id} belongs to unknown workspace {workspace!r}")
    if not disabled:
        if provider and provider not in providers:
            raise SnapshotError(f"developer {dev_id} targets unknown provider {provider!r}")
        if route and route not in routes:
            raise SnapshotError(f"developer {dev_id} targets unknown route {route!r}")


def _signing_keys(entries: Iterable[discovery_pb2.SigningKey]) -> Mapping[str, SigningKey]:
    keys: dict[str, SigningKey] = {}
    for k in entries:
        if not k.kid:
            raise SnapshotError("signing key without a kid")
        if k.kid in keys:
            raise SnapshotError(f"two signing keys with kid {k.kid!r}")
        if len(k.key) < MIN_SIGNING_KEY_BYTES:  # never say more about a secret than its size
            raise SnapshotError(
                f"signing key {k.kid!r} is malformed ({len(k.key)} bytes, "
                f"{MIN_SIGNING_KEY_BYTES} at least)"
            )
        keys[k.kid] = SigningKey(k.kid, bytes(k.key), k.current)
    return MappingProxyType(keys)


_SPEND_SCOPES = frozenset({"key", "workspace", "developer"})


def _spend_from_proto(
    entries: Iterable[discovery_pb2.Spend],
) -> Mapping[tuple[str, str, Period], tuple[int, int]]:
    """Index the ledger's spend seeds; for duplicates the later period start, then the higher
    spend, wins (a seed only ever raises a counter)."""
    spend: dict[tuple[str, str, Period], tuple[int, int]] = {}
    for s in entries:
        key, value = spend_entry(s)
        if key not in spend or value > spend[key]:
            spend[key] = value
    return MappingProxyType(spend)


SpendKey = tuple[str, str, Period]


def spend_entry(s: discovery_pb2.Spend) -> tuple[SpendKey, tuple[int, int]]:
    if s.scope not in _SPEND_SCOPES:
        raise SnapshotError(f"spend entry with unknown scope {s.scope!r}")
    if s.period not in PERIODS:
        raise SnapshotError(f"spend entry with unknown period {s.period}")
    if s.spent_micros < 0 or s.period_start_ms < 0:
        raise SnapshotError(f"negative spend entry for {s.scope} {s.id!r}")
    return (s.scope, s.id, PERIODS[s.period]), (s.period_start_ms, s.spent_micros)


def version_parts(version: str) -> tuple[int, ...] | None:
    """``"2.1.197"`` → ``(2, 1, 197)``; the leading dotted numbers of a version such as
    ``2.1.0-beta``; None when it does not start with a number."""
    parts: list[int] = []
    for piece in version.split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    return tuple(parts) if parts else None


def _version_parts(value: str, what: str) -> tuple[int, ...]:
    if not value:
        return ()
    parts = version_parts(value)
    if parts is None:
        raise SnapshotError(f"{what} {value!r} is not a dotted version")
    return parts


def _redis_failure(value: str) -> Literal["", "closed", "open"]:
    if value == "":
        return ""
    if value == "closed":
        return "closed"
    if value == "open":
        return "open"
    raise SnapshotError(f"workspace redis_failure {value!r} is neither 'closed' nor 'open'")


def _log_bodies(value: str) -> Literal["none", "metadata", "full"]:
    """An unknown policy (a newer control plane) logs nothing: the safe reading for privacy."""
    if value == "full":
        return "full"
    if value == "metadata":
        return "metadata"
    return "none"
